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
