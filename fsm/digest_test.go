package fsm

import "testing"

func TestMachine_Digest(t *testing.T) {
	cmds := []Command{
		withID(open("h", "c1", "u"), "a"),
		withID(join("h", "c1", "g"), "b"),
		withID(publish("h", AudienceGroup, "g", `[1]`), "c"),
		withID(publish("h", AudienceAll, "", `[2]`), "d"),
	}
	run := func(order []int, dupOf int) (*applier, uint64) {
		a := newApplier(t, testConfig(t))
		for _, i := range order {
			a.apply1(cmds[i])
		}
		if dupOf >= 0 {
			a.apply1(cmds[dupOf]) // a retried command: dropped, digest unchanged
		}
		return a, a.m.Position().Digest
	}
	_, base := run([]int{0, 1, 2, 3}, -1)
	if base == 0 {
		t.Fatal("digest is 0 after applying commands")
	}
	if _, same := run([]int{0, 1, 2, 3}, -1); same != base {
		t.Errorf("same commands in the same order: digest %x, want %x", same, base)
	}
	if _, swapped := run([]int{0, 1, 3, 2}, -1); swapped == base {
		t.Errorf("reordered commands: digest %x equals the original", swapped)
	}
	// The digest folds applied commands only: a dropped duplicate changes
	// nothing (unless this is the deliberately broken chaos_nodedup build).
	a, withDup := run([]int{0, 1, 2}, 2)
	if _, noDup := run([]int{0, 1, 2}, -1); withDup != noDup && !skipDedup {
		t.Errorf("a dropped duplicate changed the digest: %x vs %x", withDup, noDup)
	}

	// The digest travels in snapshots.
	b := newTestMachine(t, testConfig(t))
	if err := restore(t, b, snapshotBytes(t, a.m)); err != nil {
		t.Fatal(err)
	}
	if got := b.Position().Digest; got != withDup {
		t.Errorf("restored digest %x, want %x", got, withDup)
	}
}

// TestMachine_Expired: a copy of a command stamped more than MaxCommandAge
// before the newest applied one is refused unless it is a known duplicate
// (found by the chaos soak: a deposed leader's re-forward reached the log
// 54 s after the first copy, when the dedup window had forgotten it).
func TestMachine_Expired(t *testing.T) {
	a := newApplier(t, testConfig(t))
	late := at(withID(publish("h", AudienceAll, "", `[1]`), "late"), t0)
	a.apply1(at(publish("h", AudienceAll, "", `[0]`), t0+int64(MaxCommandAge)+1))
	before := a.m.Position()
	if r := a.apply1(late); r.Err != ErrExpired || r.Duplicate {
		t.Fatalf("a command older than MaxCommandAge: %+v, want ErrExpired", r)
	}
	if after := a.m.Position(); after.Last != before.Last || after.Digest != before.Digest {
		t.Errorf("an expired command changed the stream: %+v -> %+v", before, after)
	}
	// Within the age it is applied; a late copy of it is then a duplicate.
	ok := at(withID(publish("h", AudienceAll, "", `[2]`), "ok"), t0+2)
	first := a.apply1(ok)
	if first.Err != nil || first.Duplicate {
		t.Fatalf("a command within the age: %+v", first)
	}
	if r := a.apply1(ok); !r.Duplicate || r.Cursor != first.Cursor {
		t.Fatalf("its copy: %+v, want a duplicate of %s", r, first.Cursor)
	}
}
