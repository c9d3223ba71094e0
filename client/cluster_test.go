package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/gossip"
	"github.com/raftplane/raftplane/hub"
)

// clusterNode is one node of an in-process cluster started by startCluster.
type clusterNode struct {
	ID      string
	URL     string // base URL, http://127.0.0.1:PORT
	Hub     *hub.Server
	HTTP    *trackedServer
	Machine *fsm.Machine
	node    *cluster.Node
	agent   *gossip.Agent
}

// clusterOpts adjusts startCluster.
type clusterOpts struct {
	fsm func(*fsm.Config)
	hub func(*hub.Config)
}

// startCluster runs a real raftplane cluster of size nodes in this process,
// wired the way cmd/raftplane wires one: per node an fsm.Machine, a gossip
// agent (loopback timings, free ports), a cluster.Node whose Members is the
// agent (Bootstrap on the first node only; the others join through gossip)
// and a hub.Server whose token secret is the cluster secret replicated in
// the log (so every node verifies every node's tokens), behind an HTTP
// server whose connections the test can cut. It returns once every node
// has the cluster id and secret and serves clients; the cluster is torn
// down when the test ends.
func startCluster(t *testing.T, size int, o clusterOpts) []*clusterNode {
	t.Helper()
	tw := &testWriter{t: t}
	t.Cleanup(tw.stop) // registered first, so it runs last
	lg := slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelWarn}))

	var nodes []*clusterNode
	t.Cleanup(func() {
		// Hubs first (their goodbyes still need the log), then HTTP, then
		// the Raft nodes and gossip.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, n := range nodes {
			if n.Hub != nil {
				if err := n.Hub.Close(ctx); err != nil {
					t.Errorf("%s: hub Close: %v", n.ID, err)
				}
			}
			if n.HTTP != nil {
				n.HTTP.Close()
			}
		}
		for i := len(nodes) - 1; i >= 0; i-- {
			n := nodes[i]
			_ = n.agent.Close()
			if err := n.node.Close(ctx); err != nil {
				t.Errorf("%s: node Close: %v", n.ID, err)
			}
		}
	})

	var seed string
	for i := 1; i <= size; i++ {
		id := fmt.Sprintf("n%d", i)
		nlg := lg.With("node", id)
		fc := fsm.DefaultConfig()
		if o.fsm != nil {
			o.fsm(&fc)
		}
		fc.Logger = nlg.With("component", "fsm")
		machine, err := fsm.New(fc)
		if err != nil {
			t.Fatal(err)
		}
		gc := gossip.DefaultConfig()
		gc.LAN = false
		gc.BindAddr = "127.0.0.1:0"
		gc.Meta = gossip.Meta{ID: id, Version: gossip.MetaVersion}
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
		gc.Logger = nlg.With("component", "gossip")
		agent, err := gossip.New(gc)
		if err != nil {
			t.Fatal(err)
		}
		cc := cluster.DefaultConfig()
		cc.NodeID = id
		cc.DataDir = t.TempDir()
		cc.RaftBind = "127.0.0.1:0"
		cc.Bootstrap = i == 1
		cc.HeartbeatTimeout = 300 * time.Millisecond
		cc.ElectionTimeout = 300 * time.Millisecond
		cc.LeaderLeaseTimeout = 100 * time.Millisecond
		cc.NoSync = true
		cc.ReconcileInterval = 200 * time.Millisecond
		cc.StabilizeTime = 300 * time.Millisecond
		cc.Members = agent
		cc.Logger = nlg.With("component", "cluster")
		node, err := cluster.New(cc, machine)
		if err != nil {
			t.Fatal(err)
		}
		if err := node.Open(); err != nil {
			t.Fatalf("%s: Open: %v", id, err)
		}
		n := &clusterNode{ID: id, Machine: machine, node: node, agent: agent}
		nodes = append(nodes, n)
		if err := agent.UpdateMeta(func(m *gossip.Meta) { m.RaftAddr = node.RaftAddr() }); err != nil {
			t.Fatal(err)
		}
		if err := agent.Start(); err != nil {
			t.Fatalf("%s: gossip Start: %v", id, err)
		}
		if i == 1 {
			seed = agent.LocalAddr()
		} else {
			agent.Join([]string{seed})
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.node.WaitReady(ctx); err != nil {
			t.Fatalf("%s: WaitReady: %v", n.ID, err)
		}
		for n.Machine.Secret() == nil {
			if ctx.Err() != nil {
				t.Fatalf("%s: no cluster secret", n.ID)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, n := range nodes {
		hc := hub.DefaultConfig()
		hc.NodeID = n.ID
		hc.TokenSecretFunc = n.Machine.Secret
		hc.DisconnectTimeout = 30 * time.Second
		hc.Logger = lg.With("node", n.ID, "component", "hub")
		if o.hub != nil {
			o.hub(&hc)
		}
		srv, err := hub.New(hc, n.node, n.Machine)
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		n.Hub = srv
		n.HTTP = serveTracked(srv)
		n.URL = n.HTTP.URL
	}
	// Every node commits through the leader: wait until a publish from
	// each one works.
	for _, n := range nodes {
		for {
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := n.node.Publish(pctx, fsm.Command{Kind: fsm.KindPublish, Hub: "warmup", Audience: fsm.AudienceAll, Target: "t", Args: []byte("[]")})
			pcancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil || errors.Is(err, cluster.ErrClosed) {
				t.Fatalf("%s: cannot publish: %v", n.ID, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}
