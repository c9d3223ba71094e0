package cluster

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// expectedVoters is the voter count the leader settles on for size nodes:
// at most maxVoters, and odd.
func expectedVoters(size, maxVoters int) int {
	v := min(size, maxVoters)
	if v%2 == 0 {
		v--
	}
	return v
}

// startCluster starts node n1 alone (it bootstraps), then n2..n<size>
// joining through n1's gossip address, and waits until every node is in the
// Raft configuration with the expected voters and has the cluster id.
func startCluster(t *testing.T, size int, tweak func(*nodeOpts)) []*testNode {
	t.Helper()
	opts := func(i int) nodeOpts {
		o := nodeOpts{id: fmt.Sprintf("n%d", i)}
		if tweak != nil {
			tweak(&o)
		}
		return o
	}
	first := startNode(t, opts(1))
	waitReady(t, first)
	nodes := []*testNode{first}
	for i := 2; i <= size; i++ {
		o := opts(i)
		o.seeds = []string{first.gossipAddr}
		nodes = append(nodes, startNode(t, o))
	}
	v := expectedVoters(size, first.opts.maxVoters)
	waitMembership(t, nodes, v, size-v)
	waitReady(t, nodes...)
	return nodes
}

func TestNode_ThreeNodesJoin(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	n1 := startNode(t, nodeOpts{id: "n1"})
	epoch1 := waitReady(t, n1)

	start := time.Now()
	n2 := startNode(t, nodeOpts{id: "n2", seeds: []string{n1.gossipAddr}})
	n3 := startNode(t, nodeOpts{id: "n3", seeds: []string{n1.gossipAddr}})
	nodes := []*testNode{n1, n2, n3}
	waitFor(t, "n2 and n3 in n1's configuration", func() error {
		c, err := servers(n1)
		if err != nil {
			return err
		}
		if len(c) != 3 {
			return fmt.Errorf("n1 has %s", formatConfig(c))
		}
		return nil
	})
	added := time.Since(start)
	waitMembership(t, nodes, 3, 0)
	promoted := time.Since(start)
	epoch := waitReady(t, nodes...)
	t.Logf("join: n2 and n3 in the configuration after %s, 3 voters after %s, epoch on all after %s",
		added.Round(time.Millisecond), promoted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if epoch != epoch1 {
		t.Errorf("epoch %s, but n1 started with %s", epoch, epoch1)
	}

	// Exactly one bootstrap: n1 alone wrote a configuration of its own, and
	// the first configuration in every node's log is that one.
	for _, n := range nodes {
		if n.node.HadState() {
			t.Errorf("%s: HadState() = true on a fresh data dir", n.id)
		}
		wantBoot := 0
		if n == n1 {
			wantBoot = 1
		}
		if got := len(n.logs.matching("bootstrapped a new one-node cluster")); got != wantBoot {
			t.Errorf("%s bootstrapped %d times, want %d", n.id, got, wantBoot)
		}
		hist := configHistory(t, n)
		if len(hist) == 0 {
			t.Errorf("%s: no configuration in its log", n.id)
			continue
		}
		if s := hist[0].Servers; len(s) != 1 || s[0].ID != "n1" || s[0].Suffrage != raft.Voter {
			t.Errorf("%s: first configuration %+v, want n1's bootstrap {n1 voter}", n.id, hist[0])
		}
		for i, c := range hist {
			if !hasServer(c, "n1") {
				t.Errorf("%s: configuration #%d %+v lacks n1: a second cluster was bootstrapped", n.id, i, c)
			}
		}
	}

	// A publish on a follower is forwarded to the leader and applied by all.
	l := waitLeader(t, nodes)
	f := followers(nodes, l)[0]
	cur := mustPublish(t, f, "")
	entries := waitApplied(t, nodes, cur)
	last := entries[len(entries)-1]
	if last.Cursor != cur || last.Kind != fsm.KindPublish || last.Target != "t" || string(last.Args) != "[1]" || last.Err != nil {
		t.Errorf("last entry %+v, want the publish at %s", last, cur)
	}
	if first := entries[0]; first.Kind != fsm.KindClusterInit || first.ClusterID != epoch {
		t.Errorf("first entry %+v, want the cluster-init of %s", first, epoch)
	}
	t.Logf("publish on follower %s (leader %s) got cursor %s", f.id, l.id, cur.Format(epoch))
}

func TestNode_FiveNodesThreeVoters(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes := startCluster(t, 5, nil)
	cfg := waitMembership(t, nodes, 3, 2)
	t.Logf("configuration %s", formatConfig(cfg))

	// Publish from every node, voters and non-voters alike, in turn.
	var ids []string
	var last fsm.Cursor
	for i := range 10 {
		n := nodes[i%len(nodes)]
		id := fmt.Sprintf("five-%d", i)
		cur := mustPublish(t, n, id)
		if !last.Less(cur) {
			t.Fatalf("publish %d on %s got cursor %s, not after %s", i, n.id, cur, last)
		}
		last = cur
		ids = append(ids, id)
	}
	entries := waitApplied(t, nodes, last)
	seen := map[string]int{}
	for _, e := range entries {
		seen[e.ID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("command %s is %d times in the stream, want once", id, seen[id])
		}
	}
}

func TestNode_ForwardRetryIsDeduplicated(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes := startCluster(t, 3, nil)
	l := waitLeader(t, nodes)
	fs := followers(nodes, l)

	t.Run("Publish", func(t *testing.T) {
		const id = "dup-publish"
		first := mustPublish(t, fs[0], id)
		for _, n := range []*testNode{fs[0], fs[1], l} {
			if again := mustPublish(t, n, id); again != first {
				t.Errorf("same id again on %s got cursor %s, first got %s", n.id, again, first)
			}
		}
		checkOnce(t, nodes, id, first)
	})

	// The retry forward does after a broken connection: the very same batch
	// sent to the leader twice over the internal RPC.
	t.Run("RPC", func(t *testing.T) {
		const id = "dup-rpc"
		batch := fsm.EncodeBatch([]fsm.Command{testCommand(id)})
		c, err := fs[0].node.rpcTo(l.raftAddr)
		if err != nil {
			t.Fatalf("rpcTo leader: %v", err)
		}
		var got [2]fsm.Result
		for i := range got {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			f, err := c.call(ctx, rpcForward, batch)
			cancel()
			if err != nil {
				t.Fatalf("forward #%d: %v", i+1, err)
			}
			if f.typ != rpcForwardOK {
				t.Fatalf("forward #%d: response type %d (%s), want rpcForwardOK", i+1, f.typ, f.body)
			}
			res, err := decodeResults(f.body)
			if err != nil || len(res) != 1 {
				t.Fatalf("forward #%d: results %+v, %v", i+1, res, err)
			}
			got[i] = res[0]
		}
		if got[0].Duplicate || !got[1].Duplicate || got[0].Cursor != got[1].Cursor || got[0].Err != nil || got[1].Err != nil {
			t.Errorf("results %+v, want the same cursor, the second marked duplicate", got)
		}
		checkOnce(t, nodes, id, got[0].Cursor)
	})

	// A deposed leader's re-forward keeps the time a leader gave its
	// commands: one stamped too long ago is refused, however late it comes;
	// a plain forward is restamped by the leader and applied.
	t.Run("Stamped", func(t *testing.T) {
		c, err := fs[0].node.rpcTo(l.raftAddr)
		if err != nil {
			t.Fatalf("rpcTo leader: %v", err)
		}
		old := time.Now().Add(-2 * fsm.MaxCommandAge).UnixNano()
		for _, tc := range []struct {
			typ  byte
			id   string
			want error
		}{{rpcForwardStamped, "stamped-late", fsm.ErrExpired}, {rpcForward, "plain-late", nil}} {
			cmd := testCommand(tc.id)
			cmd.Time = old
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			f, err := c.call(ctx, tc.typ, fsm.EncodeBatch([]fsm.Command{cmd}))
			cancel()
			if err != nil || f.typ != rpcForwardOK {
				t.Fatalf("%s: %v, response type %d (%s)", tc.id, err, f.typ, f.body)
			}
			res, err := decodeResults(f.body)
			if err != nil || len(res) != 1 || res[0].Err != tc.want {
				t.Errorf("%s: results %+v, %v; want outcome %v", tc.id, res, err, tc.want)
			}
		}
	})
}

// checkOnce publishes a marker, waits until every node applied it and checks
// that command id is in every node's stream exactly once, at cur.
func checkOnce(t *testing.T, nodes []*testNode, id string, cur fsm.Cursor) {
	t.Helper()
	marker := mustPublish(t, nodes[0], "")
	entries := waitApplied(t, nodes, marker)
	var at []fsm.Cursor
	for _, e := range entries {
		if e.ID == id {
			at = append(at, e.Cursor)
		}
	}
	if len(at) != 1 || at[0] != cur {
		t.Errorf("command %s in the stream at %v, want once at %s", id, at, cur)
	}
}

func TestNode_LeaderFailover(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes := startCluster(t, 3, nil)
	old := waitLeader(t, nodes)
	mustPublish(t, old, "")
	survivors := followers(nodes, old)

	// Watch for the new leader while the publish below waits for it.
	elected := make(chan time.Duration, 1)
	stopWatch := make(chan struct{})
	var wg sync.WaitGroup
	killed := time.Now()
	old.kill(t)
	closed := time.Since(killed)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if leader(survivors) != nil {
				elected <- time.Since(killed)
				return
			}
			select {
			case <-tick.C:
			case <-stopWatch:
				return
			}
		}
	}()
	defer func() { close(stopWatch); wg.Wait() }()

	var cur fsm.Cursor
	attempts := 0
	waitFor(t, "a publish on a survivor after the leader was killed", func() error {
		attempts++
		c, err := publish(survivors[0], "")
		if err != nil {
			t.Logf("publish attempt %d on %s: %v", attempts, survivors[0].id, err)
			return err
		}
		cur = c
		return nil
	})
	commit := time.Since(killed)
	var election time.Duration
	select {
	case election = <-elected:
	case <-time.After(waitTimeout):
		t.Fatal("publish succeeded but no survivor is leader")
	}
	nl := waitLeader(t, survivors)
	t.Logf("failover: %s killed (Close took %s); %s leader after %s; first commit from %s after %s (%d attempt(s))",
		old.id, closed.Round(time.Millisecond), nl.id, election.Round(time.Millisecond),
		survivors[0].id, commit.Round(time.Millisecond), attempts)
	waitApplied(t, survivors, cur)

	// The killed node comes back on its data dir and catches up.
	back := old.restart(t, survivors[0].gossipAddr)
	if !back.node.HadState() {
		t.Error("restarted node: HadState() = false")
	}
	nodes = append(append([]*testNode(nil), survivors...), back)
	waitFor(t, "the leader to see the restarted node alive", func() error {
		l := leader(nodes)
		if l == nil {
			return errors.New("no single leader")
		}
		return seesAlive(l, back)
	})
	waitMembership(t, nodes, 3, 0)
	cur2 := mustPublish(t, survivors[1], "")
	waitApplied(t, nodes, cur2)
	t.Logf("restarted %s caught up to %s", back.id, cur2)
}

func TestNode_GracefulLeave(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	// The spare must be promotable when the voter leaves: with nobody to
	// promote, the leader rightly demotes a voter rather than keep two.
	nodes := startCluster(t, 4, func(o *nodeOpts) { o.noStabilize = true })
	cfg := waitMembership(t, nodes, 3, 1)
	l := waitLeader(t, nodes)
	var spare, follower *testNode
	for _, n := range followers(nodes, l) {
		switch {
		case cfg[n.id] == raft.Nonvoter:
			spare = n
		case follower == nil:
			follower = n
		}
	}
	t.Logf("leader %s, voter follower %s, spare %s", l.id, follower.id, spare.id)
	demotions := func() int {
		k := 0
		for _, n := range nodes {
			k += len(n.logs.matching("demoting a voter"))
		}
		return k
	}

	// A voter follower leaves: it is removed, the spare takes its vote.
	start := time.Now()
	if err := follower.stop(t); err != nil {
		t.Fatalf("Leave of follower %s: %v", follower.id, err)
	}
	left := time.Since(start)
	cfg = waitMembership(t, nodes, 3, 0)
	t.Logf("follower %s left in %s; 3 voters again after %s: %s", follower.id, left.Round(time.Millisecond),
		time.Since(start).Round(time.Millisecond), formatConfig(cfg))
	if d := demotions(); d != 0 {
		t.Errorf("a voter was demoted %d time(s) while a spare could replace the one that left", d)
	}
	waitApplied(t, up(nodes), mustPublish(t, spare, ""))

	// The leader leaves: it hands leadership over first, then is removed.
	start = time.Now()
	if err := l.stop(t); err != nil {
		t.Fatalf("Leave of leader %s: %v", l.id, err)
	}
	left = time.Since(start)
	if lines := l.logs.matching("leadership transfer before leaving failed"); len(lines) > 0 {
		t.Errorf("the leader did not hand over leadership: %v", lines)
	}
	if lines := l.logs.matching("lost leadership"); len(lines) == 0 {
		t.Error("the leaving leader never logged losing leadership")
	}
	rest := up(nodes)
	nl := waitLeader(t, rest)
	if nl == l {
		t.Fatal("the old leader still leads")
	}
	// Two nodes are left, so two voters would be even: one is demoted.
	cfg = waitMembership(t, nodes, 1, 1)
	t.Logf("leader %s left in %s; new leader %s; %s", l.id, left.Round(time.Millisecond), nl.id, formatConfig(cfg))
	if cfg[nl.id] != raft.Voter {
		t.Errorf("new leader %s is not the voter: %s", nl.id, formatConfig(cfg))
	}
	for _, n := range rest {
		waitApplied(t, rest, mustPublish(t, n, ""))
	}
}

func TestNode_ReapDead(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes := startCluster(t, 4, nil)
	cfg := waitMembership(t, nodes, 3, 1)
	l := waitLeader(t, nodes)
	var spare, victim *testNode
	for _, n := range followers(nodes, l) {
		switch {
		case cfg[n.id] == raft.Nonvoter:
			spare = n
		case victim == nil:
			victim = n
		}
	}
	killed := time.Now()
	victim.kill(t)
	cfg = waitMembership(t, nodes, 3, 0)
	t.Logf("dead voter %s replaced by %s after %s (ReapAfter %s): %s", victim.id, spare.id,
		time.Since(killed).Round(time.Millisecond), testReapAfter, formatConfig(cfg))
	if cfg[spare.id] != raft.Voter {
		t.Errorf("spare %s not promoted: %s", spare.id, formatConfig(cfg))
	}
	reaped := 0
	for _, n := range nodes {
		reaped += len(n.logs.matching("removing a server", "member="+victim.id, "dead for more than"))
	}
	if reaped == 0 {
		t.Errorf("no leader logged reaping %s", victim.id)
	}

	// Remove first, then promote (3 -> 2 -> 3), never 4 voters with one dead.
	removedAt, promotedAt := -1, -1
	for i, c := range configHistory(t, spare) {
		if removedAt < 0 && !hasServer(c, victim.id) {
			removedAt = i
		}
		for _, s := range c.Servers {
			if promotedAt < 0 && string(s.ID) == spare.id && s.Suffrage == raft.Voter {
				promotedAt = i
			}
		}
		if v, _ := countVoters(suffrages(c)); v > 3 {
			t.Errorf("configuration #%d has %d voters: %+v", i, v, c)
		}
	}
	if removedAt < 0 || promotedAt < 0 || removedAt > promotedAt {
		t.Errorf("dead voter removed in configuration #%d, spare promoted in #%d: want removal first", removedAt, promotedAt)
	}
	waitApplied(t, up(nodes), mustPublish(t, spare, ""))
}

func suffrages(c raft.Configuration) map[string]raft.ServerSuffrage {
	out := map[string]raft.ServerSuffrage{}
	for _, s := range c.Servers {
		out[string(s.ID)] = s.Suffrage
	}
	return out
}

func TestNode_ForeignClusterRefused(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	// B, a one-node cluster of its own, restarts with A as its seed, as
	// cmd/raftplane would with -join.
	a, b, epochA, epochB := foreignPair(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.node.WaitReady(ctx); err != nil {
		t.Fatalf("B WaitReady: %v", err)
	}
	if got := b.machine.Epoch(); got != epochB {
		t.Fatalf("B's epoch after restart %s, want its own %s (A's is %s)", got, epochB, epochA)
	}
	waitFor(t, "B's CheckPeers to refuse A's cluster", func() error {
		err := b.node.CheckPeers(b.agent.Members())
		if !errors.Is(err, ErrForeignCluster) {
			return fmt.Errorf("CheckPeers = %v", err)
		}
		t.Logf("CheckPeers: %v", err)
		return nil
	})
	waitRefused(t, a, b)
	// Never means never: not in A's configuration now, nor in any
	// configuration A's log ever held; and B's log is B's alone.
	if c, err := servers(a); err != nil || len(c) != 1 {
		t.Errorf("A's configuration %s (%v), want only a", formatConfig(c), err)
	}
	for i, c := range configHistory(t, a) {
		if hasServer(c, "b") {
			t.Errorf("A's configuration #%d included B: %+v", i, c)
		}
	}
	if lines := a.logs.matching("adding a member", "member=b"); len(lines) > 0 {
		t.Errorf("A tried to add B: %v", lines)
	}
	for i, c := range configHistory(t, b) {
		if hasServer(c, "a") {
			t.Errorf("B's Raft log holds A's configuration #%d: %+v", i, c)
		}
	}
}

// A node that gossips before saying which cluster its data belongs to (the
// wiring before the cluster id was read at open) looks new, so A's leader
// may add it; once B says, A must take it out again.
func TestNode_ForeignClusterAdvertisedLateIsRemoved(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	a, b, _, _ := foreignPair(t, true)
	waitRefused(t, a, b)
	waitFor(t, "B out of A's configuration", func() error {
		c, err := servers(a)
		if err != nil {
			return err
		}
		if _, ok := c["b"]; ok {
			return fmt.Errorf("A has %s", formatConfig(c))
		}
		return nil
	})
	added := len(a.logs.matching("adding a member", "member=b")) > 0
	mixed := false
	for _, c := range configHistory(t, b) {
		mixed = mixed || hasServer(c, "a")
	}
	// B has data, so until it says which cluster that data belongs to, no
	// leader adds it: the two logs never mix.
	if added || mixed {
		t.Fatalf("A added B before it advertised its cluster: %v; A's entries reached B's Raft log: %v", added, mixed)
	}
}

// foreignPair starts two independent one-node clusters A and B, then
// restarts B on its data with A's gossip address as its seed and waits
// until B's gossip joined A's.
func foreignPair(t *testing.T, lateClusterID bool) (a, b *testNode, epochA, epochB string) {
	t.Helper()
	a = startNode(t, nodeOpts{id: "a"})
	b = startNode(t, nodeOpts{id: "b"})
	epochA, epochB = waitReady(t, a), waitReady(t, b)
	if epochA == epochB {
		t.Fatalf("two clusters with the same id %s", epochA)
	}
	mustPublish(t, a, "")
	mustPublish(t, b, "")
	b.kill(t)
	b = b.restartWith(t, func(o *nodeOpts) {
		o.seeds = []string{a.gossipAddr}
		o.lateClusterID = lateClusterID
	})
	select {
	case <-b.agent.Joined():
	case <-time.After(waitTimeout):
		t.Fatal("B never joined A's gossip")
	}
	return a, b, epochA, epochB
}

// waitRefused waits until A's leader has refused B as a member of another
// cluster, then lets A commit an entry (a few more reconcile passes).
func waitRefused(t *testing.T, a, b *testNode) {
	t.Helper()
	waitFor(t, "A to refuse B", func() error {
		if len(a.logs.matching("refusing a member of another cluster", "member="+b.id)) == 0 {
			return errors.New("no refusal logged yet")
		}
		return nil
	})
	mustPublish(t, a, "")
}

func TestNode_LateSeed(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	seed := reservePort(t)
	n2 := startNode(t, nodeOpts{id: "n2", seeds: []string{seed}, debugLog: true})
	waitFor(t, "n2 to fail a join attempt", func() error {
		if len(n2.logs.matching("join attempt failed")) == 0 {
			return errors.New("no failed attempt yet")
		}
		return nil
	})
	if n2.machine.Epoch() != "" {
		t.Fatal("n2 has an epoch before any cluster exists")
	}

	start := time.Now()
	n1 := startNode(t, nodeOpts{id: "n1", gossipBind: seed})
	if n1.gossipAddr != seed {
		t.Fatalf("n1 gossips on %s, want the reserved %s", n1.gossipAddr, seed)
	}
	nodes := []*testNode{n1, n2}
	waitMembership(t, nodes, 1, 1)
	epoch := waitReady(t, nodes...)
	t.Logf("n2 joined %s cluster %s %s after n1 started", seed, epoch, time.Since(start).Round(time.Millisecond))
	if n2.node.HadState() || len(n2.logs.matching("bootstrapped")) > 0 {
		t.Error("n2 bootstrapped while waiting for its seed")
	}
	waitApplied(t, nodes, mustPublish(t, n2, ""))
}

func TestNode_NoLeaderHoldTimeout(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	const hold = time.Second
	nodes := startCluster(t, 3, func(o *nodeOpts) { o.hold = hold })
	l := waitLeader(t, nodes)
	fs := followers(nodes, l)
	survivor := fs[0]
	mustPublish(t, survivor, "")
	l.kill(t)
	fs[1].kill(t)

	// The outcome is always ErrNoLeader: either no leader is known for the
	// whole hold (waitLeader), or the forward to the dead leader keeps
	// failing until the hold ends. When the last forward reached a node that
	// is no longer the leader, ErrNotLeader is wrapped as well.
	// The hold, not the caller's deadline, ends the Publish: the outcome
	// shows it (ErrNoLeader with the caller's context still live), where a
	// time limit would only say how busy the machine was.
	try := func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		start := time.Now()
		_, err := survivor.node.Publish(ctx, testCommand(""))
		t.Logf("Publish failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
		if !errors.Is(err, ErrNoLeader) {
			t.Errorf("Publish error %v, want one wrapping ErrNoLeader", err)
		}
		if errors.Is(err, ErrNotLeader) {
			t.Logf("the error also wraps ErrNotLeader")
		}
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Publish ran to the caller's deadline (%s), want it ended by HoldTimeout (%s): %v", waitTimeout, hold, err)
		}
	}
	t.Run("LeaderJustDied", try)
	waitFor(t, "the survivor to forget the dead leader", func() error {
		if addr, id := survivor.node.raft.LeaderWithID(); addr != "" {
			return fmt.Errorf("survivor still names leader %s", id)
		}
		return nil
	})
	t.Run("NoLeaderKnown", try)
}

// TestNode_CloseLeaksNothing counts every goroutine of the process, not
// only its own (checkGoroutines): it runs alone, never in parallel.
func TestNode_CloseLeaksNothing(t *testing.T) {
	base := settledGoroutines()
	nodes := startCluster(t, 3, nil)
	l := waitLeader(t, nodes)
	fs := followers(nodes, l)
	waitApplied(t, nodes, mustPublish(t, fs[0], "")) // exercises the forward RPC
	if _, err := fs[0].node.peerStats(context.Background(), l.raftAddr); err != nil {
		t.Fatalf("peerStats: %v", err)
	}
	_ = fs[0].node.ClusterStatus(context.Background())
	if err := fs[1].stop(t); err != nil {
		t.Fatalf("Leave of %s: %v", fs[1].id, err)
	}
	fs[0].kill(t)
	l.kill(t)

	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			t.Logf("goroutines back to %d (baseline %d)", n, base)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutine leak: %d running, %d before the test\n%s", n, base, filterDump(goroutineDump()))
		}
		<-tick.C
	}
}

// filterDump drops the testing framework's own goroutines from a dump.
func filterDump(d string) string {
	var keep []string
	for _, g := range strings.Split(d, "\n\n") {
		if strings.Contains(g, "testing.(*T).Run") && !strings.Contains(g, "cluster.") {
			continue
		}
		keep = append(keep, g)
	}
	return strings.Join(keep, "\n\n")
}

// TestNode_ReplacedAtSameAddress: a voter dies for good and a brand-new
// node (new id, empty data) starts at its Raft address, as a replaced host
// does. The leader removes the old id at once, before adding the new one
// (plan.go: addressHolder): kept in the configuration, the old id's
// replication would reach the new process and feed it the old server's
// stream (the chaos suite once saw the new node install an older snapshot
// meant for the old id, and lose acknowledged messages from its history).
// The cluster converges with the new node, which serves the whole stream.
func TestNode_ReplacedAtSameAddress(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes := startCluster(t, 3, nil)
	l := waitLeader(t, nodes)
	for i := range 20 {
		mustPublish(t, nodes[i%3], fmt.Sprintf("before-%d", i))
	}
	victim := followers(nodes, l)[0]
	addr := victim.raftAddr
	victim.kill(t)
	fresh := startNode(t, nodeOpts{id: "n9", raftBind: addr, seeds: []string{l.gossipAddr}})
	nodes = append(nodes, fresh)
	waitFor(t, "the leader to remove "+victim.id+" for the new node at its address", func() error {
		if lines := l.logs.matching("its Raft address " + addr + " is now n9's"); len(lines) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	cfg := waitMembership(t, nodes, 3, 0)
	if _, ok := cfg[victim.id]; ok {
		t.Fatalf("%s is still in the configuration: %s", victim.id, formatConfig(cfg))
	}
	last := mustPublish(t, fresh, "after")
	entries := waitApplied(t, up(nodes), last)
	n := 0
	for _, e := range entries {
		if e.Kind == fsm.KindPublish {
			n++
		}
	}
	if n != 21 {
		t.Errorf("%d publishes in the stream every node serves, want 21", n)
	}
}
