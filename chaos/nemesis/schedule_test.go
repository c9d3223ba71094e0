package nemesis

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/chaos/nodes"
)

func TestSchedule(t *testing.T) {
	a, b := Schedule(42, Short), Schedule(42, Short)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two schedules")
	}
	if reflect.DeepEqual(a, Schedule(43, Short)) {
		t.Fatal("two seeds gave the same schedule")
	}
	seen := map[string]bool{}
	var prevEnd time.Duration
	for i, s := range a {
		if _, ok := Catalogue[s.Kind]; !ok {
			t.Errorf("step %d: kind %q not in the catalogue", i, s.Kind)
		}
		if s.At < prevEnd {
			t.Errorf("step %d starts at %s before the previous ended at %s: the short profile overlaps", i, s.At, prevEnd)
		}
		if s.At >= Short.Faults {
			t.Errorf("step %d at %s, after the fault phase", i, s.At)
		}
		prevEnd = s.At + s.Dur
		seen[s.Kind] = true
	}
	// The deck deals every kind before repeating one: a short run with room
	// for that many faults covers them all.
	if len(a) >= len(Short.Lanes[0]) && len(seen) != len(Short.Lanes[0]) {
		t.Errorf("%d steps cover %d of %d kinds", len(a), len(seen), len(Short.Lanes[0]))
	}
	for _, k := range Short.Lanes[0] {
		if _, ok := Catalogue[k]; !ok {
			t.Errorf("profile kind %q has no catalogue entry", k)
		}
	}

	// Every short run covers the profile's Lead kinds, and only clock
	// faults carry an offset, within the bounds.
	for seed := uint64(1); seed <= 50; seed++ {
		got := map[string]bool{}
		for _, s := range Schedule(seed, Short) {
			got[s.Kind] = true
			clock := s.Kind == ClockSkew || s.Kind == ClockJump || s.Kind == ClockScramble
			off := max(s.Offset, -s.Offset)
			switch {
			case clock && (off < MinClockOffset || off > MaxClockOffset):
				t.Errorf("seed %d: %s with offset %s, want %s..%s", seed, s.Kind, s.Offset, MinClockOffset, MaxClockOffset)
			case !clock && s.Offset != 0:
				t.Errorf("seed %d: %s with an offset", seed, s.Kind)
			case s.Kind != ClockSkew && s.Offset < 0:
				t.Errorf("seed %d: %s with a negative offset", seed, s.Kind)
			}
		}
		for _, k := range Short.Lead {
			if !got[k] {
				t.Errorf("seed %d: the short profile's schedule lacks %s", seed, k)
			}
		}
	}

	soak := Schedule(7, Soak)
	lanes := map[int]int{}
	for _, s := range soak {
		lanes[s.Lane]++
	}
	if len(lanes) != 2 {
		t.Errorf("soak lanes %v, want 2", lanes)
	}

	path := filepath.Join(t.TempDir(), "schedule.json")
	if err := SaveSchedule(path, a); err != nil {
		t.Fatal(err)
	}
	back, err := LoadSchedule(path)
	if err != nil || !reflect.DeepEqual(back, a) {
		t.Fatalf("LoadSchedule: %v, equal %v", err, reflect.DeepEqual(back, a))
	}
}

// TestScheduleMembership: the membership faults are in the catalogue and
// in both profiles, every short run deals them (CI covers them), and they
// last long enough for their midpoint's step.
func TestScheduleMembership(t *testing.T) {
	kinds := []string{ShrinkGrow, ReplaceVoter, JoinPromote}
	for _, k := range append(kinds, GrowShrink) {
		if Catalogue[k] == "" {
			t.Errorf("%s is not in the catalogue", k)
		}
	}
	for seed := uint64(1); seed <= 50; seed++ {
		got := map[string]int{}
		for _, s := range Schedule(seed, Short) {
			got[s.Kind]++
			if membershipKinds[s.Kind] && s.Kind != ReplaceVoter && s.Dur < 4*time.Second {
				t.Errorf("seed %d: %s lasts %s, want at least 4s", seed, s.Kind, s.Dur)
			}
		}
		for _, k := range kinds {
			if got[k] == 0 {
				t.Errorf("seed %d: the short profile's schedule lacks %s", seed, k)
			}
		}
	}
	soak := map[string]bool{}
	for _, s := range Schedule(7, Soak) {
		soak[s.Kind] = true
	}
	for _, k := range kinds {
		if !soak[k] {
			t.Errorf("the soak schedule of seed 7 lacks %s", k)
		}
	}
}

func TestWalk(t *testing.T) {
	cases := []struct {
		kind      string
		c0, n     int
		out, back []int
	}{
		{ShrinkGrow, 5, 5, []int{3, 1}, []int{3, 5}},
		{ShrinkGrow, 4, 5, []int{2, 1}, []int{2, 4}},
		{ShrinkGrow, 3, 5, []int{1}, []int{3}},
		{ShrinkGrow, 2, 5, []int{1}, []int{2}},
		{ShrinkGrow, 1, 5, nil, nil},
		{GrowShrink, 1, 5, []int{3, 5}, []int{3, 1}},
		{GrowShrink, 2, 5, []int{4, 5}, []int{4, 2}},
		{GrowShrink, 3, 5, []int{5}, []int{3}},
		{GrowShrink, 1, 4, []int{3, 4}, []int{3, 1}},
		{GrowShrink, 5, 5, nil, nil},
	}
	for _, c := range cases {
		out, back := walk(c.kind, c.c0, c.n)
		if !reflect.DeepEqual(out, c.out) || !reflect.DeepEqual(back, c.back) {
			t.Errorf("walk(%s, %d of %d) = %v, %v; want %v, %v", c.kind, c.c0, c.n, out, back, c.out, c.back)
		}
	}
}

func TestWantVoters(t *testing.T) {
	cases := []struct{ voters, running, want int }{
		{0, 5, 3}, {0, 4, 3}, {0, 3, 3}, {0, 2, 1}, {0, 1, 1},
		{5, 5, 5}, {5, 4, 3}, {5, 3, 3}, {5, 1, 1}, {7, 6, 5}, {1, 5, 1},
	}
	for _, c := range cases {
		env := &Env{Voters: c.voters}
		if got := env.wantVoters(c.running); got != c.want {
			t.Errorf("-voters %d, %d running: %d voters, want %d", c.voters, c.running, got, c.want)
		}
	}
}

// TestWhole: a view is settled when the running nodes are exactly the
// configuration's servers, with the voter count the rules give.
func TestWhole(t *testing.T) {
	a, b, c := &nodes.Node{Name: "n0"}, &nodes.Node{Name: "n1", Index: 1}, &nodes.Node{Name: "n2", Index: 2}
	ids := map[*nodes.Node]string{a: "A", b: "B", c: "C"}
	cases := []struct {
		name    string
		ids     map[*nodes.Node]string
		servers map[string]string
		want    string // "" settled, else a part of the error
	}{
		{"three voters", ids, map[string]string{"A": "voter", "B": "voter", "C": "voter"}, ""},
		{"a running node not added yet", ids, map[string]string{"A": "voter", "B": "voter"}, "n2 (C) is not a member"},
		{"a dead server not removed yet", ids, map[string]string{"A": "voter", "B": "voter", "C": "voter", "D": "voter"}, "D is a member but runs nowhere"},
		{"a spare not promoted yet", ids, map[string]string{"A": "voter", "B": "voter", "C": "nonvoter"}, "2 voters for 3 running nodes, want 3"},
		{"alone", map[*nodes.Node]string{a: "A"}, map[string]string{"A": "voter"}, ""},
	}
	for _, tc := range cases {
		v := view{leader: a, ids: tc.ids, servers: tc.servers}
		err := (&Env{}).whole(v)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want settled", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	v := view{leader: a, ids: ids, servers: map[string]string{"A": "voter", "B": "nonvoter", "D": "voter"}}
	if got, want := v.String(), "n0*=A:voter n1=B:nonvoter n2=C:not a member (3 running, 2 voters; also D:voter)"; got != want {
		t.Errorf("view %q, want %q", got, want)
	}
}
