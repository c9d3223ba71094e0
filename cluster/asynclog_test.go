package cluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/cluster/wal"
	"github.com/raftplane/raftplane/fsm"
)

// syncGate blocks a asyncLog's syncs of appended entries while closed.
type syncGate struct {
	entered atomic.Int64
	open    chan struct{}
	once    sync.Once
}

func blockSyncs(ll *asyncLog) *syncGate {
	g := &syncGate{open: make(chan struct{})}
	h := func() { g.entered.Add(1); <-g.open }
	ll.testBeforeSync.Store(&h)
	return g
}

// release lets the held syncs through; later calls do nothing, so a test
// may defer it and release earlier.
func (g *syncGate) release() { g.once.Do(func() { close(g.open) }) }

// openAsyncLog opens an asyncLog over a new wal, both closed when t ends.
func openAsyncLog(t *testing.T) *asyncLog {
	t.Helper()
	w, err := wal.Open(filepath.Join(t.TempDir(), "wal"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	ll := newAsyncLog(w, nil)
	t.Cleanup(ll.close) // first: its last sync needs the wal
	return ll
}

func TestAsyncLog_Durable(t *testing.T) {
	ll := openAsyncLog(t)
	store := func(typ raft.LogType, idx ...uint64) {
		t.Helper()
		var es []*raft.Log
		for _, i := range idx {
			es = append(es, &raft.Log{Index: i, Term: 1, Type: typ, Data: []byte(strconv.FormatUint(i, 10))})
		}
		if err := ll.StoreLogs(es); err != nil {
			t.Fatal(err)
		}
	}
	durable := func(want uint64) {
		t.Helper()
		if got := ll.durable.Load(); got != want {
			t.Fatalf("durable = %d, want %d", got, want)
		}
	}
	wait := func(i uint64) {
		t.Helper()
		if err := ll.waitDurable(i); err != nil {
			t.Fatal(err)
		}
	}

	store(raft.LogCommand, 1, 2, 3)
	wait(3)
	durable(3)

	gate := blockSyncs(ll)
	store(raft.LogCommand, 4, 5, 6) // written; its sync is held at the gate
	var got raft.Log
	if err := ll.GetLog(6, &got); err != nil || got.Index != 6 {
		t.Fatalf("GetLog(6) after the append = %d, %v", got.Index, err)
	}
	waitFor(t, "the syncer to take the append", func() error {
		if gate.entered.Load() == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	durable(3)
	waited := make(chan error, 1)
	go func() { waited <- ll.waitDurable(6) }()
	gate.release()
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	durable(6)

	// A configuration is stored synchronously.
	gate = blockSyncs(ll)
	store(raft.LogConfiguration, 7)
	durable(7)
	gate.release()

	// Deleting the tail lowers durable below the cut; what raft writes there
	// next is durable only once synced.
	store(raft.LogCommand, 8, 9, 10)
	wait(10)
	if err := ll.DeleteRange(9, 10); err != nil {
		t.Fatal(err)
	}
	durable(8)
	store(raft.LogCommand, 9)
	wait(9)
	// A prefix delete leaves it.
	if err := ll.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	durable(9)

	ll.close()
	if err := ll.waitDurable(12); !errors.Is(err, ErrClosed) {
		t.Fatalf("waitDurable past the end after close = %v", err)
	}
}

// The gate passes every RPC to raft in order and holds raft's successful
// answer to an AppendEntries with entries until they are on disk; other
// answers go straight back.
func TestAckGate(t *testing.T) {
	ll := openAsyncLog(t)
	in := make(chan raft.RPC)
	g := newAckGate(ll, nil, in)
	defer g.close()

	// rpc sends cmd through the gate; raft (this test) answers it with resp.
	rpc := func(cmd any, resp any) chan raft.RPCResponse {
		t.Helper()
		orig := make(chan raft.RPCResponse, 1)
		in <- raft.RPC{Command: cmd, RespChan: orig}
		got := <-g.out
		if got.Command != cmd {
			t.Fatalf("raft got %T, want %T", got.Command, cmd)
		}
		got.Respond(resp, nil)
		return orig
	}
	ae := func(idx ...uint64) *raft.AppendEntriesRequest {
		req := &raft.AppendEntriesRequest{}
		for _, i := range idx {
			req.Entries = append(req.Entries, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand})
		}
		return req
	}

	// A vote and an AppendEntries without entries are answered at once.
	vote := &raft.RequestVoteResponse{Granted: true}
	if r := <-rpc(&raft.RequestVoteRequest{}, vote); r.Response != vote {
		t.Fatalf("vote answer %+v", r)
	}
	hb := &raft.AppendEntriesResponse{Success: true}
	if r := <-rpc(ae(), hb); r.Response != hb {
		t.Fatalf("empty AppendEntries answer %+v", r)
	}

	// Entries 1..2 written but not synced: the success waits.
	gate := blockSyncs(ll)
	if err := ll.StoreLogs([]*raft.Log{{Index: 1, Term: 1}, {Index: 2, Term: 1}}); err != nil {
		t.Fatal(err)
	}
	ok := &raft.AppendEntriesResponse{Success: true, LastLog: 2}
	held := rpc(ae(1, 2), ok)
	waitFor(t, "the answer to wait for the disk", func() error {
		if g.waiting.Load() != 1 {
			return errors.New("not waiting")
		}
		return nil
	})
	select {
	case r := <-held:
		t.Fatalf("answered %+v before the entries were on disk", r)
	default:
	}
	gate.release()
	if r := <-held; r.Response != ok || r.Error != nil {
		t.Fatalf("held answer %+v", r)
	}

	// A refusal is not held.
	gate = blockSyncs(ll)
	if err := ll.StoreLogs([]*raft.Log{{Index: 3, Term: 1}}); err != nil {
		t.Fatal(err)
	}
	no := &raft.AppendEntriesResponse{Success: false}
	if r := <-rpc(ae(3), no); r.Response != no {
		t.Fatalf("refusal %+v", r)
	}
	gate.release()
}

// fsynced makes a test node sync its log, so the leader appends in
// parallel (the harness turns fsync off).
func fsynced(c *Config) { c.NoSync = false }

// startSynced starts three fsyncing nodes and returns them with the leader.
func startSynced(t *testing.T) ([]*testNode, *testNode) {
	n1 := startNode(t, nodeOpts{id: "n1", tweak: fsynced})
	waitReady(t, n1)
	n2 := startNode(t, nodeOpts{id: "n2", seeds: []string{n1.gossipAddr}, tweak: fsynced})
	n3 := startNode(t, nodeOpts{id: "n3", seeds: []string{n1.gossipAddr}, tweak: fsynced})
	nodes := []*testNode{n1, n2, n3}
	waitMembership(t, nodes, 3, 0)
	waitReady(t, nodes...)
	l := waitLeader(t, nodes)
	for _, n := range nodes {
		if n.node.asyncLog == nil {
			t.Fatalf("%s: no parallel append with fsync on", n.id)
		}
	}
	waitApplied(t, nodes, mustPublish(t, l, "warm-up"))
	return nodes, l
}

func commitIndex(r *raft.Raft) uint64 {
	c, _ := strconv.ParseUint(r.Stats()["commit_index"], 10, 64)
	return c
}

// While the leader's own copy of an entry is not on disk, nothing of its
// commit shows anywhere, though raft committed it: the leader's FSM does
// not apply it (so the publish does not return), and the AppendEntries the
// leader sends carry a commit index held below it, so no follower applies
// it. Once the sync is let through, it applies everywhere.
func TestAsyncLog_CommitHeldUntilDurable(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes, l := startSynced(t)
	ll := l.node.asyncLog
	gate := blockSyncs(ll)
	defer gate.release()

	idx := l.node.raft.LastIndex() + 1
	type result struct {
		cur fsm.Cursor
		err error
	}
	published := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		cur, err := l.node.Publish(ctx, testCommand("held"))
		published <- result{cur, err}
	}()
	// Raft counts the leader and the followers that stored it: committed.
	waitFor(t, fmt.Sprintf("raft on %s to commit index %d", l.id, idx), func() error {
		for _, f := range followers(nodes, l) {
			if last := f.node.raft.LastIndex(); last < idx {
				return fmt.Errorf("%s stored up to %d", f.id, last)
			}
		}
		if c := commitIndex(l.node.raft); c < idx {
			return fmt.Errorf("commit index %d", c)
		}
		return nil
	})
	// And an AppendEntries has gone out since that would have told the
	// followers (raft sends one CommitTimeout after the last entry).
	held := ll.held.Load()
	waitFor(t, "an AppendEntries with its commit index held back", func() error {
		if ll.held.Load() <= held {
			return errors.New("none yet")
		}
		return nil
	})
	for _, n := range nodes {
		if got := n.machine.Position().Last.Index; got >= idx {
			t.Fatalf("%s applied index %d before the leader's copy of %d was on disk", n.id, got, idx)
		}
	}
	select {
	case r := <-published:
		t.Fatalf("the publish returned (%v, %v) before the leader's copy was on disk", r.cur, r.err)
	default:
	}

	gate.release()
	r := <-published
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.cur.Index < idx { // later if a leader duty's entry came first
		t.Fatalf("published at %d, before the held index %d", r.cur.Index, idx)
	}
	waitApplied(t, nodes, r.cur)
}

// A leader that loses its leadership with entries written but not yet on
// disk acknowledges nothing to the next leader until they are: its answers
// wait at the ack gate while its syncs are held.
func TestAsyncLog_DeposedLeaderAcksDurable(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes, l := startSynced(t)
	ll := l.node.asyncLog
	gate := blockSyncs(ll)
	defer gate.release()
	idx := l.node.raft.LastIndex() + 1
	published := make(chan error, 1)
	go func() {
		_, err := publish(l, "pending")
		published <- err
	}()
	waitFor(t, "the followers to store the entry", func() error {
		for _, f := range followers(nodes, l) {
			if last := f.node.raft.LastIndex(); last < idx {
				return fmt.Errorf("%s stored up to %d", f.id, last)
			}
		}
		return nil
	})
	// The transfer's own answer may be a timeout: the old leader cannot
	// answer for what it has not synced.
	transferred := make(chan error, 1)
	go func() { transferred <- l.node.raft.LeadershipTransfer().Error() }()
	waitFor(t, "the deposed leader to hold an answer to the new one", func() error {
		if s := l.node.raft.State(); s == raft.Leader {
			return errors.New("still leader")
		}
		if n := l.node.gate.waiting.Load(); n == 0 {
			return errors.New("no answer waiting")
		}
		return nil
	})
	if d := ll.durable.Load(); d >= idx {
		t.Fatalf("durable %d past the held entry %d", d, idx)
	}
	gate.release()
	waitFor(t, "the old leader's log to be durable and its answers sent", func() error {
		if d, last := ll.durable.Load(), l.node.raft.LastIndex(); d < last {
			return fmt.Errorf("durable %d of %d", d, last)
		}
		if n := l.node.gate.waiting.Load(); n != 0 {
			return fmt.Errorf("%d answers waiting", n)
		}
		return nil
	})
	select {
	case err := <-published:
		t.Logf("the publish on the old leader: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("the publish on the old leader never returned")
	}
	t.Logf("the leadership transfer: %v", <-transferred)
	nl := waitLeader(t, nodes)
	waitApplied(t, nodes, mustPublish(t, nl, "after"))
}

// A power cut of the whole cluster, losing every write that was not
// synced on every node at once, loses no publish that was acknowledged
// before it: an acknowledgement means the entry is on disk on a quorum
// that counts the leader, and so does a follower's own commit of it. Three publishers (one per node) run; then every
// node's syncs are held, so that writes pile up unsynced, until either the
// followers hold their answers for lack of a sync (what must happen) or a
// publish is acknowledged anyway (what must not); then the power is cut.
// The stream after the restart holds every acknowledged publish once, each
// publisher's in its order.
func TestAsyncLog_PowerCut(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes, l := startSynced(t)

	var cutting atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type acked struct {
		mu  sync.Mutex
		ids []string
	}
	acks := make([]*acked, len(nodes))
	var total atomic.Int64
	var wg sync.WaitGroup
	for g, n := range nodes {
		acks[g] = &acked{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("w%d-%05d", g, i)
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := n.node.Publish(pctx, testCommand(id))
				pcancel()
				if err == nil && !cutting.Load() { // acknowledged before the cut began
					acks[g].mu.Lock()
					acks[g].ids = append(acks[g].ids, id)
					acks[g].mu.Unlock()
					total.Add(1)
				}
			}
		}()
	}
	waitFor(t, "200 acknowledged publishes", func() error {
		if n := total.Load(); n < 200 {
			return fmt.Errorf("%d", n)
		}
		return nil
	})
	// The followers take commits themselves on the leader's durable
	// notices (followercommit.go): the cut below tests those too.
	var taken int64
	for _, f := range followers(nodes, l) {
		taken += f.node.Stats().FollowerCommits
	}
	if taken == 0 {
		t.Error("no follower took a commit itself before the cut")
	}
	var gates []*syncGate
	for _, n := range nodes {
		gates = append(gates, blockSyncs(n.node.asyncLog))
	}
	before := total.Load()
	waitFor(t, "the followers to hold answers for unsynced entries", func() error {
		if total.Load() > before+5 {
			return nil // acknowledged without a sync: the check below fails
		}
		for _, f := range followers(nodes, l) {
			if f.node.gate.waiting.Load() == 0 {
				return fmt.Errorf("%s holds no answer", f.id)
			}
		}
		return nil
	})
	cutting.Store(true)
	for _, n := range nodes {
		n.node.stores.wal.SimulatePowerCut()
	}
	t.Logf("%d publishes acknowledged before the syncs were held, %d after", before, total.Load()-before)
	// What any node applied (its subscribers saw it), by the leader's
	// commit or its own, was on disk on a quorum: it must survive too.
	// With the syncs held no node applies anything past its disk, so
	// nothing is applied after this read that the cut could take.
	appliedOn := map[string]string{}
	for _, n := range nodes {
		es, err := n.machine.Since(fsm.Cursor{}, 0)
		if err != nil {
			t.Fatalf("%s: Since: %v", n.id, err)
		}
		for _, e := range es {
			if e.Kind == fsm.KindPublish && e.Err == nil {
				appliedOn[e.ID] = n.id
			}
		}
	}
	for _, g := range gates {
		g.release()
	}
	cancel()
	wg.Wait()
	for _, n := range nodes {
		n.kill(t)
	}
	restarted := []*testNode{nodes[0].restart(t)}
	for _, n := range nodes[1:] {
		restarted = append(restarted, n.restart(t, nodes[0].gossipAddr))
	}
	waitReady(t, restarted...)
	l = waitLeader(t, restarted)
	stream := waitApplied(t, restarted, mustPublish(t, l, "after the cut"))

	seen := map[string]int{}
	var order []string
	for _, e := range stream {
		if e.Kind == fsm.KindPublish && e.Err == nil {
			seen[e.ID]++
			order = append(order, e.ID)
		}
	}
	for id, on := range appliedOn {
		if seen[id] == 0 {
			t.Errorf("publish %s, applied on %s before the power cut, is gone after it", id, on)
		}
	}
	lost, dups := 0, 0
	for g, a := range acks {
		pos := -1
		for _, id := range a.ids {
			switch seen[id] {
			case 0:
				lost++
				t.Errorf("acknowledged publish %s is gone after the power cut", id)
				continue
			case 1:
			default:
				dups++
				t.Errorf("publish %s appears %d times", id, seen[id])
			}
			at := slices.Index(order, id)
			if at < pos {
				t.Errorf("publisher %d: %s comes before an earlier publish", g, id)
			}
			pos = at
		}
	}
	t.Logf("%d publishes acknowledged before the cut, %d in the stream after it (%d lost, %d duplicated)",
		total.Load(), len(order), lost, dups)
}

// A delete while a sync is in flight must not leave durable behind with
// nothing left to move it: raft's compaction runs beside the appends, and
// when no entry comes after, whatever waits for the disk (the FSM, the ack
// gate) would wait until one does. Here the sync is held at the gate while
// a prefix is deleted; once it is let through, durable reaches the last
// entry with no further append.
func TestAsyncLog_DeleteDuringSync(t *testing.T) {
	ll := openAsyncLog(t)
	ents := func(lo, hi, term uint64) []*raft.Log {
		var es []*raft.Log
		for i := lo; i <= hi; i++ {
			es = append(es, &raft.Log{Index: i, Term: term, Type: raft.LogCommand})
		}
		return es
	}
	store := func(es []*raft.Log) {
		t.Helper()
		if err := ll.StoreLogs(es); err != nil {
			t.Fatal(err)
		}
	}
	// durableWithin fails unless the log is durable up to want without
	// another append.
	durableWithin := func(what string, want uint64) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- ll.waitDurable(want) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%s: durable stays at %d of %d", what, ll.durable.Load(), want)
		}
	}
	// heldSync appends es with the sync held at the gate, runs del, then
	// lets the sync through.
	heldSync := func(es []*raft.Log, del func()) {
		t.Helper()
		gate := blockSyncs(ll)
		defer gate.release()
		store(es)
		waitFor(t, "the syncer at the gate", func() error {
			if gate.entered.Load() == 0 {
				return errors.New("not yet")
			}
			return nil
		})
		del()
	}
	store(ents(1, 5, 1))
	durableWithin("the first entries", 5)

	heldSync(ents(6, 10, 1), func() {
		if err := ll.DeleteRange(1, 3); err != nil { // a prefix, as compaction does
			t.Fatal(err)
		}
	})
	durableWithin("after a prefix delete during a sync", 10)

	heldSync(ents(11, 12, 1), func() {
		if err := ll.DeleteRange(11, 12); err != nil { // the tail, as a follower's conflict does
			t.Fatal(err)
		}
	})
	durableWithin("after a tail delete during a sync", 10)
	store(ents(11, 12, 2))
	durableWithin("what was stored after the tail delete", 12)
}
