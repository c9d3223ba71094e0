package cluster

import (
	"encoding/binary"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// Follower commits. An entry is committed once the leader that created it
// has it stored on a majority of the voters; the leader learning of it (from
// the answers to its AppendEntries) is only how raft usually finds out. With
// two or three voters, the leader and one follower are a majority. So a
// follower that has stored entries the leader of its term created (the last
// one's term is the request's Term), and knows that the leader has them
// stored too, knows by itself that they are committed, together with
// everything before them (Raft's log matching): it need not wait for its
// answer to reach the leader, the leader to count it, and a commit notice
// (notice.go) to come back, one and a half round trips between nodes.
//
// "Stored" must mean the same on both, and what the follower knows of the
// leader's copy depends on the disk:
//
//   - Without fsync (-no-sync), stored is written for every node, and the
//     leader writes a batch before it hands it to its replicators: an
//     AppendEntries carrying the leader's entries is itself the news that
//     the leader holds them. The follower takes the commit of the last one
//     as soon as it stored them. A -no-sync follower of a leader that syncs
//     counts the leader's written copy too (such a mixed cluster is as
//     durable as its -no-sync nodes).
//   - With fsync, the leader's copy is only written, not yet synced, when a
//     follower gets it (the parallel append, asynclog.go). So the leader
//     tells each such follower how far its log is on disk, after every sync
//     that moved it on (a durable notice: its term and index D, one-way on
//     the internal RPC, notice.go). A follower whose own copy is on disk up
//     to L (the gate tells it only after its sync) takes the commit of
//     min(L, D), if that entry is the leader's own: of the leader's term,
//     which the follower knows from where that term began in what it
//     received (terms never go down along a log, so every entry from the
//     term's first to L has it). Both copies are then on disk. A lost or
//     late notice costs only the wait for the commit index the leader's next
//     AppendEntries carries.
//
// hashicorp/raft takes a follower's commit index only from an
// AppendEntries. So the gate the node's RPCs pass through (asynclog.go)
// hands raft an AppendEntries of its own: the header and Term of the
// leader's request, no entries, PrevLogEntry and LeaderCommitIndex the
// index C, PrevLogTerm the term. Raft checks it as any other: refused if its
// term is over (a newer term began meanwhile), or if entry C is no longer
// there with that term (which within one term cannot happen: a leader never
// overwrites its own entries); otherwise it sets its commit index to C and
// applies.
//
// The majority is counted in the configuration raft holds once it stored
// the entries (read after it answered): the latest in its log, which is a
// configuration of the leader's log at or after the entries (everything in
// the follower's log past them has the leader's term, so came from the
// leader); counting with the latest configuration, committed or not, is
// Raft's own rule for single-server changes, which hashicorp/raft makes
// (it appends a change only once the one before it is committed). A batch
// that holds a configuration entry is left to the leader. A node that takes
// follower commits says so in gossip (without fsync FollowerCommits, with it
// DurableCommits), and its leader sends it no commit notices for what it
// takes itself (commitNotices.takesOwn), and with fsync durable notices
// instead, if the leader appends in parallel (a leader that syncs on raft's
// loop sends none, and its followers wait for its commit notices).

// TakesFollowerCommits reports whether a node with c takes follower
// commits (above): unless turned off. With fsync they wait for the
// leader's durable notices (FollowerCommitsNeedDurable).
func (c Config) TakesFollowerCommits() bool { return !c.NoFollowerCommits }

// FollowerCommitsNeedDurable reports whether a node with c, taking
// follower commits, counts the leader's copy only once the leader says it
// is on disk: with fsync.
func (c Config) FollowerCommitsNeedDurable() bool { return !c.NoSync }

// leadersOwn reports whether a follower that stored req's entries may take
// their commit by itself, as far as the request goes (the quorum is the
// other half): the last entry is the requesting leader's own (its term is
// the request's Term), and no entry changes the configuration.
func leadersOwn(req *raft.AppendEntriesRequest) bool {
	n := len(req.Entries)
	return n > 0 && req.Entries[n-1].Term == req.Term && !hasConfiguration(req.Entries)
}

// firstOfTerm is the index of the first of es (in log order, the last of
// term) whose term is term.
func firstOfTerm(es []*raft.Log, term uint64) uint64 {
	i := sort.Search(len(es), func(i int) bool { return es[i].Term >= term })
	return es[i].Index
}

// followerCommits hands raft the commits a follower can take by itself. Its
// goroutine, run by the gate, hands over one at a time, the latest.
type followerCommits struct {
	local raft.ServerID
	// needDurable: the leader's copy counts once it said it is on disk
	// (leaderDurable); otherwise once it sent the entries.
	needDurable bool
	raft        atomic.Value // a configurations, set once raft runs (*raft.Raft)

	taken atomic.Uint64 // commits handed to raft

	mu sync.Mutex
	// held is what this node stored of its leader's own entries, in the
	// latest term it stored any.
	held heldEntries
	// said is the latest a leader said of its disk (needDurable).
	said durableNotice
	// offered is the latest commit made ready: term, index.
	offeredTerm, offered uint64
	next                 *raft.AppendEntriesRequest // the latest commit to hand over; nil: none
	wake                 chan struct{}              // buffered: next is set
}

// heldEntries is what a follower stored of its leader's own entries in one
// term: the leader's request header, the term, the first index of the term
// it received and the last it stored.
type heldEntries struct {
	header            raft.RPCHeader
	term, first, last uint64
}

// durableNotice is a leader's word that its log is on disk up to index:
// leader is its server ID, term its term.
type durableNotice struct {
	leader      string
	term, index uint64
}

// encode is the body of an rpcDurable frame: uvarint term, uvarint index,
// the leader's ID.
func (d durableNotice) encode() []byte {
	b := binary.AppendUvarint(nil, d.term)
	b = binary.AppendUvarint(b, d.index)
	return append(b, d.leader...)
}

// decodeDurableNotice parses an rpcDurable body; ok is false if it is not
// one.
func decodeDurableNotice(b []byte) (d durableNotice, ok bool) {
	term, n := binary.Uvarint(b)
	if n <= 0 {
		return d, false
	}
	index, m := binary.Uvarint(b[n:])
	if m <= 0 || term == 0 || index == 0 || len(b) == n+m {
		return d, false
	}
	return durableNotice{leader: string(b[n+m:]), term: term, index: index}, true
}

func newFollowerCommits(local raft.ServerID, needDurable bool) *followerCommits {
	return &followerCommits{local: local, needDurable: needDurable, wake: make(chan struct{}, 1)}
}

// configurations is what followerCommits needs of raft: the latest
// configuration in its log (*raft.Raft reads it without a trip through its
// loop).
type configurations interface {
	GetConfiguration() raft.ConfigurationFuture
}

// twoAreQuorum reports whether leader and local are both voters of c and
// together a majority of its voters.
func twoAreQuorum(c raft.Configuration, leader, local raft.ServerID) bool {
	if leader == "" || leader == local {
		return false
	}
	voters, found := 0, 0
	for _, s := range c.Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.ID == leader || s.ID == local {
			found++
		}
	}
	return found == 2 && 2 > voters/2
}

// stored is told of an AppendEntries raft answered with success: this node
// holds its entries (on disk, with fsync: the gate tells it after the
// sync). If they make a commit this node can take by itself, the goroutine
// hands it to raft.
func (f *followerCommits) stored(req *raft.AppendEntriesRequest) {
	if !leadersOwn(req) {
		return // a heartbeat, an earlier leader's entries, or a change of the voters
	}
	r, _ := f.raft.Load().(configurations)
	if r == nil || !twoAreQuorum(r.GetConfiguration().Configuration(), raft.ServerID(req.ID), f.local) {
		return
	}
	first, last := firstOfTerm(req.Entries, req.Term), req.Entries[len(req.Entries)-1].Index
	f.mu.Lock()
	switch h := &f.held; {
	case req.Term > h.term:
		*h = heldEntries{header: req.RPCHeader, term: req.Term, first: first, last: last}
	case req.Term == h.term:
		h.first, h.last = min(h.first, first), max(h.last, last)
	default:
		f.mu.Unlock()
		return // an earlier term's request, answered late
	}
	ok := f.offerLocked()
	f.mu.Unlock()
	if ok {
		f.poke()
	}
}

// leaderDurable is told of a durable notice: the leader of d.term has its
// log on disk up to d.index.
func (f *followerCommits) leaderDurable(d durableNotice) {
	if !f.needDurable {
		return // the leader's written copy counts already
	}
	f.mu.Lock()
	if d.term < f.said.term || d.term == f.said.term && d.index <= f.said.index {
		f.mu.Unlock()
		return
	}
	f.said = d
	ok := f.offerLocked()
	f.mu.Unlock()
	if ok {
		f.poke()
	}
}

// offerLocked makes ready the commit that what is held (and, with
// needDurable, what the leader said) allows, if it is past the last one.
// f.mu is held.
func (f *followerCommits) offerLocked() bool {
	h := f.held
	idx := h.last
	if f.needDurable {
		if f.said.term != h.term || f.said.leader != string(h.header.ID) {
			return false // no word yet from this term's leader
		}
		idx = min(idx, f.said.index)
	}
	if idx < h.first || h.term < f.offeredTerm || h.term == f.offeredTerm && idx <= f.offered {
		return false // an earlier term's entry, or not past what was offered
	}
	f.offeredTerm, f.offered = h.term, idx
	f.next = &raft.AppendEntriesRequest{RPCHeader: h.header, Term: h.term,
		PrevLogEntry: idx, PrevLogTerm: h.term, LeaderCommitIndex: idx}
	return true
}

// poke wakes the goroutine.
func (f *followerCommits) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run hands the commits to raft through out until stop is closed.
func (f *followerCommits) run(out chan<- raft.RPC, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-f.wake:
		}
		f.mu.Lock()
		req := f.next
		f.next = nil
		f.mu.Unlock()
		if req == nil {
			continue
		}
		// Raft's answer is of no use: a refusal only means the leader's
		// own commit index will tell. The channel has room for it.
		select {
		case out <- raft.RPC{Command: req, RespChan: make(chan raft.RPCResponse, 1)}:
			f.taken.Add(1)
		case <-stop:
			return
		}
	}
}
