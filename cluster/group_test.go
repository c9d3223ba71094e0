package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/gossip"
)

// TestNode_PublishGroupIsOneUnit: a group published on a follower, while
// other commands stream in on every node, lands in one entry with its
// commands next to each other and nothing between them (the leader keeps a
// forwarded batch whole), the invoke after its effects; the cluster records log format 2 once every
// server advertises it; an invoke's effects carry no id.
func TestNode_PublishGroupIsOneUnit(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	n1 := startNode(t, nodeOpts{id: "n1"})
	waitReady(t, n1)
	n2 := startNode(t, nodeOpts{id: "n2", seeds: []string{n1.gossipAddr}})
	n3 := startNode(t, nodeOpts{id: "n3", seeds: []string{n1.gossipAddr}})
	nodes := []*testNode{n1, n2, n3}
	waitMembership(t, nodes, 3, 0)
	waitReady(t, nodes...)
	waitFor(t, "log format 2 on every node", func() error {
		for _, n := range nodes {
			if f := n.machine.Format(); f != fsm.LogFormat {
				return fmt.Errorf("%s: format %d", n.id, f)
			}
		}
		return nil
	})
	l := waitLeader(t, nodes)
	f := followers(nodes, l)[0]

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { // background traffic that could slip between a group's commands
			defer wg.Done()
			for ctx.Err() == nil {
				// Not ctx: every publish has an outcome once wg.Wait returns.
				pctx, pcancel := context.WithTimeout(context.Background(), waitTimeout)
				_, _ = n.node.Publish(pctx, testCommand(""))
				pcancel()
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	const groups = 20
	var last fsm.Cursor
	for g := range groups {
		var cmds []fsm.Command
		for k := range 3 {
			cmds = append(cmds, fsm.Command{Kind: fsm.KindPublish, Hub: "h", Audience: fsm.AudienceAll, Target: "t",
				Args: fmt.Appendf(nil, `[%d,%d]`, g, k)})
		}
		cmds = append(cmds, fsm.Command{Kind: fsm.KindInvoke, Hub: "h", Conn: "c1", Target: "M", Effects: 3, Args: []byte(`"ok"`)})
		pctx, pcancel := context.WithTimeout(context.Background(), waitTimeout)
		res, err := f.node.PublishGroup(pctx, cmds)
		pcancel()
		if err != nil {
			t.Fatalf("PublishGroup %d on %s: %v", g, f.id, err)
		}
		for k, r := range res {
			want := fsm.Cursor{Index: res[0].Cursor.Index, Offset: res[0].Cursor.Offset + uint32(k)}
			if r.Err != nil || r.Duplicate || r.Cursor != want {
				t.Fatalf("group %d: result %d = %+v, want cursor %s (one entry, contiguous)", g, k, r, want)
			}
		}
		last = res[len(res)-1].Cursor
	}
	cancel()
	wg.Wait()
	es := waitApplied(t, nodes, lastOf(t, nodes, last))
	heads := 0
	for i, e := range es {
		if e.Kind != fsm.KindInvoke {
			continue
		}
		heads++
		if e.ID == "" {
			t.Fatalf("invoke at %s has no id", e.Cursor)
		}
		for k := 1; k <= 3; k++ {
			x := es[i-k]
			if x.Kind != fsm.KindPublish || x.ID != "" || x.Cursor.Index != e.Cursor.Index || x.Cursor.Offset != e.Cursor.Offset-uint32(k) {
				t.Fatalf("effect %d of the invoke at %s is %s %s id %q", k, e.Cursor, x.Kind, x.Cursor, x.ID)
			}
		}
	}
	if heads != groups {
		t.Fatalf("%d invokes in the log, want %d", heads, groups)
	}

	// A lone invoke that claims effects is refused before the log.
	_, err := f.node.Publish(context.Background(), fsm.Command{Kind: fsm.KindInvoke, Hub: "h", Target: "M", Effects: 1})
	if !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("Publish(invoke with 1 effect and none after it) = %v, want ErrInvalid", err)
	}
}

// lastOf returns the newest cursor the nodes applied, at least cur, once the
// background traffic stopped.
func lastOf(t *testing.T, nodes []*testNode, cur fsm.Cursor) fsm.Cursor {
	t.Helper()
	c := mustPublish(t, nodes[0], "")
	if c.Less(cur) {
		t.Fatalf("a publish after the groups got %s, before %s", c, cur)
	}
	return c
}

// TestPlan_OlderFormatNotAdded: once the cluster writes log format 2, a
// member whose build advertises less is held out (it would stop at the
// first entry it does not know), with the reason; before that it is added.
func TestPlan_OlderFormatNotAdded(t *testing.T) {
	t.Parallel()
	old := gossip.Member{Meta: gossip.Meta{ID: "old", RaftAddr: "127.0.0.1:7002"}, State: gossip.StateAlive}
	for _, tc := range []struct {
		format uint32
		want   actionKind
	}{{1, actAdd}, {2, actHold}} {
		in := planInput{Self: "n1", Epoch: "e", Format: tc.format, Members: []gossip.Member{old}, Limits: planLimits{MaxVoters: 3}}
		acts := plan(in)
		if len(acts) == 0 || acts[0].Kind != tc.want {
			t.Fatalf("format %d: plan = %v, want first %v", tc.format, acts, tc.want)
		}
		if tc.want == actHold && acts[0].Why == "" {
			t.Fatal("the hold does not say why")
		}
	}
}
