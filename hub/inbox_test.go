package hub

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
)

// goroutinesIn counts the goroutines whose stack has a frame of fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte(fn+"(")) {
			n++
		}
	}
	return n
}

// TestIdleConnection_OnlyItsReader: once its messages are handled and
// its answers written, a WebSocket connection keeps one goroutine, its
// reader, started after the handshake (its stack stays small: inbox.go);
// the handler and the writer are gone until something is due, and come
// back for the next message. Not parallel: it counts goroutines.
func TestIdleConnection_OnlyItsReader(t *testing.T) {
	h := newTestHub(t)
	const n = 8
	var clients []*wsClient
	for i := range n {
		c := h.connect(testHubName, fmt.Sprintf("idle%d", i))
		c.callOK("JoinGroup", "g")
		clients = append(clients, c)
	}
	clients[0].callOK("SendToGroup", "g", "tick", 1)
	for _, c := range clients {
		c.waitInvocations("tick", 1)
	}
	waitFor(t, "the connections to go idle", func() bool {
		return goroutinesIn("hub.(*conn).handleInbox") == 0 &&
			goroutinesIn("hub.(*conn).drain") == 0 &&
			goroutinesIn("hub.(*Server).readWebSocket") == n
	})
	// On Linux they wait for their sockets outside gorilla's read path
	// (wsidle.go), where their stacks stay small.
	if canPeek {
		if n := goroutinesIn("internal/poll.(*FD).RawRead"); n < len(clients) {
			t.Errorf("%d goroutines wait in RawRead, want the %d idle readers", n, len(clients))
		}
	}
	// Nor do they keep a splitter (the JSON one is 400 bytes): a new one
	// is made when bytes come.
	if n := splittersHeld(h.srv); n != 0 {
		t.Errorf("%d idle connections hold a splitter, want 0", n)
	}
	// A record in three frames, the handler ending after each of the
	// first two with the record half read: the splitter is kept then.
	rec := `{"type":1,"target":"SendToGroup","arguments":["g","tack",7],"invocationId":"split1"}` + "\x1e"
	for i, part := range []string{rec[:20], rec[20:50], rec[50:]} {
		clients[2].sendRaw(part)
		if i == 2 {
			break
		}
		waitFor(t, "the handler to end with the record half read", func() bool {
			return goroutinesIn("hub.(*conn).handleInbox") == 0 && splittersHeld(h.srv) == 1
		})
	}
	clients[2].completion("split1")
	for _, c := range clients {
		c.waitInvocations("tack", 1)
	}
	waitFor(t, "the splitter to go with the handler", func() bool { return splittersHeld(h.srv) == 0 })
	// Messages still flow after the handler ended, in order.
	for i := range 3 {
		clients[1].callOK("SendToGroup", "g", "tock", i)
	}
	for _, c := range clients {
		msgs := c.waitInvocations("tock", 3)
		for i, m := range msgs {
			if got := string(m.Arguments[0]); got != fmt.Sprint(i) {
				t.Fatalf("tock %d: argument %s, want %d", i, got, i)
			}
		}
	}
}

// splittersHeld counts the connections of s that hold a splitter.
func splittersHeld(s *Server) int {
	n := 0
	for _, c := range s.liveConns() {
		c.in.mu.Lock()
		if !c.in.running && c.in.split != nil { // running first: the handler writes split without the lock
			n++
		}
		c.in.mu.Unlock()
	}
	return n
}
