package cluster

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/gossip"
	"github.com/raftplane/raftplane/internal/memnet"
)

// Clusters on the in-memory network (internal/memnet) with raft's
// in-memory stores: what a real network cannot do in a test, partitions,
// with everything else real (the mux, the RPC, Raft's NetworkTransport,
// peer TLS if configured). Gossip is replaced by memMembers, which shows
// every node alive: a partition here is the network's, not gossip's.

// memHold is the HoldTimeout of the in-memory nodes: a publish on the
// minority side fails after it (ErrNoLeader), so it bounds how long the
// tests wait for those failures.
const memHold = 2 * testHoldTimeout / 5

// memMembers is the gossip view the in-memory nodes share: every node
// registered, alive, with the meta it advertised (UpdateMeta), as gossip
// converges on a network without faults.
type memMembers struct {
	mu    sync.Mutex
	metas map[string]gossip.Meta
	order []string
}

func (m *memMembers) register(meta gossip.Meta) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.metas[meta.ID]; !ok {
		m.order = append(m.order, meta.ID)
	}
	old := m.metas[meta.ID]
	meta.LogFormat = max(meta.LogFormat, old.LogFormat) // advertised by the node already
	meta.ClusterID = cmp.Or(meta.ClusterID, old.ClusterID)
	m.metas[meta.ID] = meta
}

// memberView is one node's Membership: the shared view, its own meta
// updated by UpdateMeta.
type memberView struct {
	m  *memMembers
	id string
}

func (v memberView) Members() []gossip.Member {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	out := make([]gossip.Member, 0, len(v.m.order))
	for _, id := range v.m.order {
		out = append(out, gossip.Member{Meta: v.m.metas[id], State: gossip.StateAlive})
	}
	return out
}

func (v memberView) Events() <-chan gossip.Event { return nil }

func (v memberView) UpdateMeta(f func(*gossip.Meta)) error {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	meta := v.m.metas[v.id]
	meta.ID = v.id
	f(&meta)
	if _, ok := v.m.metas[v.id]; !ok {
		v.m.order = append(v.m.order, v.id)
	}
	v.m.metas[v.id] = meta
	return nil
}

// memCluster is nodes on one in-memory network.
type memCluster struct {
	net     *memnet.Network
	members *memMembers
	nodes   []*testNode
	ips     map[*testNode]string
	// tweak, if set, changes each node's config last (peer TLS, say).
	tweak func(id, ip string, cfg *Config)
}

// newMemNet returns an in-memory network with no node yet. At the end of
// the test, after the nodes are closed, it checks that no connection of
// the network was left open.
func newMemNet(t *testing.T) *memCluster {
	c := &memCluster{net: memnet.New(), members: &memMembers{metas: map[string]gossip.Meta{}}, ips: map[*testNode]string{}}
	t.Cleanup(func() { // registered before any node, so it runs after their kills
		if n := c.net.Conns(); n != 0 {
			t.Errorf("%d connections of the in-memory network left open after every node closed", n)
		}
	})
	return c
}

// newMemCluster starts size nodes, n1 (10.0.0.1) bootstrapping, the
// others joining, and waits until they are all voters with one cluster
// id. tweak, if given, changes each node's config last.
func newMemCluster(t *testing.T, size int, tweak func(id, ip string, cfg *Config)) *memCluster {
	t.Helper()
	c := newMemNet(t)
	c.tweak = tweak
	for i := 1; i <= size; i++ {
		tn := c.start(t, fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.0.%d", i), i == 1, nil)
		if i == 1 {
			waitReady(t, tn)
		}
	}
	waitMembership(t, c.nodes, size, 0)
	waitReady(t, c.nodes...)
	return c
}

// start opens a node at ip:7000 on the network, with new in-memory stores
// unless stores is given, and registers it with the shared gossip view.
func (c *memCluster) start(t *testing.T, id, ip string, bootstrap bool, stores *RaftStores) *testNode {
	t.Helper()
	if stores == nil {
		stores = newMemStores()
	}
	o := nodeOpts{id: id, raftBind: ip + ":7000", maxVoters: 3, hold: memHold, reapAfter: testReapAfter}
	rec := newLogRecorder(t, id, false)
	lg := slog.New(rec)
	fc := fsm.DefaultConfig()
	fc.Logger = lg.With("component", "fsm")
	machine, err := fsm.New(fc)
	if err != nil {
		t.Fatalf("%s: fsm.New: %v", id, err)
	}
	cfg := testClusterConfig(o)
	cfg.DataDir = "" // the stores are in memory
	cfg.RaftStores = stores
	cfg.Network = c.net.Host(ip)
	cfg.Bootstrap = bootstrap
	cfg.Members = memberView{c.members, id}
	cfg.Logger = lg.With("component", "cluster")
	if c.tweak != nil {
		c.tweak(id, ip, &cfg)
	}
	node, err := New(cfg, machine)
	if err != nil {
		t.Fatalf("%s: cluster.New: %v", id, err)
	}
	if err := node.Open(); err != nil {
		t.Fatalf("%s: Open: %v", id, err)
	}
	tn := &testNode{t: t, id: id, opts: o, machine: machine, node: node, raftAddr: node.RaftAddr(), logs: rec}
	t.Cleanup(func() { tn.kill(t) })
	// As cmd/raftplane does before gossip starts: the Raft address, and
	// the cluster the stores belong to.
	c.members.register(gossip.Meta{ID: id, Version: gossip.MetaVersion, RaftAddr: tn.raftAddr,
		HasData: node.HadState(), ClusterID: node.LocalClusterID()})
	c.nodes = append(c.nodes, tn)
	c.ips[tn] = ip
	t.Logf("started %s on the in-memory network at %s", id, tn.raftAddr)
	return tn
}

func newMemStores() *RaftStores {
	st := raft.NewInmemStore()
	return &RaftStores{Logs: st, Stable: st, Snaps: raft.NewInmemSnapshotStore()}
}

// others returns the nodes other than those given.
func others(nodes []*testNode, not ...*testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if !slices.Contains(not, n) {
			out = append(out, n)
		}
	}
	return out
}

// published is a publish the test made and what came of it.
type published struct {
	id  string
	cur fsm.Cursor
}

// checkStream checks every node serves the same stream, holding each of
// want once, in want's order (their cursors' order), and none of lost.
func checkStream(t *testing.T, nodes []*testNode, want []published, lost []string) {
	t.Helper()
	entries := sameStream(t, nodes)
	seen := map[string]int{}
	var order []string
	for _, e := range entries {
		seen[e.ID]++
		order = append(order, e.ID)
	}
	var prev fsm.Cursor
	pos := -1
	for _, p := range want {
		if seen[p.id] != 1 {
			t.Errorf("%s is in the stream %d times, want once", p.id, seen[p.id])
		}
		i := slices.Index(order, p.id)
		if i < pos || p.cur.Less(prev) {
			t.Errorf("%s is out of order in the stream (position %d, cursor %s after %s)", p.id, i, p.cur, prev)
		}
		pos, prev = i, p.cur
	}
	for _, id := range lost {
		if seen[id] != 0 {
			t.Errorf("%s, which failed on the minority side, is in the stream %d times", id, seen[id])
		}
	}
}

// TestPartition_IsolatedLeader: a leader cut from both followers loses
// leadership and cannot commit (its publish fails with ErrNoLeader once
// HoldTimeout ends its retries: the contract of Publish on a node that
// cannot reach a leader); the majority elects a leader and commits;
// healed, the old leader follows the new one and serves the same stream,
// every entry once, in order, without the publish that failed.
func TestPartition_IsolatedLeader(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	c := newMemCluster(t, 3, nil)
	old := waitLeader(t, c.nodes)
	want := []published{{id: "before", cur: mustPublish(t, old, "before")}}
	waitApplied(t, c.nodes, want[0].cur)

	if err := c.net.Isolate(c.ips[old]); err != nil {
		t.Fatal(err)
	}
	t.Logf("isolated the leader %s", old.id)
	// Published at once: the old leader may still take it into its log,
	// where it can never be committed.
	minority := make(chan error, 1)
	go func() { // owned by the test: Publish ends within about 2 HoldTimeouts
		_, err := publish(old, "minority")
		minority <- err
	}()

	majority := others(c.nodes, old)
	nl := waitLeader(t, majority)
	t.Logf("%s leads the majority", nl.id)
	for i := range 3 {
		// Through nl, the other, nl; should one fail (a stall that moves
		// the lead, see FollowerCutFromLeader), the same id through the
		// other: both are on the majority side.
		id := fmt.Sprintf("majority-%d", i)
		cur, err := publishRetrying(t, []*testNode{nl, others(majority, nl)[0]}, i, id)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, published{id: id, cur: cur})
	}
	if err := <-minority; !errors.Is(err, ErrNoLeader) {
		t.Fatalf("publish on the isolated old leader: %v, want ErrNoLeader", err)
	}
	if st := old.node.raft.State(); st == raft.Leader {
		t.Fatalf("the isolated old leader is still %s after its publish failed", st)
	}

	c.net.Heal()
	// The majority's leader, which need not be nl any more: a stall on a
	// loaded machine can move the lead between its two nodes (as the
	// publishes above allow for).
	waitFor(t, "the old leader to follow the majority's leader", func() error {
		if st := old.node.raft.State(); st != raft.Follower {
			return fmt.Errorf("%s is %s", old.id, st)
		}
		_, id := old.node.raft.LeaderWithID()
		for _, n := range majority {
			if string(id) == n.id && n.node.raft.State() == raft.Leader {
				return nil
			}
		}
		return fmt.Errorf("%s names leader %q, not a leader of the majority", old.id, id)
	})
	last := published{id: "healed", cur: mustPublish(t, old, "healed")} // forwarded from the old leader
	want = append(want, last)
	waitApplied(t, c.nodes, last.cur)
	checkStream(t, c.nodes, want, []string{"minority"})
}

// TestPartition_FollowerCutFromLeader: a follower that cannot reach the
// leader but still reaches the third node cannot publish (its forwards
// are retried until HoldTimeout, then fail with ErrNoLeader), while the
// leader and the third node go on committing; healed, the follower
// forwards again and serves the same stream.
func TestPartition_FollowerCutFromLeader(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	c := newMemCluster(t, 3, nil)
	l := waitLeader(t, c.nodes)
	fs := followers(c.nodes, l)
	cut, third := fs[0], fs[1]
	// A forward first, so the follower has an RPC connection to the
	// leader for the partition to cut.
	want := []published{{id: "before", cur: mustPublish(t, cut, "before")}}
	waitApplied(t, c.nodes, want[0].cur)

	if err := c.net.Partition(c.ips[cut], c.ips[l]); err != nil {
		t.Fatal(err)
	}
	t.Logf("partitioned %s from the leader %s; %s reaches both", cut.id, l.id, third.id)
	if _, err := publish(cut, "cut"); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("publish on the follower cut from the leader: %v, want ErrNoLeader", err)
	}
	for i, via := range []*testNode{third, l, third} {
		// Through via, or, should that fail, through the other: a starved
		// test process can lose the leader its lease and the cut node can
		// win the election (CI froze the process for 2.5 s), and then the
		// old leader cannot forward; the third node reaches either.
		id := fmt.Sprintf("majority-%d", i)
		other := l
		if via == l {
			other = third
		}
		cur, err := publishRetrying(t, []*testNode{via, other}, 0, id)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, published{id: id, cur: cur})
	}

	c.net.Heal()
	last := published{id: "healed"}
	waitFor(t, cut.id+" to forward again", func() error {
		cur, err := publish(cut, last.id) // the same id each try: applied once at most
		last.cur = cur
		return err
	})
	want = append(want, last)
	waitApplied(t, c.nodes, last.cur)
	checkStream(t, c.nodes, want, []string{"cut"})
}

// TestInjectedStores: what a node does with stores it was given instead
// of raft.db in DataDir: each feature either works on them or refuses
// with ErrInjectedStores, never silently nothing.
func TestInjectedStores(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(t *testing.T, c *memCluster, n *testNode, st *RaftStores)
	}{
		{"DiscardFresh refuses and leaves the stores alone", func(t *testing.T, _ *memCluster, n *testNode, st *RaftStores) {
			n.kill(t)
			if err := n.node.DiscardFresh(); !errors.Is(err, ErrInjectedStores) {
				t.Fatalf("DiscardFresh: %v, want ErrInjectedStores", err)
			}
			if has, err := raft.HasExistingState(st.Logs, st.Stable, st.Snaps); !has || err != nil {
				t.Fatalf("the stores after DiscardFresh: state %t, %v", has, err)
			}
		}},
		{"Close leaves them open; a node reopened on them finds its state and cluster id", func(t *testing.T, c *memCluster, n *testNode, st *RaftStores) {
			epoch := n.machine.Epoch()
			n.kill(t)
			again := c.start(t, "solo", "10.0.0.1", false, st)
			if !again.node.HadState() || again.node.localCluster != epoch {
				t.Fatalf("reopened: had state %t, cluster id at open %q; want true, %q",
					again.node.HadState(), again.node.localCluster, epoch)
			}
		}},
		{"Backup works (it reads the state machine)", func(t *testing.T, _ *memCluster, n *testNode, _ *RaftStores) {
			var buf bytes.Buffer
			if err := n.node.Backup(context.Background(), &buf); err != nil {
				t.Fatal(err)
			}
			info, err := InspectBackup(&buf)
			if err != nil || info.Header.ClusterID != n.machine.Epoch() || info.Stream.Last.IsZero() {
				t.Fatalf("InspectBackup: %+v, %v", info, err)
			}
		}},
		{"the disk probe writes through the stable store", func(t *testing.T, _ *memCluster, n *testNode, st *RaftStores) {
			n.node.disk.record(enospc, true)
			if err := n.node.Ready(waitTimeout); !errors.Is(err, ErrDiskFull) {
				t.Fatalf("Ready with the stores failing: %v, want ErrDiskFull", err)
			}
			waitFor(t, "the probe to clear the failure", func() error { return n.node.Ready(waitTimeout) })
			// Emptied, not removed: the interface has no delete.
			if v, err := st.Stable.Get([]byte(DiskProbeKey)); err != nil || len(v) != 0 {
				t.Fatalf("the probe's key in the stable store: %d bytes, %v; want it there, empty", len(v), err)
			}
			mustPublish(t, n, "after the probe")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkGoroutines(t) // per subtest: the label passes only to goroutines started from here
			c := newMemNet(t)
			st := newMemStores()
			n := c.start(t, "solo", "10.0.0.1", true, st)
			waitReady(t, n)
			mustPublish(t, n, "")
			tc.run(t, c, n, st)
		})
	}
	t.Run("partial stores are refused", func(t *testing.T) {
		t.Parallel()
		cfg := testClusterConfig(nodeOpts{id: "x", raftBind: "10.0.0.1:7000", maxVoters: 1, hold: memHold, reapAfter: testReapAfter})
		cfg.RaftStores = &RaftStores{Logs: raft.NewInmemStore()}
		m, err := fsm.New(fsm.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(cfg, m); err == nil {
			t.Fatal("New accepted RaftStores with only a log store")
		}
	})
}

// TestPartition_PeerTLS: peer TLS is layered on the injected network as
// on TCP: a TLS cluster forms on memnet, a dialer without a certificate
// gets nothing but a failed handshake (counted), and a follower cut from
// the leader converges after Heal over new TLS connections.
func TestPartition_PeerTLS(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	pki := newTestPKI(t, "memnet CA")
	c := newMemCluster(t, 3, func(id, ip string, cfg *Config) {
		f, _ := pki.issueFor(id, net.ParseIP(ip))
		peerTLS(pki.reloader(f))(cfg)
	})
	l := waitLeader(t, c.nodes)
	f := followers(c.nodes, l)[0]
	want := []published{{id: "before", cur: mustPublish(t, f, "before")}}
	waitApplied(t, c.nodes, want[0].cur)

	stranger, err := c.net.Host("10.0.0.66").Dial(context.Background(), l.raftAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if _, err := stranger.Write(append([]byte{muxRPC}, rpcForwardBytes("stranger")...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the leader to count the stranger's failed handshake", func() error {
		if st := l.node.Status(); !st.PeerTLS || st.PeerTLSFailures == 0 {
			return fmt.Errorf("peer_tls %t, peer_tls_failures %d", st.PeerTLS, st.PeerTLSFailures)
		}
		return nil
	})

	if err := c.net.Partition(c.ips[f], c.ips[l]); err != nil {
		t.Fatal(err)
	}
	// Through l, or, should the lead move to f in a stall, the third node.
	during, err := publishRetrying(t, []*testNode{l, others(c.nodes, l, f)[0]}, 0, "during")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, published{id: "during", cur: during})
	c.net.Heal()
	last := published{id: "healed"}
	waitFor(t, f.id+" to forward again", func() error {
		cur, err := publish(f, last.id)
		last.cur = cur
		return err
	})
	want = append(want, last)
	waitApplied(t, c.nodes, last.cur)
	checkStream(t, c.nodes, want, []string{"stranger"})
}
