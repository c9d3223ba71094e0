package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// persist writes m's snapshot into snaps at index and term.
func persist(t *testing.T, snaps *raft.FileSnapshotStore, m *fsm.Machine, index, term uint64) {
	t.Helper()
	_, trans := raft.NewInmemTransport("n1")
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, raft.Configuration{}, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Persist(sink); err != nil {
		t.Fatal(err)
	}
	s.Release()
}

func listed(t *testing.T, snaps raft.SnapshotStore) string {
	t.Helper()
	metas, err := snaps.List()
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, m := range metas {
		out += fmt.Sprintf("%d/%d ", m.Term, m.Index)
	}
	return out
}

func TestDropStaleSnapshots(t *testing.T) {
	m := testMachine(t, 3)
	for _, tc := range []struct {
		name       string
		snaps      [][2]uint64 // term, index, in the order written
		want, kept string
	}{
		{"own snapshots only", [][2]uint64{{2, 100}, {2, 200}}, "2/200 2/100 ", "2/200 2/100 "},
		{"an installed newer one", [][2]uint64{{2, 100}, {3, 300}}, "3/300 2/100 ", "3/300 2/100 "},
		// The file store keeps two, by term first: the refused snapshot
		// pushed out the node's older one; removing it leaves the newest.
		{"a refused one", [][2]uint64{{2, 100}, {2, 200}, {3, 150}}, "3/150 2/200 ", "2/200 "},
		{"same term, lower index", [][2]uint64{{2, 200}, {2, 150}}, "2/200 2/150 ", "2/200 2/150 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			snaps, err := raft.NewFileSnapshotStore(dir, snapshotsRetained, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.snaps {
				persist(t, snaps, m, s[1], s[0])
			}
			if got := listed(t, snaps); got != tc.want {
				t.Fatalf("before: %q, want %q", got, tc.want)
			}
			if err := dropStaleSnapshots(dir, snaps, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
			if got := listed(t, snaps); got != tc.kept {
				t.Fatalf("after: %q, want %q", got, tc.kept)
			}
		})
	}
}

// The node's FSM drops a snapshot the machine refuses, at once: raft wrote
// it to the store before restoring it.
func TestNodeFSM_RefusedSnapshotRemoved(t *testing.T) {
	dir := t.TempDir()
	snaps, err := raft.NewFileSnapshotStore(dir, snapshotsRetained, nil)
	if err != nil {
		t.Fatal(err)
	}
	older, node := testMachine(t, 3), testMachine(t, 10)
	persist(t, snaps, node, 15, 2) // the node's own
	persist(t, snaps, older, 8, 3) // sent by a leader of a later term
	metas, _ := snaps.List()
	_, rc, err := snaps.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	f := nodeFSM{Machine: node, onStale: func() {
		if err := dropStaleSnapshots(dir, snaps, slog.New(slog.DiscardHandler)); err != nil {
			t.Error(err)
		}
	}}
	if err := f.Restore(rc); !errors.Is(err, fsm.ErrStaleSnapshot) {
		t.Fatalf("restore: %v, want ErrStaleSnapshot", err)
	}
	if got := listed(t, snaps); got != "2/15 " {
		t.Fatalf("snapshots after the refusal: %q, want the node's own only", got)
	}
}

// TestSnapshot_ReturnsFreedMemory: once raft releases a snapshot of the
// node's FSM, the heap's free memory is back with the OS. A live block keeps
// the heap goal high, so the runtime's background scavenger leaves the freed
// garbage mapped, as it does on a node with many idle connections; after the
// release the free-but-mapped heap is (nearly) gone.
func TestSnapshot_ReturnsFreedMemory(t *testing.T) {
	live := make([]byte, 256<<20)
	for i := 0; i < len(live); i += 4096 {
		live[i] = 1 // touched: resident, and counted in the goal
	}
	garbage := make([][]byte, 64)
	for i := range garbage {
		garbage[i] = make([]byte, 1<<20)
		garbage[i][0] = 1
	}
	garbage = nil
	runtime.GC()
	before := heapFree()

	dir := t.TempDir()
	snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("n1")
	sink, err := snaps.Create(raft.SnapshotVersionMax, 10, 1, raft.Configuration{}, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	s, err := nodeFSM{Machine: testMachine(t, 10)}.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Persist(sink); err != nil {
		t.Fatal(err)
	}
	s.Release()
	after := heapFree()
	runtime.KeepAlive(live)
	t.Logf("free heap, not returned to the OS: %d MB before the snapshot, %d MB after its release", before>>20, after>>20)
	if after > 16<<20 {
		t.Fatalf("%d MB of free heap still mapped after the snapshot's release, want under 16 (%d MB before)", after>>20, before>>20)
	}
}

// heapFree is the heap memory that is free and still mapped (not returned
// to the OS).
func heapFree() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
