package cluster

import (
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// Follower commits. An entry is committed once the leader that created it
// has it stored on a majority of the voters; the leader learning of it (from
// the answers to its AppendEntries) is only how raft usually finds out. With
// two or three voters, the leader and one follower are a majority. So a
// follower that has just stored entries the leader of its term created (the
// last one's term is the request's Term), which the leader stored before it
// sent them, knows by itself that they are committed, together with
// everything before them (Raft's log matching): it need not wait for its
// answer to reach the leader, the leader to count it, and a commit notice
// (notice.go) to come back, one and a half round trips between nodes.
//
// hashicorp/raft takes a follower's commit index only from an
// AppendEntries. So once raft answered such a request with success, the gate
// the node's RPCs pass through (asynclog.go) hands raft an AppendEntries of
// its own: the request's header and Term, no entries, PrevLogEntry and
// LeaderCommitIndex the last entry's index, PrevLogTerm its term. Raft
// checks it as any other: refused if its term is over (a newer term began
// meanwhile), or if the entry is no longer there with that term (which
// within one term cannot happen: a leader never overwrites its own
// entries); otherwise it sets its commit index to the entry and applies.
//
// The majority is counted in the configuration raft holds once it stored
// the entries (read after it answered): the latest in its log, which is a
// configuration of the leader's log at or after the entries (everything in
// the follower's log past them has the leader's term, so came from the
// leader); counting with the latest configuration, committed or not, is
// Raft's own rule for single-server changes, which hashicorp/raft makes
// (it appends a change only once the one before it is committed). A batch
// that holds a configuration entry is left to the leader.
//
// "Stored" must mean the same on both: the leader stores a batch before it
// hands it to its replicators, and a follower before it answers, but with
// the parallel append (asynclog.go) the leader's copy is only written, not
// yet synced, when the follower gets it, so a follower could not count it
// (and with -no-parallel-append it could, but a follower cannot know its
// leader's flags). Follower commits are therefore on only without fsync
// (-no-sync), where stored is written for every node, and survive what that
// mode survives: a crash of the process, not of the machine. A -no-sync follower of a leader
// that syncs counts the leader's written copy too (such a mixed cluster is
// as durable as its -no-sync nodes). A node that takes follower commits
// says so in gossip, and its leader sends it no commit notices for what it
// takes itself (commitNotices.takesOwn).

// TakesFollowerCommits reports whether a node with c takes follower
// commits (above): without fsync, unless turned off.
func (c Config) TakesFollowerCommits() bool { return c.NoSync && !c.NoFollowerCommits }

// leadersOwn reports whether a follower that stored req's entries may take
// their commit by itself, as far as the request goes (the quorum is the
// other half): the last entry is the requesting leader's own (its term is
// the request's Term), and no entry changes the configuration.
func leadersOwn(req *raft.AppendEntriesRequest) bool {
	n := len(req.Entries)
	return n > 0 && req.Entries[n-1].Term == req.Term && !hasConfiguration(req.Entries)
}

// followerCommits hands raft the commits a follower can take by itself. Its
// goroutine, run by the gate, hands over one at a time, the latest.
type followerCommits struct {
	local raft.ServerID
	raft  atomic.Value // a configurations, set once raft runs (*raft.Raft)

	taken atomic.Uint64 // commits handed to raft

	mu   sync.Mutex
	next *raft.AppendEntriesRequest // the latest commit to hand over; nil: none
	wake chan struct{}              // buffered: next is set
}

func newFollowerCommits(local raft.ServerID) *followerCommits {
	return &followerCommits{local: local, wake: make(chan struct{}, 1)}
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
// holds its entries. If they make a commit this node can take by itself,
// the goroutine hands it to raft.
func (f *followerCommits) stored(req *raft.AppendEntriesRequest) {
	if !leadersOwn(req) {
		return // a heartbeat, an earlier leader's entries, or a change of the voters
	}
	r, _ := f.raft.Load().(configurations)
	if r == nil || !twoAreQuorum(r.GetConfiguration().Configuration(), raft.ServerID(req.ID), f.local) {
		return
	}
	last := req.Entries[len(req.Entries)-1]
	f.mu.Lock()
	if n := f.next; n == nil || req.Term > n.Term || req.Term == n.Term && last.Index > n.LeaderCommitIndex {
		f.next = &raft.AppendEntriesRequest{RPCHeader: req.RPCHeader, Term: req.Term,
			PrevLogEntry: last.Index, PrevLogTerm: last.Term, LeaderCommitIndex: last.Index}
	}
	f.mu.Unlock()
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
