package hub

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/status"
)

func TestNew_Validate(t *testing.T) {
	t.Parallel()
	m := newTestMachine(t)
	pub := newFakePublisher(t, m, true)
	tests := []struct {
		name string
		edit func(*Config)
		pub  Publisher
		want string
	}{
		{name: "valid", edit: func(*Config) {}, pub: pub},
		{name: "no node id", edit: func(c *Config) { c.NodeID = "" }, pub: pub, want: "NodeID"},
		{name: "short secret", edit: func(c *Config) { c.TokenSecret = []byte("short") }, pub: pub, want: "TokenSecret"},
		{name: "keep-alive not below timeout", edit: func(c *Config) { c.KeepAliveInterval = c.ClientTimeout }, pub: pub, want: "KeepAliveInterval"},
		{name: "tiny messages", edit: func(c *Config) { c.MaxMessageSize = 10 }, pub: pub, want: "MaxMessageSize"},
		{name: "no queue", edit: func(c *Config) { c.MaxQueuedMessages = 0 }, pub: pub, want: "MaxQueuedMessages"},
		{name: "nil publisher", edit: func(*Config) {}, pub: nil, want: "nil Publisher"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.edit(&cfg)
			_, err := New(cfg, tt.pub, m)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestServer_Close(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	alice := h.connect(testHubName, "alice")
	bob := h.connect(testHubName, "bob")
	carol := h.connect("otherhub", "carol")
	clients := []*wsClient{alice, bob, carol}
	bob.callOK("JoinGroup", "g")
	ids := []string{alice.connID, bob.connID, carol.connID}

	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}

	for i, c := range clients {
		m := c.waitClose()
		if !m.AllowReconnect || m.Error == "" {
			t.Errorf("client %d: close message %s, want an error and allowReconnect:true", i, m.Raw)
		}
		c.waitDone()
		c.checkFraming()
	}

	// Shutdown closes no connection in the log: they stay registered to
	// this node so that their clients can resume them on another node; the
	// leader closes them once this node has been gone for the disconnect
	// timeout.
	if closed := h.pub.commands(fsm.KindConnClose); len(closed) != 0 {
		t.Errorf("ConnClose recorded on shutdown: %v", closed)
	}
	for _, id := range ids {
		ci, ok := h.m.Connection(testHubName, id)
		if !ok {
			ci, ok = h.m.Connection("otherhub", id)
		}
		if !ok || ci.Node != h.cfg.NodeID {
			t.Errorf("connection %s: registered %v on %q, want still registered to %s", id, ok, ci.Node, h.cfg.NodeID)
		}
	}
	if n := h.srv.LocalConnections(); n != 0 {
		t.Errorf("LocalConnections = %d after Close", n)
	}

	// New clients are turned away.
	st, hdr, body := h.do(http.MethodPost, "/hubs/chat/negotiate?negotiateVersion=1", "", nil)
	if st != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("negotiate after Close: status %d Retry-After %q body %s, want 503", st, hdr.Get("Retry-After"), body)
	}
	if _, st, err := h.dial(testHubName, "", nil); err == nil || st != http.StatusServiceUnavailable {
		t.Errorf("connect after Close: status %d err %v, want 503", st, err)
	}

	// Close is idempotent.
	if err := h.srv.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestServer_CloseComesLast(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	c := h.connect(testHubName, "u")
	// The Close message follows everything delivered before it, in order.
	var want []string
	for range 20 {
		cur, err := h.pub.Publish(context.Background(), publishCmd(testHubName, fsm.AudienceAll, "", "pre", []byte("[1]"), nil))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, cur.Format(testEpoch))
	}
	c.waitInvocations("pre", len(want))
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c.waitClose()
	msgs := c.messages()
	if last := msgs[len(msgs)-1]; last.Type != typeClose {
		t.Errorf("last message %s, want the Close", last.Raw)
	}
	var got []string
	for _, m := range c.invocations("pre") {
		got = append(got, m.Headers["cursor"])
	}
	if !slices.Equal(got, want) {
		t.Errorf("cursors %v, want %v", got, want)
	}
}

func TestServer_CloseDuringHandshake(t *testing.T) {
	t.Parallel()
	// A short HandshakeTimeout only bounds how long this test can take; Close
	// should not wait for it at all.
	h := newTestHub(t, func(c *Config) { c.HandshakeTimeout = 4 * time.Second })
	idle, st, err := h.dial(testHubName, "", nil)
	if err != nil {
		t.Fatalf("dial (status %d): %v", st, err)
	}
	waitFor(t, "the server to hold the connection", func() bool { return h.srv.LocalConnections() == 1 })
	ready := h.connect(testHubName, "ready")

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err = h.srv.Close(ctx)
	if err != nil {
		t.Errorf("Close with a client still in its handshake: %v after %s; want nil well before HandshakeTimeout (%s)",
			err, time.Since(start).Round(time.Millisecond), h.cfg.HandshakeTimeout)
	}
	ready.waitClose()
	idle.waitDone()
}

func TestServer_Health(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.APIKey = testAPIKey })
	st, _, body := h.do(http.MethodGet, "/healthz", "", nil) // no API key needed
	if st != http.StatusOK {
		t.Fatalf("healthz: status %d body %s", st, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st, hdr, body := h.do(http.MethodGet, "/healthz", "", nil); st != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("healthz while closed: status %d body %s, want 503 with Retry-After", st, body)
	}

	noEpoch := newTestHubInit(t, false)
	if st, _, body := noEpoch.do(http.MethodGet, "/healthz", "", nil); st != http.StatusServiceUnavailable {
		t.Fatalf("healthz without epoch: status %d body %s, want 503", st, body)
	}
}

func TestServer_StartReapsStaleConnections(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.DisconnectTimeout = 200 * time.Millisecond // their grace to resume
	m := newTestMachine(t)
	pub := newFakePublisher(t, m, true)
	// A previous run of this node left two connections open in the log; a
	// connection of another node must be left alone.
	for _, c := range []fsm.Command{
		{Kind: fsm.KindConnOpen, Hub: testHubName, Conn: "stale-1", User: "u", Node: cfg.NodeID},
		{Kind: fsm.KindConnOpen, Hub: "otherhub", Conn: "stale-2", Node: cfg.NodeID},
		{Kind: fsm.KindConnOpen, Hub: testHubName, Conn: "remote", Node: "node-2"},
	} {
		if _, err := pub.Publish(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	h := startTestHub(t, cfg, m, pub)
	waitFor(t, "the stale connections to be closed", func() bool {
		_, ok1 := m.Connection(testHubName, "stale-1")
		_, ok2 := m.Connection("otherhub", "stale-2")
		return !ok1 && !ok2
	})
	if _, ok := m.Connection(testHubName, "remote"); !ok {
		t.Error("another node's connection was closed")
	}
	// New clients of the restarted node are not reaped.
	c := h.connect(testHubName, "fresh")
	c.callOK("Broadcast", "ok")
	if _, ok := m.Connection(testHubName, c.connID); !ok {
		t.Error("a live connection was reaped")
	}
}

// TestServer_CloseNoGoroutineLeak is not parallel: it counts goroutines.
func TestServer_CloseNoGoroutineLeak(t *testing.T) {
	baseline := runtime.NumGoroutine()

	h := newTestHub(t, func(c *Config) { c.KeepAliveInterval = 50 * time.Millisecond })
	a := h.connect(testHubName, "a")
	b := h.connect(testHubName, "b")
	a.callOK("JoinGroup", "g")
	b.callOK("SendToGroup", "g", "x", 1)
	a.waitInvocations("x", 1)
	if st, _, body := h.do(http.MethodPost, "/api/v1/hubs/chat", `{"target":"rest"}`, nil); st != 200 {
		t.Fatalf("REST send: %d %s", st, body)
	}
	b.waitInvocations("rest", 1)
	bad, _, err := h.dial(testHubName, "", nil) // fails its handshake
	if err != nil {
		t.Fatal(err)
	}
	bad.sendRaw(`{"protocol":"xml","version":1}` + "\x1e")
	bad.waitDone()
	a.sendRaw(`{"type":7}` + "\x1e") // one client says goodbye and leaves
	a.close()
	waitFor(t, "a's departure", func() bool {
		_, ok := h.m.Connection(testHubName, a.connID)
		return !ok
	})

	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	b.waitDone()
	b.close()
	h.ts.Close()

	deadline := time.Now().Add(testWait)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines after Close, %d before the hub started:\n%s", runtime.NumGoroutine(), baseline, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeCluster is a ClusterView with fixed answers.
type fakeCluster struct {
	node    status.Node
	members []status.Member
}

func (f fakeCluster) Status() status.Node { return f.node }

func (f fakeCluster) ClusterStatus(context.Context) []status.Member { return f.members }

// TestServer_ClusterView: GET /api/v1/status carries the ClusterView's
// node and the stream in their status shapes; GET /api/v1/cluster its
// members ([] when it knows none, 404 without a ClusterView).
func TestServer_ClusterView(t *testing.T) {
	t.Parallel()
	view := fakeCluster{
		node: status.Node{NodeID: "node-1", State: "Leader", Term: 3, LeaderID: "node-1"},
		members: []status.Member{{ID: "node-1", RaftAddr: "127.0.0.1:7000", GossipState: "alive", Suffrage: "voter",
			Leader: true, ClusterID: testEpoch, LastContact: "0s", Applied: 9}},
	}
	h := newTestHub(t, func(c *Config) { c.Cluster = view })
	st, _, body := h.do(http.MethodGet, "/api/v1/status", "", nil)
	if st != http.StatusOK {
		t.Fatalf("status: %d %s", st, body)
	}
	var got struct {
		Node   status.Node   `json:"node"`
		Stream status.Stream `json:"stream"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Node != view.node {
		t.Errorf("node = %+v, want %+v", got.Node, view.node)
	}
	if p := h.m.Position(); got.Stream.Epoch != testEpoch || got.Stream.AppliedIndex != p.Applied ||
		got.Stream.LastCursor != p.Last.Format(testEpoch) || got.Stream.Cached != p.Entries {
		t.Errorf("stream = %+v, machine at %+v", got.Stream, p)
	}

	st, _, body = h.do(http.MethodGet, "/api/v1/cluster", "", nil)
	var members struct {
		Members []status.Member `json:"members"`
	}
	if err := json.Unmarshal(body, &members); st != http.StatusOK || err != nil || !reflect.DeepEqual(members.Members, view.members) {
		t.Fatalf("cluster: %d %s (%v), want %+v", st, body, err, view.members)
	}

	empty := newTestHub(t, func(c *Config) { c.Cluster = fakeCluster{} })
	if st, _, body := empty.do(http.MethodGet, "/api/v1/cluster", "", nil); st != http.StatusOK || !strings.Contains(string(body), `"members":[]`) {
		t.Errorf("cluster knowing no member: %d %s, want 200 with []", st, body)
	}
	none := newTestHub(t)
	if st, _, _ := none.do(http.MethodGet, "/api/v1/cluster", "", nil); st != http.StatusNotFound {
		t.Errorf("cluster without a ClusterView: %d, want 404", st)
	}
}

// TestServer_StartAfterClose: a closed server does not start again.
func TestServer_StartAfterClose(t *testing.T) {
	t.Parallel()
	m := newTestMachine(t)
	srv, err := New(testConfig(t), newFakePublisher(t, m, true), m)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v, want ErrClosed", err)
	}
}
