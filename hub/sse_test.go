package hub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// ---------------------------------------------------------------------------
// Helpers shared by the SSE and long-polling tests.

// negotiateToken negotiates version 1 for user and returns the token and id.
func (h *testHub) negotiateToken(user string) (tok, id string) {
	h.t.Helper()
	q := url.Values{"negotiateVersion": {"1"}}
	if user != "" {
		q.Set("user", user)
	}
	n := h.negotiateOK(testHubName, q.Encode(), nil)
	if n.ConnectionToken == nil {
		h.t.Fatal("negotiate returned no connectionToken")
	}
	return *n.ConnectionToken, n.ConnectionID
}

func hubPath(tok string) string { return "/hubs/" + testHubName + "?id=" + url.QueryEscape(tok) }

// post sends a transport POST and returns its status.
func (h *testHub) post(tok, body string) int {
	h.t.Helper()
	st, _, _ := h.do(http.MethodPost, hubPath(tok), body, http.Header{"Content-Type": {"text/plain;charset=UTF-8"}})
	return st
}

// parseRecords splits a transport message into JSON hub messages.
func parseRecords(t testing.TB, p []byte) []wireMsg {
	t.Helper()
	var out []wireMsg
	if len(p) > 0 && p[len(p)-1] != recordSeparator {
		t.Errorf("transport message %q does not end with a record separator", p)
	}
	for _, rec := range bytes.Split(p, []byte{recordSeparator}) {
		if len(rec) == 0 {
			continue
		}
		var m wireMsg
		if err := json.Unmarshal(rec, &m); err != nil {
			t.Errorf("record %q: %v", rec, err)
			continue
		}
		m.Raw = string(rec)
		out = append(out, m)
	}
	return out
}

// msgLog collects hub messages received by a raw HTTP-transport client.
type msgLog struct {
	t    testing.TB
	mu   sync.Mutex
	msgs []wireMsg
}

func (l *msgLog) add(ms []wireMsg) {
	l.mu.Lock()
	l.msgs = append(l.msgs, ms...)
	l.mu.Unlock()
}

func (l *msgLog) all() []wireMsg {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]wireMsg(nil), l.msgs...)
}

// wait waits until find matches the messages received so far.
func (l *msgLog) wait(what string, find func(m wireMsg) bool) wireMsg {
	l.t.Helper()
	var got wireMsg
	waitFor(l.t, what, func() bool {
		for _, m := range l.all() {
			if find(m) {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

func (l *msgLog) waitTarget(target string) wireMsg {
	l.t.Helper()
	return l.wait("an invocation of "+target, func(m wireMsg) bool { return m.Type == typeInvocation && m.Target == target })
}

func (l *msgLog) waitCompletion(id string) wireMsg {
	l.t.Helper()
	return l.wait("completion "+id, func(m wireMsg) bool { return m.Type == typeCompletion && m.InvocationID == id })
}

// sseClient is a raw SSE SignalR client: it reads the event stream and
// parses each event's data lines as hub messages.
type sseClient struct {
	msgLog
	h      *testHub
	tok    string
	id     string
	cancel context.CancelFunc
	resp   *http.Response
	events int
	ended  chan struct{}
}

// openSSE opens the event stream for tok and checks the preamble.
func (h *testHub) openSSE(tok string) (*sseClient, int) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.ts.URL+hubPath(tok), nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		cancel()
		h.t.Fatalf("SSE GET: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode
	}
	c := &sseClient{msgLog: msgLog{t: h.t}, h: h, tok: tok, cancel: cancel, resp: resp, ended: make(chan struct{})}
	h.t.Cleanup(c.close)
	br := bufio.NewReader(resp.Body)
	pre := make([]byte, 3)
	if _, err := io.ReadFull(br, pre); err != nil || string(pre) != ":\r\n" {
		h.t.Fatalf("SSE preamble %q, %v; want \":\\r\\n\"", pre, err)
	}
	go c.readLoop(br)
	return c, resp.StatusCode
}

func (c *sseClient) readLoop(br *bufio.Reader) {
	defer close(c.ended)
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if !strings.HasSuffix(line, "\r\n") {
			c.t.Errorf("SSE line %q does not end with CRLF", line)
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if data != nil {
				c.mu.Lock()
				c.events++
				c.mu.Unlock()
				c.add(parseRecords(c.t, []byte(strings.Join(data, "\n"))))
			}
			data = nil
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		case strings.HasPrefix(line, ":"):
		default:
			c.t.Errorf("unexpected SSE line %q", line)
		}
	}
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
}

// waitEnd waits until the server ends the stream.
func (c *sseClient) waitEnd() {
	c.t.Helper()
	select {
	case <-c.ended:
	case <-time.After(testWait):
		c.t.Fatal("the server did not end the event stream")
	}
}

// connectSSE negotiates, opens the stream and handshakes with JSON.
func (h *testHub) connectSSE(user string) *sseClient {
	h.t.Helper()
	tok, id := h.negotiateToken(user)
	c, st := h.openSSE(tok)
	if c == nil {
		h.t.Fatalf("SSE GET: status %d", st)
	}
	c.id = id
	if st := h.post(tok, `{"protocol":"json","version":1}`+"\x1e"); st != http.StatusOK {
		h.t.Fatalf("handshake POST: status %d", st)
	}
	hs := c.wait("the handshake response", func(wireMsg) bool { return true })
	if hs.Raw != "{}" {
		h.t.Fatalf("handshake response %q, want {}", hs.Raw)
	}
	return c
}

// call invokes a hub method over POST and waits for its completion.
func (c *sseClient) call(id, target string, args ...any) wireMsg {
	c.t.Helper()
	if st := c.h.post(c.tok, invocationRecord(id, target, args...)); st != http.StatusOK {
		c.t.Fatalf("POST %s: status %d", target, st)
	}
	return c.waitCompletion(id)
}

// ---------------------------------------------------------------------------

func TestAppendSSEEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"{}\x1e", "data: {}\x1e\r\n\r\n"},
		{"a\nb", "data: a\r\ndata: b\r\n\r\n"},
		{"a\r\nb\rc\n", "data: a\r\ndata: b\r\ndata: c\r\n\r\n"},
		{"", "data: \r\n\r\n"},
	} {
		if got := string(appendSSEEvent(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("appendSSEEvent(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNegotiate_Transports(t *testing.T) {
	t.Parallel()
	names := func(h *testHub) []string {
		var out []string
		for _, tr := range h.negotiateOK(testHubName, "negotiateVersion=1", nil).AvailableTransports {
			out = append(out, tr.Transport+":"+strings.Join(tr.TransferFormats, "+"))
		}
		return out
	}
	all := strings.Join(names(newTestHub(t)), ",")
	if want := "WebSockets:Text+Binary,ServerSentEvents:Text,LongPolling:Text+Binary"; all != want {
		t.Errorf("transports %s, want %s", all, want)
	}
	h := newTestHub(t, func(c *Config) { c.DisableWebSockets, c.DisableLongPolling = true, true })
	if got := strings.Join(names(h), ","); got != "ServerSentEvents:Text" {
		t.Errorf("SSE only: transports %s", got)
	}
	tok, _ := h.negotiateToken("")
	if _, st, _ := h.dial(testHubName, "id="+url.QueryEscape(tok), nil); st != http.StatusNotFound {
		t.Errorf("WebSocket with WebSockets disabled: status %d, want 404", st)
	}
	if st, _, _ := h.do(http.MethodGet, hubPath(tok), "", nil); st != http.StatusNotFound {
		t.Errorf("long poll with LongPolling disabled: status %d, want 404", st)
	}
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "PollTimeout") {
		t.Errorf("Validate of an empty config: %v, want a PollTimeout complaint", err)
	}
}

func TestSSE_Messaging(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.APIKey = testAPIKey })
	c := h.connectSSE("alice")
	if _, ok := h.m.Connection(testHubName, c.id); !ok {
		t.Fatalf("connection %s is not in the registry", c.id)
	}
	if m := c.call("1", "JoinGroup", "g1"); m.Error != "" {
		t.Fatalf("JoinGroup: %s", m.Error)
	}
	ws := h.connect(testHubName, "bob")
	ws.callOK("SendToGroup", "g1", "say", "hi\nthere")
	m := c.waitTarget("say")
	if len(m.Arguments) != 1 || string(m.Arguments[0]) != `"hi\nthere"` {
		t.Errorf("say arguments %s", m.Raw)
	}
	// A REST broadcast with a pretty-printed (multi-line) argument.
	st, _, b := h.do(http.MethodPost, "/api/v1/hubs/"+testHubName, "{\n  \"target\": \"news\",\n  \"arguments\": [\n {\"a\":\n 1}]\n}",
		bearerHeader(testAPIKey))
	if st/100 != 2 {
		t.Fatalf("REST broadcast: %d %s", st, b)
	}
	c.waitTarget("news")

	// Transport mismatches on an SSE connection.
	if c2, st := h.openSSE(c.tok); c2 != nil || st != http.StatusConflict {
		t.Errorf("second event stream: status %d, want 409", st)
	}
	if st, _, _ := h.do(http.MethodGet, hubPath(c.tok), "", nil); st != http.StatusBadRequest {
		t.Errorf("long poll on an SSE connection: status %d, want 400", st)
	}
	if st, _, _ := h.do(http.MethodDelete, hubPath(c.tok), "", nil); st != http.StatusBadRequest {
		t.Errorf("DELETE on an SSE connection: status %d, want 400", st)
	}
	if _, st, _ := h.dial(testHubName, "id="+url.QueryEscape(c.tok), nil); st != http.StatusBadRequest {
		t.Errorf("WebSocket on an SSE connection: status %d, want 400", st)
	}

	// The client's Close message ends the connection cleanly.
	if st := h.post(c.tok, `{"type":7}`+"\x1e"); st != http.StatusOK {
		t.Errorf("Close POST: status %d", st)
	}
	c.waitEnd()
	waitFor(t, "the connection to leave the registry", func() bool {
		_, ok := h.m.Connection(testHubName, c.id)
		return !ok
	})
	if st := h.post(c.tok, `{"type":6}`+"\x1e"); st != http.StatusNotFound {
		t.Errorf("POST after the end: status %d, want 404", st)
	}
	if c2, st := h.openSSE(c.tok); c2 != nil || st != http.StatusNotFound {
		t.Errorf("event stream after the end: status %d, want 404", st)
	}
}

func TestSSE_HandshakeErrors(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	tok, _ := h.negotiateToken("")
	c, _ := h.openSSE(tok)
	if st := h.post(tok, `{"protocol":"messagepack","version":1}`+"\x1e"); st != http.StatusOK {
		t.Fatalf("handshake POST: status %d", st)
	}
	m := c.wait("the handshake error", func(wireMsg) bool { return true })
	if !strings.Contains(m.Error, "Cannot use the 'messagepack' protocol on the current transport") {
		t.Errorf("handshake response %s", m.Raw)
	}
	c.waitEnd()
	waitFor(t, "the server to drop the connection", func() bool { return h.srv.LocalConnections() == 0 })

	// Missing and unknown ids, oversized bodies.
	if st, _, _ := h.do(http.MethodGet, "/hubs/chat", "", http.Header{"Accept": {"text/event-stream"}}); st != http.StatusBadRequest {
		t.Errorf("SSE without id: status %d, want 400", st)
	}
	c2 := h.connectSSE("")
	big := strings.Repeat("x", h.cfg.MaxMessageSize*postSizeFactor+1)
	if st := h.post(c2.tok, big); st != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized POST: status %d, want 413", st)
	}
	if m := c2.call("p", "JoinGroup", "g"); m.Error != "" {
		t.Errorf("after a refused POST: %s", m.Raw)
	}
}

func TestSSE_KeepAliveAndTimeout(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) {
		c.KeepAliveInterval = 100 * time.Millisecond
		c.ClientTimeout = 700 * time.Millisecond
	})
	c := h.connectSSE("")
	c.wait("a ping", func(m wireMsg) bool { return m.Type == typePing })
	// Pings POSTed by the client keep it alive past ClientTimeout.
	for range 10 {
		if st := h.post(c.tok, `{"type":6}`+"\x1e"); st != http.StatusOK {
			t.Fatalf("ping POST: status %d", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(c.all()) > 0 && c.all()[len(c.all())-1].Type == typeClose {
		t.Fatal("closed although the client sent pings")
	}
	m := c.wait("the timeout Close", func(m wireMsg) bool { return m.Type == typeClose })
	if !m.AllowReconnect || !strings.Contains(m.Error, "nothing received") {
		t.Errorf("Close %s", m.Raw)
	}
	c.waitEnd()
}

func TestSSE_ClientGoneAndServerClose(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	c := h.connectSSE("")
	c.close()
	waitFor(t, "the server to drop the connection", func() bool { return h.srv.LocalConnections() == 0 })
	if st := h.post(c.tok, `{"type":6}`+"\x1e"); st != http.StatusNotFound {
		t.Errorf("POST after the stream ended: status %d, want 404", st)
	}

	c2 := h.connectSSE("")
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	m := c2.wait("the shutdown Close", func(m wireMsg) bool { return m.Type == typeClose })
	if !m.AllowReconnect {
		t.Errorf("Close %s, want allowReconnect", m.Raw)
	}
	c2.waitEnd()
}

// FuzzSSEPost feeds arbitrary POST bodies (after the handshake or as the
// handshake) and query strings to an SSE connection: no panic, only the
// documented statuses, and the connection ends cleanly.
func FuzzSSEPost(f *testing.F) {
	f.Add([]byte(`{"type":6}`+"\x1e"), "", true)
	f.Add([]byte(`{"type":1,"invocationId":"1","target":"JoinGroup","arguments":["g"]}`+"\x1e"), "x=1", true)
	f.Add([]byte(`{"protocol":"json","version":1}`+"\x1e{\"type\":7}\x1e"), "", false)
	f.Add([]byte("\x1e\x1e{"), "id=", true)
	f.Add([]byte(`{"type":7}`+"\x1e"), "id=bogus", true)
	f.Fuzz(func(t *testing.T, body []byte, query string, handshake bool) {
		h := newTestHub(t, func(c *Config) { c.HandshakeTimeout = time.Second })
		tok, _ := h.negotiateToken("")
		c, st := h.openSSE(tok)
		if c == nil {
			t.Fatalf("SSE GET: %d", st)
		}
		if handshake {
			if st := h.post(tok, `{"protocol":"json","version":1}`+"\x1e"); st != http.StatusOK {
				t.Fatalf("handshake POST: %d", st)
			}
		}
		req, err := http.NewRequest(http.MethodPost, h.ts.URL+hubPath(tok)+"&"+url.PathEscape(query), bytes.NewReader(body))
		if err != nil {
			t.Skip()
		}
		resp, err := h.ts.Client().Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusBadRequest:
		default:
			t.Fatalf("POST: status %d", resp.StatusCode)
		}
		c.close()
		waitFor(t, "the connection to end", func() bool { return h.srv.LocalConnections() == 0 })
		if cc := h.pub.commands(fsm.KindConnOpen); len(cc) > 1 {
			t.Errorf("%d ConnOpen commands for one connection", len(cc))
		}
	})
}
