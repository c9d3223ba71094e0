package netfault_test

import (
	"reflect"
	"testing"

	"github.com/raftplane/raftplane/chaos/netfault"
)

func pairs(g netfault.Grudge) map[netfault.Pair]bool {
	m := map[netfault.Pair]bool{}
	for _, p := range g.Pairs() {
		m[p] = true
	}
	return m
}

func TestGrudgeShapes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		g     netfault.Grudge
		count int
	}{
		{"Isolate(5,0)", netfault.Isolate(5, 0), 8},
		{"Split(5,{0,1})", netfault.Split(5, 0, 1), 12},
		{"MajoritiesRing(5)", netfault.MajoritiesRing(5), 10},
		{"Bridge(5)", netfault.Bridge(5), 8},
		{"OneWay(0,1)", netfault.OneWay(0, 1), 1},
		{"Components(3,{0},{1},{2})", netfault.Components(3, []int{0}, []int{1}, []int{2}), 6},
	} {
		if got := len(tc.g.Pairs()); got != tc.count {
			t.Errorf("%s: %d pairs, want %d: %s", tc.name, got, tc.count, tc.g)
		}
	}

	iso := netfault.Isolate(5, 0)
	for j := 1; j < 5; j++ {
		if !iso.Drops(0, j) || !iso.Drops(j, 0) {
			t.Errorf("Isolate(5,0) keeps 0<->%d", j)
		}
	}
	if iso.Drops(1, 2) {
		t.Error("Isolate(5,0) cuts 1<-2")
	}

	// Bridge(5): {0,1} + 2 + {3,4}; 2 hears everyone, sides hear only 2.
	br := netfault.Bridge(5)
	if len(br[2]) != 0 {
		t.Errorf("bridge node drops %v", br[2])
	}
	for _, a := range []int{0, 1} {
		for _, b := range []int{3, 4} {
			if !br.Drops(a, b) || !br.Drops(b, a) {
				t.Errorf("Bridge(5) keeps %d<->%d", a, b)
			}
		}
	}

	// MajoritiesRing(5): every node hears a majority, all majorities differ.
	ring := netfault.MajoritiesRing(5)
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		var hears []int
		for j := 0; j < 5; j++ {
			if !ring.Drops(i, j) {
				hears = append(hears, j)
			}
		}
		if len(hears) != 3 {
			t.Errorf("ring: n%d hears %v, want a majority of 3", i, hears)
		}
		k := netfault.Grudge{0: hears}.String()
		if seen[k] {
			t.Errorf("ring: n%d hears the same majority as another node: %v", i, hears)
		}
		seen[k] = true
	}
	if !reflect.DeepEqual(pairs(ring), pairs(ring.Symmetric())) {
		t.Error("MajoritiesRing(5) is not symmetric")
	}

	// OneWay(0,1): 1 drops 0; nothing else.
	ow := netfault.OneWay(0, 1)
	if !ow.Drops(1, 0) || ow.Drops(0, 1) {
		t.Errorf("OneWay(0,1) = %s", ow)
	}
	if got := len(ow.Symmetric().Pairs()); got != 2 {
		t.Errorf("OneWay(0,1).Symmetric has %d pairs", got)
	}

	// Merge dedups, Relabel moves.
	m := netfault.Merge(netfault.OneWay(0, 1), netfault.OneWay(0, 1), netfault.OneWay(2, 1))
	if got := len(m.Pairs()); got != 2 {
		t.Errorf("Merge: %s", m)
	}
	rl := netfault.Isolate(3, 0).Relabel([]int{2, 0, 1})
	if !reflect.DeepEqual(pairs(rl), pairs(netfault.Isolate(3, 2))) {
		t.Errorf("Relabel: %s", rl)
	}
	if netfault.Grudge(nil).Pairs() != nil || netfault.Grudge(nil).String() != "no grudge" {
		t.Error("empty grudge")
	}
}
