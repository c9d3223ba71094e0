package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

// A follower that applied past a snapshot and is then sent that older
// snapshot (a leader replicating to a removed server whose address it took)
// refuses it and keeps its state: raft then keeps its applied index, and the
// entries after it apply as on a replica that never saw the snapshot. A
// snapshot at or past what it applied is restored.
func TestMachine_RestoreOlderRefused(t *testing.T) {
	cfg := testConfig(t)
	var logs []*raft.Log
	gen := newApplier(t, cfg)
	logs = append(logs, gen.entry(Command{Kind: KindClusterInit, ClusterID: "e1"}))
	logs = append(logs, gen.entry(open("h", "c1", "u")), gen.entry(join("h", "c1", "g")))
	for i := range 40 {
		logs = append(logs, gen.entry(withID(publish("h", AudienceGroup, "g", fmt.Sprintf(`["m%d"]`, i)), fmt.Sprintf("id%d", i))))
	}
	ref := newTestMachine(t, cfg)
	for _, l := range logs {
		ref.Apply(l)
	}
	// The snapshotter stops at entry 20.
	old := newTestMachine(t, cfg)
	for _, l := range logs[:20] {
		old.Apply(l)
	}
	snap := snapshotBytes(t, old)
	// The follower applied up to 30 and is sent the snapshot at 20.
	f := newTestMachine(t, cfg)
	for _, l := range logs[:30] {
		f.Apply(l)
	}
	before := f.Position()
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("Restore of an older snapshot: %v, want ErrStaleSnapshot", err)
	}
	if after := f.Position(); after != before {
		t.Fatalf("a refused restore changed the machine: %+v, was %+v", after, before)
	}
	for _, l := range logs[30:] {
		f.Apply(l)
	}
	if a, b := f.Position(), ref.Position(); a.Last != b.Last || a.Digest != b.Digest {
		t.Fatalf("position %+v, want %+v", a, b)
	}
	got, want := mustSince(t, f, Cursor{}, 0), mustSince(t, ref, Cursor{}, 0)
	if len(got) != len(want) {
		t.Fatalf("%d cached entries, want %d (last %v)", len(got), len(want), got[len(got)-1].Cursor)
	}

	// A fresh machine, and one at the snapshot's own index, restore it.
	for _, n := range []int{0, 20} {
		m := newTestMachine(t, cfg)
		for _, l := range logs[:n] {
			m.Apply(l)
		}
		if err := m.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
			t.Fatalf("Restore on a machine that applied %d entries: %v", n, err)
		}
		if a, b := m.Position(), old.Position(); a.Last != b.Last || a.Digest != b.Digest {
			t.Fatalf("after restore on a machine at %d: %+v, want %+v", n, a, b)
		}
	}
}
