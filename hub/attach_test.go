package hub

import (
	"testing"

	"github.com/raftplane/raftplane/fsm"
)

// TestDeliver_AttachesAtItsOwnEntry: a connection's earlier transport may
// have published a ConnResume that is applied late (it timed out during a
// partition, the client came back with a new transport on the same node).
// The dispatcher attaches the current transport only at the entry it
// published itself: attaching at the stale one would deliver twice what the
// replay sends, and closing attached twice crashed the node (found by the
// chaos soak).
func TestDeliver_AttachesAtItsOwnEntry(t *testing.T) {
	cfg := testConfig(t)
	m := newTestMachine(t)
	srv, err := New(cfg, newFakePublisher(t, m, true), m) // not started: deliver is called by hand
	if err != nil {
		t.Fatal(err)
	}
	c := srv.newConn(nil, "c1", testHubName, "u", newGateTransport(false))
	c.resume = &resumeReq{id: "c1", user: "u"}
	srv.conns[c.id] = c
	resume := func(id string, idx uint64) {
		srv.deliver(&fsm.Entry{Cursor: fsm.Cursor{Index: idx}, Command: fsm.Command{Kind: fsm.KindConnResume, ID: id,
			Hub: testHubName, Conn: c.id, User: "u", Node: cfg.NodeID}}, testEpoch, nil)
	}
	attached := func() bool {
		select {
		case <-c.wait(&c.attached):
			return true
		default:
			return false
		}
	}
	resume("open:an-earlier-transport", 5)
	if attached() {
		t.Fatal("attached at another transport's ConnResume")
	}
	resume(c.openID, 6)
	if !attached() {
		t.Fatal("not attached at its own ConnResume")
	}
	resume("open:yet-another", 7) // a stale one applied late: nothing changes
	if h := srv.localHub(testHubName, false); h == nil || h.conns[c.id] != c || c.isClosing() {
		t.Fatal("a stale ConnResume of this node detached the current transport")
	}
	// Another node taking the connection over ends this transport.
	srv.deliver(&fsm.Entry{Cursor: fsm.Cursor{Index: 8}, Command: fsm.Command{Kind: fsm.KindConnResume, ID: "open:elsewhere",
		Hub: testHubName, Conn: c.id, User: "u", Node: "node-2"}}, testEpoch, nil)
	if h := srv.localHub(testHubName, false); (h != nil && h.conns[c.id] == c) || !c.isClosing() {
		t.Fatal("a takeover by another node left this transport in place")
	}
}
