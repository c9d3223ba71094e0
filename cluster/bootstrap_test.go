package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/gossip"
	"github.com/raftplane/raftplane/internal/testnet"
)

// The split-off node (issue 15 item 3), at the cluster level: what a
// bootstrap leaves in the data folder, what a failed first start removes,
// and what the leader does with a refused member once it is gone.

// openAlone opens a node without gossip on dir. Its election timer is long,
// so it stays a follower for the test unless wait is set, in which case
// Open returns once it leads with its cluster id applied.
func openAlone(t *testing.T, dir, id string, bootstrap bool, members Membership) *Node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.RaftBind, cfg.Bootstrap, cfg.NoSync = id, dir, "127.0.0.1:0", bootstrap, true
	cfg.Members = members
	if members == nil {
		// Nobody else exists: a minute without an election is a node
		// stopped between its bootstrap and its first election.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout = time.Minute, time.Minute
	} else {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = testHeartbeat, testHeartbeat, testLease
		cfg.ReconcileInterval = testReconcile
	}
	m, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Open(); err != nil {
		t.Fatal(err)
	}
	return n
}

func closeNode(t *testing.T, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), closeWithin)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBootstrap_DataNamesItsCluster: a node stopped right after its
// bootstrap, before any election, has data that names its cluster; opened
// again as a joining node (-join), it knows that id before it runs, so
// CheckPeers refuses seeds of another cluster naming both ids.
func TestBootstrap_DataNamesItsCluster(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	dir := t.TempDir()
	n := openAlone(t, dir, "x", true, nil)
	id := n.LocalClusterID()
	if id == "" || n.Status().State == "Leader" {
		t.Fatalf("after the bootstrap: cluster id %q, state %s; want an id and no election yet", id, n.Status().State)
	}
	closeNode(t, n)

	st, err := OpenStores(dir, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, ok, err := st.LatestConfiguration()
	scanned := scanClusterID(st.Logs)
	st.Close()
	if err != nil || !ok || len(cfg.Servers) != 1 || cfg.Servers[0].ID != "x" {
		t.Fatalf("configuration %+v (ok %v, %v), want x alone", cfg, ok, err)
	}
	if scanned != id {
		t.Fatalf("the log names cluster %q, the bootstrap said %q", scanned, id)
	}

	again := openAlone(t, dir, "x", false, nil)
	defer closeNode(t, again)
	if again.LocalClusterID() != id || !again.HadState() {
		t.Fatalf("reopened: cluster %q had state %v; want %s and true", again.LocalClusterID(), again.HadState(), id)
	}
	err = again.CheckPeers([]gossip.Member{{Meta: gossip.Meta{ID: "y1", ClusterID: "c0ffee00"}, Addr: "10.0.0.9:7946", State: gossip.StateAlive}})
	if !errors.Is(err, ErrForeignCluster) || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "c0ffee00") {
		t.Fatalf("CheckPeers: %v, want ErrForeignCluster naming %s and c0ffee00", err, id)
	}
}

// TestBootstrap_CommitsItsClusterID: the cluster-init entry the bootstrap
// writes is committed and applied by the first election, once: the leader
// loop does not write a second one.
func TestBootstrap_CommitsItsClusterID(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	dir := t.TempDir()
	m, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testClusterConfig(nodeOpts{id: "a", dir: dir, raftBind: "127.0.0.1:0", maxVoters: 3, hold: testHoldTimeout, reapAfter: testReapAfter})
	n, err := New(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Open(); err != nil {
		t.Fatal(err)
	}
	defer closeNode(t, n)
	want := n.LocalClusterID()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Epoch() != want {
		t.Fatalf("applied cluster id %q, the bootstrap wrote %q", m.Epoch(), want)
	}
	cur, err := n.Publish(ctx, fsm.Command{Kind: fsm.KindPublish, Hub: "h", Target: "t", Audience: fsm.AudienceAll})
	if err != nil {
		t.Fatal(err)
	}
	var inits int
	for i := uint64(1); i <= cur.Index; i++ {
		var l raft.Log
		if n.stores.base.GetLog(i, &l) != nil || l.Type != raft.LogCommand {
			continue
		}
		cmds, err := fsm.DecodeBatch(l.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cmds {
			if c.Kind == fsm.KindClusterInit {
				inits++
			}
		}
	}
	if inits != 1 {
		t.Fatalf("%d cluster-init commands in the log, want 1", inits)
	}
}

// TestDiscardFresh: what a failed first start wrote goes; a node that had
// data keeps it; an open node refuses.
func TestDiscardFresh(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	dir := t.TempDir()
	keep := filepath.Join(dir, "node-id")
	if err := os.WriteFile(keep, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := openAlone(t, dir, "x", true, nil)
	if err := n.DiscardFresh(); err == nil {
		t.Fatal("DiscardFresh on an open node succeeded")
	}
	closeNode(t, n)
	if err := n.DiscardFresh(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("raft.db after DiscardFresh: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("DiscardFresh removed another file of the folder: %v", err)
	}

	// A node with data (a restart) is never discarded.
	n = openAlone(t, dir, "x", true, nil)
	closeNode(t, n)
	n = openAlone(t, dir, "x", false, nil)
	closeNode(t, n)
	if err := n.DiscardFresh(); !errors.Is(err, ErrNotFresh) {
		t.Fatalf("DiscardFresh after a restart: %v, want ErrNotFresh", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); err != nil {
		t.Fatalf("raft.db of a restarted node: %v", err)
	}
}

func TestPlan_ForeignGone(t *testing.T) {
	t.Parallel()
	runPlan(t, []planCase{
		{name: "a member of another cluster that left is not refused again",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b", cluster("c2"), left, leaving)},
			want: nil},
		{name: "nor one that is dead",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b", cluster("c2"), dead)},
			want: nil},
		{name: "nor one that is leaving",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b", cluster("c2"), leaving)},
			want: nil},
		{name: "one in the configuration is still removed",
			servers: []raft.Server{voter("a"), nonvoter("b")}, members: []gossip.Member{member("a"), member("b", cluster("c2"), dead)},
			want: []string{"remove b (belongs to cluster c2) forget=false"}},
	})
}

// fakeMembers is a gossip view the test sets.
type fakeMembers struct {
	mu sync.Mutex
	ms []gossip.Member
}

func (f *fakeMembers) set(ms []gossip.Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ms = ms
}

func (f *fakeMembers) Members() []gossip.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gossip.Member(nil), f.ms...)
}
func (f *fakeMembers) Events() <-chan gossip.Event         { return nil }
func (f *fakeMembers) UpdateMeta(func(*gossip.Meta)) error { return nil }

// TestClusterStatus_RefusedMemberGone: status lists a member of another
// cluster while it is there, and no longer once it leaves, has left or
// died; a member of ours that died is still listed.
func TestClusterStatus_RefusedMemberGone(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	fm := &fakeMembers{}
	n := openAlone(t, t.TempDir(), "a", true, fm)
	defer closeNode(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	epoch := n.machine.Epoch()
	gone := testnet.Addr(t) // nothing listens there
	ms := []gossip.Member{
		{Meta: gossip.Meta{ID: "a", ClusterID: epoch}, State: gossip.StateAlive},
		{Meta: gossip.Meta{ID: "stray", ClusterID: "c2", RaftAddr: gone}, State: gossip.StateAlive},
		{Meta: gossip.Meta{ID: "ours", ClusterID: epoch, RaftAddr: gone}, State: gossip.StateDead},
	}
	fm.set(ms)
	listed := func() map[string]bool {
		out := map[string]bool{}
		for _, m := range n.ClusterStatus(ctx) {
			out[m.ID] = true
		}
		return out
	}
	if l := listed(); !l["stray"] || !l["ours"] || !l["a"] {
		t.Fatalf("listed %v, want a, ours and the stray while it is alive", l)
	}
	for _, gone := range []func(*gossip.Member){leaving, left, dead} {
		m := ms[1]
		gone(&m)
		fm.set([]gossip.Member{ms[0], m, ms[2]})
		if l := listed(); l["stray"] || !l["ours"] || !l["a"] {
			t.Fatalf("stray %s (leaving %v): listed %v, want a and ours only", m.State, m.Leaving, l)
		}
	}
}
