package hub

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/raftplane/raftplane/fsm"
)

func TestConfig_ValidateLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" valid, else a substring of the error
	}{
		{"defaults", func(*Config) {}, ""},
		{"no limits at all", func(c *Config) {
			c.MaxConnections, c.MaxConnectionsPerUser, c.MaxConnectionsPerIP = -1, 0, 0
			c.MaxGroupsPerConnection, c.MaxGroupMembers, c.MaxQueuedBytes = 0, 0, 0
		}, ""},
		{"explicit max connections", func(c *Config) { c.MaxConnections = 10 }, ""},
		{"max connections below -1", func(c *Config) { c.MaxConnections = -2 }, "MaxConnections (-2)"},
		{"negative per user", func(c *Config) { c.MaxConnectionsPerUser = -1 }, "MaxConnectionsPerUser (-1)"},
		{"negative per ip", func(c *Config) { c.MaxConnectionsPerIP = -1 }, "MaxConnectionsPerIP (-1)"},
		{"negative groups per connection", func(c *Config) { c.MaxGroupsPerConnection = -1 }, "MaxGroupsPerConnection (-1)"},
		{"negative group members", func(c *Config) { c.MaxGroupMembers = -5 }, "MaxGroupMembers (-5)"},
		{"negative queued bytes", func(c *Config) { c.MaxQueuedBytes = -1 }, "MaxQueuedBytes (-1)"},
		{"queued bytes below one message", func(c *Config) { c.MaxQueuedBytes = 1000 }, "at least MaxMessageSize (32768)"},
		{"queued bytes of one message", func(c *Config) { c.MaxQueuedBytes = 32 << 10 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestAutoMaxConnections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		nofile uint64
		known  bool
		want   int
	}{
		{0, false, 0},
		{0, true, 0},
		{1 << 62, true, 0}, // RLIM_INFINITY and the like: no limit
		{1, true, 1},
		{256, true, 128},
		{1024, true, 512},
		{1025, true, 1025 - FDReserve},
		{8192, true, 8192 - FDReserve},
		{1 << 20, true, 1<<20 - FDReserve},
	}
	for _, tt := range tests {
		if got := autoMaxConnections(tt.nofile, tt.known); got != tt.want {
			t.Errorf("autoMaxConnections(%d, %v) = %d, want %d", tt.nofile, tt.known, got, tt.want)
		}
	}
	// The automatic value is what the status reports.
	h := newTestHub(t)
	nofile, known := fileLimit()
	if got, want := h.srv.lim.maxConns, autoMaxConnections(nofile, known); got != want {
		t.Errorf("resolved MaxConnections = %d, want %d (RLIMIT_NOFILE %d)", got, want, nofile)
	}
}

func TestServer_ClientIP(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Peers = peersFunc(func(id string) (string, bool) {
		switch id {
		case "node-2":
			return "10.0.0.2:8080", true
		case "named":
			return "node-3.internal:8080", true
		}
		return "", false
	})
	m := newTestMachine(t)
	srv, err := New(cfg, newFakePublisher(t, m, true), m)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		hdr    http.Header
		want   string // "" the zero Addr: not counted
	}{
		{"ipv4", "192.0.2.7:5555", nil, "192.0.2.7"},
		{"ipv4-mapped ipv6", "[::ffff:192.0.2.7]:5555", nil, "192.0.2.7"},
		{"ipv6 by its /64", "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:5555", nil, "2001:db8:1:2::"},
		{"unparsable peer", "@unix", nil, ""},
		{"X-Forwarded-For from a client is ignored", "192.0.2.7:5555",
			http.Header{"X-Forwarded-For": {"203.0.113.1"}}, "192.0.2.7"},
		{"forwarded header from a client is ignored", "192.0.2.7:5555",
			http.Header{forwardedHeader: {"node-2"}, "X-Forwarded-For": {"203.0.113.1"}}, "192.0.2.7"},
		{"forwarded by the node it names", "10.0.0.2:40000",
			http.Header{forwardedHeader: {"node-2"}, "X-Forwarded-For": {"198.51.100.1, 203.0.113.9"}}, "203.0.113.9"},
		{"forwarded by the node, several headers", "10.0.0.2:40000",
			http.Header{forwardedHeader: {"node-2"}, "X-Forwarded-For": {"198.51.100.1", "203.0.113.8"}}, "203.0.113.8"},
		{"forwarded by the node without X-Forwarded-For", "10.0.0.2:40000",
			http.Header{forwardedHeader: {"node-2"}}, ""},
		{"forwarded by the node, garbage X-Forwarded-For", "10.0.0.2:40000",
			http.Header{forwardedHeader: {"node-2"}, "X-Forwarded-For": {"not an ip"}}, ""},
		{"node known by name only: counted by its address", "10.0.0.3:40000",
			http.Header{forwardedHeader: {"named"}, "X-Forwarded-For": {"203.0.113.9"}}, "10.0.0.3"},
		{"unknown node", "10.0.0.2:40000",
			http.Header{forwardedHeader: {"node-9"}, "X-Forwarded-For": {"203.0.113.9"}}, "10.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/hubs/chat/negotiate", nil)
			r.RemoteAddr = tt.remote
			for k, vs := range tt.hdr {
				r.Header[k] = vs
			}
			got := srv.clientIP(r)
			if tt.want == "" {
				if got.IsValid() {
					t.Fatalf("clientIP = %s, want none", got)
				}
				return
			}
			if got != netip.MustParseAddr(tt.want) {
				t.Fatalf("clientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

// wantLimit checks a refusal: its status and a JSON body naming the limit,
// its value and, in the message, want.
func wantLimit(t *testing.T, what string, status int, body []byte, wantStatus int, limit string, value int, want string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: status %d, want %d; body %s", what, status, wantStatus, body)
	}
	var lb limitBody
	if err := json.Unmarshal(body, &lb); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", what, body, err)
	}
	if lb.Limit != limit || lb.Value != value || !strings.Contains(lb.Message, want) || lb.Code != errorCode(wantStatus) {
		t.Fatalf("%s: body %s, want limit %q value %d and a message containing %q", what, body, limit, value, want)
	}
}

// refusedCount reads hub.refused[limit] from /api/v1/status.
func (h *testHub) refusedCount(limit string) int {
	h.t.Helper()
	st, _, b := h.do(http.MethodGet, "/api/v1/status", "", nil)
	if st != http.StatusOK {
		h.t.Fatalf("status: %d %s", st, b)
	}
	var out struct {
		Hub struct {
			Refused map[string]int `json:"refused"`
			Limits  map[string]int `json:"limits"`
		} `json:"hub"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		h.t.Fatalf("status body %s: %v", b, err)
	}
	n, ok := out.Hub.Refused[limit]
	if !ok {
		h.t.Fatalf("status %s has no hub.refused.%s", b, limit)
	}
	if _, ok := out.Hub.Limits[limit]; !ok {
		h.t.Fatalf("status %s has no hub.limits.%s", b, limit)
	}
	return n
}

func TestLimits_MaxConnections(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.MaxConnections = 2 })
	a := h.connect(testHubName, "")
	b := h.connect(testHubName, "")

	st, body := h.negotiate(testHubName, "negotiateVersion=1", nil)
	wantLimit(t, "negotiate on a full node", st, body, http.StatusServiceUnavailable, "max_connections", 2, "connect to another node")
	_, st, err := h.dial(testHubName, "", nil) // skipNegotiation
	if err == nil || st != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "max_connections") {
		t.Fatalf("WebSocket without negotiate on a full node: status %d, %v; want 503 naming max_connections", st, err)
	}
	if n := h.refusedCount("max_connections"); n != 2 {
		t.Errorf("refused max_connections = %d, want 2", n)
	}

	// The connections already in are unaffected, and the REST API answers.
	a.callOK("Broadcast", "still-here")
	a.waitInvocations("still-here", 1)
	b.waitInvocations("still-here", 1)

	// A connection that leaves makes room.
	a.close()
	waitFor(t, "the node to let go of a connection", func() bool { return h.srv.LocalConnections() == 1 })
	c := h.connect(testHubName, "")
	c.callOK("Broadcast", "third")
	c.waitInvocations("third", 1)
}

func TestLimits_MaxConnectionsPerUser(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.MaxConnectionsPerUser = 2 })
	// Tokens negotiated while alice had room: the connect checks again.
	var toks []string
	for range 2 {
		toks = append(toks, *h.negotiateOK(testHubName, "negotiateVersion=1&user=alice", nil).ConnectionToken)
	}
	a1 := h.connect(testHubName, "alice")
	a2 := h.connect(testHubName, "alice")

	st, body := h.negotiate(testHubName, "negotiateVersion=1&user=alice", nil)
	wantLimit(t, "negotiate", st, body, http.StatusTooManyRequests, "max_connections_per_user", 2, `user "alice" has 2 connections to hub "chat"`)

	_, st, err := h.dial(testHubName, url.Values{"id": {toks[0]}}.Encode(), nil)
	if err == nil || st != http.StatusTooManyRequests || !strings.Contains(err.Error(), "max_connections_per_user") {
		t.Fatalf("WebSocket with a token negotiated earlier: status %d, %v; want 429 naming max_connections_per_user", st, err)
	}
	st, _, body = h.do(http.MethodGet, "/hubs/chat?"+url.Values{"id": {toks[1]}}.Encode(), "", nil) // long polling
	wantLimit(t, "long polling", st, body, http.StatusTooManyRequests, "max_connections_per_user", 2, `user "alice"`)
	_, st, err = h.dial(testHubName, "user=alice", nil) // skipNegotiation
	if err == nil || st != http.StatusTooManyRequests {
		t.Fatalf("WebSocket without negotiate: status %d, %v; want 429", st, err)
	}
	if n := h.refusedCount("max_connections_per_user"); n != 4 {
		t.Errorf("refused max_connections_per_user = %d, want 4", n)
	}

	// Another user, and alice in another hub, still connect; alice's
	// connections still work.
	bob := h.connect(testHubName, "bob")
	bob.callOK("SendToUser", "alice", "hi")
	a1.waitInvocations("hi", 1)
	a2.waitInvocations("hi", 1)
	other := h.connect("other", "alice")
	other.callOK("Broadcast", "x")
	other.waitInvocations("x", 1)
	anon := h.connect(testHubName, "") // no user: not counted
	anon.callOK("Broadcast", "y")
	anon.waitInvocations("y", 1)
}

func TestLimits_MaxConnectionsPerIP(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.MaxConnectionsPerIP = 2 })
	a := h.connect(testHubName, "u1")
	h.connect(testHubName, "u2")

	st, body := h.negotiate(testHubName, "negotiateVersion=1&user=u3", nil)
	wantLimit(t, "negotiate", st, body, http.StatusTooManyRequests, "max_connections_per_ip", 2, "2 connections from 127.0.0.1")
	_, st, err := h.dial(testHubName, "user=u3", nil)
	if err == nil || st != http.StatusTooManyRequests || !strings.Contains(err.Error(), "max_connections_per_ip") {
		t.Fatalf("WebSocket without negotiate: status %d, %v; want 429 naming max_connections_per_ip", st, err)
	}

	// Another address still negotiates (every test client is 127.0.0.1,
	// so the other address is a request served in process).
	r := httptest.NewRequest(http.MethodPost, "/hubs/chat/negotiate?negotiateVersion=1", nil)
	r.RemoteAddr = "192.0.2.44:1234"
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte("connectionToken")) {
		t.Fatalf("negotiate from another address: %d %s", rec.Code, rec.Body)
	}
	if n := h.refusedCount("max_connections_per_ip"); n != 2 {
		t.Errorf("refused max_connections_per_ip = %d, want 2", n)
	}
	a.callOK("Broadcast", "fine")
	a.waitInvocations("fine", 1)

	// Leaving makes room for the address again.
	a.close()
	waitFor(t, "the node to let go of a connection", func() bool { return h.srv.LocalConnections() == 1 })
	h.connect(testHubName, "u3")
}

func TestLimits_MaxGroupsPerConnection(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.MaxGroupsPerConnection = 2 })
	a := h.connect(testHubName, "")
	b := h.connect(testHubName, "")
	a.callOK("JoinGroup", "g1")
	a.callOK("JoinGroup", "g2")
	a.callErr("the limit (max_groups_per_connection) is 2", "JoinGroup", "g3")
	a.callOK("JoinGroup", "g1") // already a member: not a new group
	if ci, _ := h.m.Connection(testHubName, a.connID); len(ci.Groups) != 2 {
		t.Fatalf("groups after the refused join: %v", ci.Groups)
	}

	path := "/api/v1/hubs/chat/groups/g4/connections/" + a.connID
	st, _, body := h.do(http.MethodPut, path, "", nil)
	wantLimit(t, "REST group add", st, body, http.StatusConflict, "max_groups_per_connection", 2, "is in 2 groups")

	// Leaving a group makes room; other connections are unaffected.
	a.callOK("LeaveGroup", "g2")
	a.callOK("JoinGroup", "g3")
	b.callOK("JoinGroup", "g3")
	b.callOK("JoinGroup", "g4")
	b.callOK("SendToGroup", "g3", "to-g3")
	a.waitInvocations("to-g3", 1)
	if n := h.refusedCount("max_groups_per_connection"); n != 2 {
		t.Errorf("refused max_groups_per_connection = %d, want 2", n)
	}
}

func TestLimits_MaxGroupMembers(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.MaxGroupMembers = 2 })
	a := h.connect(testHubName, "")
	b := h.connect(testHubName, "")
	c := h.connect(testHubName, "")
	a.callOK("JoinGroup", "room")
	b.callOK("JoinGroup", "room")
	c.callErr(`group "room" has 2 members, the limit (max_group_members) is 2`, "JoinGroup", "room")
	b.callOK("JoinGroup", "room") // a member already

	st, _, body := h.do(http.MethodPut, "/api/v1/hubs/chat/groups/room/connections/"+c.connID, "", nil)
	wantLimit(t, "REST group add", st, body, http.StatusConflict, "max_group_members", 2, `group "room" has 2 members`)
	// The same group name in another hub is another group.
	d := h.connect("other", "")
	d.callOK("JoinGroup", "room")
	c.callOK("JoinGroup", "lobby")
	if got := h.m.GroupConnections(testHubName, "room"); len(got) != 2 {
		t.Fatalf("room members = %v, want 2", got)
	}
	if n := h.refusedCount("max_group_members"); n != 2 {
		t.Errorf("refused max_group_members = %d, want 2", n)
	}
	// An unknown connection is the log's answer: 404, not a limit.
	st, _, body = h.do(http.MethodPut, "/api/v1/hubs/chat/groups/room/connections/nobody", "", nil)
	if st != http.StatusNotFound {
		t.Fatalf("REST group add of an unknown connection: %d %s, want 404", st, body)
	}
}

// TestLimits_GroupChecksWithoutCounts runs the join checks through the
// Stream's lists, for a Stream without the registry counts.
func TestLimits_GroupChecksWithoutCounts(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxGroupsPerConnection, cfg.MaxGroupMembers = 1, 1
	m := newTestMachine(t)
	pub := newFakePublisher(t, m, true)
	srv, err := New(cfg, pub, listsOnly{m})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "c2"} {
		if _, err := pub.Publish(t.Context(), fsm.Command{Kind: fsm.KindConnOpen, Hub: testHubName, Conn: id, Node: "node-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pub.Publish(t.Context(), fsm.Command{Kind: fsm.KindGroupJoin, Hub: testHubName, Conn: "c1", Group: "g"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id, group string
		want      string // "" allowed, else the limit
	}{
		{"c1", "g", ""},
		{"c1", "h", "max_groups_per_connection"},
		{"c2", "g", "max_group_members"},
		{"c2", "h", ""},
		{"unknown", "g", ""},
	}
	for _, tt := range tests {
		le := srv.checkJoin(testHubName, tt.id, tt.group)
		switch {
		case tt.want == "" && le != nil:
			t.Errorf("checkJoin(%s, %s) = %v, want nil", tt.id, tt.group, le)
		case tt.want != "" && (le == nil || limitNames[le.kind] != tt.want):
			t.Errorf("checkJoin(%s, %s) = %v, want a %s refusal", tt.id, tt.group, le, tt.want)
		}
	}
}

// listsOnly is a Stream without the registry counts: embedding the
// interface promotes its methods only.
type listsOnly struct{ Stream }

func TestConn_MaxQueuedBytes(t *testing.T) {
	t.Parallel()
	big := func(i int) []byte { // a 10 KiB invocation
		return appendInvocation(nil, "t", []byte(`["`+strings.Repeat("x", 10<<10)+`"]`), testEpoch+":1:"+strconv.Itoa(i+1))
	}
	limit := 32 << 10

	t.Run("overflow closes with allowReconnect", func(t *testing.T) {
		tr := newGateTransport(true)
		c := newUnitConn(t, 4096, tr, func(cfg *Config) { cfg.MaxQueuedBytes = limit })
		t.Cleanup(func() { releaseGate(tr) })
		if !c.enqueue(big(0), fsm.Cursor{}) {
			t.Fatal("first enqueue refused")
		}
		waitChan(t, "the writer to start writing", tr.entered) // the first frame is in flight, and counted
		if !c.enqueue(big(1), fsm.Cursor{}) || !c.enqueue(big(2), fsm.Cursor{}) {
			t.Fatal("enqueue under MaxQueuedBytes refused")
		}
		noBlock(t, "enqueue past the byte limit", func() {
			if c.enqueue(big(3), fsm.Cursor{}) {
				t.Error("enqueue past MaxQueuedBytes accepted")
			}
		})
		if n := c.srv.lim.refused[limitQueuedBytes].Load(); n != 1 {
			t.Errorf("refused max_queued_bytes = %d, want 1", n)
		}
		releaseGate(tr)
		waitChan(t, "the transport to close", tr.closed)
		w := tr.written()
		want := `{"type":7,"error":"Connection closed: too slow to receive, more than 32768 bytes queued.","allowReconnect":true}` + "\x1e"
		if len(w) == 0 || string(w[len(w)-1]) != want {
			t.Fatalf("last write %q, want %q", w[len(w)-1], want)
		}
	})

	t.Run("written bytes no longer count", func(t *testing.T) {
		tr := newGateTransport(false)
		c := newUnitConn(t, 4096, tr, func(cfg *Config) { cfg.MaxQueuedBytes = limit })
		var total int
		for i := range 20 { // 200 KiB through a 32 KiB limit, written as it comes
			f := big(i)
			total += len(f)
			if !c.enqueue(f, fsm.Cursor{}) {
				t.Fatalf("enqueue %d refused on a connection that keeps up", i)
			}
			waitFor(t, "the frame to be written", func() bool { return len(bytes.Join(tr.written(), nil)) == total })
		}
	})

	t.Run("one message larger than the limit goes through", func(t *testing.T) {
		tr := newGateTransport(false)
		c := newUnitConn(t, 4096, tr, func(cfg *Config) { cfg.MaxQueuedBytes = limit })
		huge := appendInvocation(nil, "t", []byte(`["`+strings.Repeat("y", 2*limit)+`"]`), testEpoch+":1:1")
		if !c.enqueue(huge, fsm.Cursor{}) {
			t.Fatal("a message larger than MaxQueuedBytes into an empty queue was refused")
		}
		waitFor(t, "the message to be written", func() bool { return len(tr.written()) == 1 })
	})

	t.Run("no limit", func(t *testing.T) {
		tr := newGateTransport(true)
		c := newUnitConn(t, 4096, tr, func(cfg *Config) { cfg.MaxQueuedBytes = 0 })
		t.Cleanup(func() { releaseGate(tr) })
		for i := range 100 { // 1 MiB queued behind a stuck write
			if !c.enqueue(big(i), fsm.Cursor{}) {
				t.Fatalf("enqueue %d refused without a byte limit", i)
			}
		}
	})
}

// TestLimits_SlowConsumerOthersUnaffected: a connection closed for its
// byte queue leaves the others on the same server receiving.
func TestLimits_SlowConsumerOthersUnaffected(t *testing.T) {
	t.Parallel()
	slowTr := newGateTransport(true)
	slow := newUnitConn(t, 4096, slowTr, func(cfg *Config) { cfg.MaxQueuedBytes = 32 << 10 })
	t.Cleanup(func() { releaseGate(slowTr) }) // runs first: a failed test does not hang the writer
	fastTr := newGateTransport(false)
	fast := slow.srv.newConn(nil, "conn-2", testHubName, "u", fastTr)
	fast.startWriter()
	t.Cleanup(func() {
		fast.cancel()
		<-fast.writerEnded()
	})
	frame := appendInvocation(nil, "t", []byte(`["`+strings.Repeat("z", 8<<10)+`"]`), testEpoch+":1:1")
	slowClosed := false
	for i := range 10 {
		if !slow.enqueue(frame, fsm.Cursor{}) {
			slowClosed = true
		}
		if !fast.enqueue(frame, fsm.Cursor{}) {
			t.Fatalf("the fast connection refused frame %d", i)
		}
		waitFor(t, "the fast connection to write the frame", func() bool {
			return len(bytes.Join(fastTr.written(), nil)) == (i+1)*len(frame)
		})
	}
	if !slowClosed {
		t.Fatal("the slow connection was not closed past 32 KiB")
	}
	releaseGate(slowTr)
	waitChan(t, "the slow transport to close", slowTr.closed)
}

// releaseGate lets a gateTransport's writes through; it may be called
// more than once.
func releaseGate(g *gateTransport) {
	select {
	case <-g.release:
	default:
		close(g.release)
	}
}
