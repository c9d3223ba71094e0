package hub

import (
	"net/http"
	"strings"
	"testing"
)

// TestForwardToNegotiatingNode: long polling with every request on another
// node than the one that negotiated: the activation poll, the handshake
// POST, the polls and the goodbye are forwarded there, and the connection
// works as if the client had affinity.
func TestForwardToNegotiatingNode(t *testing.T) {
	m := newTestMachine(t)
	pub := newFakePublisher(t, m, true)
	a := startTestHub(t, testConfig(t), m, pub)
	cfgB := testConfig(t)
	cfgB.NodeID = "node-2"
	addrA := strings.TrimPrefix(a.ts.URL, "http://")
	cfgB.Peers = peersFunc(func(id string) (string, bool) { return addrA, id == "node-1" })
	b := startTestHub(t, cfgB, m, pub)

	tok, id := a.negotiateToken("alice")
	if r := b.pollOnce(tok); r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("activation poll through node 2: %d %q", r.status, r.body)
	}
	if st := b.post(tok, `{"protocol":"json","version":1}`+"\x1e"); st != http.StatusOK {
		t.Fatalf("handshake POST through node 2: %d", st)
	}
	if r := b.pollOnce(tok); r.status != http.StatusOK || string(r.body) != "{}\x1e" {
		t.Fatalf("handshake response through node 2: %d %q", r.status, r.body)
	}
	if a.srv.session(id) == nil || b.srv.session(id) != nil {
		t.Fatalf("the connection should live on node 1 only")
	}
	if st, _, body := b.do("POST", "/api/v1/hubs/"+testHubName, `{"target":"hello","arguments":[1]}`, nil); st != 200 {
		t.Fatalf("REST send: %d %s", st, body)
	}
	if r := b.pollOnce(tok); r.status != http.StatusOK || !strings.Contains(string(r.body), `"target":"hello"`) {
		t.Fatalf("message poll through node 2: %d %q", r.status, r.body)
	}
	if st, _, _ := b.do(http.MethodDelete, hubPath(tok), "", nil); st != http.StatusAccepted {
		t.Errorf("DELETE through node 2: status %d, want 202", st)
	}
	if r := b.pollOnce(tok); r.status != http.StatusNoContent && r.status != http.StatusNotFound {
		t.Errorf("a poll after the goodbye, through node 2: %d, want 204 or 404", r.status)
	}

	// A token from a node that is gone: the connection is gone with it.
	cfgB.Peers = peersFunc(func(string) (string, bool) { return "", false })
	c := startTestHub(t, cfgB, m, pub)
	tok2, _ := a.negotiateToken("bob")
	if r := c.pollOnce(tok2); r.status != http.StatusNotFound {
		t.Errorf("a poll for a gone node's connection: %d, want 404", r.status)
	}
}
