package hub

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// fakeLeadership is a Leadership a test switches.
type fakeLeadership struct{ on atomic.Bool }

func (f *fakeLeadership) IsLeader() bool { return f.on.Load() }

// logEntry finds the applied entry of a kind for a connection.
func logEntry(t *testing.T, m *fsm.Machine, kind fsm.Kind, conn string) fsm.Entry {
	t.Helper()
	es, err := m.Since(fsm.Cursor{}, 0)
	if err != nil {
		t.Fatalf("Since: %v", err)
	}
	for _, e := range es {
		if e.Kind == kind && e.Conn == conn {
			return e
		}
	}
	t.Fatalf("no %s of %s in the log", kind, conn)
	return fsm.Entry{}
}

// goodbye closes a client of h cleanly (a Close message) and waits until
// its close is in the log.
func (h *testHub) goodbye(c *wsClient) {
	h.t.Helper()
	c.sendRaw(`{"type":7}` + "\x1e")
	c.waitDone()
	waitFor(h.t, "the close in the log", func() bool {
		_, ok := h.m.Connection(testHubName, c.connID)
		return !ok
	})
}

// TestEvents_ConnectedAndDisconnected: connected once when a connection
// opens (not when it resumes), with the ConnOpen's cursor as its id;
// disconnected once when the log closes it, with the close's cursor, no
// error for a goodbye and the reason for a server close.
func TestEvents_ConnectedAndDisconnected(t *testing.T) {
	u := newTestUpstream(t, nil)
	h := newTestHub(t, u.with)
	c, tok := h.connectToken(testHubName, "alice")
	got := u.wait("connected", c.connID, 1)
	r := got[0]
	open := logEntry(t, h.m, fsm.KindConnOpen, c.connID)
	if r.Path != "/chat/api/connections/connected" || r.Header.Get("X-ASRS-Category") != "connections" ||
		r.Header.Get("X-ASRS-User-Id") != "alice" || string(r.Body) != `{"type":10}` ||
		r.Header.Get("X-Raftplane-Event-Id") != open.Cursor.Format(testEpoch) {
		t.Fatalf("connected request %s %v %s (ConnOpen at %s)", r.Path, r.Header, r.Body, open.Cursor.Format(testEpoch))
	}
	checkSignature(t, r)

	// The socket drops and the client resumes by cursor: no second
	// connected (it would have come before the handshake's answer).
	cur := h.fence2(c)
	c.close()
	waitFor(t, "the server to notice", func() bool { return h.srv.LocalConnections() == 0 })
	again := h.resume(testHubName, tok, cur)
	if n := len(u.of("connected", c.connID)); n != 1 {
		t.Fatalf("%d connected events after a resume, want 1", n)
	}
	h.goodbye(again)
	d := u.wait("disconnected", c.connID, 1)[0]
	closed := logEntry(t, h.m, fsm.KindConnClose, c.connID)
	if d.Path != "/chat/api/connections/disconnected" || string(d.Body) != `{"type":11}` ||
		d.Header.Get("X-Raftplane-Event-Id") != closed.Cursor.Format(testEpoch) || d.Header.Get("X-ASRS-User-Id") != "alice" {
		t.Fatalf("disconnected request %s %v %s (ConnClose at %s)", d.Path, d.Header, d.Body, closed.Cursor.Format(testEpoch))
	}
	checkSignature(t, d)

	// A close by the REST API carries its reason.
	b := h.connect(testHubName, "bob")
	if st, _, body := h.do("DELETE", "/api/v1/hubs/chat/connections/"+b.connID+"?reason=banned", "", bearerHeader(testAPIKey)); st != 200 {
		t.Fatalf("DELETE: %d %s", st, body)
	}
	db := u.wait("disconnected", b.connID, 1)[0]
	if string(db.Body) != `{"type":11,"error":"banned"}` {
		t.Fatalf("disconnected body %s", db.Body)
	}
	if n := len(u.of("disconnected", c.connID)); n != 1 {
		t.Fatalf("%d disconnected events for alice, want 1", n)
	}
	if n := len(u.of("connected", "")); n != 2 {
		t.Fatalf("%d connected events, want 2", n)
	}
}

// fence2 publishes a message to c and returns its cursor (where a resume
// starts from).
func (h *testHub) fence2(c *wsClient) string {
	h.t.Helper()
	h.fence(testHubName, c)
	msgs := c.messages()
	for i := len(msgs) - 1; i >= 0; i-- {
		if cur := msgs[i].Headers["cursor"]; cur != "" {
			return cur
		}
	}
	h.t.Fatal("no message with a cursor")
	return ""
}

// TestEvents_Refusals: the upstream's non-2xx answer to connected refuses
// the connection with its message, and that connection gets no
// disconnected event; one OnConnected refuses after the upstream accepted
// gets the upstream's disconnected but not OnDisconnected.
func TestEvents_Refusals(t *testing.T) {
	u := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request, req upstreamReq) {
		if req.event() == "connected" && req.Header.Get("X-ASRS-User-Id") == "mallory" {
			http.Error(w, "you shall not pass", http.StatusForbidden)
		}
	})
	var mu sync.Mutex
	var gone []string // OnDisconnected's users, in order
	h := startAppHub(t, Handlers{
		OnConnected: func(ctx *Context) error {
			if ctx.User == "eve" {
				return Errorf("no eve")
			}
			return nil
		},
		OnDisconnected: func(ctx *Context, reason string) {
			mu.Lock()
			gone = append(gone, ctx.User+":"+reason)
			mu.Unlock()
		},
	}, u.with)

	refused := func(user, want string) string {
		t.Helper()
		n := h.negotiateOK(testHubName, url.Values{"negotiateVersion": {"1"}, "user": {user}}.Encode(), nil)
		c, _, err := h.dial(testHubName, url.Values{"id": {*n.ConnectionToken}}.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.sendRaw(`{"protocol":"json","version":1}` + "\x1e")
		if got := c.first(); got.Error != want {
			t.Fatalf("%s: handshake response %s, want error %q", user, got.Raw, want)
		}
		c.waitDone()
		waitFor(t, "the refused connection's close in the log", func() bool {
			_, ok := h.m.Connection(testHubName, n.ConnectionID)
			return !ok
		})
		return n.ConnectionID
	}
	mallory := refused("mallory", "Connection refused: you shall not pass")
	eve := refused("eve", "Connection refused: no eve")
	if r := logEntry(t, h.m, fsm.KindConnClose, mallory); !strings.HasPrefix(r.Reason, refusedByUpstream) {
		t.Errorf("mallory's close reason %q", r.Reason)
	}

	alice := h.connect(testHubName, "alice")
	h.goodbye(alice)
	u.wait("disconnected", alice.connID, 1)
	waitFor(t, "OnDisconnected for alice", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(gone) > 0 && gone[len(gone)-1] == "alice:"
	})
	// Events run in log order: everything before alice's close is done.
	if n := len(u.of("disconnected", mallory)); n != 0 {
		t.Errorf("mallory, refused by the upstream, got %d disconnected events", n)
	}
	if n := len(u.of("disconnected", eve)); n != 1 {
		t.Errorf("eve, accepted by the upstream, got %d disconnected events, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(gone) != 1 {
		t.Errorf("OnDisconnected ran for %v, want alice only", gone)
	}
}

// TestEvents_OnDisconnected: runs once with the connection's identity, and
// its sends commit.
func TestEvents_OnDisconnected(t *testing.T) {
	h := startAppHub(t, Handlers{
		OnDisconnected: func(ctx *Context, reason string) {
			_ = ctx.Clients().All().Send("left", ctx.ConnectionID, ctx.User, reason)
		},
	})
	watcher := h.connect(testHubName, "w")
	a := h.connect(testHubName, "alice")
	h.goodbye(a)
	left := watcher.waitInvocations("left", 1)[0]
	var args []string
	for _, raw := range left.Arguments {
		var s string
		_ = json.Unmarshal(raw, &s)
		args = append(args, s)
	}
	if strings.Join(args, "|") != a.connID+"|alice|" {
		t.Fatalf("left %v", args)
	}
	if st := h.srv.UpstreamStats(); st.Enabled || st.Events.Handler != 1 || !st.Events.Leading {
		t.Fatalf("stats %+v", st)
	}
}

// TestEvents_Leadership: only the leader delivers; it records its progress
// in the log, and a new leader (another node) resumes from there: each
// event is delivered once.
func TestEvents_Leadership(t *testing.T) {
	u := newTestUpstream(t, nil)
	la, lb := &fakeLeadership{}, &fakeLeadership{}
	la.on.Store(true)
	opts := func(l Leadership) func(*Config) {
		return func(c *Config) {
			u.with(c)
			c.Leadership = l
			c.EventsMarkEvery = 1
		}
	}
	h1 := newTestHub(t, opts(la))
	cfg2 := testConfig(t)
	cfg2.NodeID = "node-2"
	opts(lb)(&cfg2)
	h2 := startTestHub(t, cfg2, h1.m, h1.pub)

	c1 := h1.connect(testHubName, "one")
	h1.goodbye(c1)
	u.wait("disconnected", c1.connID, 1)
	closed1 := logEntry(t, h1.m, fsm.KindConnClose, c1.connID)
	waitFor(t, "the progress record", func() bool { return !h1.m.EventsDone().Less(closed1.Cursor) })
	if len(h1.pub.commands(fsm.KindEventsDone)) == 0 {
		t.Fatal("no KindEventsDone in the log")
	}

	// Leadership moves to node-2.
	la.on.Store(false)
	waitFor(t, "node-1 to stop", func() bool { return !h1.srv.UpstreamStats().Events.Leading })
	c2 := h1.connect(testHubName, "two")
	h1.goodbye(c2) // node-1 holds it, but does not lead: node-2 delivers
	lb.on.Store(true)
	u.wait("disconnected", c2.connID, 1)
	c3 := h2.connect(testHubName, "three")
	h2.goodbye(c3)
	u.wait("disconnected", c3.connID, 1)
	if n := len(u.of("disconnected", c1.connID)); n != 1 {
		t.Errorf("the first close was delivered %d times, want once (the new leader starts at the record)", n)
	}
	// The counts move once the upstream's answer is read.
	waitFor(t, "node-2 to count its answers", func() bool { return h2.srv.UpstreamStats().Events.Upstream == 2 })
	s1, s2 := h1.srv.UpstreamStats().Events, h2.srv.UpstreamStats().Events
	if s1.Upstream != 1 || s2.Upstream != 2 || !s2.Leading {
		t.Errorf("node-1 delivered %d, node-2 %d (leading %v); want 1 and 2", s1.Upstream, s2.Upstream, s2.Leading)
	}
}

// TestEvents_GapLogged: when the log entries after the last record have
// left the cache, the new leader says so (Gaps) and goes on from the
// oldest cached entry.
func TestEvents_GapLogged(t *testing.T) {
	u := newTestUpstream(t, nil)
	lead := &fakeLeadership{}
	lead.on.Store(true)
	cfg := testConfig(t)
	u.with(&cfg)
	cfg.Leadership = lead
	cfg.EventsMarkEvery = 1
	m, err := fsm.New(fsm.Config{CacheMaxEntries: 16, CacheMaxBytes: 1 << 20, CacheMaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := startTestHub(t, cfg, m, newFakePublisher(t, m, true))

	c1 := h.connect(testHubName, "one")
	h.goodbye(c1)
	u.wait("disconnected", c1.connID, 1)
	closed1 := logEntry(t, m, fsm.KindConnClose, c1.connID)
	waitFor(t, "the progress record", func() bool { return !m.EventsDone().Less(closed1.Cursor) })
	lead.on.Store(false)
	waitFor(t, "the runner to stop", func() bool { return !h.srv.UpstreamStats().Events.Leading })

	c2 := h.connect(testHubName, "two")
	h.goodbye(c2)
	for range 40 { // c2's close leaves the cache
		if _, err := h.pub.Publish(context.Background(), publishCmd(testHubName, fsm.AudienceAll, "", "x", []byte("[]"), nil)); err != nil {
			t.Fatal(err)
		}
	}
	// The dispatcher falls behind a 16-entry cache here and jumps to the
	// end; a connection opened before it has caught up could be skipped
	// over and time out waiting to attach.
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	h.srv.waitDispatched(ctx, m.Position().Last)
	cancel()
	lead.on.Store(true)
	c3 := h.connect(testHubName, "three")
	h.goodbye(c3)
	u.wait("disconnected", c3.connID, 1)
	if n := len(u.of("disconnected", c2.connID)); n != 0 {
		t.Errorf("c2's event was delivered although its entry had left the cache")
	}
	if g := h.srv.UpstreamStats().Events.Gaps; g != 1 {
		t.Errorf("gaps = %d, want 1", g)
	}
}
