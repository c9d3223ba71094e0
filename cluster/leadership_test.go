package cluster

import (
	"fmt"
	"testing"
)

// TestNode_IsLeader: of three nodes exactly the leader says so, and after
// it stops the new leader does.
func TestNode_IsLeader(t *testing.T) {
	t.Parallel()
	n1 := startNode(t, nodeOpts{id: "n1"})
	waitReady(t, n1)
	n2 := startNode(t, nodeOpts{id: "n2", seeds: []string{n1.gossipAddr}})
	n3 := startNode(t, nodeOpts{id: "n3", seeds: []string{n1.gossipAddr}})
	nodes := []*testNode{n1, n2, n3}
	waitMembership(t, nodes, 3, 0)
	onlyLeader := func(l *testNode) func() error {
		return func() error {
			for _, n := range up(nodes) {
				if n.node.IsLeader() != (n == l) {
					return fmt.Errorf("%s: IsLeader %v, leader %s", n.id, n.node.IsLeader(), l.id)
				}
			}
			return nil
		}
	}
	l := waitLeader(t, nodes)
	waitFor(t, "only the leader to say it leads", onlyLeader(l))
	if err := l.stop(t); err != nil {
		t.Fatalf("stopping the leader: %v", err)
	}
	l2 := waitLeader(t, nodes)
	waitFor(t, "only the new leader to say it leads", onlyLeader(l2))
}
