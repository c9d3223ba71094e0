package hub

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// parkingHub is a test hub whose idle WebSocket readers park; the test is
// skipped where they cannot (no epoll: wspark_other.go).
func parkingHub(t *testing.T, opts ...func(*Config)) *testHub {
	t.Helper()
	opts = append([]func(*Config){func(c *Config) { c.ReaderParkAfter = 0 }}, opts...)
	h := newTestHub(t, opts...)
	if h.srv.idlePoll.Load() == nil {
		if canPeek {
			t.Fatal("no poller on Linux")
		}
		t.Skip("readers park only on Linux")
	}
	return h
}

// connectJoined connects n clients, users prefix0.., each joined to group g.
func connectJoined(h *testHub, prefix string, n int) []*wsClient {
	h.t.Helper()
	var out []*wsClient
	for i := range n {
		c := h.connect(testHubName, fmt.Sprintf("%s%d", prefix, i))
		c.callOK("JoinGroup", "g")
		out = append(out, c)
	}
	return out
}

// TestParking_SilentClientTimesOut: a parked reader's read deadline still
// holds: the poller wakes it when the deadline passes, and the client gets
// the Close message a reader waiting in its socket sent (ASP.NET Core's
// wording, reconnect allowed). ReaderParkAfter is set, but a reader whose
// messages are that far apart (here: the handshake, then nothing) parks at
// once.
func TestParking_SilentClientTimesOut(t *testing.T) {
	t.Parallel()
	h := parkingHub(t, func(c *Config) {
		c.KeepAliveInterval = 100 * time.Millisecond
		c.ClientTimeout = 400 * time.Millisecond
		c.ReaderParkAfter = 100 * time.Millisecond
	})
	c := h.connect(testHubName, "silent")
	waitFor(t, "the reader to park", func() bool { return parkedReaders(h.srv) == 1 })
	m := c.waitClose()
	if !strings.Contains(m.Error, "nothing received from the client") || !m.AllowReconnect {
		t.Fatalf("Close %+v, want the client-timeout reason with reconnect allowed", m)
	}
	c.waitDone()
	waitFor(t, "the server to drop the connection", func() bool { return h.srv.LocalConnections() == 0 })
}

// TestParking_ServerCloseWakesReaders: closing the server closes parked
// connections (their transports wake their readers, which end them), and
// the poller stops: the test's goroutine check finds nothing left.
func TestParking_ServerCloseWakesReaders(t *testing.T) {
	h := parkingHub(t)
	clients := connectJoined(h, "p", 5)
	waitFor(t, "the readers to park", func() bool { return parkedReaders(h.srv) == len(clients) })
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Fatalf("Server.Close: %v", err)
	}
	for _, c := range clients {
		if m := c.waitClose(); !m.AllowReconnect {
			t.Errorf("Close %+v at shutdown, want reconnect allowed", m)
		}
		c.waitDone()
	}
	if n := goroutinesIn("hub.(*poller).run"); n != 0 {
		t.Errorf("%d poller goroutines after Close", n)
	}
}

// TestParking_Churn: connections open and close while others stay parked;
// a closed socket's number, reused by a new one, never reaches another
// connection (release takes it out of the set before the close), so every
// survivor and every newcomer is still served, in order.
func TestParking_Churn(t *testing.T) {
	t.Parallel()
	h := parkingHub(t)
	stay := connectJoined(h, "stay", 4)
	for round := range 20 {
		churn := connectJoined(h, fmt.Sprintf("churn%d-", round), 3)
		waitFor(t, "every reader to park", func() bool { return parkedReaders(h.srv) == len(stay)+len(churn) })
		// One closed by its client, one by the server (the server's
		// close of a parked connection: Abort), one left to the end.
		churn[0].close()
		if st, _, body := h.do("DELETE", "/api/v1/hubs/"+testHubName+"/connections/"+churn[1].connID, "", bearerHeader(testAPIKey)); st != 200 {
			t.Fatalf("closing %s: %d %s", churn[1].connID, st, body)
		}
		churn[1].waitDone()
		waitFor(t, "the closed ones to go", func() bool { return h.srv.LocalConnections() == len(stay)+1 })
		sender := stay[round%len(stay)]
		sender.callOK("SendToGroup", "g", "tick", round)
		for i, c := range append(stay, churn[2]) {
			want := round + 1 // the survivors got every round's tick, in order
			if i == len(stay) {
				want = 1 // the newcomer only this round's
			}
			msgs := c.waitInvocations("tick", want)
			for k, m := range msgs {
				if got, w := string(m.Arguments[0]), fmt.Sprint(round+1-want+k); got != w {
					t.Fatalf("round %d, client %d: tick %d is %s, want %s", round, i, k, got, w)
				}
			}
		}
		churn[2].close()
		waitFor(t, "the round's last to go", func() bool { return h.srv.LocalConnections() == len(stay) })
	}
}

// TestParking_PollerFailure: if the epoll set fails, every parked reader is
// woken and waits in its socket from then on; the connections go on.
func TestParking_PollerFailure(t *testing.T) {
	t.Parallel()
	h := parkingHub(t)
	a := h.connect(testHubName, "a")
	b := h.connect(testHubName, "b")
	a.callOK("JoinGroup", "g")
	b.callOK("JoinGroup", "g")
	waitFor(t, "the readers to park", func() bool { return parkedReaders(h.srv) == 2 })
	h.srv.idlePoll.Load().fail()
	waitFor(t, "the readers to wait in their sockets", func() bool {
		return parkedReaders(h.srv) == 0 && goroutinesIn("hub.(*Server).readWebSocketFrom") >= 2
	})
	a.callOK("SendToGroup", "g", "after", 1)
	b.waitInvocations("after", 1)
	b.callOK("SendToGroup", "g", "after", 2)
	a.waitInvocations("after", 2)
}
