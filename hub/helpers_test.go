package hub

// Test scaffolding shared by the hub tests: a synchronous fake Publisher in
// front of a real *fsm.Machine, a Server served over loopback TCP, and a raw
// WebSocket SignalR client (raw, so tests can send malformed bytes).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// testEpoch is the cluster id the fake publisher initialises the stream with.
const testEpoch = "testepoc"

// testWait bounds every wait in these tests; generous for -race.
const testWait = 10 * time.Second

// testHubName is the hub most tests use.
const testHubName = "chat"

// ---------------------------------------------------------------------------
// Logging: server logs go to t.Log, so they show only when a test fails.

type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// newTestLogger returns a logger writing to t.Log until the test's last
// cleanup has run (so a late log line never panics the test binary).
func newTestLogger(t testing.TB) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// ---------------------------------------------------------------------------
// fakePublisher: a synchronous Publisher that applies every command to a real
// fsm.Machine as its own Raft log entry.

type fakePublisher struct {
	m     *fsm.Machine
	calls atomic.Int64 // Publish calls, failed ones included

	mu   sync.Mutex
	next uint64 // index of the next log entry
	seq  uint64
	err  error // when set, Publish fails with it ("no leader")
	hook func(fsm.Command)
	cmds []fsm.Command // every command applied, in order
}

// newFakePublisher wraps m. With init, it first applies a KindClusterInit
// command so the stream has the epoch testEpoch.
func newFakePublisher(t testing.TB, m *fsm.Machine, init bool) *fakePublisher {
	t.Helper()
	p := &fakePublisher{m: m, next: 1}
	if init {
		p.mu.Lock()
		_, err := p.applyLocked(fsm.Command{Kind: fsm.KindClusterInit, ClusterID: testEpoch})
		if err == nil {
			// Every server of this one-node "cluster" knows the format.
			_, err = p.applyGroupLocked([]fsm.Command{{Kind: fsm.KindFormat, Format: fsm.LogFormat}})
		}
		p.mu.Unlock()
		if err != nil {
			t.Fatalf("cluster init: %v", err)
		}
		if got := m.Epoch(); got != testEpoch {
			t.Fatalf("epoch after cluster init = %q, want %q", got, testEpoch)
		}
	}
	return p
}

// Publish implements Publisher.
func (p *fakePublisher) Publish(ctx context.Context, cmd fsm.Command) (fsm.Cursor, error) {
	p.calls.Add(1)
	p.mu.Lock()
	hook := p.hook
	p.mu.Unlock()
	if hook != nil {
		hook(cmd)
	}
	if err := ctx.Err(); err != nil {
		return fsm.Cursor{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return fsm.Cursor{}, p.err
	}
	return p.applyLocked(cmd)
}

func (p *fakePublisher) applyLocked(cmd fsm.Command) (fsm.Cursor, error) {
	res, err := p.applyGroupLocked([]fsm.Command{cmd})
	if err != nil {
		return fsm.Cursor{}, err
	}
	return res[0].Cursor, res[0].Err
}

// PublishGroup implements Publisher: the commands as one entry, ids on all
// but an invoke's effects.
func (p *fakePublisher) PublishGroup(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	p.calls.Add(1)
	p.mu.Lock()
	hook := p.hook
	p.mu.Unlock()
	if hook != nil {
		for _, c := range cmds {
			hook(c)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := fsm.ValidateBatch(cmds); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	return p.applyGroupLocked(append([]fsm.Command(nil), cmds...))
}

func (p *fakePublisher) applyGroupLocked(cmds []fsm.Command) ([]fsm.Result, error) {
	effect := make([]bool, len(cmds))
	for j, c := range cmds {
		if c.Kind == fsm.KindInvoke {
			for i := max(0, j-int(c.Effects)); i < j; i++ {
				effect[i] = true
			}
		}
	}
	now := time.Now().UnixNano()
	for i := range cmds {
		p.seq++
		if cmds[i].ID == "" && !effect[i] && cmds[i].Kind != fsm.KindFormat {
			cmds[i].ID = "fake-" + strconv.FormatUint(p.seq, 36)
		}
		cmds[i].Time = now
	}
	l := &raft.Log{Index: p.next, Term: 1, Type: raft.LogCommand, Data: fsm.EncodeBatch(cmds)}
	p.next++
	res, ok := p.m.Apply(l).([]fsm.Result)
	if !ok || len(res) != len(cmds) {
		return nil, fmt.Errorf("fake publisher: unexpected apply result %#v", res)
	}
	p.cmds = append(p.cmds, cmds...)
	return res, nil
}

// setFail makes every later Publish fail with err (nil: succeed again).
func (p *fakePublisher) setFail(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

// setHook installs a function called at the start of every Publish.
func (p *fakePublisher) setHook(h func(fsm.Command)) {
	p.mu.Lock()
	p.hook = h
	p.mu.Unlock()
}

// commands returns the applied commands of kind k, in order.
func (p *fakePublisher) commands(k fsm.Kind) []fsm.Command {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []fsm.Command
	for _, c := range p.cmds {
		if c.Kind == k {
			out = append(out, c)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// testHub: a started Server on a loopback httptest server.

type testHub struct {
	t   *testing.T
	cfg Config
	srv *Server
	ts  *httptest.Server
	m   *fsm.Machine
	pub *fakePublisher

	fences atomic.Int64
}

// testConfig is DefaultConfig with what New requires filled in.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.NodeID = "node-1"
	cfg.TokenSecret = []byte("0123456789abcdef-test-secret")
	cfg.PublishTimeout = 5 * time.Second
	cfg.Logger = newTestLogger(t)
	return cfg
}

// publishCmd is fsm.Publish, by the name the tests have long used.
var publishCmd = fsm.Publish

// peersFunc adapts a function to the Peers port.
type peersFunc func(nodeID string) (string, bool)

func (f peersFunc) HTTPAddr(nodeID string) (string, bool) { return f(nodeID) }

func newTestMachine(t testing.TB) *fsm.Machine {
	t.Helper()
	m, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatalf("fsm.New: %v", err)
	}
	return m
}

// newTestHub starts a hub over a machine that has an epoch. Each option
// edits the config before New.
func newTestHub(t *testing.T, opts ...func(*Config)) *testHub {
	t.Helper()
	return newTestHubInit(t, true, opts...)
}

// newTestHubInit is newTestHub with a choice of whether the stream gets a
// cluster-init command (false: no epoch, the hub refuses clients).
func newTestHubInit(t *testing.T, init bool, opts ...func(*Config)) *testHub {
	t.Helper()
	cfg := testConfig(t)
	for _, o := range opts {
		o(&cfg)
	}
	m := newTestMachine(t)
	return startTestHub(t, cfg, m, newFakePublisher(t, m, init))
}

// startTestHub starts a hub over a given machine and publisher, for tests
// that put entries in the log before the server starts.
func startTestHub(t *testing.T, cfg Config, m *fsm.Machine, pub *fakePublisher) *testHub {
	t.Helper()
	return startTestHubWith(t, cfg, m, pub, pub)
}

// startTestHubWith is startTestHub with the Server given publisher as the
// Publisher (a wrapper of pub, say, that adds a port).
func startTestHubWith(t *testing.T, cfg Config, m *fsm.Machine, pub *fakePublisher, as Publisher) *testHub {
	t.Helper()
	srv, err := New(cfg, as, m)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	h := &testHub{t: t, cfg: cfg, srv: srv, ts: ts, m: m, pub: pub}
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("Server.Close: %v", err)
		}
	})
	return h
}

// do sends an HTTP request to the test server and returns the status, the
// headers and the whole body.
func (h *testHub) do(method, path, body string, hdr http.Header) (int, http.Header, []byte) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.ts.URL+path, rd)
	if err != nil {
		h.t.Fatalf("NewRequest %s %s: %v", method, path, err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// negotiateReply is the negotiate response as a client decodes it.
type negotiateReply struct {
	ConnectionID         string          `json:"connectionId"`
	ConnectionToken      *string         `json:"connectionToken"`
	NegotiateVersion     *int            `json:"negotiateVersion"`
	AvailableTransports  []transportInfo `json:"availableTransports"`
	Error                *string         `json:"error"`
	UseStatefulReconnect bool            `json:"useStatefulReconnect"`
}

// negotiate POSTs /hubs/{hub}/negotiate?query.
func (h *testHub) negotiate(hub, query string, hdr http.Header) (int, []byte) {
	h.t.Helper()
	path := "/hubs/" + hub + "/negotiate"
	if query != "" {
		path += "?" + query
	}
	st, _, b := h.do(http.MethodPost, path, "", hdr)
	return st, b
}

// negotiateOK negotiates and requires a 200 answer without an error field.
func (h *testHub) negotiateOK(hub, query string, hdr http.Header) negotiateReply {
	h.t.Helper()
	st, b := h.negotiate(hub, query, hdr)
	if st != http.StatusOK {
		h.t.Fatalf("negotiate %s?%s: status %d, body %s", hub, query, st, b)
	}
	var r negotiateReply
	if err := json.Unmarshal(b, &r); err != nil {
		h.t.Fatalf("negotiate: decoding %s: %v", b, err)
	}
	if r.Error != nil {
		h.t.Fatalf("negotiate: error %q", *r.Error)
	}
	return r
}

// wsURL is the WebSocket URL of a hub with a raw query.
func (h *testHub) wsURL(hub, query string) string {
	u := "ws" + strings.TrimPrefix(h.ts.URL, "http") + "/hubs/" + hub
	if query != "" {
		u += "?" + query
	}
	return u
}

// dial opens a WebSocket without a handshake. On a refused upgrade it
// returns the HTTP response (status and body read into the error text).
func (h *testHub) dial(hub, query string, hdr http.Header) (*wsClient, int, error) {
	h.t.Helper()
	d := websocket.Dialer{HandshakeTimeout: testWait}
	ws, resp, err := d.Dial(h.wsURL(hub, query), hdr)
	if err != nil {
		st := 0
		if resp != nil {
			st = resp.StatusCode
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			err = fmt.Errorf("%w: status %d body %s", err, st, b)
		}
		return nil, st, err
	}
	return newWSClient(h.t, ws), resp.StatusCode, nil
}

// connect negotiates (version 1, ?user= when user is not empty), opens the
// WebSocket with the token and completes the JSON handshake.
func (h *testHub) connect(hub, user string) *wsClient {
	h.t.Helper()
	q := url.Values{"negotiateVersion": {"1"}}
	if user != "" {
		q.Set("user", user)
	}
	return h.connectWith(hub, q, nil)
}

// connectWith negotiates with the given query and headers (for JWTs), then
// connects with the same headers and handshakes.
func (h *testHub) connectWith(hub string, q url.Values, hdr http.Header) *wsClient {
	h.t.Helper()
	n := h.negotiateOK(hub, q.Encode(), hdr)
	if n.ConnectionToken == nil {
		h.t.Fatalf("negotiate returned no connectionToken")
	}
	cq := url.Values{"id": {*n.ConnectionToken}}
	if at := q.Get("access_token"); at != "" {
		cq.Set("access_token", at)
	}
	c, st, err := h.dial(hub, cq.Encode(), hdr)
	if err != nil {
		h.t.Fatalf("dial (status %d): %v", st, err)
	}
	c.connID = n.ConnectionID
	c.handshakeOK()
	return c
}

// fence publishes a broadcast to every connection of hub straight into the
// log and waits until each given client has received it. The dispatcher
// queues messages on a connection in log order, so whatever was committed
// before the fence and addressed to a client has arrived once the fence has.
func (h *testHub) fence(hub string, clients ...*wsClient) {
	h.t.Helper()
	target := fmt.Sprintf("__fence%d", h.fences.Add(1))
	_, err := h.pub.Publish(context.Background(), publishCmd(hub, fsm.AudienceAll, "", target, []byte("[]"), nil))
	if err != nil {
		h.t.Fatalf("publishing fence: %v", err)
	}
	for _, c := range clients {
		c.waitInvocations(target, 1)
	}
}

// waitFor polls cond until it holds or testWait passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", testWait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mustCursor parses a cursor string and checks its epoch.
func mustCursor(t testing.TB, s string) fsm.Cursor {
	t.Helper()
	ep, c, err := fsm.ParseCursor(s)
	if err != nil {
		t.Fatalf("ParseCursor(%q): %v", s, err)
	}
	if ep != testEpoch {
		t.Fatalf("cursor %q has epoch %q, want %q", s, ep, testEpoch)
	}
	return c
}

// ---------------------------------------------------------------------------
// wsClient: a raw SignalR JSON client on a gorilla WebSocket.

// wireMsg is one hub message received from the server.
type wireMsg struct {
	Type           int               `json:"type"`
	InvocationID   string            `json:"invocationId"`
	Target         string            `json:"target"`
	Arguments      []json.RawMessage `json:"arguments"`
	Headers        map[string]string `json:"headers"`
	Result         json.RawMessage   `json:"result"`
	Error          string            `json:"error"`
	AllowReconnect bool              `json:"allowReconnect"`
	SequenceID     int64             `json:"sequenceId"`

	Raw string `json:"-"` // the record, without its 0x1E
}

type wsClient struct {
	t      testing.TB
	ws     *websocket.Conn
	connID string // from negotiate, when known
	nextID int

	mu      sync.Mutex
	msgs    []wireMsg // every record received, in order
	frames  int
	badRecs []string // records that were not JSON objects
	partial bool     // a frame that did not end with 0x1E
	readErr error
	bell    chan struct{}
	done    chan struct{} // closed when the read loop ends
}

func newWSClient(t testing.TB, ws *websocket.Conn) *wsClient {
	c := &wsClient{t: t, ws: ws, bell: make(chan struct{}, 1), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() {
		_ = c.ws.Close()
		<-c.done
	})
	return c
}

func (c *wsClient) readLoop() {
	defer close(c.done)
	for {
		_, p, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			c.ring()
			return
		}
		c.mu.Lock()
		c.frames++
		if len(p) == 0 || p[len(p)-1] != recordSeparator {
			c.partial = true
		}
		for _, rec := range bytes.Split(p, []byte{recordSeparator}) {
			if len(rec) == 0 {
				continue
			}
			var m wireMsg // Type 0: no "type" (the handshake response)
			if err := json.Unmarshal(rec, &m); err != nil {
				c.badRecs = append(c.badRecs, string(rec))
				continue
			}
			m.Raw = string(rec)
			c.msgs = append(c.msgs, m)
		}
		c.mu.Unlock()
		c.ring()
	}
}

func (c *wsClient) ring() {
	select {
	case c.bell <- struct{}{}:
	default:
	}
}

// checkFraming fails the test if the server sent a record that was not JSON
// or a frame holding an incomplete record.
func (c *wsClient) checkFraming() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.badRecs) > 0 {
		c.t.Errorf("server sent records that are not JSON: %q", c.badRecs)
	}
	if c.partial {
		c.t.Errorf("server sent a frame that does not end with 0x1E")
	}
}

// waitMsg waits until find returns true over the messages received so far.
// It fails the test if the connection ends first or after testWait.
func (c *wsClient) waitMsg(what string, find func(msgs []wireMsg) bool) {
	c.t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok := find(c.msgs)
		err := c.readErr
		c.mu.Unlock()
		if ok {
			return
		}
		if err != nil {
			c.t.Fatalf("connection %s ended (%v) while waiting for %s; received %s", c.connID, err, what, c.dump())
		}
		select {
		case <-c.bell:
		case <-deadline.C:
			c.t.Fatalf("timed out after %s waiting for %s; received %s", testWait, what, c.dump())
		}
	}
}

// dump renders what was received, for failure messages.
func (c *wsClient) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, m := range c.msgs {
		b.WriteString(m.Raw)
		b.WriteString(" | ")
	}
	return fmt.Sprintf("%d frames: %s", c.frames, b.String())
}

// messages returns a copy of everything received so far.
func (c *wsClient) messages() []wireMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]wireMsg(nil), c.msgs...)
}

// sendRaw writes one text frame.
func (c *wsClient) sendRaw(s string) {
	c.t.Helper()
	if err := c.trySend(s); err != nil {
		c.t.Fatalf("sending %q: %v", abbreviate([]byte(s)), err)
	}
}

func (c *wsClient) trySend(s string) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(testWait))
	return c.ws.WriteMessage(websocket.TextMessage, []byte(s))
}

// handshakeOK sends the JSON v1 handshake and requires {} back.
func (c *wsClient) handshakeOK() {
	c.t.Helper()
	c.sendRaw(`{"protocol":"json","version":1}` + "\x1e")
	if got := c.first(); got.Raw != "{}" {
		c.t.Fatalf("handshake response = %s, want {}", got.Raw)
	}
}

// first waits for and returns the first record (the handshake response).
func (c *wsClient) first() wireMsg {
	c.t.Helper()
	c.waitMsg("the handshake response", func(msgs []wireMsg) bool { return len(msgs) > 0 })
	return c.messages()[0]
}

// invocationRecord builds an Invocation record; id "" makes it
// fire-and-forget.
func invocationRecord(id, target string, args ...any) string {
	m := map[string]any{"type": 1, "target": target, "arguments": args}
	if args == nil {
		m["arguments"] = []any{}
	}
	if id != "" {
		m["invocationId"] = id
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b) + "\x1e"
}

// invoke sends an Invocation with a fresh id and returns the id.
func (c *wsClient) invoke(target string, args ...any) string {
	c.t.Helper()
	c.nextID++
	id := strconv.Itoa(c.nextID)
	c.sendRaw(invocationRecord(id, target, args...))
	return id
}

// completion waits for the Completion of invocation id.
func (c *wsClient) completion(id string) wireMsg {
	c.t.Helper()
	var got wireMsg
	c.waitMsg("the completion of invocation "+strconv.Quote(id), func(msgs []wireMsg) bool {
		for _, m := range msgs {
			if m.Type == typeCompletion && m.InvocationID == id {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

// call invokes a method and returns its Completion.
func (c *wsClient) call(target string, args ...any) wireMsg {
	c.t.Helper()
	return c.completion(c.invoke(target, args...))
}

// callOK invokes a method, requires a successful Completion and returns its
// result, the cursor.
func (c *wsClient) callOK(target string, args ...any) string {
	c.t.Helper()
	return resultCursor(c.t, c.call(target, args...))
}

// resultCursor requires a successful Completion and returns its result, a
// cursor.
func resultCursor(t testing.TB, m wireMsg) string {
	t.Helper()
	if m.Error != "" {
		t.Fatalf("completion error: %s", m.Raw)
	}
	var cur string
	if err := json.Unmarshal(m.Result, &cur); err != nil {
		t.Fatalf("completion %s: result is not a string: %v", m.Raw, err)
	}
	mustCursor(t, cur)
	return cur
}

// callErr invokes a method and requires a Completion error containing want.
func (c *wsClient) callErr(want, target string, args ...any) {
	c.t.Helper()
	m := c.call(target, args...)
	if m.Error == "" || !strings.Contains(m.Error, want) {
		c.t.Fatalf("%s: completion %s, want an error containing %q", target, m.Raw, want)
	}
	if m.Result != nil {
		c.t.Fatalf("%s: completion %s has both error and result", target, m.Raw)
	}
}

// invocations returns the Invocations received with target.
func (c *wsClient) invocations(target string) []wireMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []wireMsg
	for _, m := range c.msgs {
		if m.Type == typeInvocation && m.Target == target {
			out = append(out, m)
		}
	}
	return out
}

// waitInvocations waits for at least n Invocations of target.
func (c *wsClient) waitInvocations(target string, n int) []wireMsg {
	c.t.Helper()
	c.waitMsg(fmt.Sprintf("%d invocation(s) of %q", n, target), func(msgs []wireMsg) bool {
		k := 0
		for _, m := range msgs {
			if m.Type == typeInvocation && m.Target == target {
				k++
			}
		}
		return k >= n
	})
	return c.invocations(target)
}

// waitClose waits for a hub Close message.
func (c *wsClient) waitClose() wireMsg {
	c.t.Helper()
	var got wireMsg
	c.waitMsg("a Close message", func(msgs []wireMsg) bool {
		for _, m := range msgs {
			if m.Type == typeClose {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

// waitDone waits until the server has closed the connection.
func (c *wsClient) waitDone() {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(testWait):
		c.t.Fatalf("connection %s still open after %s; received %s", c.connID, testWait, c.dump())
	}
}

// isDone reports whether the connection has ended.
func (c *wsClient) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// close ends the client side and waits for the read loop.
func (c *wsClient) close() {
	_ = c.ws.Close()
	<-c.done
}

// invocationRaw is the exact record a recipient must get.
func invocationRaw(target, args, cursor string) string {
	return `{"type":1,"target":` + strconv.Quote(target) + `,"arguments":` + args +
		`,"headers":{"cursor":` + strconv.Quote(cursor) + `}}`
}

// bearerHeader returns an Authorization: Bearer header.
func bearerHeader(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}
