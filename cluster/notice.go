package cluster

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/gossip"
)

// Commit notices. A hashicorp/raft follower learns that an entry is
// committed only from the leader's next AppendEntries: the one carrying the
// next entries, or, when none come, the one CommitTimeout sends (and its
// timer restarts with every new entry, so under a steady stream it never
// fires). Heartbeats carry no commit index. So a message committed on the
// leader waited on every other node for the next message's replication:
// about one message interval (1 ms at 1,000 msg/s), the larger part of the
// cross-node latency.
//
// The leader therefore tells each follower of a commit as soon as it
// applies it, with an AppendEntries of its own: no entries, PrevLogEntry and
// LeaderCommitIndex both the index C it announces, PrevLogTerm the term of
// entry C, Term the leader's term. C is never past the last index the
// follower acknowledged storing in this term (seen in the answers to the
// library's own AppendEntries, below), so the follower's consistency check
// passes: its entry C has the leader's term for C, so by Raft's log
// matching its log up to C is the leader's, and everything up to C is
// committed on the leader. The follower sets its commit index to C (raft
// takes min(LeaderCommitIndex, its last index) = C) and applies. A notice
// is never needed for safety: if it is lost, late or refused, the next
// ordinary AppendEntries carries the commit index as before.
//
// Notices go over the transport's own connection pool, each follower from
// its own goroutine (a slow or dead follower does not hold up the others),
// coalesced: one in flight per follower, carrying the latest index.
//
// A follower with fsync that takes its own commits (followercommit.go) gets
// durable notices instead: after every sync that moved this leader's log on
// disk, its term and how far the log is on disk, one-way on the internal RPC
// (rpcDurable), from the same goroutine, coalesced the same way. Only a
// leader that appends in parallel (asynclog.go) sends them: it alone syncs
// behind what it replicates, and knows when.

// noticeIdle is how long a follower's notice goroutine waits for work
// before it ends (it starts again with the follower's next acknowledgement):
// servers removed from the configuration leave no goroutine behind.
const noticeIdle = 30 * time.Second

// noticeBackoff is how long a follower's notices pause after one failed:
// a follower that is down is not dialled for every commit.
const noticeBackoff = 100 * time.Millisecond

// commitNotices sends commit notices from the leader (see above).
type commitNotices struct {
	trans  *raft.NetworkTransport
	header raft.RPCHeader
	raft   atomic.Pointer[raft.Raft] // set once raft runs
	log    *slog.Logger
	stop   <-chan struct{}
	wg     *sync.WaitGroup

	sent, failed atomic.Uint64
	skipped      atomic.Uint64 // acknowledgements whose follower commits them itself
	durables     atomic.Uint64 // durable notices sent

	local raft.ServerID
	// ownCommits are the followers that take their own commits; true for
	// those that need durable notices for it.
	ownCommits atomic.Pointer[map[raft.ServerID]bool]
	// disk is this node's asyncLog, and post sends a durable notice body to
	// a follower's internal RPC; both nil: no durable notices. Set before
	// raft runs.
	disk *asyncLog
	post func(addr raft.ServerAddress, body []byte) error

	mu sync.Mutex
	// term is the leader term the acknowledgements below were given in: the
	// Term of the requests they answer. A request of a newer term starts
	// afresh; an older one is ignored.
	term uint64
	// applied and appliedTerm are the last entry this node's FSM applied:
	// committed.
	applied, appliedTerm uint64
	peers                map[raft.ServerID]*noticePeer
	// ended is closed when term changes: the goroutines of the old term end.
	ended chan struct{}
}

// noticePeer is one follower, in one term.
type noticePeer struct {
	addr             raft.ServerAddress
	acked, ackedTerm uint64 // the last entry it acknowledged storing, and its term
	notified         uint64 // the highest commit index sent to it
	wantsDurable     bool   // it takes durable notices (as of its last acknowledgement)
	durableSent      uint64 // the highest index of a durable notice sent to it
	running          bool   // its goroutine runs
	wake             chan struct{}
}

func newCommitNotices(trans *raft.NetworkTransport, rc *raft.Config, lg *slog.Logger,
	stop <-chan struct{}, wg *sync.WaitGroup) *commitNotices {
	addr := trans.EncodePeer(rc.LocalID, trans.LocalAddr())
	return &commitNotices{
		trans:  trans,
		header: raft.RPCHeader{ProtocolVersion: rc.ProtocolVersion, ID: []byte(rc.LocalID), Addr: addr},
		local:  rc.LocalID,
		log:    lg,
		stop:   stop,
		wg:     wg,
		peers:  map[raft.ServerID]*noticePeer{},
		ended:  make(chan struct{}),
	}
}

// isLeader reports whether this node leads now.
func (c *commitNotices) isLeader() bool {
	r := c.raft.Load()
	return r != nil && r.State() == raft.Leader
}

// stored records that follower id (at addr) answered req with success: it
// holds req's last entry (or, for a request without entries, its
// PrevLogEntry) with that entry's term.
func (c *commitNotices) stored(id raft.ServerID, addr raft.ServerAddress, req *raft.AppendEntriesRequest) {
	idx, term := req.PrevLogEntry, req.PrevLogTerm
	if n := len(req.Entries); n > 0 {
		idx, term = req.Entries[n-1].Index, req.Entries[n-1].Term
	}
	if idx == 0 {
		return // a heartbeat
	}
	takes, durable := c.takesOwn(id, req)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case req.Term < c.term:
		return
	case req.Term > c.term:
		close(c.ended)
		c.term, c.peers, c.ended = req.Term, map[raft.ServerID]*noticePeer{}, make(chan struct{})
	}
	p := c.peers[id]
	if p == nil {
		p = &noticePeer{wake: make(chan struct{}, 1)}
		c.peers[id] = p
	}
	p.addr, p.wantsDurable = addr, durable
	if idx <= p.acked {
		return
	}
	p.acked, p.ackedTerm = idx, term
	if takes {
		// It commits these itself (followercommit.go): telling it would
		// cost a round trip each and change nothing. With fsync it needs
		// to hear how far this leader's disk is (a notice of it may have
		// gone before it had a goroutine).
		p.notified = max(p.notified, idx)
		c.skipped.Add(1)
	}
	c.poke(id, p)
}

// takesOwn reports whether follower id takes the commit of req's entries
// itself (followercommit.go): it says so in gossip, it and this leader are
// a quorum, and these entries are ones it takes; and whether it is told of
// this leader's disk for that (durable). The sets come from the leader
// loop's last pass, so they may be a second behind a change of the voters
// or of the follower's flags; that costs the follower only the wait for
// the next AppendEntries, never a wrong commit (the follower decides on
// its own configuration, and on what this leader said of its disk).
func (c *commitNotices) takesOwn(id raft.ServerID, req *raft.AppendEntriesRequest) (takes, durable bool) {
	own := c.ownCommits.Load()
	if own == nil {
		return false, false
	}
	durable, takes = (*own)[id]
	return takes && leadersOwn(req), durable
}

// setOwnCommits records which followers take their own commits, from the
// gossip members and the configuration of one pass of the leader loop:
// those that say so and make a quorum with this leader; with fsync only
// if this leader sends durable notices.
func (c *commitNotices) setOwnCommits(members []gossip.Member, conf raft.Configuration) {
	own := map[raft.ServerID]bool{}
	for _, m := range members {
		id := raft.ServerID(m.ID)
		if !twoAreQuorum(conf, c.local, id) {
			continue
		}
		switch {
		case m.FollowerCommits:
			own[id] = false
		case m.DurableCommits && c.post != nil:
			own[id] = true
		}
	}
	c.ownCommits.Store(&own)
}

// synced is told by the asyncLog that its log is on disk further: the
// followers that take durable notices can be told, if this node leads.
func (c *commitNotices) synced() {
	if !c.isLeader() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, p := range c.peers {
		if p.wantsDurable {
			c.poke(id, p)
		}
	}
}

// leaderDisk reads how far this node's log is on disk, with the term it
// leads in, if it leads: ok is false if it does not, or its term changed
// meanwhile. Within one term a leader's log only grows, so what is on disk
// up to index then is its log of that term; a node that lost the lead, had
// its tail replaced and leads again is in a newer term.
func (c *commitNotices) leaderDisk() (term, index uint64, ok bool) {
	r := c.raft.Load()
	if r == nil || r.State() != raft.Leader {
		return 0, 0, false
	}
	term = r.CurrentTerm()
	index = c.disk.durable.Load()
	return term, index, r.State() == raft.Leader && r.CurrentTerm() == term
}

// committed records that this node's FSM applied the entry at index (of
// term): on the leader, every follower that stored it can be told.
func (c *commitNotices) committed(index, term uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if index <= c.applied {
		return
	}
	c.applied, c.appliedTerm = index, term
	if len(c.peers) == 0 {
		return // a follower: it leads no one
	}
	for id, p := range c.peers {
		c.poke(id, p)
	}
}

// due reports whether p has a notice to be sent. c.mu is held. (A node
// that no longer leads keeps its followers until a term of its own
// replaces them: their durable notices are not due, though its disk moves
// on as a follower's.)
func (c *commitNotices) due(p *noticePeer) bool {
	return min(c.applied, p.acked) > p.notified ||
		p.wantsDurable && c.disk != nil && c.disk.durable.Load() > p.durableSent && c.isLeader()
}

// poke wakes p's goroutine, starting it if it is not running. c.mu is held.
func (c *commitNotices) poke(id raft.ServerID, p *noticePeer) {
	if !c.due(p) {
		return
	}
	if !p.running {
		select {
		case <-c.stop: // closing: the node's wait group may be waited on
			return
		default:
		}
		p.running = true
		c.wg.Add(1)
		go c.run(id, p, c.ended)
	}
	select {
	case p.wake <- struct{}{}:
	default: // already woken: it reads the latest when it runs
	}
}

// run sends p its notices until the term ends, the node stops or p stays
// idle for noticeIdle.
func (c *commitNotices) run(id raft.ServerID, p *noticePeer, ended <-chan struct{}) {
	defer c.wg.Done()
	idle := time.NewTimer(noticeIdle)
	defer idle.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-ended:
			return
		case <-idle.C:
			c.mu.Lock()
			if len(p.wake) == 0 {
				p.running = false
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
			idle.Reset(noticeIdle)
			continue
		case <-p.wake:
		}
		if !c.send(id, p) {
			pause := time.NewTimer(noticeBackoff)
			select {
			case <-c.stop:
				pause.Stop()
				return
			case <-ended:
				pause.Stop()
				return
			case <-pause.C:
			}
		}
		idle.Reset(noticeIdle)
	}
}

// send tells p how far this leader's disk is, if it takes durable notices,
// and the highest commit index it can be told, if it has not been told them
// yet. It reports false if an RPC failed.
func (c *commitNotices) send(id raft.ServerID, p *noticePeer) bool {
	c.mu.Lock()
	var durable []byte
	if p.wantsDurable {
		if term, disk, ok := c.leaderDisk(); ok && disk > p.durableSent {
			p.durableSent = disk
			durable = durableNotice{leader: string(c.local), term: term, index: disk}.encode()
		}
	}
	idx, term, addr, leaderTerm := p.acked, p.ackedTerm, p.addr, c.term
	if c.applied < idx {
		idx, term = c.applied, c.appliedTerm
	}
	notify := idx > p.notified
	if notify {
		p.notified = idx
	}
	c.mu.Unlock()
	ok := true
	if durable != nil {
		if err := c.post(addr, durable); err != nil {
			c.failed.Add(1)
			c.log.Debug("durable notice failed", "peer", id, "err", err)
			ok = false
		} else {
			c.durables.Add(1)
		}
	}
	if !notify || !c.isLeader() {
		return ok // nothing to tell, or lost the lead since: the acknowledgements are stale
	}
	req := &raft.AppendEntriesRequest{
		RPCHeader:         c.header,
		Term:              leaderTerm,
		PrevLogEntry:      idx,
		PrevLogTerm:       term,
		LeaderCommitIndex: idx,
	}
	var resp raft.AppendEntriesResponse
	if err := c.trans.AppendEntries(id, addr, req, &resp); err != nil {
		c.failed.Add(1)
		c.log.Debug("commit notice failed", "peer", id, "index", idx, "err", err)
		return false
	}
	c.sent.Add(1)
	return ok
}

// noticeTransport is the transport raft is given when commit notices or the
// parallel append are on: the node's NetworkTransport, with every
// successful AppendEntries answer seen on its way back to raft (notices),
// and the commit index it carries held to what is durable on this leader
// (durable; asynclog.go).
type noticeTransport struct {
	guardedTransport
	c       *commitNotices // nil: notices off
	durable *asyncLog      // nil: writes sync before raft goes on
	gate    *ackGate       // with durable or follower commits: raft reads its RPCs from here
}

// Consumer implements raft.Transport.
func (t noticeTransport) Consumer() <-chan raft.RPC {
	if t.gate != nil {
		return t.gate.out
	}
	return t.NetworkTransport.Consumer()
}

// raftTransport is the transport raft is given: trans itself, or a
// noticeTransport over it when notices (c), an asyncLog (al) or follower
// commits (fc) are on; with al or fc it also starts the ackGate raft reads
// its RPCs from, which the caller closes after raft shut down.
func raftTransport(trans guardedTransport, c *commitNotices, al *asyncLog, fc *followerCommits) (raft.Transport, *ackGate) {
	if c == nil && al == nil && fc == nil {
		return trans, nil
	}
	t := noticeTransport{guardedTransport: trans, c: c, durable: al}
	if al != nil || fc != nil {
		t.gate = newAckGate(al, fc, trans.Consumer())
	}
	return t, t.gate
}

// hold lowers args' commit index to what this node has on disk.
func (t noticeTransport) hold(args *raft.AppendEntriesRequest) {
	if t.durable != nil {
		if d := t.durable.durable.Load(); args.LeaderCommitIndex > d {
			args.LeaderCommitIndex = d
			t.durable.held.Add(1)
		}
	}
}

// AppendEntries implements raft.Transport.
func (t noticeTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	t.hold(args)
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil && resp.Success && t.c != nil {
		t.c.stored(id, target, args)
	}
	return err
}

// AppendEntriesPipeline implements raft.Transport.
func (t noticeTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	if t.c == nil {
		return heldPipeline{p, t}, nil
	}
	w := &watchedPipeline{AppendPipeline: p, t: t, out: make(chan raft.AppendFuture, cap(p.Consumer())),
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.watch(id, target, t.c)
	return w, nil
}

// heldPipeline is a pipeline whose requests' commit index is held to what
// is durable (noticeTransport.hold), without notices.
type heldPipeline struct {
	raft.AppendPipeline
	t noticeTransport
}

// AppendEntries implements raft.AppendPipeline.
func (p heldPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	p.t.hold(args)
	return p.AppendPipeline.AppendEntries(args, resp)
}

// watchedPipeline passes a pipeline's answered requests on to raft, seeing
// the successful ones first. Its goroutine is the pipeline's: it ends when
// raft closes the pipeline.
type watchedPipeline struct {
	raft.AppendPipeline
	t         noticeTransport
	out       chan raft.AppendFuture
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (w *watchedPipeline) watch(id raft.ServerID, target raft.ServerAddress, c *commitNotices) {
	defer close(w.done)
	in := w.AppendPipeline.Consumer()
	for {
		select {
		case <-w.stop:
			return
		case f := <-in:
			if f.Error() == nil && f.Response().Success {
				c.stored(id, target, f.Request())
			}
			select {
			case w.out <- f:
			case <-w.stop:
				return
			}
		}
	}
}

// AppendEntries implements raft.AppendPipeline.
func (w *watchedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	w.t.hold(args)
	return w.AppendPipeline.AppendEntries(args, resp)
}

// Consumer implements raft.AppendPipeline.
func (w *watchedPipeline) Consumer() <-chan raft.AppendFuture { return w.out }

// Close implements raft.AppendPipeline: it closes the pipeline and waits for
// its goroutine.
func (w *watchedPipeline) Close() error {
	err := w.AppendPipeline.Close()
	w.closeOnce.Do(func() { close(w.stop) })
	<-w.done
	return err
}

var (
	_ raft.Transport      = noticeTransport{}
	_ raft.WithClose      = noticeTransport{}
	_ raft.WithPreVote    = noticeTransport{}
	_ raft.AppendPipeline = (*watchedPipeline)(nil)
	_ raft.AppendPipeline = heldPipeline{}
)
