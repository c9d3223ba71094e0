package raftplane

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/internal/testnet"
)

// hasRaftState reports whether dir holds Raft state (what a start takes for
// a member of a cluster).
func hasRaftState(t *testing.T, dir string) bool {
	t.Helper()
	st, err := cluster.OpenStores(dir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	has, err := raft.HasExistingState(st.Logs, st.Bolt, st.Snaps)
	if err != nil {
		t.Fatal(err)
	}
	return has
}

// clusterMembers reads GET /api/v1/cluster from n.
func clusterMembers(t *testing.T, n *Node) []cluster.MemberStatus {
	t.Helper()
	resp, err := httpClient.Get("http://" + n.HTTPAddr() + "/api/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Members []cluster.MemberStatus `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Members
}

func findMember(ms []cluster.MemberStatus, id string) (cluster.MemberStatus, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return cluster.MemberStatus{}, false
}

// TestNode_FailedFirstStartDoesNotSplitOff: the story of the issue. A node
// without -join whose gossip port is taken fails to start; started again on
// the same data folder with -join to a real cluster, it must become a
// member of that cluster, not elect itself and write a cluster id of its
// own.
func TestNode_FailedFirstStartDoesNotSplitOff(t *testing.T) {
	real := startNode(t, testConfig(t))

	busy, err := net.Listen("tcp", testnet.Addr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t)
	cfg.GossipAddr = busy.Addr().String()
	stray, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = stray.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "gossip") {
		t.Fatalf("first start with the gossip port taken: %v, want the gossip error", err)
	}
	if hasRaftState(t, cfg.DataDir) {
		t.Fatal("the failed first start left Raft state: a later start would take it for a cluster of its own")
	}

	busy.Close()
	cfg.Join = []string{real.GossipAddr()}
	again := startNode(t, cfg)
	if again.ID() != stray.ID() {
		t.Fatalf("the restart has id %s, the first start %s: want the persisted id", again.ID(), stray.ID())
	}
	if again.ClusterID() != real.ClusterID() {
		t.Fatalf("the restarted node is in cluster %q, the real one is %q: it split off", again.ClusterID(), real.ClusterID())
	}
	waitFor(t, 30*time.Second, "the restarted node in the real cluster's Raft configuration", func() bool {
		m, ok := findMember(clusterMembers(t, real), again.ID())
		return ok && (m.Suffrage == "voter" || m.Suffrage == "nonvoter")
	})
	alice := dial(t, "http://"+again.HTTPAddr(), "chat", "alice")
	cursor := publish(t, "http://"+real.HTTPAddr(), "chat", "news", "hello")
	if m := receive(t, alice, "news"); m.Cursor != cursor {
		t.Fatalf("the restarted node's client got cursor %s, want %s", m.Cursor, cursor)
	}
}

// TestNode_ForeignDataExitsNamingBothClusters: a node whose data belongs to
// cluster X, told to join cluster Y, stops with an error naming both ids:
// at Start when a seed answers in time, and later (Done, Err) when the
// seed answers only after JoinTimeout. Once it is gone, Y's status stops
// listing it.
func TestNode_ForeignDataExitsNamingBothClusters(t *testing.T) {
	// X: a one-node cluster, stopped.
	xcfg := testConfig(t)
	x, err := New(xcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	xid := x.ClusterID()
	if err := x.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	t.Run("seed answers at once", func(t *testing.T) {
		y := startNode(t, testConfig(t))
		cfg := xcfg
		cfg.Join = []string{y.GossipAddr()}
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = n.Start(context.Background())
		if !errors.Is(err, cluster.ErrForeignCluster) || !strings.Contains(err.Error(), xid) || !strings.Contains(err.Error(), y.ClusterID()) {
			t.Fatalf("Start: %v, want ErrForeignCluster naming %s and %s", err, xid, y.ClusterID())
		}
		waitFor(t, 30*time.Second, "Y's status to stop listing the refused node", func() bool {
			_, listed := findMember(clusterMembers(t, y), n.ID())
			return !listed
		})
	})

	t.Run("seed answers late", func(t *testing.T) {
		ycfg := testConfig(t)
		ycfg.GossipAddr = testnet.Addr(t)
		cfg := xcfg
		cfg.Join = []string{ycfg.GossipAddr}
		cfg.JoinTimeout = 100 * time.Millisecond
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(context.Background()); err != nil {
			t.Fatalf("Start before the seed is up: %v", err)
		}
		defer n.Close(context.Background())
		y := startNode(t, ycfg)
		select {
		case <-n.Done():
		case <-time.After(60 * time.Second):
			t.Fatal("the node of cluster X kept running beside cluster Y")
		}
		err = n.Err()
		if !errors.Is(err, cluster.ErrForeignCluster) || !strings.Contains(err.Error(), xid) || !strings.Contains(err.Error(), y.ClusterID()) {
			t.Fatalf("Err: %v, want ErrForeignCluster naming %s and %s", err, xid, y.ClusterID())
		}
		if err := n.Close(context.Background()); err != nil {
			t.Logf("close: %v", err)
		}
		waitFor(t, 30*time.Second, "Y's status to stop listing the refused node", func() bool {
			_, listed := findMember(clusterMembers(t, y), n.ID())
			return !listed
		})
	})
}
