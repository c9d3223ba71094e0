package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/gossip"
	"github.com/raftplane/raftplane/internal/testnet"
)

// Generous deadlines: the test machine has 2 busy cores and runs -race with
// several Raft nodes and memberlists in one process.
const (
	waitTimeout = 45 * time.Second
	pollEvery   = 20 * time.Millisecond
	closeWithin = 30 * time.Second
)

// Fast timings for loopback clusters (see STYLE.md practice 6: start from the
// defaults and shrink the timings).
const (
	testHeartbeat   = 300 * time.Millisecond
	testLease       = 100 * time.Millisecond
	testReapAfter   = 2 * time.Second
	testReconcile   = 200 * time.Millisecond
	testStabilize   = 300 * time.Millisecond
	testHoldTimeout = 5 * time.Second
)

// nodeOpts says how startNode builds a node. Zero fields take the defaults.
type nodeOpts struct {
	id         string
	dir        string   // data dir; default a new t.TempDir()
	raftBind   string   // default 127.0.0.1:0
	gossipBind string   // default 127.0.0.1:0
	seeds      []string // gossip addresses to join; none means Bootstrap
	maxVoters  int      // default 3
	hold       time.Duration
	reapAfter  time.Duration
	// noStabilize sets StabilizeTime to 0: a caught-up non-voter may be
	// promoted at once.
	noStabilize bool
	// debugLog records debug lines too (they never go to t.Log).
	debugLog bool
	// lateClusterID skips advertising the cluster id found in the data
	// dir before gossip starts, so a restarted node first gossips cluster ""
	// until its log replays (cmd/raftplane's wiring before 7a7e6cd).
	lateClusterID bool
	// tweak, if set, changes the cluster config last (peer TLS, say).
	tweak func(*Config)
}

// testNode is one node wired the way cmd/raftplane wires it: an FSM, a
// gossip agent and a cluster.Node whose Members is the agent. A node on
// the in-memory network (memnet_test.go) has no agent: its Members is the
// test's.
type testNode struct {
	t          *testing.T
	id         string
	opts       nodeOpts
	machine    *fsm.Machine
	agent      *gossip.Agent
	node       *Node
	dir        string
	raftAddr   string
	gossipAddr string
	logs       *logRecorder

	mu   sync.Mutex
	down bool
}

func (tn *testNode) String() string { return tn.id }

func (tn *testNode) isUp() bool {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return !tn.down
}

// markDown reports whether the node was up, marking it down.
func (tn *testNode) markDown() bool {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	was := !tn.down
	tn.down = true
	return was
}

func testClusterConfig(o nodeOpts) Config {
	cfg := DefaultConfig()
	cfg.NodeID = o.id
	cfg.DataDir = o.dir
	cfg.RaftBind = o.raftBind
	cfg.Bootstrap = len(o.seeds) == 0
	cfg.HeartbeatTimeout = testHeartbeat
	cfg.ElectionTimeout = testHeartbeat
	cfg.LeaderLeaseTimeout = testLease
	// The log stays in the page cache across an in-process restart; fsync
	// only slows the busy test machine down.
	cfg.NoSync = true
	cfg.MaxVoters = o.maxVoters
	cfg.ReapAfter = o.reapAfter
	cfg.ReconcileInterval = testReconcile
	cfg.StabilizeTime = testStabilize
	if o.noStabilize {
		cfg.StabilizeTime = 0
	}
	cfg.HoldTimeout = o.hold
	return cfg
}

// testGossipConfig mirrors gossip's own test timings: the local (not LAN)
// profile with fast probes, RetransmitMult 4 so a change reaches every node
// of a small cluster, and a 2s push/pull.
func testGossipConfig(o nodeOpts, lg *slog.Logger) gossip.Config {
	gc := gossip.DefaultConfig()
	gc.LAN = false
	gc.BindAddr = o.gossipBind
	gc.Meta = gossip.Meta{ID: o.id, Version: gossip.MetaVersion}
	gc.Label = "raftplane"
	gc.ProbeInterval = 200 * time.Millisecond
	gc.ProbeTimeout = 100 * time.Millisecond
	gc.GossipInterval = 20 * time.Millisecond
	gc.SuspicionMult = 4
	gc.RetransmitMult = 4
	gc.PushPullInterval = 2 * time.Second
	gc.DeadNodeReclaimTime = time.Second
	gc.JoinRetryMin = 20 * time.Millisecond
	gc.JoinRetryMax = 200 * time.Millisecond
	gc.Logger = lg
	return gc
}

// startNode starts a node the way cmd/raftplane does: fsm.New, a gossip
// agent, cluster.New with Members = agent and Bootstrap = no seeds,
// node.Open, the data's cluster id into the gossip meta, agent.Start,
// agent.Join(seeds). The gossip meta carries the Raft address the node
// really listens on (port 0 resolved). The node is killed at the end of the
// test if it is still up.
func startNode(t *testing.T, o nodeOpts) *testNode {
	t.Helper()
	if o.id == "" {
		t.Fatal("startNode: no id")
	}
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.raftBind == "" {
		o.raftBind = "127.0.0.1:0"
	}
	if o.gossipBind == "" {
		o.gossipBind = "127.0.0.1:0"
	}
	if o.maxVoters == 0 {
		o.maxVoters = 3
	}
	if o.hold == 0 {
		o.hold = testHoldTimeout
	}
	if o.reapAfter == 0 {
		o.reapAfter = testReapAfter
	}
	rec := newLogRecorder(t, o.id, o.debugLog)
	lg := slog.New(rec)

	fc := fsm.DefaultConfig()
	fc.Logger = lg.With("component", "fsm")
	machine, err := fsm.New(fc)
	if err != nil {
		t.Fatalf("%s: fsm.New: %v", o.id, err)
	}
	agent, err := gossip.New(testGossipConfig(o, lg.With("component", "gossip")))
	if err != nil {
		t.Fatalf("%s: gossip.New: %v", o.id, err)
	}
	cfg := testClusterConfig(o)
	if o.tweak != nil {
		o.tweak(&cfg)
	}
	cfg.Members = agent
	cfg.Logger = lg.With("component", "cluster")
	node, err := New(cfg, machine)
	if err != nil {
		t.Fatalf("%s: cluster.New: %v", o.id, err)
	}
	if err := node.Open(); err != nil {
		t.Fatalf("%s: Open: %v", o.id, err)
	}
	tn := &testNode{t: t, id: o.id, opts: o, machine: machine, agent: agent, node: node, dir: o.dir,
		raftAddr: node.RaftAddr(), logs: rec}
	t.Cleanup(func() { tn.kill(t) })
	// Before Start the change is only kept, so the first gossip already
	// carries the real Raft address.
	if err := agent.UpdateMeta(func(m *gossip.Meta) { m.RaftAddr, m.HasData = tn.raftAddr, node.HadState() }); err != nil {
		t.Fatalf("%s: UpdateMeta: %v", o.id, err)
	}
	// As cmd/raftplane: say which cluster the data belongs to before anyone
	// can see this node.
	if id := node.LocalClusterID(); id != "" && !o.lateClusterID {
		if err := agent.UpdateMeta(func(m *gossip.Meta) { m.ClusterID = id }); err != nil {
			t.Fatalf("%s: UpdateMeta: %v", o.id, err)
		}
	}
	if err := agent.Start(); err != nil {
		t.Fatalf("%s: agent.Start: %v", o.id, err)
	}
	tn.gossipAddr = agent.LocalAddr()
	if len(o.seeds) > 0 {
		agent.Join(o.seeds)
	}
	t.Logf("started %s: raft %s gossip %s seeds %v had_state %v", o.id, tn.raftAddr, tn.gossipAddr, o.seeds, node.HadState())
	return tn
}

// restart starts the node again on its data dir and its previous Raft and
// gossip addresses, joining through seeds. The old instance must be down.
func (tn *testNode) restart(t *testing.T, seeds ...string) *testNode {
	t.Helper()
	return tn.restartWith(t, func(o *nodeOpts) { o.seeds = seeds })
}

// restartWith is restart with changed options.
func (tn *testNode) restartWith(t *testing.T, tweak func(*nodeOpts)) *testNode {
	t.Helper()
	if tn.isUp() {
		t.Fatalf("restart of %s, which is still up", tn.id)
	}
	o := tn.opts
	o.dir, o.raftBind, o.gossipBind, o.seeds = tn.dir, tn.raftAddr, tn.gossipAddr, nil
	tweak(&o)
	return startNode(t, o)
}

// stop shuts the node down gracefully, as cmd/raftplane does: node.Leave,
// agent.Leave, node.Close, agent.Close. It returns node.Leave's error.
func (tn *testNode) stop(t *testing.T) error {
	t.Helper()
	if !tn.markDown() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeWithin)
	defer cancel()
	leaveErr := tn.node.Leave(ctx)
	if tn.agent != nil {
		if err := tn.agent.Leave(2 * time.Second); err != nil {
			t.Logf("%s: agent.Leave: %v", tn.id, err)
		}
	}
	if err := tn.node.Close(ctx); err != nil {
		t.Errorf("%s: node.Close: %v; goroutines:\n%s", tn.id, err, goroutineDump())
	}
	if tn.agent != nil {
		if err := tn.agent.Close(); err != nil {
			t.Errorf("%s: agent.Close: %v", tn.id, err)
		}
	}
	t.Logf("stopped %s gracefully (leave: %v)", tn.id, leaveErr)
	return leaveErr
}

// kill simulates a crash as well as one can in-process: gossip goes silent
// without a leave message, then Raft shuts down without handing anything
// over. Nothing is announced to the other nodes.
func (tn *testNode) kill(t *testing.T) {
	t.Helper()
	if !tn.markDown() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeWithin)
	defer cancel()
	if tn.agent != nil {
		if err := tn.agent.Close(); err != nil {
			t.Errorf("%s: agent.Close: %v", tn.id, err)
		}
	}
	if err := tn.node.Close(ctx); err != nil {
		t.Errorf("%s: node.Close: %v; goroutines:\n%s", tn.id, err, goroutineDump())
	}
	t.Logf("killed %s", tn.id)
}

// waitFor polls cond until it returns nil, failing the test after
// waitTimeout with cond's last error.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	waitForWithin(t, waitTimeout, what, cond)
}

func waitForWithin(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		<-tick.C
	}
}

// up returns the nodes still running.
func up(nodes []*testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if n != nil && n.isUp() {
			out = append(out, n)
		}
	}
	return out
}

// leader returns the one running node in the Leader state, or nil when
// there is none or (during a change of leader) more than one.
func leader(nodes []*testNode) *testNode {
	var l *testNode
	for _, n := range up(nodes) {
		if n.node.raft.State() == raft.Leader {
			if l != nil {
				return nil
			}
			l = n
		}
	}
	return l
}

// followers returns the running nodes other than l.
func followers(nodes []*testNode, l *testNode) []*testNode {
	var out []*testNode
	for _, n := range up(nodes) {
		if n != l {
			out = append(out, n)
		}
	}
	return out
}

// waitLeader waits until exactly one running node leads and every running
// node names it as the leader.
func waitLeader(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var l *testNode
	waitFor(t, "one leader all nodes agree on", func() error {
		l = leader(nodes)
		if l == nil {
			return errors.New("no single leader")
		}
		for _, n := range up(nodes) {
			if _, id := n.node.raft.LeaderWithID(); string(id) != l.id {
				return fmt.Errorf("%s names leader %q, want %s", n.id, id, l.id)
			}
		}
		return nil
	})
	return l
}

// servers returns a node's latest Raft configuration by server id.
func servers(tn *testNode) (map[string]raft.ServerSuffrage, error) {
	f := tn.node.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	out := map[string]raft.ServerSuffrage{}
	for _, s := range f.Configuration().Servers {
		out[string(s.ID)] = s.Suffrage
	}
	return out, nil
}

func countVoters(cfg map[string]raft.ServerSuffrage) (voters, nonvoters int) {
	for _, s := range cfg {
		if s == raft.Voter {
			voters++
		} else {
			nonvoters++
		}
	}
	return voters, nonvoters
}

func formatConfig(cfg map[string]raft.ServerSuffrage) string {
	ids := make([]string, 0, len(cfg))
	for id := range cfg {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%s", id, cfg[id])
	}
	return "{" + b.String() + "}"
}

// waitMembership waits until a leader's Raft configuration holds exactly
// the running nodes, with the given numbers of voters and non-voters, and
// every running node has that same configuration. It returns it.
func waitMembership(t *testing.T, nodes []*testNode, voters, nonvoters int) map[string]raft.ServerSuffrage {
	t.Helper()
	var cfg map[string]raft.ServerSuffrage
	waitFor(t, fmt.Sprintf("%d voters and %d non-voters", voters, nonvoters), func() error {
		l := leader(nodes)
		if l == nil {
			return errors.New("no single leader")
		}
		c, err := servers(l)
		if err != nil {
			return err
		}
		live := up(nodes)
		if len(c) != len(live) {
			return fmt.Errorf("leader %s has %s, want the %d running nodes", l.id, formatConfig(c), len(live))
		}
		for _, n := range live {
			if _, ok := c[n.id]; !ok {
				return fmt.Errorf("leader %s has %s, without %s", l.id, formatConfig(c), n.id)
			}
		}
		if v, nv := countVoters(c); v != voters || nv != nonvoters {
			return fmt.Errorf("leader %s has %s", l.id, formatConfig(c))
		}
		for _, n := range live {
			nc, err := servers(n)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(nc, c) {
				return fmt.Errorf("%s has %s, leader %s has %s", n.id, formatConfig(nc), l.id, formatConfig(c))
			}
		}
		cfg = c
		return nil
	})
	return cfg
}

// waitReady waits until every given node has the cluster id and they all
// have the same one, and returns it.
func waitReady(t *testing.T, nodes ...*testNode) string {
	t.Helper()
	var epoch string
	waitFor(t, "the same epoch everywhere", func() error {
		epoch = ""
		for _, n := range nodes {
			e := n.machine.Epoch()
			switch {
			case e == "":
				return fmt.Errorf("%s has no epoch yet", n.id)
			case epoch == "":
				epoch = e
			case e != epoch:
				return fmt.Errorf("%s has epoch %s, others %s", n.id, e, epoch)
			}
		}
		return nil
	})
	return epoch
}

// testCommand is the publish the tests append to the log.
func testCommand(id string) fsm.Command {
	return fsm.Command{Kind: fsm.KindPublish, ID: id, Hub: "h", Audience: fsm.AudienceAll, Target: "t", Args: []byte(`[1]`)}
}

// publish publishes testCommand(id) through tn (id "" lets the node pick one).
func publish(tn *testNode, id string) (fsm.Cursor, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return tn.node.Publish(ctx, testCommand(id))
}

func mustPublish(t *testing.T, tn *testNode, id string) fsm.Cursor {
	t.Helper()
	cur, err := publish(tn, id)
	if err != nil {
		t.Fatalf("Publish(%q) on %s: %v", id, tn.id, err)
	}
	if cur.IsZero() {
		t.Fatalf("Publish(%q) on %s returned the zero cursor", id, tn.id)
	}
	return cur
}

// waitApplied waits until every given node's last applied command is at cur
// and then checks they all serve the same stream, which it returns.
func waitApplied(t *testing.T, nodes []*testNode, cur fsm.Cursor) []fsm.Entry {
	t.Helper()
	waitFor(t, "every node to apply "+cur.String(), func() error {
		for _, n := range nodes {
			if last := n.machine.Position().Last; last != cur {
				return fmt.Errorf("%s: last applied %s", n.id, last)
			}
		}
		return nil
	})
	return sameStream(t, nodes)
}

// sameStream checks every node returns the same entries from the start of
// the stream, and returns them.
func sameStream(t *testing.T, nodes []*testNode) []fsm.Entry {
	t.Helper()
	var want []fsm.Entry
	for i, n := range nodes {
		got, err := n.machine.Since(fsm.Cursor{}, 0)
		if err != nil {
			t.Fatalf("%s: Since: %v", n.id, err)
		}
		if i == 0 {
			want = got
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s serves a different stream than %s:\n got %+v\nwant %+v", n.id, nodes[0].id, got, want)
		}
	}
	return want
}

// configHistory returns every configuration entry in the node's Raft log,
// oldest first (the tests never snapshot, so the log starts at index 1).
func configHistory(t *testing.T, tn *testNode) []raft.Configuration {
	t.Helper()
	first, err := tn.node.stores.base.FirstIndex()
	if err != nil {
		t.Fatalf("%s: FirstIndex: %v", tn.id, err)
	}
	last, err := tn.node.stores.base.LastIndex()
	if err != nil {
		t.Fatalf("%s: LastIndex: %v", tn.id, err)
	}
	var out []raft.Configuration
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		if err := tn.node.stores.base.GetLog(i, &l); err != nil {
			t.Fatalf("%s: GetLog(%d): %v", tn.id, i, err)
		}
		if l.Type == raft.LogConfiguration {
			out = append(out, raft.DecodeConfiguration(l.Data))
		}
	}
	return out
}

func hasServer(c raft.Configuration, id string) bool {
	for _, s := range c.Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// seesAlive reports nil when tn's gossip lists every other node alive.
func seesAlive(tn *testNode, others ...*testNode) error {
	ms := map[string]gossip.Member{}
	for _, m := range tn.agent.Members() {
		ms[m.ID] = m
	}
	for _, o := range others {
		m, ok := ms[o.id]
		if !ok || m.State != gossip.StateAlive {
			return fmt.Errorf("%s sees %s as %v (known %v)", tn.id, o.id, m.State, ok)
		}
	}
	return nil
}

// reservePort returns a 127.0.0.1 address whose port was free a moment ago
// and that no other test of this process was given (testnet).
func reservePort(t *testing.T) string { return testnet.Addr(t) }

// settledGoroutines waits (bounded) until the goroutine count stops falling,
// so leftovers of earlier tests do not count, and returns it.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	stable := time.Now()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for time.Now().Before(deadline) && time.Since(stable) < time.Second {
		<-tick.C
		if m := runtime.NumGoroutine(); m < n {
			n, stable = m, time.Now()
		}
	}
	return n
}

// checkGoroutines fails the test if, once its cleanups have closed every
// node, a goroutine the test started is still running. Call it first, so
// its cleanup runs last. It labels the test's goroutine (pprof labels pass
// to every goroutine started from it, and on from those), so it counts only
// this test's goroutines: tests that call it may run in parallel.
func checkGoroutines(t *testing.T) {
	t.Helper()
	label := t.Name()
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels(testLabel, label)))
	t.Cleanup(func() {
		pprof.SetGoroutineLabels(context.Background()) // this goroutine is not a leftover
		deadline := time.Now().Add(waitTimeout)
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		for {
			n, dump := labelledGoroutines(label)
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutine leak: %d goroutines of the test still running\n%s", n, dump)
				return
			}
			<-tick.C
		}
	})
}

// testLabel is the pprof label key checkGoroutines marks a test with.
const testLabel = "cluster_test"

// labelledGoroutines counts the goroutines carrying checkGoroutines' label
// for test, and returns their stacks.
func labelledGoroutines(test string) (int, string) {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	want := fmt.Sprintf("%q:%q", testLabel, test) // as the profile prints it
	n := 0
	var dump strings.Builder
	for rec := range strings.SplitSeq(buf.String(), "\n\n") {
		if !strings.Contains(rec, "# labels: ") || !strings.Contains(rec, want) {
			continue
		}
		if strings.Contains(rec, "cluster.(*Node).await.func1") {
			// The one goroutine a closed node leaves by design: the waiter
			// of a future raft never answers because it shut down between
			// the commit and the FSM's apply (see Node.await). It holds
			// nothing but the future.
			continue
		}
		var k int
		if _, err := fmt.Sscanf(rec, "%d @", &k); err == nil {
			n += k
			dump.WriteString(rec)
			dump.WriteString("\n\n")
		}
	}
	return n, dump.String()
}

func goroutineDump() string {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	return buf.String()
}

// logRecorder is a slog.Handler that sends Info and above to t.Log (so
// logs show only for failing tests, or with -v) and keeps every line it
// handles so tests can assert on what a node logged. It goes quiet when the
// test ends: memberlist and raft goroutines may log while winding down.
type logRecorder struct {
	st    *logState
	debug bool
	attrs []slog.Attr
}

type logState struct {
	t     *testing.T
	name  string
	mu    sync.Mutex
	done  bool
	lines []string
}

func newLogRecorder(t *testing.T, name string, debug bool) *logRecorder {
	st := &logState{t: t, name: name}
	t.Cleanup(func() {
		st.mu.Lock()
		st.done = true
		st.mu.Unlock()
	})
	return &logRecorder{st: st, debug: debug}
}

func (h *logRecorder) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.debug
}

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s %s", r.Time.Format("15:04:05.000"), h.st.name, r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s", a)
		return true
	})
	line := b.String()
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	if h.st.done {
		return nil
	}
	h.st.lines = append(h.st.lines, line)
	if r.Level >= slog.LevelInfo {
		h.st.t.Log(line)
	}
	return nil
}

func (h *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRecorder{st: h.st, debug: h.debug, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

// matching returns the recorded lines that contain every one of subs.
func (h *logRecorder) matching(subs ...string) []string {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	var out []string
next:
	for _, l := range h.st.lines {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}
