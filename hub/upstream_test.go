package hub

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
	"github.com/vmihailenco/msgpack/v5"
)

// upstreamReq is one request the test upstream received.
type upstreamReq struct {
	Path   string
	Header http.Header
	Body   []byte
}

func (r upstreamReq) event() string { return r.Header.Get("X-ASRS-Event") }
func (r upstreamReq) conn() string  { return r.Header.Get("X-ASRS-Connection-Id") }

// testUpstream is a real HTTP upstream in this process: it records every
// request and answers with answer (nil: 200 with no body).
type testUpstream struct {
	t      *testing.T
	ts     *httptest.Server
	answer func(w http.ResponseWriter, r *http.Request, req upstreamReq)

	mu   sync.Mutex
	reqs []upstreamReq
	bell chan struct{}
}

func newTestUpstream(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, req upstreamReq)) *testUpstream {
	u := &testUpstream{t: t, answer: answer, bell: make(chan struct{}, 1)}
	u.ts = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.ts.Close)
	return u
}

func (u *testUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := upstreamReq{Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	u.mu.Lock()
	u.reqs = append(u.reqs, req)
	u.mu.Unlock()
	select {
	case u.bell <- struct{}{}:
	default:
	}
	if u.answer != nil {
		u.answer(w, r, req)
	}
}

// template is the Upstream URL template pointing at it.
func (u *testUpstream) template() string { return u.ts.URL + "/{hub}/api/{category}/{event}" }

// with configures a hub to use it, signing with testAPIKey.
func (u *testUpstream) with(c *Config) {
	c.Upstream = u.template()
	c.APIKey = testAPIKey
}

// of returns the requests for an event (and connection, when not "").
func (u *testUpstream) of(event, conn string) []upstreamReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []upstreamReq
	for _, r := range u.reqs {
		if r.event() == event && (conn == "" || r.conn() == conn) {
			out = append(out, r)
		}
	}
	return out
}

// wait waits until n requests for the event (and connection) arrived.
func (u *testUpstream) wait(event, conn string, n int) []upstreamReq {
	u.t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	for {
		if got := u.of(event, conn); len(got) >= n {
			return got
		}
		select {
		case <-u.bell:
		case <-deadline.C:
			u.t.Fatalf("timed out waiting for %d %q request(s) of connection %q; got %d", n, event, conn, len(u.of(event, conn)))
		}
	}
}

// writeCompletion answers an invocation with a framed JSON Completion, as
// the Azure Functions trigger does.
func writeCompletion(w http.ResponseWriter, id string, result any, errMsg string) {
	m := map[string]any{"type": 3, "invocationId": id}
	if errMsg != "" {
		m["error"] = errMsg
	} else {
		m["result"] = result
	}
	b, _ := json.Marshal(m)
	_, _ = w.Write(append(b, 0x1e))
}

// echoUpstream answers the test methods: Echo returns its first argument,
// Fail an error, Void nothing, NoContent a 204, Down a 503, Bad a body that
// is no message, Huge more than the body limit, Slow waits for release,
// Hang for the request's end. Connection events get 200.
func echoUpstream(release <-chan struct{}) func(w http.ResponseWriter, r *http.Request, req upstreamReq) {
	return func(w http.ResponseWriter, r *http.Request, req upstreamReq) {
		if req.Header.Get("X-ASRS-Category") != "messages" {
			return
		}
		var inv struct {
			ID   string            `json:"invocationId"`
			Args []json.RawMessage `json:"arguments"`
		}
		if req.Header.Get("Content-Type") == "application/json" {
			_ = json.Unmarshal(req.Body, &inv)
		}
		switch req.event() {
		case "Echo":
			var v any
			if len(inv.Args) > 0 {
				_ = json.Unmarshal(inv.Args[0], &v)
			}
			writeCompletion(w, inv.ID, v, "")
		case "Fail":
			writeCompletion(w, inv.ID, nil, "nope")
		case "Void":
		case "NoContent":
			w.WriteHeader(http.StatusNoContent)
		case "Down":
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		case "Bad":
			_, _ = w.Write([]byte(`{"hello":"world"}`))
		case "Huge":
			_, _ = w.Write(bytes.Repeat([]byte("x"), 4096))
		case "Slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
			writeCompletion(w, inv.ID, "slow done", "")
		case "Hang":
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}
}

// wantSignature is the X-ASRS-Signature for a connection, computed here.
func wantSignature(connID string) string {
	m := hmac.New(sha256.New, []byte(testAPIKey))
	m.Write([]byte(connID))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// checkSignature verifies a request's signature as an upstream would:
// any of the comma-separated values, hex compared without case.
func checkSignature(t *testing.T, r upstreamReq) {
	t.Helper()
	want := wantSignature(r.conn())
	for _, s := range strings.Split(r.Header.Get("X-ASRS-Signature"), ",") {
		if strings.EqualFold(strings.TrimSpace(s), want) {
			return
		}
	}
	t.Errorf("X-ASRS-Signature %q does not verify for connection %q", r.Header.Get("X-ASRS-Signature"), r.conn())
}

// TestUpstream_Signature: Azure's algorithm on a known HMAC-SHA256 answer.
func TestUpstream_Signature(t *testing.T) {
	got := signature([]byte("key"), "The quick brown fox jumps over the lazy dog")
	if want := "sha256=F7BC83F430538424B13298E6AA6FB143EF4D59A14946175997479DBC2D1A3CD8"; got != want {
		t.Fatalf("signature = %s, want %s", got, want)
	}
}

// TestUpstream_Headers: the helpers that build the headers and the URL.
func TestUpstream_Headers(t *testing.T) {
	claims := map[string]any{"sub": "alice", "roles": []any{"a", "b"}, "n": float64(3), "obj": map[string]any{"k": true}, "bad": "x\r\ny"}
	if got, want := claimsHeader(claims), "bad: x  y, n: 3, obj: {\"k\":true}, roles: a, roles: b, sub: alice"; got != want {
		t.Errorf("claimsHeader = %q, want %q", got, want)
	}
	if got := claimsHeader(nil); got != "" {
		t.Errorf("claimsHeader(nil) = %q", got)
	}
	r := httptest.NewRequest("GET", "/hubs/chat?id=tok&access_token=secret&room=blue&resume=r&b=1", nil)
	if got, want := clientQuery(r), "?b=1&room=blue"; got != want {
		t.Errorf("clientQuery = %q, want %q", got, want)
	}
	if got := clientQuery(httptest.NewRequest("GET", "/hubs/chat?id=tok", nil)); got != "" {
		t.Errorf("clientQuery of credentials only = %q, want empty", got)
	}
	if got, want := expandTemplate("https://h/{hub}/x/{category}/{event}?code=1", "chat", "messages", "a b/c"), "https://h/chat/x/messages/a%20b%2Fc?code=1"; got != want {
		t.Errorf("expandTemplate = %q, want %q", got, want)
	}
}

// TestUpstream_ConfigValidate: the template, the timeout and the limits.
func TestUpstream_ConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" valid
	}{
		{"no upstream", func(*Config) {}, ""},
		{"a template", func(c *Config) { c.Upstream = "https://api.example.com/runtime/webhooks/signalr?code=x" }, ""},
		{"placeholders", func(c *Config) { c.Upstream = "http://127.0.0.1:7071/{hub}/api/{category}/{event}" }, ""},
		{"relative", func(c *Config) { c.Upstream = "/api/{event}" }, "absolute http"},
		{"another scheme", func(c *Config) { c.Upstream = "ftp://h/{event}" }, "absolute http"},
		{"timeout over the client timeout", func(c *Config) { c.Upstream = "http://h/"; c.UpstreamTimeout = time.Minute }, "UpstreamTimeout"},
		{"no timeout", func(c *Config) { c.Upstream = "http://h/"; c.UpstreamTimeout = 0 }, "UpstreamTimeout"},
		{"tiny body", func(c *Config) { c.Upstream = "http://h/"; c.UpstreamMaxBody = 10 }, "UpstreamMaxBody"},
		{"mark every 0", func(c *Config) { c.EventsMarkEvery = 0 }, "EventsMarkEvery"},
		{"mark interval 0", func(c *Config) { c.EventsMarkInterval = 0 }, "EventsMarkInterval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.edit(&cfg)
			err := cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestUpstream_InvocationJSON: a method no Go handler or built-in claims
// goes upstream with Azure's headers and the invocation as the body; the
// upstream's Completion (result, error, none) reaches the caller, and a
// fire-and-forget invocation gets no answer.
func TestUpstream_InvocationJSON(t *testing.T) {
	u := newTestUpstream(t, echoUpstream(nil))
	h := startAppHub(t, Handlers{
		Authenticate: func(r *http.Request) (string, map[string]any, error) {
			return r.URL.Query().Get("key"), map[string]any{"role": "admin", "groups": []any{"a", "b"}}, nil
		},
		Methods: map[string]Method{"Local": func(*Context, Args) (any, error) { return "from Go", nil }},
	}, u.with)

	n := h.negotiateOK(testHubName, "negotiateVersion=1&key=alice&room=blue", nil)
	c, st, err := h.dial(testHubName, url.Values{"id": {*n.ConnectionToken}, "key": {"alice"}, "room": {"blue"},
		"access_token": {"not-for-the-upstream"}}.Encode(), nil)
	if err != nil {
		t.Fatalf("dial (%d): %v", st, err)
	}
	c.connID = n.ConnectionID
	c.handshakeOK()

	if m := c.call("Echo", map[string]any{"a": 1}, "x"); m.Error != "" || string(m.Result) != `{"a":1}` {
		t.Fatalf("Echo completion %s", m.Raw)
	}
	r := u.wait("Echo", c.connID, 1)[0]
	if r.Path != "/chat/api/messages/Echo" {
		t.Errorf("path %q", r.Path)
	}
	for k, want := range map[string]string{
		"Content-Type":         "application/json",
		"X-ASRS-Connection-Id": c.connID,
		"X-ASRS-Hub":           "chat",
		"X-ASRS-Category":      "messages",
		"X-ASRS-Event":         "Echo",
		"X-ASRS-User-Id":       "alice",
		"X-ASRS-User-Claims":   "groups: a, groups: b, role: admin",
		"X-ASRS-Client-Query":  "?key=alice&room=blue",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	checkSignature(t, r)
	if got, want := string(r.Body), `{"type":1,"invocationId":"1","target":"Echo","arguments":[{"a":1},"x"]}`; got != want {
		t.Errorf("body %s, want %s", got, want)
	}

	c.callErr("nope", "Fail")
	for _, m := range []string{"Void", "NoContent"} {
		if got := c.call(m); got.Error != "" || got.Result != nil {
			t.Errorf("%s completion %s, want one without a result", m, got.Raw)
		}
	}
	if got := c.call("Local"); string(got.Result) != `"from Go"` {
		t.Errorf("a Go method went elsewhere: %s", got.Raw)
	}
	if n := len(u.of("Local", "")); n != 0 {
		t.Errorf("the Go method was sent upstream %d times", n)
	}
	resultCursor(t, c.call("Broadcast", "m")) // a built-in clients may call stays built in
	if n := len(u.of("Broadcast", "")); n != 0 {
		t.Errorf("the built-in went upstream")
	}

	c.sendRaw(invocationRecord("", "Echo", "ff")) // no id: no answer expected
	c.callErr("nope", "Fail")                     // after it, on the same connection
	ff := u.wait("Echo", c.connID, 2)[1]
	if strings.Contains(string(ff.Body), "invocationId") {
		t.Errorf("fire-and-forget body %s has an invocation id", ff.Body)
	}
	for _, m := range c.messages() {
		if m.Type == typeCompletion && m.InvocationID == "" {
			t.Errorf("a completion without an id: %s", m.Raw)
		}
	}
	st2 := h.srv.UpstreamStats()
	if got := st2.Calls["messages"]["ok"]; got != 6 {
		t.Errorf("messages ok = %d, want 6 (%v)", got, st2.Calls)
	}
}

// TestUpstream_ClientMethodsNone: with the built-ins closed to clients,
// their names go upstream too (Azure's serverless mode).
func TestUpstream_ClientMethodsNone(t *testing.T) {
	u := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request, req upstreamReq) {
		if req.event() == "Broadcast" {
			writeCompletion(w, "1", "mine", "")
		}
	})
	h := newTestHub(t, u.with, func(c *Config) { c.ClientMethods = []string{} })
	c := h.connect(testHubName, "alice")
	if m := c.call("Broadcast", "m"); string(m.Result) != `"mine"` {
		t.Fatalf("Broadcast completion %s, want the upstream's", m.Raw)
	}
}

// TestUpstream_InvocationMsgpack: a MessagePack connection's invocation
// goes as MessagePack without its length prefix; the upstream's Completion,
// framed or not, result or error, reaches the caller.
func TestUpstream_InvocationMsgpack(t *testing.T) {
	u := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request, req upstreamReq) {
		if req.Header.Get("X-ASRS-Category") != "messages" {
			return
		}
		var inv []any
		if err := msgpack.Unmarshal(req.Body, &inv); err != nil || len(inv) != 5 {
			http.Error(w, "bad body", 400)
			return
		}
		id, _ := inv[2].(string)
		args, _ := inv[4].([]any)
		switch req.event() {
		case "Echo": // framed, as the Functions trigger writes it
			_, _ = w.Write(framed(mpb([]any{3, omap{}, id, 3, args[0]})))
		case "EchoBare": // unframed, with a content type
			w.Header().Set("Content-Type", "application/x-msgpack")
			_, _ = w.Write(mpb([]any{3, omap{}, id, 3, args[0]}))
		case "Fail":
			_, _ = w.Write(framed(mpb([]any{3, omap{}, id, 1, "nope"})))
		}
	})
	h := newTestHub(t, u.with)
	c := connectMsgpack(t, h, nil)

	v := c.completion(c.invoke("Echo", map[string]any{"n": 1.5}, "x"))
	if len(v) != 5 || asInt(v[3]) != resultValue || fmt.Sprint(v[4]) != "map[n:1.5]" {
		t.Fatalf("Echo completion %#v", v)
	}
	r := u.wait("Echo", c.connID, 1)[0]
	if r.Header.Get("Content-Type") != "application/x-msgpack" || len(r.Body) == 0 || r.Body[0] != 0x95 {
		t.Fatalf("request %s % x: want MessagePack [1, {}, id, target, args] without a prefix", r.Header.Get("Content-Type"), r.Body)
	}
	checkSignature(t, r)
	inv := decoded(t, r.Body)
	if asInt(inv[0]) != 1 || inv[2] != "1" || inv[3] != "Echo" || fmt.Sprint(inv[4]) != "[map[n:1.5] x]" {
		t.Errorf("invocation %#v", inv)
	}
	v = c.completion(c.invoke("EchoBare", "y"))
	if len(v) != 5 || v[4] != "y" {
		t.Fatalf("EchoBare completion %#v", v)
	}
	c.callErr("nope", "3", framed(mpb([]any{1, omap{}, "3", "Fail", []any{}})))
}

// TestUpstream_Failures: a non-2xx answer, no answer in time, no upstream,
// an answer that is no Completion and one too large each give the caller a
// clear error, and are counted.
func TestUpstream_Failures(t *testing.T) {
	u := newTestUpstream(t, echoUpstream(nil))
	h := newTestHub(t, u.with, func(c *Config) {
		c.UpstreamTimeout = 300 * time.Millisecond
		c.UpstreamMaxBody = 1024
	})
	c := h.connect(testHubName, "alice")
	c.callErr("Invocation of 'Down' failed: the upstream answered 503 Service Unavailable.", "Down")
	c.callErr("Invocation of 'Hang' failed: the upstream did not answer within 300ms.", "Hang")
	c.callErr("Invocation of 'Bad' failed: the upstream's answer is unusable (not a Completion message", "Bad")
	c.callErr("Invocation of 'Huge' failed: the upstream's answer is unusable (the answer is larger than 1024 bytes)", "Huge")
	c.callErr("Invocation of 'Missing' failed: the upstream answered 404 Not Found.", "Missing")
	calls := h.srv.UpstreamStats().Calls["messages"]
	want := map[string]uint64{"ok": 0, "status": 2, "timeout": 1, "unreachable": 0, "bad_answer": 2, "canceled": 0}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", calls, want)
	}
	st, _, body := h.do("GET", "/api/v1/status", "", bearerHeader(testAPIKey))
	if st != 200 || !strings.Contains(string(body), `"bad_answer":2`) {
		t.Errorf("status %d %s: want the upstream counts", st, body)
	}

}

// TestUpstream_MethodNameInHeader: a method name is the client's: it
// cannot add a header.
func TestUpstream_MethodNameInHeader(t *testing.T) {
	u := newTestUpstream(t, nil)
	h := newTestHub(t, u.with)
	c := h.connect(testHubName, "alice")
	if m := c.call("Echo\r\nX-Evil: 1"); m.Error != "" || m.Result != nil {
		t.Fatalf("completion %s, want an empty one (the upstream answered 200)", m.Raw)
	}
	r := u.wait("Echo  X-Evil: 1", c.connID, 1)[0]
	if r.Header.Get("X-Evil") != "" || r.Path != "/chat/api/messages/Echo\r\nX-Evil: 1" {
		t.Fatalf("request %q %v", r.Path, r.Header)
	}
}

// TestUpstream_DownRefusesAndErrs: with the upstream down, a connection is
// refused with a clear message (its connected event got no answer).
func TestUpstream_DownRefusesAndErrs(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	h := newTestHub(t, func(c *Config) { c.Upstream = dead.URL + "/{event}" })
	n := h.negotiateOK(testHubName, "negotiateVersion=1", nil)
	c, _, err := h.dial(testHubName, url.Values{"id": {*n.ConnectionToken}}.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.sendRaw(`{"protocol":"json","version":1}` + "\x1e")
	if got := c.first(); got.Error != "Connection refused: the upstream is unreachable." {
		t.Fatalf("handshake response %s, want the refusal", got.Raw)
	}
	c.waitDone()
	if got := h.srv.UpstreamStats().Calls["connections"]["unreachable"]; got != 1 {
		t.Fatalf("unreachable connected calls = %d, want 1", got)
	}
}

// TestUpstream_SlowDoesNotStall: while one connection waits on a slow
// upstream, another connection's upstream and built-in calls complete, and
// the waiting connection still receives messages.
func TestUpstream_SlowDoesNotStall(t *testing.T) {
	release := make(chan struct{})
	u := newTestUpstream(t, echoUpstream(release))
	t.Cleanup(func() { close(release) }) // before the upstream's Close, which waits for it
	h := newTestHub(t, u.with)
	a := h.connect(testHubName, "a")
	b := h.connect(testHubName, "b")
	slow := a.invoke("Slow")
	u.wait("Slow", a.connID, 1) // a's reader is inside the call now
	if m := b.call("Echo", 42); string(m.Result) != "42" {
		t.Fatalf("b's Echo %s", m.Raw)
	}
	resultCursor(t, b.call("Broadcast", "news", 1))
	a.waitInvocations("news", 1) // delivery to a is not held by its call
	for _, m := range a.messages() {
		if m.Type == typeCompletion && m.InvocationID == slow {
			t.Fatalf("Slow completed before the upstream answered: %s", m.Raw)
		}
	}
	release <- struct{}{}
	if m := a.completion(slow); string(m.Result) != `"slow done"` {
		t.Fatalf("Slow completion %s", m.Raw)
	}
}

// TestUpstream_Stateful: on a stateful-reconnect connection the upstream's
// result goes into the log in a KindInvoke; the client message resent
// after a reconnect to another node is not sent upstream again, and the
// Completion is replayed there from the log.
func TestUpstream_Stateful(t *testing.T) {
	u := newTestUpstream(t, echoUpstream(nil))
	h1, h2 := twoNodes(t, u.with)
	n := h1.negotiateOK(testHubName, "negotiateVersion=1&useStatefulReconnect=true&user=alice", nil)
	tok := *n.ConnectionToken
	c, _, err := h1.dial(testHubName, url.Values{"id": {tok}}.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.connID = n.ConnectionID
	c.sendRaw(`{"protocol":"json","version":2}` + "\x1e")
	if got := c.first(); got.Raw != "{}" {
		t.Fatalf("handshake %s", got.Raw)
	}
	c.sendRaw(invocationRecord("c", "Echo", map[string]any{"k": "v"})) // client message 1
	if m := c.completion("c"); string(m.Result) != `{"k":"v"}` {
		t.Fatalf("completion %s", m.Raw)
	}
	r := u.wait("Echo", c.connID, 1)[0]
	if got, want := r.Header.Get("X-Raftplane-Event-Id"), "s:"+c.connID+":1"; got != want {
		t.Errorf("event id %q, want %q", got, want)
	}
	invs := h1.pub.commands(fsm.KindInvoke)
	if len(invs) != 1 || string(invs[0].Args) != `{"k":"v"}` || invs[0].Target != "Echo" || invs[0].Origin.Seq != 1 || invs[0].Origin.InvocationID != "c" {
		t.Fatalf("invokes in the log: %+v", invs)
	}
	// The socket drops before the client acknowledged anything; it comes
	// back on the other node and resends its message 1.
	_ = c.ws.UnderlyingConn().Close()
	<-c.done
	again, _, err := h2.dial(testHubName, url.Values{"id": {tok}}.Encode(), nil)
	if err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	again.sendRaw(`{"type":9,"sequenceId":1}` + "\x1e")
	again.sendRaw(invocationRecord("c", "Echo", map[string]any{"k": "v"}))
	if m := again.completion("c"); string(m.Result) != `{"k":"v"}` {
		t.Fatalf("replayed completion %s", m.Raw)
	}
	again.sendRaw(invocationRecord("d", "Echo", 2)) // client message 2, live
	if m := again.completion("d"); string(m.Result) != "2" {
		t.Fatalf("completion %s", m.Raw)
	}
	if n := len(u.of("Echo", c.connID)); n != 2 {
		t.Fatalf("the upstream got %d Echo calls, want 2 (message 1 once, message 2)", n)
	}
	// An error answer is a reject in the log, replayed as well.
	again.sendRaw(invocationRecord("e", "Fail"))
	if m := again.completion("e"); m.Error != "nope" {
		t.Fatalf("Fail completion %s", m.Raw)
	}
}

// TestUpstream_ParseCompletion: the answer forms that are read.
func TestUpstream_ParseCompletion(t *testing.T) {
	unframed407 := mpb([]any{3, omap{}, "1", 3, strings.Repeat("x", 398)})
	if len(unframed407) != 407 || unframed407[0] != 0x95 || unframed407[1] != 0x03 {
		t.Fatalf("the ambiguous Completion is %d bytes, % x...", len(unframed407), unframed407[:2])
	}
	for _, tc := range []struct {
		name   string
		p      protocol
		ct     string
		body   []byte
		result string
		errMsg string
		bad    bool
	}{
		{"json framed", jsonProtocol{}, "", []byte(`{"type":3,"invocationId":"1","result":[1,2]}` + "\x1e"), "[1,2]", "", false},
		{"json bare with spaces", jsonProtocol{}, "text/plain", []byte(" {\"type\":3,\"invocationId\":\"1\",\"error\":\"e\"}\n"), "", "e", false},
		{"msgpack by content type", jsonProtocol{}, "application/x-msgpack", framed(mpb([]any{3, omap{}, "1", 3, "r"})), `"r"`, "", false},
		{"json by content type", msgpackProtocol{}, "application/json; charset=utf-8", []byte(`{"type":3,"invocationId":"1","result":true}`), "true", "", false},
		// 0x95 0x03 also reads as the length prefix 405: an unframed Completion
		// of 407 bytes looks framed, and is read unframed all the same.
		{"msgpack unframed, 407 bytes", msgpackProtocol{}, "", unframed407, `"` + strings.Repeat("x", 398) + `"`, "", false},
		{"msgpack framed, 407 bytes", msgpackProtocol{}, "", framed(unframed407), `"` + strings.Repeat("x", 398) + `"`, "", false},
		{"an invocation", jsonProtocol{}, "", []byte(`{"type":1,"target":"x","arguments":[]}`), "", "", true},
		{"not a message", jsonProtocol{}, "", []byte(`hello`), "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseUpstreamCompletion(tc.p, upstreamAnswer{status: 200, contentType: tc.ct, body: tc.body})
			if tc.bad {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", m)
				}
				return
			}
			if err != nil || string(m.Result) != tc.result || m.Error != tc.errMsg {
				t.Fatalf("= result %s error %q (%v), want %s %q", m.Result, m.Error, err, tc.result, tc.errMsg)
			}
		})
	}
}

// TestExpandTemplate_DotSegments: a hub or method a client names "." or
// ".." cannot make the upstream URL point at another path of its server.
func TestExpandTemplate_DotSegments(t *testing.T) {
	tmpl := "http://app.example/api/{hub}/{category}/{event}"
	for _, tc := range []struct{ hub, event, want string }{
		{"chat", "Send", "http://app.example/api/chat/messages/Send"},
		{"..", "..", "http://app.example/api/%2E%2E/messages/%2E%2E"},
		{".", "a.b", "http://app.example/api/%2E/messages/a.b"},
		{"x", "a/../b", "http://app.example/api/x/messages/a%2F..%2Fb"},
	} {
		if got := expandTemplate(tmpl, tc.hub, "messages", tc.event); got != tc.want {
			t.Errorf("expandTemplate(%q, %q) = %q, want %q", tc.hub, tc.event, got, tc.want)
		}
	}
}
