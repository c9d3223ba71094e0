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

// TestIdleConnection_NoGoroutine: once its messages are handled and its
// answers written, a WebSocket connection keeps no goroutine on Linux: its
// reader parks in the server's poller (wspark.go); the handler and the
// writer are gone until something is due, and all come back for the next
// message. With NoReaderParking, or elsewhere, it keeps one, its reader,
// started after the handshake (its stack stays small: inbox.go). Not
// parallel: it counts goroutines.
func TestIdleConnection_NoGoroutine(t *testing.T) {
	for _, parking := range []bool{true, false} {
		t.Run(fmt.Sprintf("parking=%v", parking), func(t *testing.T) {
			testIdleConnection(t, parking)
		})
	}
}

func testIdleConnection(t *testing.T, parking bool) {
	h := newTestHub(t, func(c *Config) { c.NoReaderParking = !parking })
	parks := parking && h.srv.idlePoll.Load() != nil
	if parking && canPeek && h.srv.idlePoll.Load() == nil {
		t.Fatal("no poller on Linux")
	}
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
	readers := n
	if parks {
		readers = 0
	}
	waitFor(t, "the connections to go idle", func() bool {
		return goroutinesIn("hub.(*conn).handleInbox") == 0 &&
			goroutinesIn("hub.(*conn).drain") == 0 &&
			goroutinesIn("hub.(*Server).readWebSocketFrom") == readers
	})
	if parks {
		if got := parkedReaders(h.srv); got != n {
			t.Errorf("%d readers parked, want %d", got, n)
		}
	} else if canPeek {
		// Unparked on Linux, they wait for their sockets outside gorilla's
		// read path (wsidle.go), where their stacks stay small.
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

// parkedReaders counts the connections of s whose reader is parked.
func parkedReaders(s *Server) int {
	n := 0
	for _, c := range s.liveConns() {
		if tr, ok := c.tr.(*wsTransport); ok && tr.rd != nil && tr.rd.park != nil && tr.rd.park.state.Load() == parkParked {
			n++
		}
	}
	return n
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
