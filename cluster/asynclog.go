package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/cluster/wal"
	"github.com/raftplane/raftplane/status"
)

// Nodes write their log while raft goes on: the fsync is off raft's loop.
//
// hashicorp/raft stores a batch (write and fdatasync) on its main
// goroutine. The leader does it before it hands the batch to its
// replicators, and counts itself in the quorum as soon as the store
// returns; a follower does it before it answers, and handles nothing else
// meanwhile. So a commit costs the leader's fsync and then a follower's, one
// after the other; the leader's loop, which also takes the commits, is busy
// for the first; and a follower takes a commit notice (notice.go) only after
// the fsync of whatever entry came before it. The Raft thesis (10.2.1) lets
// the leader write to its disk in parallel with replication, provided it
// does not count itself before its write is durable (etcd does so); a
// follower needs only to answer after its write is durable.
//
// hashicorp/raft offers no hook for "counted once durable", so asyncLog
// gets the same guarantee by keeping every effect of a write from being
// seen before it is durable:
//
//  1. StoreLogs writes the batch (wal.Log.Append: write(2), no fdatasync)
//     and returns; a syncer goroutine fdatasyncs behind it and advances
//     durable. Raft's replicators read the entries at once. A batch holding
//     a configuration entry is stored synchronously: hashicorp/raft acts on
//     a committed configuration inside its leader loop (it allows the next
//     change), so that must never rest on an entry the leader could lose.
//  2. A follower's answer to an AppendEntries that carried entries leaves
//     only once durable covers the last of them (ackGate, between the
//     transport and raft). That also covers entries the node appended while
//     it led and now acknowledges to a new leader without storing them
//     again.
//  3. The FSM applies a batch only once durable covers it (nodeFSM): raft
//     answers an Apply's future, and a node's subscribers see the entry,
//     only after its FSM applied it.
//  4. Followers learn of commits only up to the leader's durable: the
//     transport lowers the LeaderCommitIndex of the AppendEntries raft sends
//     to it (noticeTransport), and commit notices announce only applied
//     indexes.
//
// So a quorum's acknowledgements mean what raft takes them for, and when an
// entry's commit can be observed anywhere it is durable on the leader too:
// on a quorum counting the leader, as raft's own rule gives. If the leader
// crashes with entries written but not synced, they may be lost on it
// though a follower holds them; nobody saw them committed, and the next
// leader keeps or overwrites them as Raft allows for uncommitted entries.
// A node's last index (which its votes compare) may count entries not yet
// on disk: it then refuses more votes, never fewer, and a node elected on
// them counts them only once they are durable (3, 4). wal.Open syncs what
// it finds, so entries a crash of the process left in the page cache are
// durable before the restarted node acts on them.
//
// A failed fdatasync of appended entries cannot be taken back (after a
// failed fsync the kernel may have dropped the pages), and raft may already
// count them as committed: the node stops (the FSM panics when it would
// apply them), as hashicorp/raft itself stops when it cannot save its term.
// A write(2) that fails (a full disk) still fails the StoreLogs, which
// raft handles as before (disk.go).
type asyncLog struct {
	*wal.Log
	onFail func(error) // told once when a sync of appended entries fails
	syncs  *status.Latency
	held   atomic.Uint64 // AppendEntries whose commit index the transport held back

	// For tests: testBeforeSync runs before every sync of appended entries.
	testBeforeSync atomic.Pointer[func()]
	// onDurable, if set, is called (without ll.mu) after durable moved on:
	// the leader's durable notices (notice.go).
	onDurable atomic.Pointer[func()]

	durable atomic.Uint64 // every entry up to this index is on disk

	mu      sync.Mutex
	changed *sync.Cond // durable, err or closed changed
	gen     uint64     // bumped by a delete of the tail: syncs begun before it count for nothing
	err     error      // a sync failed: the log is broken
	closed  bool

	kick      chan struct{} // buffered: the syncer has work
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// newAsyncLog wraps l, whose entries are all durable now (wal.Open syncs),
// and starts its syncer; close stops it.
func newAsyncLog(l *wal.Log, onFail func(error)) *asyncLog {
	ll := &asyncLog{Log: l, onFail: onFail, syncs: new(status.Latency),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	ll.changed = sync.NewCond(&ll.mu)
	// Everything Open found is durable (wal.Open syncs it).
	last, _ := l.LastIndex()
	ll.durable.Store(last)
	go ll.syncer()
	return ll
}

// StoreLog implements raft.LogStore.
func (ll *asyncLog) StoreLog(e *raft.Log) error { return ll.StoreLogs([]*raft.Log{e}) }

// StoreLogs implements raft.LogStore: it appends and leaves the sync to the
// syncer; a configuration it syncs at once.
func (ll *asyncLog) StoreLogs(es []*raft.Log) error {
	if len(es) == 0 {
		return nil
	}
	if !hasConfiguration(es) {
		if err := ll.Log.Append(es); err != nil {
			return err
		}
		ll.kickSyncer()
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
// entries at those indexes, which are not on disk until synced. A sync
// that began before the delete was done covered the log before it, so its
// result is dropped (gen, bumped with the lowering). Every delete ends with
// a kick: the syncer's next round moves durable on, with no append needed.
func (ll *asyncLog) DeleteRange(lo, hi uint64) error {
	last, err := ll.Log.LastIndex()
	if err != nil {
		return err
	}
	// Raft deletes the tail on its own goroutine, the one that appends, so
	// last holds for it. A prefix delete (compaction) runs beside appends:
	// one that covered everything when last was read and no longer does is
	// taken for the tail here, which only leaves durable lower than it need
	// be until the kick below.
	tail := hi >= last
	err = ll.Log.DeleteRange(lo, hi)
	if err == nil && tail {
		ll.mu.Lock()
		ll.gen++
		if lo > 0 && lo-1 < ll.durable.Load() {
			ll.durable.Store(lo - 1)
		}
		ll.mu.Unlock()
	}
	ll.kickSyncer()
	return err
}

// kickSyncer asks the syncer for a round.
func (ll *asyncLog) kickSyncer() {
	select {
	case ll.kick <- struct{}{}:
	default:
	}
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
func (ll *asyncLog) raiseDurable(last uint64) {
	ll.mu.Lock()
	raised := last > ll.durable.Load()
	if raised {
		ll.durable.Store(last)
	}
	ll.changed.Broadcast()
	ll.mu.Unlock()
	if raised {
		ll.tellDurable()
	}
}

// tellDurable calls onDurable, if set.
func (ll *asyncLog) tellDurable() {
	if f := ll.onDurable.Load(); f != nil {
		(*f)()
	}
}

// syncer syncs what StoreLogs appended, one fdatasync for all that came
// since the last; its owner is the asyncLog (close stops it).
func (ll *asyncLog) syncer() {
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
func (ll *asyncLog) syncNow() error {
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
	stale := gen != ll.gen
	// The tail was deleted since the sync began: it may have covered a log
	// that is gone, and raft may have written new entries at its indexes.
	// Another round covers what is there now.
	raised := !stale && last > ll.durable.Load()
	if raised {
		ll.durable.Store(last)
	}
	ll.changed.Broadcast()
	ll.mu.Unlock()
	if stale {
		ll.kickSyncer()
	}
	if raised {
		ll.tellDurable()
	}
	return nil
}

// waitDurable blocks until the log is durable up to index, and returns the
// sync failure that means it never will be.
func (ll *asyncLog) waitDurable(index uint64) error {
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
func (ll *asyncLog) close() {
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

// ackGate stands between the transport and raft: it passes every RPC on
// to raft and sees raft's answer to each AppendEntries that carried
// entries. On a node whose log is an asyncLog (log) it holds a successful
// answer until the entries are durable (rule 2 above); with follower
// commits (commits; followercommit.go) it then tells of the entries this
// node holds. Raft handles RPCs one at a time, in the order ackGate passes
// them, so the answers it sees are released in that order, by one
// goroutine. Its goroutines end with close.
type ackGate struct {
	log       *asyncLog        // nil: stored means written
	commits   *followerCommits // nil: off
	in        <-chan raft.RPC
	out       chan raft.RPC
	pending   chan heldAck
	waiting   atomic.Int64 // answers raft gave that wait for the disk
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// heldAck is an AppendEntries whose answer waits: raft answers on mine,
// the transport waits on orig.
type heldAck struct {
	mine chan raft.RPCResponse
	orig chan<- raft.RPCResponse
	req  *raft.AppendEntriesRequest
}

// newAckGate starts the gate between in (the transport's Consumer) and the
// channel raft is to read. log or commits may be nil, not both.
func newAckGate(log *asyncLog, commits *followerCommits, in <-chan raft.RPC) *ackGate {
	g := &ackGate{log: log, commits: commits, in: in, out: make(chan raft.RPC),
		pending: make(chan heldAck, 256), stop: make(chan struct{})}
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.forward() }()
	go func() { defer g.wg.Done(); g.answer() }()
	if commits != nil {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); commits.run(g.out, g.stop) }()
	}
	return g
}

// close stops the gate's goroutines; answers it held are dropped (the
// transport's handlers end with the transport), and so is a follower
// commit not yet handed over.
func (g *ackGate) close() {
	g.closeOnce.Do(func() { close(g.stop) })
	g.wg.Wait()
}

func (g *ackGate) forward() {
	for {
		var rpc raft.RPC
		select {
		case <-g.stop:
			return
		case rpc = <-g.in:
		}
		if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok && len(req.Entries) > 0 {
			a := heldAck{mine: make(chan raft.RPCResponse, 1), orig: rpc.RespChan, req: req}
			rpc.RespChan = a.mine
			select {
			case g.pending <- a:
			case <-g.stop:
				return
			}
		}
		select {
		case g.out <- rpc:
		case <-g.stop:
			return
		}
	}
}

func (g *ackGate) answer() {
	for {
		var a heldAck
		select {
		case <-g.stop:
			return
		case a = <-g.pending:
		}
		var r raft.RPCResponse
		select {
		case r = <-a.mine:
		case <-g.stop:
			return
		}
		resp, ok := r.Response.(*raft.AppendEntriesResponse)
		stored := ok && r.Error == nil && resp.Success
		if stored && g.log != nil {
			g.waiting.Add(1)
			if err := g.log.waitDurable(a.req.Entries[len(a.req.Entries)-1].Index); err != nil {
				r.Error = err // not stored: the leader must not count it
				stored = false
			}
			g.waiting.Add(-1)
		}
		a.orig <- r // the transport's channel has room for its one answer
		if stored && g.commits != nil {
			g.commits.stored(a.req)
		}
	}
}
