package cluster

import (
	"fmt"
	"testing"
)

// TestNode_Stats: a follower's forwards are counted by result, a snapshot
// is timed, and both nodes report their Raft view.
func TestNode_Stats(t *testing.T) {
	t.Parallel()
	n1 := startNode(t, nodeOpts{id: "n1"})
	waitReady(t, n1)
	n2 := startNode(t, nodeOpts{id: "n2", seeds: []string{n1.gossipAddr}})
	nodes := []*testNode{n1, n2}
	waitMembership(t, nodes, 1, 1) // an odd number of voters: one, and a spare
	waitReady(t, nodes...)
	l := waitLeader(t, nodes)
	f := followers(nodes, l)[0]

	before := f.node.Stats()
	const N = 5
	last := mustPublish(t, f, "")
	for range N - 1 {
		last = mustPublish(t, f, "")
	}
	st := f.node.Stats()
	if d := st.Forwards[ForwardOK] - before.Forwards[ForwardOK]; d < 1 || d > N {
		t.Errorf("forwards ok moved by %d for %d publishes on the follower (batched: 1 to %d)", d, N, N)
	}
	for _, r := range []string{ForwardRefused, ForwardNotLeader, ForwardFailed, ForwardError, ForwardGaveUp} {
		if st.Forwards[r] != before.Forwards[r] {
			t.Errorf("forwards %s moved: %v -> %v", r, before.Forwards, st.Forwards)
		}
	}
	if st.State != "Follower" || st.LeaderID != l.id || st.Voters != 1 || st.NonVoters != 1 {
		t.Errorf("follower stats: state %s leader %s voters %d nonvoters %d", st.State, st.LeaderID, st.Voters, st.NonVoters)
	}
	if st.LastContact < 0 {
		t.Errorf("follower last contact %s: it has heard from the leader", st.LastContact)
	}
	if st.LogBytes <= 0 {
		t.Errorf("follower's log is %d bytes on disk after %d publishes", st.LogBytes, N)
	}
	if st.LeaderChanges < 1 {
		t.Errorf("follower saw %d leaders", st.LeaderChanges)
	}
	// Publish returns once the FSM applied the entry; raft's own applied
	// index, which Stats reports, moves just after: wait for it.
	waitFor(t, "the follower's raft indexes to reach the last publish", func() error {
		st := f.node.Stats()
		if st.AppliedIndex < last.Index || st.CommitIndex < last.Index || st.Term < 1 {
			return fmt.Errorf("applied %d commit %d term %d, want at least %d", st.AppliedIndex, st.CommitIndex, st.Term, last.Index)
		}
		return nil
	})

	ls := l.node.Stats()
	if ls.State != "Leader" || ls.LastContact != 0 {
		t.Errorf("leader stats: state %s last contact %s", ls.State, ls.LastContact)
	}
	if err := l.node.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	ls = l.node.Stats()
	if ls.SnapshotDuration.Count != 1 || ls.SnapshotFailures != 0 || ls.LastSnapshotIndex < last.Index {
		t.Errorf("after a snapshot: %d timed, %d failed, last snapshot index %d (want at least %d)",
			ls.SnapshotDuration.Count, ls.SnapshotFailures, ls.LastSnapshotIndex, last.Index)
	}
	if got := ls.SnapshotDuration.Buckets[60]; got != 1 {
		t.Errorf("snapshot buckets %v: the 60 s bucket holds it", ls.SnapshotDuration.Buckets)
	}
	if ls.NodeID != l.id {
		t.Errorf("node id %q, want %q", ls.NodeID, l.id)
	}
}
