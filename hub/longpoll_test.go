package hub

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// pollResult is one long poll's answer.
type pollResult struct {
	status int
	ctype  string
	body   []byte
}

// pollOnce sends one long poll and waits for its answer.
func (h *testHub) pollOnce(tok string) pollResult {
	h.t.Helper()
	resp, err := h.ts.Client().Get(h.ts.URL + hubPath(tok) + "&_=" + time.Now().Format("150405.000000"))
	if err != nil {
		h.t.Fatalf("poll: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("poll body: %v", err)
	}
	return pollResult{resp.StatusCode, resp.Header.Get("Content-Type"), b}
}

// pollAsync starts a poll and returns its result channel once the server
// holds it as the pending poll.
func (h *testHub) pollAsync(tok string, sess *httpSession) <-chan pollResult {
	h.t.Helper()
	before := h.pendingPoll(sess)
	ch := make(chan pollResult, 1)
	go func() {
		// t.Fatalf must not run off the test goroutine: report status 0.
		resp, err := h.ts.Client().Get(h.ts.URL + hubPath(tok))
		if err != nil {
			ch <- pollResult{}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ch <- pollResult{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: b}
	}()
	waitFor(h.t, "the poll to be pending", func() bool {
		p := h.pendingPoll(sess)
		return p != nil && p != before
	})
	return ch
}

func (h *testHub) pendingPoll(sess *httpSession) chan struct{} {
	sess.lp.mu.Lock()
	defer sess.lp.mu.Unlock()
	return sess.lp.poll
}

func recvPoll(t *testing.T, ch <-chan pollResult) pollResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testWait):
		t.Fatal("the poll did not end")
		return pollResult{}
	}
}

// lpClient is a raw long-polling SignalR client that polls in the
// background and collects the JSON hub messages.
type lpClient struct {
	msgLog
	h    *testHub
	tok  string
	id   string
	stop chan struct{}
	done chan struct{}
	last int // the status that ended the loop
	idle int // polls that ended empty (the server held them for PollTimeout)
}

// idlePolls is how many of the client's polls have ended empty.
func (c *lpClient) idlePolls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idle
}

// connectLP negotiates, activates (the initial empty 200), handshakes over
// POST and starts polling.
func (h *testHub) connectLP(user string) *lpClient {
	h.t.Helper()
	tok, id := h.negotiateToken(user)
	r := h.pollOnce(tok)
	if r.status != http.StatusOK || len(r.body) != 0 {
		h.t.Fatalf("activation poll: %d %q, want an empty 200", r.status, r.body)
	}
	if st := h.post(tok, `{"protocol":"json","version":1}`+"\x1e"); st != http.StatusOK {
		h.t.Fatalf("handshake POST: status %d", st)
	}
	c := &lpClient{msgLog: msgLog{t: h.t}, h: h, tok: tok, id: id, stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	h.t.Cleanup(func() {
		select {
		case <-c.stop:
		default:
			close(c.stop)
		}
		<-c.done
	})
	hs := c.wait("the handshake response", func(wireMsg) bool { return true })
	if hs.Raw != "{}" {
		h.t.Fatalf("handshake response %q, want {}", hs.Raw)
	}
	return c
}

func (c *lpClient) loop() {
	defer close(c.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.h.ts.URL+hubPath(c.tok), nil)
		resp, err := c.h.ts.Client().Do(req)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			c.mu.Lock()
			c.last = resp.StatusCode
			c.mu.Unlock()
			return
		}
		if len(b) > 0 {
			c.add(parseRecords(c.t, b))
		} else {
			c.mu.Lock()
			c.idle++
			c.mu.Unlock()
		}
	}
}

func (c *lpClient) waitDone() int {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(testWait):
		c.t.Fatal("polling did not end")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *lpClient) call(id, target string, args ...any) wireMsg {
	c.t.Helper()
	if st := c.h.post(c.tok, invocationRecord(id, target, args...)); st != http.StatusOK {
		c.t.Fatalf("POST %s: status %d", target, st)
	}
	return c.waitCompletion(id)
}

func TestLongPolling_Messaging(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.APIKey = testAPIKey })
	c := h.connectLP("alice")
	if _, ok := h.m.Connection(testHubName, c.id); !ok {
		t.Fatalf("connection %s is not in the registry", c.id)
	}
	if m := c.call("1", "JoinGroup", "g1"); m.Error != "" {
		t.Fatalf("JoinGroup: %s", m.Error)
	}
	ws := h.connect(testHubName, "bob")
	ws.callOK("SendToGroup", "g1", "say", "hi")
	c.waitTarget("say")
	st, _, b := h.do(http.MethodPost, "/api/v1/hubs/"+testHubName, `{"target":"news","arguments":[1]}`, bearerHeader(testAPIKey))
	if st/100 != 2 {
		t.Fatalf("REST broadcast: %d %s", st, b)
	}
	c.waitTarget("news")

	// Transport mismatches on a long-polling connection.
	if st, _, _ := h.do(http.MethodGet, hubPath(c.tok), "", http.Header{"Accept": {"text/event-stream"}}); st != http.StatusBadRequest {
		t.Errorf("SSE on a long-polling connection: status %d, want 400", st)
	}
	if _, st, _ := h.dial(testHubName, "id="+url.QueryEscape(c.tok), nil); st != http.StatusBadRequest {
		t.Errorf("WebSocket on a long-polling connection: status %d, want 400", st)
	}

	// DELETE: 202, the pending poll ends with 204, the connection closes.
	if st, _, _ := h.do(http.MethodDelete, hubPath(c.tok), "", nil); st != http.StatusAccepted {
		t.Errorf("DELETE: status %d, want 202", st)
	}
	if st := c.waitDone(); st != http.StatusNoContent {
		t.Errorf("pending poll after DELETE: status %d, want 204", st)
	}
	waitFor(t, "the connection to leave the registry", func() bool {
		_, ok := h.m.Connection(testHubName, c.id)
		return !ok
	})
	if r := h.pollOnce(c.tok); r.status != http.StatusNoContent {
		t.Errorf("poll after DELETE: status %d, want 204", r.status)
	}
	if st := h.post(c.tok, `{"type":7}`+"\x1e"); st != http.StatusNotFound {
		t.Errorf("POST after DELETE: status %d, want 404", st)
	}
	if n := len(h.pub.commands(fsm.KindConnClose)); n != 1 {
		t.Errorf("%d ConnClose commands, want 1", n)
	}
}

func TestLongPolling_PollSemantics(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) {
		c.PollTimeout = 300 * time.Millisecond
		c.KeepAliveInterval = 50 * time.Millisecond
	})
	tok, id := h.negotiateToken("")
	if r := h.pollOnce(tok); r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("activation: %d %q", r.status, r.body)
	}
	sess := h.srv.session(id)
	if sess == nil || sess.kind != transportLP {
		t.Fatal("no long-polling session after activation")
	}
	if st := h.post(tok, `{"protocol":"json","version":1}`+"\x1e"); st != http.StatusOK {
		t.Fatalf("handshake POST: %d", st)
	}
	r := h.pollOnce(tok)
	if r.status != http.StatusOK || string(r.body) != "{}\x1e" || r.ctype != "application/octet-stream" {
		t.Fatalf("handshake poll: %d %q %q", r.status, r.ctype, r.body)
	}
	// Nothing to send: the server holds the poll (pollAsync returns once it
	// is the pending poll), then ends it with an empty 200 at PollTimeout,
	// no pings (inherent keep-alive).
	r = recvPoll(t, h.pollAsync(tok, sess))
	if r.status != http.StatusOK || len(r.body) != 0 {
		t.Errorf("idle poll: %d %q, want an empty 200", r.status, r.body)
	}
	// A newer poll ends the older one with 204, and gets the data.
	older := h.pollAsync(tok, sess)
	newer := h.pollAsync(tok, sess)
	if r := recvPoll(t, older); r.status != http.StatusNoContent {
		t.Errorf("older poll: status %d, want 204", r.status)
	}
	if st := h.post(tok, invocationRecord("j", "JoinGroup", "g")); st != http.StatusOK {
		t.Fatalf("POST: %d", st)
	}
	r = recvPoll(t, newer)
	if ms := parseRecords(t, r.body); r.status != http.StatusOK || len(ms) != 1 || ms[0].Type != typeCompletion {
		t.Errorf("newer poll: %d %q, want the completion", r.status, r.body)
	}
	// Several messages batch into one poll; each is whole.
	for _, id := range []string{"a", "b", "c"} {
		if st := h.post(tok, invocationRecord(id, "JoinGroup", "g")); st != http.StatusOK {
			t.Fatalf("POST: %d", st)
		}
	}
	var got []wireMsg
	for len(got) < 3 {
		r := h.pollOnce(tok)
		if r.status != http.StatusOK {
			t.Fatalf("poll: %d", r.status)
		}
		got = append(got, parseRecords(t, r.body)...)
	}
	// Mismatches and missing ids.
	if st, _, _ := h.do(http.MethodGet, "/hubs/chat", "", nil); st != http.StatusBadRequest {
		t.Errorf("poll without id: %d, want 400", st)
	}
	if st, _, _ := h.do(http.MethodPost, "/hubs/chat", "x", nil); st != http.StatusBadRequest {
		t.Errorf("POST without id: %d, want 400", st)
	}
}

func TestLongPolling_WebSocketMismatch(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	tok, _ := h.negotiateToken("")
	c, st, err := h.dial(testHubName, "id="+url.QueryEscape(tok), nil)
	if err != nil {
		t.Fatalf("dial %d: %v", st, err)
	}
	c.handshakeOK()
	if st := h.post(tok, `{"type":6}`+"\x1e"); st != http.StatusMethodNotAllowed {
		t.Errorf("POST to a WebSocket connection: %d, want 405", st)
	}
	if st, _, _ := h.do(http.MethodDelete, hubPath(tok), "", nil); st != http.StatusBadRequest {
		t.Errorf("DELETE on a WebSocket connection: %d, want 400", st)
	}
	if st, _, _ := h.do(http.MethodGet, hubPath(tok), "", nil); st != http.StatusBadRequest {
		t.Errorf("long poll on a WebSocket connection: %d, want 400", st)
	}
	if st, _, _ := h.do(http.MethodGet, hubPath(tok), "", http.Header{"Accept": {"text/event-stream"}}); st != http.StatusBadRequest {
		t.Errorf("SSE on a WebSocket connection: %d, want 400", st)
	}
}

func TestLongPolling_Liveness(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) {
		c.KeepAliveInterval = 100 * time.Millisecond
		c.ClientTimeout = 400 * time.Millisecond
		c.PollTimeout = 150 * time.Millisecond
	})
	// Polling keeps it alive well past ClientTimeout without any POST:
	// synchronise on the client's own idle polls, each of which the server
	// held for PollTimeout, until they span three ClientTimeouts.
	c := h.connectLP("")
	idle := c.idlePolls()
	waitFor(t, "eight idle polls", func() bool { return c.idlePolls() >= idle+8 })
	if _, ok := h.m.Connection(testHubName, c.id); !ok {
		t.Fatal("a connection that keeps polling was dropped")
	}
	for _, m := range c.all() {
		if m.Type == typePing {
			t.Fatalf("a Ping on long polling: %s", m.Raw)
		}
	}
	// Once polls stop, it is gone after about ClientTimeout; a late poll gets 204.
	close(c.stop)
	<-c.done
	waitFor(t, "the server to drop the connection", func() bool { return h.srv.LocalConnections() == 0 })
	if r := h.pollOnce(c.tok); r.status != http.StatusNoContent && !(r.status == http.StatusOK && bytes.Contains(r.body, []byte(`"type":7`))) {
		t.Errorf("poll after the timeout: %d %q, want the Close or 204", r.status, r.body)
	}
}

func TestLongPolling_ServerClose(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	c := h.connectLP("")
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	m := c.wait("the shutdown Close", func(m wireMsg) bool { return m.Type == typeClose })
	if !m.AllowReconnect {
		t.Errorf("Close %s, want allowReconnect", m.Raw)
	}
	if st := c.waitDone(); st != http.StatusNoContent {
		t.Errorf("poll after the close: %d, want 204", st)
	}
}

func TestLongPolling_MessagePack(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	tok, _ := h.negotiateToken("")
	if r := h.pollOnce(tok); r.status != http.StatusOK {
		t.Fatalf("activation: %d", r.status)
	}
	if st := h.post(tok, `{"protocol":"messagepack","version":1}`+"\x1e"); st != http.StatusOK {
		t.Fatalf("handshake POST: %d", st)
	}
	if r := h.pollOnce(tok); r.status != http.StatusOK || string(r.body) != "{}\x1e" {
		t.Fatalf("handshake poll: %d %q", r.status, r.body)
	}
	// A msgpack Ping then Close: [7, null, false] length-prefixed.
	st, _, _ := h.do(http.MethodPost, hubPath(tok), "\x02\x91\x06\x04\x93\x07\xc0\xc2",
		http.Header{"Content-Type": {"application/octet-stream"}})
	if st != http.StatusOK {
		t.Fatalf("binary POST: %d", st)
	}
	waitFor(t, "the connection to end", func() bool { return h.srv.LocalConnections() == 0 })
}

// FuzzLongPollRequest sends arbitrary methods, query strings and bodies to
// the hub path of a live long-polling connection: no panic, only documented
// statuses, and the connection ends cleanly afterwards.
func FuzzLongPollRequest(f *testing.F) {
	f.Add(uint8(0), "", []byte(""))
	f.Add(uint8(1), "x=1", []byte(`{"type":6}`+"\x1e"))
	f.Add(uint8(1), "", []byte(`{"protocol":"messagepack","version":1}`+"\x1e\x01\x91"))
	f.Add(uint8(2), "id=", []byte("x"))
	f.Add(uint8(3), "id=a.b&negotiateVersion=1", []byte("\x1e"))
	f.Add(uint8(4), "%zz", []byte("{"))
	f.Fuzz(func(t *testing.T, method uint8, query string, body []byte) {
		h := newTestHub(t, func(c *Config) {
			c.PollTimeout = 50 * time.Millisecond
			c.HandshakeTimeout = time.Second
		})
		tok, _ := h.negotiateToken("")
		if r := h.pollOnce(tok); r.status != http.StatusOK {
			t.Fatalf("activation: %d", r.status)
		}
		methods := []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut, http.MethodOptions}
		m := methods[int(method)%len(methods)]
		for _, q := range []string{query, "id=" + url.QueryEscape(tok) + "&" + query} {
			req := httptest.NewRequest(m, "/hubs/chat", bytes.NewReader(body))
			req.URL.RawQuery = q
			rec := httptest.NewRecorder()
			h.srv.ServeHTTP(rec, req)
			switch rec.Code {
			case http.StatusOK, http.StatusAccepted, http.StatusNoContent, http.StatusBadRequest, http.StatusNotFound,
				http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
			default:
				t.Fatalf("%s ?%s: status %d %s", m, q, rec.Code, rec.Body)
			}
		}
		if st, _, _ := h.do(http.MethodDelete, hubPath(tok), "", nil); st != http.StatusAccepted {
			t.Fatalf("DELETE: %d", st)
		}
		waitFor(t, "the connection to end", func() bool { return h.srv.LocalConnections() == 0 })
		if r := h.pollOnce(tok); r.status != http.StatusNoContent {
			t.Fatalf("poll after DELETE: %d", r.status)
		}
	})
}

func TestHTTPTransports_JWT(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.JWTKey = testJWTKey })
	alice, mallory := bearerHeader(userJWT(t, "alice")), bearerHeader(userJWT(t, "mallory"))
	n := h.negotiateOK(testHubName, "negotiateVersion=1", alice)
	path := hubPath(*n.ConnectionToken)
	if st, _, _ := h.do(http.MethodGet, path, "", nil); st != http.StatusUnauthorized {
		t.Errorf("poll without a token: %d, want 401", st)
	}
	if st, _, _ := h.do(http.MethodGet, path, "", mallory); st != http.StatusForbidden {
		t.Errorf("poll with another user's token: %d, want 403", st)
	}
	if st, _, _ := h.do(http.MethodGet, path, "", alice); st != http.StatusOK {
		t.Fatalf("activation with the right token: %d", st)
	}
	hs := `{"protocol":"json","version":1}` + "\x1e"
	if st, _, _ := h.do(http.MethodPost, path, hs, mallory); st != http.StatusForbidden {
		t.Errorf("POST with another user's token: %d, want 403", st)
	}
	if st, _, _ := h.do(http.MethodPost, path, hs, alice); st != http.StatusOK {
		t.Errorf("POST with the right token: %d", st)
	}
	if st, _, b := h.do(http.MethodGet, path, "", alice); st != http.StatusOK || string(b) != "{}\x1e" {
		t.Errorf("handshake poll: %d %q", st, b)
	}
	// SSE sends the token in the query, as the JS client does.
	n2 := h.negotiateOK(testHubName, "negotiateVersion=1", alice)
	req, _ := http.NewRequest(http.MethodGet, h.ts.URL+hubPath(*n2.ConnectionToken)+"&access_token="+userJWT(t, "alice"), nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("SSE with access_token: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestLongPolling_PostBeforeFirstPoll: a client may send its handshake
// before its first poll (signalrcore does; ASP.NET Core accepts it): the
// POST starts the connection as long polling, and the poll that follows
// gets the handshake response. A POST for a connection already registered
// elsewhere, or with long polling off, still gets 404.
func TestLongPolling_PostBeforeFirstPoll(t *testing.T) {
	h := newTestHub(t)
	tok, _ := h.negotiateToken("early")
	if st := h.post(tok, `{"protocol":"json","version":1}`+"\x1e"); st != http.StatusOK {
		t.Fatalf("handshake POST before any poll: status %d, want 200", st)
	}
	r := h.pollOnce(tok)
	if r.status != http.StatusOK || string(r.body) != "{}\x1e" {
		t.Fatalf("first poll after the POST: %d %q, want the handshake response", r.status, r.body)
	}
	off := newTestHub(t, func(c *Config) { c.DisableLongPolling = true })
	tok2, _ := off.negotiateToken("early")
	if st := off.post(tok2, `{"protocol":"json","version":1}`+"\x1e"); st != http.StatusNotFound {
		t.Fatalf("POST with long polling off: status %d, want 404", st)
	}
}
