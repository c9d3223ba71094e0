package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func voters(ids ...raft.ServerID) raft.Configuration {
	var c raft.Configuration
	for _, id := range ids {
		c.Servers = append(c.Servers, raft.Server{ID: id, Address: raft.ServerAddress(id), Suffrage: raft.Voter})
	}
	return c
}

func withNonvoters(c raft.Configuration, ids ...raft.ServerID) raft.Configuration {
	for _, id := range ids {
		c.Servers = append(c.Servers, raft.Server{ID: id, Address: raft.ServerAddress(id), Suffrage: raft.Nonvoter})
	}
	return c
}

func TestTwoAreQuorum(t *testing.T) {
	for _, tc := range []struct {
		name   string
		c      raft.Configuration
		leader raft.ServerID
		want   bool
	}{
		{"three voters", voters("l", "f", "x"), "l", true},
		{"two voters", voters("l", "f"), "l", true},
		{"three voters and non-voters", withNonvoters(voters("l", "f", "x"), "a", "b"), "l", true},
		{"four voters", voters("l", "f", "x", "y"), "l", false},
		{"five voters", voters("l", "f", "x", "y", "z"), "l", false},
		{"leader not in the configuration", voters("f", "x", "y"), "l", false},
		{"leader a non-voter", withNonvoters(voters("f", "x"), "l"), "l", false},
		{"follower a non-voter", withNonvoters(voters("l", "x"), "f"), "l", false},
		{"follower not in the configuration", voters("l", "x", "y"), "l", false},
		{"leader unknown", voters("l", "f", "x"), "", false},
		{"leader is this node", voters("l", "f", "x"), "f", false},
		{"empty configuration", raft.Configuration{}, "l", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := twoAreQuorum(tc.c, tc.leader, "f"); got != tc.want {
				t.Errorf("twoAreQuorum = %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeConfigs stands for raft's latest configuration.
type fakeConfigs struct{ c raft.Configuration }

func (f fakeConfigs) GetConfiguration() raft.ConfigurationFuture { return fakeConfigFuture(f) }

type fakeConfigFuture struct{ c raft.Configuration }

func (fakeConfigFuture) Error() error                             { return nil }
func (fakeConfigFuture) Index() uint64                            { return 0 }
func (f fakeConfigFuture) Configuration() raft.Configuration      { return f.c }
func (f fakeConfigs) withConfig(c raft.Configuration) fakeConfigs { f.c = c; return f }

// appendReq is an AppendEntries from leader in term carrying entries
// (index:term) of type LogCommand.
func appendReq(leader string, term uint64, entries ...[2]uint64) *raft.AppendEntriesRequest {
	r := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte(leader), Addr: []byte(leader)}, Term: term}
	for _, e := range entries {
		r.Entries = append(r.Entries, &raft.Log{Index: e[0], Term: e[1], Type: raft.LogCommand})
	}
	return r
}

// TestFollowerCommits_Stored: which stored requests make a commit the
// follower takes by itself, and the one it hands raft.
func TestFollowerCommits_Stored(t *testing.T) {
	three := fakeConfigs{voters("l", "f", "x")}
	conf := appendReq("l", 3, [2]uint64{7, 3})
	conf.Entries[0].Type = raft.LogConfiguration
	for _, tc := range []struct {
		name string
		raft configurations // nil: raft not running yet
		req  *raft.AppendEntriesRequest
		want uint64 // the commit index handed over; 0: none
	}{
		{"the leader's entries, three voters", three, appendReq("l", 3, [2]uint64{5, 3}, [2]uint64{6, 3}), 6},
		{"older entries, then the leader's", three, appendReq("l", 3, [2]uint64{5, 2}, [2]uint64{6, 3}), 6},
		{"only an earlier leader's entries", three, appendReq("l", 3, [2]uint64{5, 2}, [2]uint64{6, 2}), 0},
		{"a heartbeat", three, appendReq("l", 3), 0},
		{"a configuration entry", three, conf, 0},
		{"five voters", three.withConfig(voters("l", "f", "x", "y", "z")), appendReq("l", 3, [2]uint64{5, 3}), 0},
		{"leader a non-voter", three.withConfig(withNonvoters(voters("f", "x"), "l")), appendReq("l", 3, [2]uint64{5, 3}), 0},
		{"no leader id", three, appendReq("", 3, [2]uint64{5, 3}), 0},
		{"raft not running", nil, appendReq("l", 3, [2]uint64{5, 3}), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFollowerCommits("f", false)
			if tc.raft != nil {
				f.raft.Store(tc.raft)
			}
			f.stored(tc.req)
			if tc.want == 0 {
				if f.next != nil {
					t.Fatalf("handed over %+v", f.next)
				}
				return
			}
			got := f.next
			if got == nil {
				t.Fatal("no commit handed over")
			}
			if got.Term != tc.req.Term || got.PrevLogEntry != tc.want || got.PrevLogTerm != tc.req.Term ||
				got.LeaderCommitIndex != tc.want || len(got.Entries) != 0 ||
				string(got.ID) != string(tc.req.ID) || string(got.Addr) != string(tc.req.Addr) {
				t.Errorf("handed over %+v, want term %d, prev %d/%d, commit %d, the request's header",
					got, tc.req.Term, tc.want, tc.req.Term, tc.want)
			}
		})
	}

	// Only the latest commit waits to be handed over.
	f := newFollowerCommits("f", false)
	f.raft.Store(three)
	f.stored(appendReq("l", 3, [2]uint64{8, 3}))
	f.stored(appendReq("l", 3, [2]uint64{6, 3})) // an earlier one, late
	if got := f.next.LeaderCommitIndex; got != 8 {
		t.Errorf("after 8 then 6, handing over %d", got)
	}
	f.stored(appendReq("l", 4, [2]uint64{7, 4})) // a new term's
	if got := f.next; got.Term != 4 || got.LeaderCommitIndex != 7 {
		t.Errorf("after a newer term's 7, handing over %d in term %d", got.LeaderCommitIndex, got.Term)
	}
}

// TestFollowerCommits_Durable: with fsync, a follower takes the commit of
// the last entry both it and the leader have on disk, and only one of the
// leader's own term, told by that term's leader.
func TestFollowerCommits_Durable(t *testing.T) {
	three := fakeConfigs{voters("l", "f", "x")}
	said := func(leader string, term, index uint64) durableNotice {
		return durableNotice{leader: leader, term: term, index: index}
	}
	for _, tc := range []struct {
		name        string
		reqs        []*raft.AppendEntriesRequest // stored, in order
		notices     []durableNotice              // after them
		noticeFirst bool                         // the notices come before the requests
		want        uint64                       // the commit handed over; 0: none
	}{
		{"leader on disk past the follower", []*raft.AppendEntriesRequest{appendReq("l", 3, [2]uint64{5, 3}, [2]uint64{6, 3})},
			[]durableNotice{said("l", 3, 9)}, false, 6},
		{"leader on disk behind the follower", []*raft.AppendEntriesRequest{appendReq("l", 3, [2]uint64{5, 3}, [2]uint64{6, 3})},
			[]durableNotice{said("l", 3, 5)}, false, 5},
		{"the notice first", []*raft.AppendEntriesRequest{appendReq("l", 3, [2]uint64{5, 3}, [2]uint64{6, 3})},
			[]durableNotice{said("l", 3, 6)}, true, 6},
		{"no notice", []*raft.AppendEntriesRequest{appendReq("l", 3, [2]uint64{5, 3})}, nil, false, 0},
		{"on disk only up to an earlier term's entry", []*raft.AppendEntriesRequest{appendReq("l", 3, [2]uint64{5, 2}, [2]uint64{6, 3})},
			[]durableNotice{said("l", 3, 5)}, false, 0},
		{"the term's first entry in an earlier request", []*raft.AppendEntriesRequest{
			appendReq("l", 3, [2]uint64{5, 2}, [2]uint64{6, 3}), appendReq("l", 3, [2]uint64{7, 3}, [2]uint64{8, 3})},
			[]durableNotice{said("l", 3, 7)}, false, 7},
		{"a notice of an earlier term", []*raft.AppendEntriesRequest{appendReq("l", 3, [2]uint64{5, 3})},
			[]durableNotice{said("l", 2, 9)}, false, 0},
		{"a notice of a later term", []*raft.AppendEntriesRequest{appendReq("l", 3, [2]uint64{5, 3})},
			[]durableNotice{said("x", 4, 9)}, false, 0},
		{"a notice from another server", []*raft.AppendEntriesRequest{appendReq("l", 3, [2]uint64{5, 3})},
			[]durableNotice{said("x", 3, 9)}, false, 0},
		{"a later notice, further", []*raft.AppendEntriesRequest{appendReq("l", 3, [2]uint64{5, 3}, [2]uint64{6, 3})},
			[]durableNotice{said("l", 3, 5), said("l", 3, 6)}, false, 6},
		{"a late notice, behind", []*raft.AppendEntriesRequest{appendReq("l", 3, [2]uint64{5, 3}, [2]uint64{6, 3})},
			[]durableNotice{said("l", 3, 6), said("l", 3, 5)}, false, 6},
		{"a configuration entry", []*raft.AppendEntriesRequest{func() *raft.AppendEntriesRequest {
			r := appendReq("l", 3, [2]uint64{5, 3})
			r.Entries[0].Type = raft.LogConfiguration
			return r
		}()}, []durableNotice{said("l", 3, 5)}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFollowerCommits("f", true)
			f.raft.Store(three)
			if tc.noticeFirst {
				for _, d := range tc.notices {
					f.leaderDurable(d)
				}
			}
			for _, r := range tc.reqs {
				f.stored(r)
			}
			if !tc.noticeFirst {
				for _, d := range tc.notices {
					f.leaderDurable(d)
				}
			}
			if tc.want == 0 {
				if f.next != nil {
					t.Fatalf("handed over %+v", f.next)
				}
				return
			}
			got, term := f.next, tc.reqs[0].Term
			if got == nil {
				t.Fatal("no commit handed over")
			}
			if got.Term != term || got.PrevLogEntry != tc.want || got.PrevLogTerm != term ||
				got.LeaderCommitIndex != tc.want || len(got.Entries) != 0 || string(got.ID) != "l" {
				t.Errorf("handed over %+v, want term %d, prev %d/%d, commit %d, the leader's header",
					got, term, tc.want, term, tc.want)
			}
		})
	}

	// Once handed over, the same commit is not made ready again; a further
	// one is.
	f := newFollowerCommits("f", true)
	f.raft.Store(three)
	f.stored(appendReq("l", 3, [2]uint64{5, 3}, [2]uint64{6, 3}))
	f.leaderDurable(said("l", 3, 6))
	f.next = nil // handed over
	f.stored(appendReq("l", 3, [2]uint64{6, 3}))
	if f.next != nil {
		t.Errorf("the commit of 6 made ready again: %+v", f.next)
	}
	f.stored(appendReq("l", 3, [2]uint64{7, 3}))
	if f.next != nil {
		t.Errorf("7 made ready before the leader had it on disk: %+v", f.next)
	}
	f.leaderDurable(said("l", 3, 7))
	if f.next == nil || f.next.LeaderCommitIndex != 7 {
		t.Errorf("after the leader's 7, handing over %+v", f.next)
	}

	// Without fsync, notices change nothing.
	f = newFollowerCommits("f", false)
	f.raft.Store(three)
	f.leaderDurable(said("l", 3, 1))
	f.stored(appendReq("l", 3, [2]uint64{5, 3}))
	if f.next == nil || f.next.LeaderCommitIndex != 5 {
		t.Errorf("without fsync, handing over %+v", f.next)
	}
}

func TestDurableNotice_Decode(t *testing.T) {
	d := durableNotice{leader: "node-1", term: 7, index: 1 << 40}
	got, ok := decodeDurableNotice(d.encode())
	if !ok || got != d {
		t.Errorf("round trip of %+v: %+v, %v", d, got, ok)
	}
	for _, b := range [][]byte{
		nil,
		{0x80},      // a truncated term
		{7},         // no index
		{7, 0x80},   // a truncated index
		{7, 9},      // no leader
		{0, 9, 'l'}, // term 0
		{7, 0, 'l'}, // index 0
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 'l'}, // a term past 64 bits
	} {
		if d, ok := decodeDurableNotice(b); ok {
			t.Errorf("% x decoded to %+v", b, d)
		}
	}
}

func FuzzDurableNotice(f *testing.F) {
	f.Add(durableNotice{leader: "n1", term: 3, index: 9}.encode())
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, ok := decodeDurableNotice(b)
		if !ok {
			return
		}
		if d.term == 0 || d.index == 0 || d.leader == "" {
			t.Fatalf("decoded %+v from % x", d, b)
		}
		if again, ok := decodeDurableNotice(d.encode()); !ok || again != d {
			t.Fatalf("%+v re-encoded decodes to %+v, %v", d, again, ok)
		}
	})
}

// TestAckGate_FollowerCommits: with follower commits and no asyncLog, the
// gate answers at once and then hands raft the commit.
func TestAckGate_FollowerCommits(t *testing.T) {
	f := newFollowerCommits("f", false)
	f.raft.Store(fakeConfigs{voters("l", "f", "x")})
	in := make(chan raft.RPC)
	g := newAckGate(nil, f, in)
	defer g.close()

	req := appendReq("l", 3, [2]uint64{5, 3}, [2]uint64{6, 3})
	orig := make(chan raft.RPCResponse, 1)
	in <- raft.RPC{Command: req, RespChan: orig}
	got := <-g.out
	if got.Command != req {
		t.Fatalf("raft got %+v", got.Command)
	}
	ok := &raft.AppendEntriesResponse{Term: 3, Success: true, LastLog: 6}
	got.Respond(ok, nil)
	if r := <-orig; r.Response != ok || r.Error != nil {
		t.Fatalf("the leader got %+v", r)
	}
	commit := <-g.out
	c, isAppend := commit.Command.(*raft.AppendEntriesRequest)
	if !isAppend || c.LeaderCommitIndex != 6 || c.PrevLogEntry != 6 || c.PrevLogTerm != 3 || c.Term != 3 || len(c.Entries) != 0 {
		t.Fatalf("raft then got %+v, want the commit of 6", commit.Command)
	}
	commit.Respond(&raft.AppendEntriesResponse{Term: 3, Success: true}, nil) // room for raft's answer
	// Counted once raft took it, after this test got it.
	waitFor(t, "the commit to be counted", func() error {
		if n := f.taken.Load(); n != 1 {
			return fmt.Errorf("taken = %d", n)
		}
		return nil
	})

	// A refused request hands nothing over: the next thing raft gets is the
	// next request.
	bad := appendReq("l", 3, [2]uint64{9, 3})
	orig = make(chan raft.RPCResponse, 1)
	in <- raft.RPC{Command: bad, RespChan: orig}
	refused := <-g.out
	refused.Respond(&raft.AppendEntriesResponse{Term: 3, Success: false}, nil)
	<-orig
	vote := &raft.RequestVoteRequest{}
	in <- raft.RPC{Command: vote, RespChan: make(chan raft.RPCResponse, 1)}
	if next := <-g.out; next.Command != vote {
		t.Fatalf("after a refusal raft got %+v", next.Command)
	}
}

// TestNode_FollowerCommits: three nodes without fsync (the harness's
// default), whose leader neither sends commit notices nor commits on a
// timer: a follower applies the leader's last entry, which nothing after it
// can announce, only by taking the commit itself.
func TestNode_FollowerCommits(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes := startCluster(t, 3, func(o *nodeOpts) {
		o.tweak = func(c *Config) { c.CommitTimeout, c.NoCommitNotices = time.Hour, true }
	})
	l, clean := publishLast(t, nodes, 20)
	for _, f := range followers(nodes, l) {
		if got := f.node.Stats().FollowerCommits; got < int64(clean) {
			t.Errorf("%s took %d commits itself for %d publishes", f.id, got, clean)
		}
	}
	if got := l.node.Stats().CommitNotices; got != nil {
		t.Errorf("the leader sent notices: %v", got)
	}
}

// TestNode_DurableCommits: three nodes with fsync whose leader commits on
// no timer: a follower applies the leader's last entry, which nothing after
// it can announce and for which the leader sends no commit notice, only by
// taking the commit itself once the leader said the entry is on its disk.
// (Without the leader's durable notices, which I tried by hand, the test
// times out waiting for the first publish on the followers.)
func TestNode_DurableCommits(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes := startCluster(t, 3, func(o *nodeOpts) {
		o.tweak = func(c *Config) { fsynced(c); c.CommitTimeout = time.Hour }
	})
	for _, n := range nodes {
		if n.node.asyncLog == nil || n.node.commits == nil || !n.node.commits.needDurable {
			t.Fatalf("%s: not a fsyncing node that takes durable commits", n.id)
		}
		for _, m := range nodes[0].agent.Members() {
			if m.ID == n.id && (!m.DurableCommits || m.FollowerCommits) {
				t.Fatalf("%s does not advertise durable commits alone: %+v", n.id, m.Meta)
			}
		}
	}
	l, clean := publishLast(t, nodes, 20)
	for _, f := range followers(nodes, l) {
		if got := f.node.Stats().FollowerCommits; got < int64(clean) {
			t.Errorf("%s took %d commits itself for %d publishes", f.id, got, clean)
		}
	}
	cn := l.node.Stats().CommitNotices
	t.Logf("the leader's notices: %v", cn)
	if cn["durable"] < uint64(clean) {
		t.Errorf("the leader sent %d durable notices for %d publishes", cn["durable"], clean)
	}
}

// TestNode_FollowerCommitsNoNotices: a leader sends no commit notices for
// what its followers commit themselves (they say so in gossip), and they
// still apply every publish at once.
func TestNode_FollowerCommitsNoNotices(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes := startCluster(t, 3, func(o *nodeOpts) { o.tweak = func(c *Config) { c.CommitTimeout = time.Hour } })
	n1 := nodes[0]
	for _, n := range nodes {
		for _, m := range n1.agent.Members() {
			if m.ID == n.id && !m.FollowerCommits {
				t.Fatalf("%s does not advertise follower commits: %+v", n.id, m.Meta)
			}
		}
	}
	l := waitLeader(t, nodes)
	notices := func() (sent, skipped uint64) {
		cn := l.node.Stats().CommitNotices
		return cn["sent"], cn["skipped"]
	}
	sent0, skipped0 := notices()
	count := 0 // publishes under l since sent0, skipped0
	for i := range 20 {
		waitApplied(t, nodes, mustPublish(t, l, fmt.Sprintf("p%d", i)))
		count++
		if nl := waitLeader(t, nodes); nl != l {
			// A new leader (on a starved machine) learns from its first
			// reconcile which followers commit themselves: count afresh.
			t.Logf("the leader changed from %s to %s", l.id, nl.id)
			l, count = nl, 0
			sent0, skipped0 = notices()
		}
	}
	if count < 10 {
		t.Fatalf("only %d publishes under one leader", count)
	}
	sent, skipped := notices()
	t.Logf("during %d publishes the leader sent %d notices and skipped %d acknowledgements", count, sent-sent0, skipped-skipped0)
	if got := skipped - skipped0; got < uint64(count) {
		t.Errorf("the leader skipped only %d acknowledgements of %d publishes to 2 followers", got, count)
	}
	if got := sent - sent0; got >= uint64(count) {
		t.Errorf("the leader sent %d notices for %d publishes its followers commit themselves", got, count)
	}
}

// TestTakesFollowerCommits: unless turned off; with fsync they wait for
// the leader's word on its disk (with or without the parallel append: a
// follower cannot know its leader's flags).
func TestTakesFollowerCommits(t *testing.T) {
	for _, tc := range []struct {
		noSync, off, parallelOff bool
		takes, needDurable       bool
	}{
		{noSync: true, takes: true},
		{noSync: true, off: true},
		{noSync: false, takes: true, needDurable: true},
		{noSync: false, parallelOff: true, takes: true, needDurable: true},
		{noSync: false, off: true},
	} {
		c := DefaultConfig()
		c.NoSync, c.NoFollowerCommits, c.NoParallelAppend = tc.noSync, tc.off, tc.parallelOff
		takes := c.TakesFollowerCommits()
		needDurable := takes && c.FollowerCommitsNeedDurable()
		if takes != tc.takes || needDurable != tc.needDurable {
			t.Errorf("NoSync %v, NoFollowerCommits %v, NoParallelAppend %v: takes %v, needs durable notices %v; want %v, %v",
				tc.noSync, tc.off, tc.parallelOff, takes, needDurable, tc.takes, tc.needDurable)
		}
	}
}

// publishLast publishes n entries on the leader of nodes one at a time, each
// applied on every node before the next, and counts those that were still
// the leader's last entry then: applied on a follower with nothing after
// them to carry their commit. It returns the leader at the end.
func publishLast(t *testing.T, nodes []*testNode, n int) (*testNode, int) {
	t.Helper()
	l := waitLeader(t, nodes)
	clean := 0
	for i := range n {
		cur := mustPublish(t, l, fmt.Sprintf("p%d", i))
		waitApplied(t, nodes, cur)
		if last := l.node.raft.LastIndex(); last != cur.Index {
			// Something else was appended meanwhile (a new leader's first
			// entry, on a starved machine) and may have carried the commit.
			t.Logf("publish %d at %d, but the leader's log goes on to %d: not counted", i, cur.Index, last)
			l = waitLeader(t, nodes)
			continue
		}
		clean++
	}
	if clean < n/2 {
		t.Fatalf("only %d of %d publishes were the leader's last entry when every node had applied them", clean, n)
	}
	return l, clean
}
