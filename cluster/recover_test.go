package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

func TestParseServers(t *testing.T) {
	t.Parallel()
	got, err := ParseServers(" a=10.0.0.1:7000, b=node-b.example:7000 ,")
	if err != nil {
		t.Fatal(err)
	}
	want := []raft.Server{
		{Suffrage: raft.Voter, ID: "a", Address: "10.0.0.1:7000"},
		{Suffrage: raft.Voter, ID: "b", Address: "node-b.example:7000"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	for in, msg := range map[string]string{
		"":                           "empty peer list",
		"a":                          "want id=host:port",
		"=10.0.0.1:7000":             "want id=host:port",
		"a=":                         "want id=host:port",
		"a=10.0.0.1":                 "missing port",
		"a=0.0.0.0:7000":             "unspecified",
		"a=10.0.0.1:0":               "bad port",
		"a=10.0.0.1:x":               "bad port",
		"a=1.2.3.4:1,a=1.2.3.5:1":    "listed twice",
		"a=1.2.3.4:1,b=[::]:7000":    "unspecified",
		"a=1.2.3.4:1,b=1.2.3.4:7e10": "bad port",
	} {
		if _, err := ParseServers(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseServers(%q) = %v, want an error with %q", in, err, msg)
		}
	}
}

func TestRecover_BadInput(t *testing.T) {
	t.Parallel()
	if _, err := Recover(RecoverOptions{DataDir: t.TempDir(), NodeID: "n1"}); err == nil || !strings.Contains(err.Error(), "no raft.db") {
		t.Errorf("empty folder: %v", err)
	}
	if _, err := Recover(RecoverOptions{DataDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "no node id") {
		t.Errorf("no node id: %v", err)
	}

	// A live node's data is locked: recovery refuses it and says why.
	n1 := startNode(t, nodeOpts{id: "n1"})
	waitReady(t, n1)
	if _, err := Recover(RecoverOptions{DataDir: n1.dir, NodeID: "n1", NoSync: true}); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Errorf("running node: %v", err)
	}
	n1.kill(t)
	for name, o := range map[string]RecoverOptions{
		"self not a voter":    {Servers: []raft.Server{{Suffrage: raft.Voter, ID: "n9", Address: "127.0.0.1:7009"}}},
		"self a non-voter":    {Servers: []raft.Server{{Suffrage: raft.Nonvoter, ID: "n1", Address: "127.0.0.1:7001"}}},
		"address twice":       {Servers: []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: "127.0.0.1:7001"}}, RaftAdvertise: "127.0.0.1:7001"},
		"unknown node, no ip": {NodeID: "n7"},
		"huge gap":            {IndexGap: 1 << 50},
	} {
		o.DataDir, o.NoSync = n1.dir, true
		if o.NodeID == "" {
			o.NodeID = "n1"
		}
		if _, err := Recover(o); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// None of that changed the data: the node restarts as it was.
	n1 = n1.restart(t)
	waitLeader(t, []*testNode{n1})
}

// TestRecover_MajorityLost loses two of three voters for good, recovers the
// survivor's data, and checks the survivor alone leads, serves the whole
// history at the same positions, commits past the index gap, and takes a
// new member.
func TestRecover_MajorityLost(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	n1 := startNode(t, nodeOpts{id: "n1"})
	waitReady(t, n1)
	n2 := startNode(t, nodeOpts{id: "n2", seeds: []string{n1.gossipAddr}})
	n3 := startNode(t, nodeOpts{id: "n3", seeds: []string{n1.gossipAddr}})
	nodes := []*testNode{n1, n2, n3}
	waitMembership(t, nodes, 3, 0)
	epoch := waitReady(t, nodes...)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, c := range []fsm.Command{
		{Kind: fsm.KindConnOpen, Hub: "h", Conn: "c1", User: "u1", Node: "n2"},
		{Kind: fsm.KindGroupJoin, Hub: "h", Conn: "c1", Group: "red"},
	} {
		if _, err := n3.node.Publish(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	var last fsm.Cursor
	for i := range 60 {
		last = mustPublish(t, nodes[i%3], fmt.Sprintf("m%d", i))
	}
	want := waitApplied(t, nodes, last)

	// The survivor: a follower, so that the leader is among the lost.
	l := waitLeader(t, nodes)
	s := followers(nodes, l)[0]
	for _, n := range nodes {
		if n != s {
			n.kill(t)
		}
	}
	// Without a quorum the survivor cannot commit.
	if _, err := s.node.Publish(ctx, testCommand("stuck")); err == nil {
		t.Fatal("a publish committed on a node without quorum")
	}
	s.kill(t) // the operator stops it

	plan, err := PlanRecovery(RecoverOptions{DataDir: s.dir, NodeID: s.id})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Recover(RecoverOptions{DataDir: s.dir, NodeID: s.id, IndexGap: DefaultIndexGap, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if plan.LastIndex != res.LastIndex || !reflect.DeepEqual(plan.New, res.New) || !reflect.DeepEqual(plan.Old, res.Old) {
		t.Errorf("the plan %+v is not what Recover did %+v", plan, res)
	}
	t.Logf("recovered: old %s, new %s, last index %d, continues after %d", FormatServers(res.Old.Servers),
		FormatServers(res.New.Servers), res.LastIndex, res.Index)
	if len(res.Old.Servers) != 3 || len(res.New.Servers) != 1 || res.New.Servers[0].ID != raft.ServerID(s.id) ||
		string(res.New.Servers[0].Address) != s.raftAddr {
		t.Errorf("old %+v new %+v", res.Old, res.New)
	}
	if res.Stream.Epoch != epoch || res.Stream.Last.Less(last) || res.Connections != 1 {
		t.Errorf("recovered stream %+v (%d connections), want epoch %s, last at least %s, 1 connection", res.Stream, res.Connections, epoch, last)
	}
	if res.Index != res.LastIndex+DefaultIndexGap {
		t.Errorf("index %d, want %d+gap", res.Index, res.LastIndex)
	}

	// Alone, with no seeds: it elects itself.
	s = s.restartWith(t, func(o *nodeOpts) {
		o.seeds = nil
	})
	waitLeader(t, []*testNode{s})
	got, err := s.machine.Since(fsm.Cursor{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The uncommitted "stuck" command, if the survivor had it in its log,
	// is now committed (the recovery applies every entry it holds).
	if n := len(want); len(got) < n || !reflect.DeepEqual(got[:n], want) {
		t.Fatalf("the survivor serves %d entries, the cluster had %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	if g := s.machine.GroupConnections("h", "red"); !reflect.DeepEqual(g, []string{"c1"}) {
		t.Errorf("group red: %v", g)
	}
	cur := mustPublish(t, s, "after-recovery")
	if cur.Index <= res.Index {
		t.Errorf("first publish after the recovery at %s, want past %d", cur, res.Index)
	}
	ids := map[string]bool{}
	for _, e := range got {
		ids[e.ID] = true
	}
	if !ids["m59"] || !ids["m0"] {
		t.Error("history incomplete")
	}

	// A new member joins the recovered cluster and gets everything.
	n4 := startNode(t, nodeOpts{id: "n4", seeds: []string{s.gossipAddr}})
	waitMembership(t, []*testNode{s, n4}, 1, 1)
	waitApplied(t, []*testNode{s, n4}, mustPublish(t, n4, "from-n4"))

	// The recovery left its snapshots where raft keeps them.
	entries, err := os.ReadDir(filepath.Join(s.dir, "snapshots"))
	if err != nil || len(entries) == 0 {
		t.Errorf("snapshots: %v %v", entries, err)
	}
}
