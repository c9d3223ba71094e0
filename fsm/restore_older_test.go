package fsm

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

// A follower that applied past a snapshot and is then sent that older
// snapshot (raft installs it and applies the entries after it again) must
// end with the same cache as a replica that never went back.
func TestMachine_RestoreOlderThenReapply(t *testing.T) {
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
	// The follower applied up to 30, restores the snapshot at 20, then
	// gets 21.. again.
	f := newTestMachine(t, cfg)
	for _, l := range logs[:30] {
		f.Apply(l)
	}
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	for _, l := range logs[20:] {
		f.Apply(l)
	}
	if a, b := f.Position(), ref.Position(); a.Last != b.Last || a.Digest != b.Digest {
		t.Fatalf("position %+v, want %+v", a, b)
	}
	got, want := mustSince(t, f, Cursor{}, 0), mustSince(t, ref, Cursor{}, 0)
	if len(got) != len(want) {
		t.Fatalf("%d cached entries, want %d (last %v)", len(got), len(want), got[len(got)-1].Cursor)
	}
}
