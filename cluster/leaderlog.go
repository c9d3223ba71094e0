package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/cluster/wal"
	"github.com/raftplane/raftplane/status"
)

// The leader writes its log in parallel with replicating it.
//
// hashicorp/raft's leader stores a batch (write and fdatasync) before it
// hands the batch to its replicators, and counts itself in the quorum as
// soon as that store returns. So a commit costs the leader's fsync and then
// a follower's, one after the other, and the leader's loop, which also takes
// the commits, is busy for the first. The Raft thesis (10.2.1) lets the
// leader write to its disk in parallel with replication, provided it does
// not count itself before its write is durable; etcd does so.
//
// hashicorp/raft offers no hook for "counted once durable", so leaderLog
// gets the same guarantee by keeping every effect of a commit from being
// seen before the leader's own copy is durable:
//
//  1. As leader, StoreLogs writes the batch (wal.Log.Append: write(2), no
//     fdatasync) and returns; a syncer goroutine fdatasyncs behind it and
//     advances durable. Raft's replicators read the entries at once.
//     A batch holding a configuration entry is stored synchronously:
//     hashicorp/raft acts on a committed configuration inside its leader
//     loop (it allows the next change), so that must never rest on an
//     entry the leader could still lose.
//  2. The FSM applies a batch only once durable covers it (nodeFSM): raft
//     answers an Apply's future, and this node's subscribers see the entry,
//     only after the FSM applied it.
//  3. Followers learn of commits only up to durable: the transport lowers
//     the LeaderCommitIndex of the AppendEntries raft sends to durable
//     (noticeTransport), and commit notices announce only applied indexes.
//  4. A node that stops leading syncs before raft goes on (stepDown: an
//     observer filter, which raft runs on its own goroutine inside the state
//     change, before it handles the RPC that made it step down). A follower
//     acknowledges entries it already holds without storing them again, so
//     an entry written while leading must be durable before any answer.
//     Follower writes (StoreLogs) and deletes sync as before, and cover
//     whatever was appended earlier.
//
// So when an entry's commit can be observed anywhere, it is durable on the
// leader and on a quorum counting the leader: what raft's own rule gives.
// If the leader crashes with entries written but not synced, they may be
// lost on it though a follower holds them; nobody saw them committed, and the
// next leader keeps or overwrites them as Raft allows for uncommitted
// entries. wal.Open syncs what it finds, so entries a crash of the process
// left in the page cache are durable before the restarted node acts on
// them.
//
// A failed fdatasync of appended entries cannot be taken back (after a
// failed fsync the kernel may have dropped the pages), and raft may already
// count them as committed: the node stops (the FSM panics when it would
// apply them), as hashicorp/raft itself stops when it cannot save its term.
// A write(2) that fails (a full disk) still fails the StoreLogs, which
// raft handles as before (disk.go).
type leaderLog struct {
	*wal.Log
	raft   atomic.Pointer[raft.Raft] // set by attach; until then, not leading
	onFail func(error)               // told once when a sync of appended entries fails
	syncs  *status.Latency
	held   atomic.Uint64 // AppendEntries whose commit index the transport held back

	// For tests: testLeading, when set, says whether raft leads instead
	// of raft; testBeforeSync runs before every sync of appended entries.
	testLeading    func() bool
	testBeforeSync atomic.Pointer[func()]

	durable atomic.Uint64 // every entry up to this index is on disk

	mu      sync.Mutex
	changed *sync.Cond // durable, err or closed changed
	gen     uint64     // bumped by writes and deletes that set durable themselves
	err     error      // a sync failed: the log is broken
	closed  bool

	kick      chan struct{} // buffered: the syncer has work
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// newLeaderLog wraps l, whose entries are all durable now (wal.Open syncs),
// and starts its syncer; close stops it. It appends without syncing only
// once attach gave it the raft it serves.
func newLeaderLog(l *wal.Log, onFail func(error)) *leaderLog {
	ll := &leaderLog{Log: l, onFail: onFail, syncs: new(status.Latency),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	ll.changed = sync.NewCond(&ll.mu)
	// Everything Open found is durable (wal.Open syncs it).
	last, _ := l.LastIndex()
	ll.durable.Store(last)
	go ll.syncer()
	return ll
}

// attach tells ll the raft it serves and has it sync whenever raft stops
// leading, before raft goes on: raft runs an observer's filter on its own
// goroutine, inside the change of state.
func (ll *leaderLog) attach(r *raft.Raft) {
	r.RegisterObserver(raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		if s, ok := o.Data.(raft.RaftState); ok && s != raft.Leader {
			ll.stepDown()
		}
		return false
	}))
	ll.raft.Store(r)
}

func (ll *leaderLog) leading() bool {
	if ll.testLeading != nil {
		return ll.testLeading()
	}
	r := ll.raft.Load()
	return r != nil && r.State() == raft.Leader
}

// StoreLog implements raft.LogStore.
func (ll *leaderLog) StoreLog(e *raft.Log) error { return ll.StoreLogs([]*raft.Log{e}) }

// StoreLogs implements raft.LogStore: as leader it appends and leaves the
// sync to the syncer; otherwise (or for a configuration) it syncs.
func (ll *leaderLog) StoreLogs(es []*raft.Log) error {
	if len(es) == 0 {
		return nil
	}
	if ll.leading() && !hasConfiguration(es) {
		if err := ll.Log.Append(es); err != nil {
			return err
		}
		select {
		case ll.kick <- struct{}{}:
		default:
		}
		return nil
	}
	if err := ll.Log.StoreLogs(es); err != nil {
		return err
	}
	ll.raiseDurable(es[len(es)-1].Index)
	return nil
}

// DeleteRange implements raft.LogStore. wal.Log syncs before it deletes.
// Deleting the tail lowers durable below the cut: raft may write new
// entries at those indexes, which are not on disk until synced.
func (ll *leaderLog) DeleteRange(lo, hi uint64) error {
	ll.mu.Lock()
	ll.gen++ // a sync in flight covered the log before this delete
	ll.mu.Unlock()
	last, err := ll.Log.LastIndex()
	if err != nil {
		return err
	}
	if err := ll.Log.DeleteRange(lo, hi); err != nil {
		return err
	}
	if hi >= last && lo > 0 {
		ll.mu.Lock()
		if lo-1 < ll.durable.Load() {
			ll.durable.Store(lo - 1)
		}
		ll.mu.Unlock()
		// What is left (or appended since) is durable after the next sync;
		// the FSM may be waiting for it.
		select {
		case ll.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

func hasConfiguration(es []*raft.Log) bool {
	for _, e := range es {
		if e.Type == raft.LogConfiguration {
			return true
		}
	}
	return false
}

// raiseDurable records that the log up to last is on disk.
func (ll *leaderLog) raiseDurable(last uint64) {
	ll.mu.Lock()
	if last > ll.durable.Load() {
		ll.durable.Store(last)
	}
	ll.changed.Broadcast()
	ll.mu.Unlock()
}

// syncer syncs what StoreLogs appended, one fdatasync for all that came
// since the last; its owner is the leaderLog (close stops it).
func (ll *leaderLog) syncer() {
	defer close(ll.done)
	for {
		select {
		case <-ll.stop:
			return
		case <-ll.kick:
		}
		if ll.syncNow() != nil {
			return
		}
	}
}

// syncNow syncs everything written and advances durable.
func (ll *leaderLog) syncNow() error {
	ll.mu.Lock()
	gen := ll.gen
	ll.mu.Unlock()
	if h := ll.testBeforeSync.Load(); h != nil {
		(*h)()
	}
	start := time.Now()
	last, err := ll.Log.Sync()
	if err != nil {
		ll.mu.Lock()
		first := ll.err == nil
		if first {
			ll.err = err
		}
		ll.changed.Broadcast()
		ll.mu.Unlock()
		if first && ll.onFail != nil {
			ll.onFail(err)
		}
		return err
	}
	ll.syncs.Observe(time.Since(start))
	ll.mu.Lock()
	// A write or delete since the sync began set durable itself, from a
	// newer state of the log than the one this sync covered.
	if gen == ll.gen && last > ll.durable.Load() {
		ll.durable.Store(last)
	}
	ll.changed.Broadcast()
	ll.mu.Unlock()
	return nil
}

// stepDown syncs at once: raft stopped leading (see above). It runs on
// raft's goroutine.
func (ll *leaderLog) stepDown() {
	_ = ll.syncNow() // a failure is reported by syncNow; the FSM stops the node
}

// waitDurable blocks until the log is durable up to index, and returns the
// sync failure that means it never will be.
func (ll *leaderLog) waitDurable(index uint64) error {
	if ll.durable.Load() >= index {
		return nil
	}
	ll.mu.Lock()
	defer ll.mu.Unlock()
	for ll.durable.Load() < index && ll.err == nil && !ll.closed {
		ll.changed.Wait()
	}
	if ll.durable.Load() >= index {
		return nil
	}
	if ll.err != nil {
		return ll.err
	}
	return ErrClosed
}

// close stops the syncer after a last sync. Raft must have shut down: its
// FSM may wait for the syncer until then.
func (ll *leaderLog) close() {
	ll.closeOnce.Do(func() {
		close(ll.stop)
		<-ll.done
		_ = ll.syncNow()
		ll.mu.Lock()
		ll.closed = true
		ll.changed.Broadcast()
		ll.mu.Unlock()
	})
}
