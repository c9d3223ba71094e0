package hub

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/raftplane/raftplane/fsm"
)

// waitStat polls Stats until cond holds.
func (h *testHub) waitStat(what string, cond func(Stats) bool) Stats {
	h.t.Helper()
	var st Stats
	waitFor(h.t, what, func() bool { st = h.srv.Stats(); return cond(st) })
	return st
}

// TestStats_Disconnects: each way a connection ends is counted under its
// reason, once.
func TestStats_Disconnects(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef-jwt")
	h := newTestHub(t, func(c *Config) {
		c.JWTKey = key
		c.JWTLeeway = 0
	})
	tok := func(sub string, exp time.Duration) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(exp).Unix()}).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	conn := func(sub string, exp time.Duration) *wsClient {
		return h.connectWith(testHubName, url.Values{"negotiateVersion": {"1"}, "access_token": {tok(sub, exp)}}, nil)
	}
	want := map[string]uint64{}
	check := func(what string) {
		t.Helper()
		st := h.waitStat(what, func(st Stats) bool {
			for k, v := range want {
				if st.Disconnects[k] != v {
					return false
				}
			}
			return true
		})
		for k, v := range st.Disconnects {
			if v != want[k] {
				t.Fatalf("after %s: disconnects %v, want %v", what, st.Disconnects, want)
			}
		}
	}

	a := conn("a", time.Hour)
	a.sendRaw(`{"type":7}` + "\x1e") // goodbye
	a.waitDone()
	want[DisconnectClient]++
	check("a goodbye")

	b := conn("b", time.Hour)
	b.close() // the transport drops, no goodbye
	want[DisconnectClient]++
	check("a dropped transport")

	c := conn("c", time.Hour)
	if st, _, body := h.do("DELETE", "/api/v1/hubs/chat/connections/"+c.connID, "", nil); st != 200 {
		t.Fatalf("DELETE: %d %s", st, body)
	}
	c.waitDone()
	want[DisconnectServer]++
	check("a REST close")

	e := conn("e", 1500*time.Millisecond)
	if cl := e.waitClose(); !strings.Contains(cl.Error, "access token expired") {
		t.Fatalf("close at expiry = %s", cl.Raw)
	}
	want[DisconnectTokenExpired]++
	check("a token's expiry")

	st := h.srv.Stats()
	if st.Connects[StatsWebSockets] != 4 {
		t.Errorf("connects %v, want 4 over WebSockets", st.Connects)
	}
	if len(st.Connections) != 0 {
		t.Errorf("connections %v after every client left", st.Connections)
	}
}

// TestStats_ClientTimeout: a client that says nothing is closed for it.
func TestStats_ClientTimeout(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) {
		c.ClientTimeout = 300 * time.Millisecond
		c.KeepAliveInterval = 100 * time.Millisecond
	})
	c := h.connect(testHubName, "quiet")
	if cl := c.waitClose(); !strings.Contains(cl.Error, "nothing received") {
		t.Fatalf("close = %s", cl.Raw)
	}
	h.waitStat("a client_timeout", func(st Stats) bool { return st.Disconnects[DisconnectClientTimeout] == 1 })
}

// TestStats_SlowConsumer: a client that stops reading is closed as a slow
// consumer and counted as one; its queue shows in Behind until then.
func TestStats_SlowConsumer(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) {
		c.MaxQueuedMessages = 2
		c.MaxQueuedBytes = 0
	})
	// A raw socket with a small receive buffer that is never read after
	// the handshake: the server's writes block once the buffers are full.
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	ws, _, err := d.Dial(h.wsURL(testHubName, "user=slow"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := ws.ReadMessage(); err != nil || string(p) != "{}\x1e" {
		t.Fatalf("handshake: %q %v", p, err)
	}
	h.waitStat("the connection", func(st Stats) bool { return len(st.Connections) == 1 })
	args := []byte(`["` + strings.Repeat("x", 16<<10) + `"]`)
	for i := 0; ; i++ {
		if i == 10000 {
			t.Fatalf("no slow-consumer close after %d messages of 16 KiB: %v", i, h.srv.Stats().Disconnects)
		}
		if _, err := h.pub.Publish(t.Context(), fsm.Command{Kind: fsm.KindPublish, Hub: testHubName, Audience: fsm.AudienceAll, Target: "t", Args: args}); err != nil {
			t.Fatal(err)
		}
		if h.srv.Stats().Disconnects[DisconnectSlowConsumer] == 1 {
			break
		}
	}
	st := h.srv.Stats()
	if st.Disconnects[DisconnectClient] != 0 || st.Disconnects[DisconnectServer] != 0 {
		t.Errorf("disconnects %v: the slow consumer counted under another reason too", st.Disconnects)
	}
	if st.LimitRefusals["max_queued_messages"] != 1 {
		t.Errorf("limit refusals %v", st.LimitRefusals)
	}
}

// TestStats_Resumes: each cursor-resume outcome, and a stateful reconnect.
func TestStats_Resumes(t *testing.T) {
	t.Parallel()
	h1, h2 := twoNodes(t)
	alice, tok := h1.connectToken(testHubName, "alice")
	seen := alice.callOK("Broadcast", "x", 0)

	// Resumed on node 2 while node 1 still holds her transport: node 1's
	// transport is moved, not disconnected.
	back := h2.resume(testHubName, tok, seen)
	alice.waitDone()
	h2.waitStat("the resume", func(st Stats) bool { return st.Resumes[ResumeResumed] == 1 })
	h1.waitStat("the moved transport", func(st Stats) bool { return st.Disconnects[DisconnectMoved] == 1 })

	// Another cluster's cursor: reset, told to the client.
	back.close()
	waitFor(t, "node 2 to let go", func() bool { return h2.srv.LocalConnections() == 0 })
	bad := h2.resume(testHubName, tok, "otherepoch:1:0")
	bad.waitClose()
	h2.waitStat("the reset", func(st Stats) bool { return st.Resumes[ResumeReset] == 1 })

	// A token that is not one: refused before the upgrade.
	if _, st, err := h2.dial(testHubName, url.Values{"resume": {"garbage"}, "cursor": {seen}}.Encode(), nil); err == nil || st < 400 {
		t.Fatalf("garbage resume: %d %v", st, err)
	}
	st := h2.waitStat("the refusal", func(st Stats) bool { return st.Resumes[ResumeRefused] == 1 })
	if st.Resumes[ResumeResumed] != 1 || st.Resumes[ResumeReset] != 1 {
		t.Errorf("resumes %v", st.Resumes)
	}

	// A stateful connection drops and comes back with its token.
	n := h1.negotiateOK(testHubName, "negotiateVersion=1&useStatefulReconnect=true&user=bob", nil)
	ws, _, err := h1.dial(testHubName, url.Values{"id": {*n.ConnectionToken}}.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.sendRaw(`{"protocol":"json","version":2}` + "\x1e")
	if got := ws.first(); got.Raw != "{}" {
		t.Fatalf("handshake response %s", got.Raw)
	}
	ws.sendRaw(`{"type":6}` + "\x1e")
	_ = ws.ws.UnderlyingConn().Close()
	<-ws.done
	again, _, err := h2.dial(testHubName, url.Values{"id": {*n.ConnectionToken}}.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	again.sendRaw(`{"type":9,"sequenceId":1}` + "\x1e")
	h2.waitStat("the stateful reconnect", func(st Stats) bool { return st.StatefulReconnects[ResumeResumed] == 1 })
	again.close()
}

// TestStats_Publishes: every commit is counted and timed by result, and
// the messages a client sends are counted.
func TestStats_Publishes(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	c := h.connect(testHubName, "u")
	before := h.srv.Stats()
	c.callOK("Broadcast", "t", 1)
	if st, _, body := h.do("POST", "/api/v1/hubs/chat", `{"target":"t","arguments":[2]}`, nil); st != 200 {
		t.Fatalf("REST send: %d %s", st, body)
	}
	h.pub.setFail(errors.New("no leader"))
	if st, _, _ := h.do("POST", "/api/v1/hubs/chat", `{"target":"t","arguments":[3]}`, nil); st != 503 {
		t.Fatalf("REST send without a leader: %d", st)
	}
	h.pub.setFail(nil)
	st := h.waitStat("both sends delivered", func(st Stats) bool { return st.Deliveries-before.Deliveries >= 3 })
	if d := st.Publishes[PublishCommitted] - before.Publishes[PublishCommitted]; d != 2 {
		t.Errorf("committed publishes moved by %d, want 2", d)
	}
	if d := st.Publishes[PublishFailed] - before.Publishes[PublishFailed]; d != 1 {
		t.Errorf("failed publishes moved by %d, want 1", d)
	}
	if d := st.PublishLatency.Count - before.PublishLatency.Count; d != 2 {
		t.Errorf("publish latency observations moved by %d, want 2 (failures are not timed)", d)
	}
	if st.PublishLatency.Buckets[10] != st.PublishLatency.Count || st.PublishLatency.Sum <= 0 {
		t.Errorf("publish latency %+v: the 10 s bucket holds every observation", st.PublishLatency)
	}
	if d := st.ClientMessages - before.ClientMessages; d != 1 {
		t.Errorf("client messages moved by %d, want 1 (the Broadcast)", d)
	}
	if d := st.RESTMessages - before.RESTMessages; d != 2 {
		t.Errorf("REST messages moved by %d, want 2", d)
	}
	if d := st.Commands[fsm.KindPublish.String()] - before.Commands[fsm.KindPublish.String()]; d != 2 {
		t.Errorf("publish commands moved by %d, want 2", d)
	}
	// The Broadcast's Completion and two messages: three deliveries.
	if d := st.Deliveries - before.Deliveries; d != 3 {
		t.Errorf("deliveries moved by %d, want 3", d)
	}
	if st.DispatcherLag != 0 || st.Dispatched != st.Position.Last {
		t.Errorf("dispatcher at %v, stream at %v, lag %d", st.Dispatched, st.Position.Last, st.DispatcherLag)
	}
	if len(st.Connections) != 1 || st.Connections[0] != (ConnectionCount{Hub: testHubName, Transport: StatsWebSockets, Protocol: "json", Count: 1}) {
		t.Errorf("connections %+v", st.Connections)
	}
}

// BenchmarkStats_HotPaths: what the counters add where things happen, with
// every goroutine of the machine at it at once (the contended case).
func BenchmarkStats_HotPaths(b *testing.B) {
	var st serverStats
	c := &conn{id: "abcdefgh"}
	frames := []outFrame{{b: make([]byte, 120)}, {b: make([]byte, 120)}}
	b.Run("publish", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				st.published(time.Now(), nil)
			}
		})
	})
	b.Run("write", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				st.wrote(c, frames, false)
			}
		})
	})
	b.Run("dispatch-1024", func(b *testing.B) {
		entries := make([]fsm.Entry, 1024)
		for i := range entries {
			entries[i].Kind, entries[i].Time = fsm.KindPublish, time.Now().UnixNano()
		}
		b.ReportAllocs()
		for b.Loop() {
			st.dispatchedBatch(entries)
		}
	})
}
