package nemesis

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
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
