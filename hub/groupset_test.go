package hub

import (
	"fmt"
	"slices"
	"testing"
)

func TestGroupSet(t *testing.T) {
	many := func(n int) []string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("g%d", i))
		}
		return s
	}
	tests := []struct {
		name     string
		add      []string
		remove   []string
		want     []string
		wantMany bool // past smallGroups: a map
	}{
		{name: "empty"},
		{name: "one", add: []string{"a"}, want: []string{"a"}},
		{name: "added twice, kept once", add: []string{"a", "b", "a"}, want: []string{"a", "b"}},
		{name: "removed", add: []string{"a", "b", "c"}, remove: []string{"b"}, want: []string{"a", "c"}},
		{name: "removing what is not there", add: []string{"a"}, remove: []string{"x"}, want: []string{"a"}},
		{name: "all removed", add: []string{"a", "b"}, remove: []string{"a", "b"}},
		{name: "exactly smallGroups: still a slice", add: many(smallGroups), want: many(smallGroups)},
		{name: "one past: a map, none lost", add: many(smallGroups + 1), want: many(smallGroups + 1), wantMany: true},
		{name: "a map removes", add: many(20), remove: many(20)[5:], want: many(5), wantMany: true},
		{name: "a map adds twice", add: append(many(10), many(10)...), want: many(10), wantMany: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g groupSet
			for _, n := range tc.add {
				g.add(n)
			}
			for _, n := range tc.remove {
				g.remove(n)
			}
			got := slices.Sorted(g.all())
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("groups %v, want %v", got, want)
			}
			if (g.many != nil) != tc.wantMany {
				t.Errorf("map in use: %t, want %t", g.many != nil, tc.wantMany)
			}
		})
	}
}

// TestGroupSet_AllStops: the iterator stops when its consumer does.
func TestGroupSet_AllStops(t *testing.T) {
	for _, n := range []int{3, 20} {
		var g groupSet
		for i := range n {
			g.add(fmt.Sprint(i))
		}
		seen := 0
		for range g.all() {
			seen++
			if seen == 2 {
				break
			}
		}
		if seen != 2 {
			t.Errorf("%d groups: the loop saw %d before its break, want 2", n, seen)
		}
	}
}
