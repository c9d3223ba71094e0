package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// A snapshot the machine refused as stale (fsm.ErrStaleSnapshot: older than
// what it applied, sent by a leader replicating to a removed server whose
// address this node took) is still written in the snapshot store: raft
// stores an installed snapshot before it restores it. Left there, it is
// harmful twice over. The file store sorts snapshots by term first, so the
// refused one, from the leader's newer term, counts as the newest: the
// store keeps two and drops the node's own older snapshot for it, and at
// the next start raft restores it, sets its applied index back to it and
// then looks for log entries compacted long ago ("panic: log not found").
// So the node removes it as soon as the machine refuses it, and at every
// start before raft reads the store: a snapshot that sorts ahead of another
// (a newer term) while it stops at a lower index is stale, since the node's
// own snapshots only move forward and an installed one is accepted only at
// or past what the node applied.

var _ raft.BatchingFSM = nodeFSM{}

// nodeFSM is the FSM raft is given: the machine, telling the commit
// notices what it applied (when they are on) and dropping a snapshot it
// refused as stale (snapshots.go).
type nodeFSM struct {
	*fsm.Machine
	c       *commitNotices // nil: notices off
	onStale func()         // nil: the stores are not the node's files
	durable *asyncLog      // nil: writes sync before raft goes on
}

// Apply implements raft.FSM.
func (f nodeFSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM.
func (f nodeFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	if n := len(logs); n > 0 && f.durable != nil {
		// Nothing of a commit is seen before the leader's own copy is on
		// disk (asynclog.go). If it never will be, this node stops: raft
		// may count the entries as committed, and an FSM cannot skip them.
		if err := f.durable.waitDurable(logs[n-1].Index); err != nil {
			panic(fmt.Sprintf("raftplane: the Raft log could not be synced to disk up to index %d; stopping this node: %v",
				logs[n-1].Index, err))
		}
	}
	out := f.Machine.ApplyBatch(logs)
	if n := len(logs); n > 0 && f.c != nil {
		f.c.committed(logs[n-1].Index, logs[n-1].Term)
	}
	return out
}

// Snapshot implements raft.FSM: the machine's snapshot, handing the memory
// its writing freed back to the OS once raft is done with it.
func (f nodeFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.Machine.Snapshot()
	if err != nil {
		return nil, err
	}
	return freeingSnapshot{s}, nil
}

// freeingSnapshot returns the heap's free memory to the OS when raft
// releases it. Writing a snapshot allocates in proportion to the state (the
// capture, gob's encoding): tens of MB for 10,000 connections in groups.
// Freed, that memory stays mapped while the heap is under its goal, which
// is twice the live heap: an idle node's RSS grew by the size of its last
// snapshot's garbage and kept it (docs/performance.md, "Snapshots and idle
// memory"). It runs on raft's snapshot goroutine, not the FSM's; what the
// rest of the node feels is one more collection among those the load makes
// anyway, and, while the scavenge holds the heap's lock, allocations that
// need new spans wait (no difference S2 showed with a snapshot every 2-4 s).
// Snapshots are rare: at most one per SnapshotInterval.
type freeingSnapshot struct{ raft.FSMSnapshot }

// Release implements raft.FSMSnapshot.
func (s freeingSnapshot) Release() {
	s.FSMSnapshot.Release()
	debug.FreeOSMemory()
}

// Restore implements raft.FSM.
func (f nodeFSM) Restore(rc io.ReadCloser) error {
	err := f.Machine.Restore(rc)
	if errors.Is(err, fsm.ErrStaleSnapshot) && f.onStale != nil {
		f.onStale()
	}
	return err
}

// dropStaleSnapshots removes from the node's snapshot store (in dataDir)
// every snapshot that sorts ahead of another while it stops at a lower
// index.
func dropStaleSnapshots(dataDir string, snaps raft.SnapshotStore, lg *slog.Logger) error {
	metas, err := snaps.List() // newest first: by term, then index
	if err != nil {
		return fmt.Errorf("cluster: list snapshots: %w", err)
	}
	var highest uint64 // the highest index among the snapshots sorted after
	for i := len(metas) - 1; i >= 0; i-- {
		m := metas[i]
		if m.Index >= highest {
			highest = m.Index
			continue
		}
		if err := os.RemoveAll(filepath.Join(dataDir, "snapshots", m.ID)); err != nil {
			return fmt.Errorf("cluster: remove stale snapshot %s: %w", m.ID, err)
		}
		lg.Warn("removed a snapshot older than this node's state (a leader sent it to a server this node replaced)",
			"snapshot", m.ID, "index", m.Index, "term", m.Term, "a_snapshot_at_index", highest)
	}
	return nil
}
