package cluster

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestNode_CommitNotices: with CommitTimeout an hour, raft itself would
// tell a follower of a commit only with the next entry. Every publish is
// applied on every follower while the leader's log holds nothing after it:
// only a commit notice can have told them.
func TestNode_CommitNotices(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	// Followers that take their own commits (followercommit.go) get no
	// notices: these do not.
	nodes := startCluster(t, 3, func(o *nodeOpts) {
		o.tweak = func(c *Config) { c.CommitTimeout, c.NoFollowerCommits = time.Hour, true }
	})
	l := waitLeader(t, nodes)
	refused := func(f *testNode) int {
		return len(f.logs.matching("failed to get previous log")) + len(f.logs.matching("previous log term mis-match"))
	}
	before := map[string]int{}
	for _, f := range followers(nodes, l) {
		before[f.id] = refused(f) // raft's own probes when it joined
	}
	l, clean := publishLast(t, nodes, 20)
	var sent uint64
	for _, n := range nodes {
		sent += n.node.notices.sent.Load()
	}
	if sent < uint64(clean) {
		t.Errorf("%d commit notices sent for %d publishes applied on 2 followers with nothing after them", sent, clean)
	}
	for _, f := range followers(nodes, l) {
		if got := refused(f) - before[f.id]; got > 0 {
			t.Errorf("%s refused %d notices", f.id, got)
		}
	}
}

// TestCommitNotices_Terms: acknowledgements of an older term are ignored,
// a newer term starts afresh and ends the old term's goroutines, and only
// an index both acknowledged and applied is announced.
func TestCommitNotices_Terms(t *testing.T) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	c := &commitNotices{log: slog.New(slog.DiscardHandler), stop: stop, wg: &wg,
		peers: map[raft.ServerID]*noticePeer{}, ended: make(chan struct{})}
	req := func(term, prev, prevTerm uint64, entries ...uint64) *raft.AppendEntriesRequest {
		r := &raft.AppendEntriesRequest{Term: term, PrevLogEntry: prev, PrevLogTerm: prevTerm}
		for _, e := range entries {
			r.Entries = append(r.Entries, &raft.Log{Index: e, Term: term})
		}
		return r
	}
	target := func(id raft.ServerID) uint64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		p := c.peers[id]
		if p == nil {
			return 0
		}
		return min(c.applied, p.acked)
	}

	c.stored("a", "x", req(2, 0, 0)) // a heartbeat: nothing stored
	if len(c.peers) != 0 {
		t.Fatalf("a heartbeat made a peer: %v", c.peers)
	}
	c.stored("a", "x", req(2, 4, 2, 5, 6))
	if got := target("a"); got != 0 {
		t.Errorf("nothing applied yet, target %d", got)
	}
	old := c.ended
	c.committed(5, 2)
	if got := target("a"); got != 5 {
		t.Errorf("acked 6, applied 5: target %d, want 5", got)
	}
	c.stored("a", "x", req(1, 9, 1, 10)) // an answer from an older term
	if got := c.peers["a"].acked; got != 6 {
		t.Errorf("an older term's answer moved acked to %d", got)
	}
	c.stored("b", "y", req(3, 6, 2, 7)) // a newer term
	select {
	case <-old:
	default:
		t.Error("a newer term did not end the old term's goroutines")
	}
	if _, ok := c.peers["a"]; ok || c.term != 3 || c.peers["b"].acked != 7 || c.peers["b"].ackedTerm != 3 {
		t.Errorf("after term 3: term %d, peers %+v", c.term, c.peers)
	}
	close(stop)
	wg.Wait() // goroutines started by poke end with stop (their sends fail fast: no transport is needed, isLeader is false)
}

// BenchmarkCommitNotices_Bookkeeping: what the notices add to raft's
// goroutines per applied batch with two followers: one acknowledgement from
// each (the transport's side) and one applied index (the FSM's side). The
// followers' goroutines are marked running and never read their wake-ups,
// so only the bookkeeping is measured.
func BenchmarkCommitNotices_Bookkeeping(b *testing.B) {
	var wg sync.WaitGroup
	c := &commitNotices{log: slog.New(slog.DiscardHandler), stop: make(chan struct{}), wg: &wg,
		peers: map[raft.ServerID]*noticePeer{}, ended: make(chan struct{}), term: 1}
	for _, id := range []raft.ServerID{"a", "b"} {
		c.peers[id] = &noticePeer{running: true, wake: make(chan struct{}, 1)}
	}
	req := &raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Term: 1}}}
	b.ReportAllocs()
	for i := range b.N {
		req.Entries[0].Index = uint64(i + 1)
		c.stored("a", "x", req)
		c.stored("b", "y", req)
		c.committed(uint64(i+1), 1)
	}
}
