package hub

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// twoNodes starts two hubs (node-1 and node-2) over one log, as two nodes
// of a cluster see it.
func twoNodes(t *testing.T, opts ...func(*Config)) (*testHub, *testHub) {
	t.Helper()
	h1 := newTestHub(t, opts...)
	cfg2 := testConfig(t)
	cfg2.NodeID = "node-2"
	for _, o := range opts {
		o(&cfg2)
	}
	h2 := startTestHub(t, cfg2, h1.m, h1.pub)
	return h1, h2
}

// connectToken is connect, also returning the connection token.
func (h *testHub) connectToken(hub, user string) (*wsClient, string) {
	h.t.Helper()
	n := h.negotiateOK(hub, url.Values{"negotiateVersion": {"1"}, "user": {user}}.Encode(), nil)
	c, st, err := h.dial(hub, url.Values{"id": {*n.ConnectionToken}}.Encode(), nil)
	if err != nil {
		h.t.Fatalf("dial (status %d): %v", st, err)
	}
	c.connID = n.ConnectionID
	c.handshakeOK()
	return c, *n.ConnectionToken
}

// resume connects with ?resume=&cursor= and completes the handshake.
func (h *testHub) resume(hub, token, cursor string) *wsClient {
	h.t.Helper()
	c, st, err := h.dial(hub, url.Values{"resume": {token}, "cursor": {cursor}}.Encode(), nil)
	if err != nil {
		h.t.Fatalf("resume dial (status %d): %v", st, err)
	}
	c.handshakeOK()
	return c
}

func lastCursor(t *testing.T, c *wsClient, target string) string {
	t.Helper()
	inv := c.invocations(target)
	if len(inv) == 0 {
		t.Fatalf("no %q received", target)
	}
	return inv[len(inv)-1].Headers["cursor"]
}

func TestServer_ResumeOnAnotherNode(t *testing.T) {
	t.Parallel()
	h1, h2 := twoNodes(t)
	alice, tok := h1.connectToken(testHubName, "alice")
	bob := h2.connect(testHubName, "bob")
	alice.callOK("JoinGroup", "room")
	bob.callOK("JoinGroup", "room")
	bob.callOK("SendToGroup", "room", "say", 0)
	alice.waitInvocations("say", 1)
	seen := lastCursor(t, alice, "say")

	// Alice's transport dies without a goodbye; the conversation goes on.
	alice.close()
	waitFor(t, "node-1 to notice", func() bool { return h1.srv.LocalConnections() == 0 })
	var missed []string
	for i := 1; i <= 3; i++ {
		missed = append(missed, bob.callOK("SendToGroup", "room", "say", i))
	}
	missed = append(missed, bob.callOK("SendToUser", "alice", "dm", "psst"))
	bob.callOK("SendToGroup", "elsewhere", "say", 99) // not hers
	missed = append(missed, bob.callOK("Broadcast", "news", "all"))

	// She comes back on node-2 with the last cursor she saw.
	back := h2.resume(testHubName, tok, seen)
	back.waitInvocations("news", 1)
	var got []string
	for _, m := range back.messages() {
		if m.Type == typeInvocation {
			got = append(got, m.Headers["cursor"])
		}
	}
	if strings.Join(got, ",") != strings.Join(missed, ",") {
		t.Fatalf("replayed cursors %v, want exactly the missed %v", got, missed)
	}
	// Same connection: same id, still in her group, owned by node-2, and live.
	ci, ok := h1.m.Connection(testHubName, alice.connID)
	if !ok || ci.Node != "node-2" || len(ci.Groups) != 1 || ci.Groups[0] != "room" {
		t.Fatalf("registry after resume: %+v %v", ci, ok)
	}
	live := bob.callOK("SendToGroup", "room", "say", 4)
	back.waitInvocations("say", 4)
	if c := lastCursor(t, back, "say"); c != live {
		t.Fatalf("live message cursor %s, want %s", c, live)
	}
	if m := back.callOK("SendToConnection", bob.connID, "hi", 1); m == "" {
		t.Fatal("resumed connection cannot invoke")
	}
	back.checkFraming()
}

func TestServer_ResumeReplaysGroupsAsTheyWere(t *testing.T) {
	t.Parallel()
	h1, h2 := twoNodes(t)
	alice, tok := h1.connectToken(testHubName, "alice")
	bob := h1.connect(testHubName, "bob")
	alice.callOK("JoinGroup", "a")
	bob.callOK("Broadcast", "tick", 0)
	alice.waitInvocations("tick", 1)
	seen := lastCursor(t, alice, "tick")
	alice.close()
	waitFor(t, "node-1 to notice", func() bool { return h1.srv.LocalConnections() == 1 })

	// While she is away, the app moves her from group a to group b.
	bob.callOK("SendToGroup", "a", "in-a", 1) // hers: still in a
	if st, _, body := h1.do(http.MethodPut, "/api/v1/hubs/chat/groups/b/connections/"+alice.connID, "", nil); st != 200 {
		t.Fatalf("PUT group b: %d %s", st, body)
	}
	if st, _, body := h1.do(http.MethodDelete, "/api/v1/hubs/chat/groups/a/connections/"+alice.connID, "", nil); st != 200 {
		t.Fatalf("DELETE group a: %d %s", st, body)
	}
	bob.callOK("SendToGroup", "a", "in-a", 2) // not hers any more
	bob.callOK("SendToGroup", "b", "in-b", 3) // hers now

	back := h2.resume(testHubName, tok, seen)
	back.waitInvocations("in-b", 1)
	h2.fence(testHubName, back)
	if a := back.invocations("in-a"); len(a) != 1 || string(a[0].Arguments[0]) != "1" {
		t.Fatalf("in-a messages %v, want only the one sent while she was in a", a)
	}
}

func TestServer_ResumeResets(t *testing.T) {
	t.Parallel()
	m, err := fsm.New(fsm.Config{CacheMaxEntries: 4, CacheMaxBytes: 1 << 20, CacheMaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := startTestHub(t, testConfig(t), m, newFakePublisher(t, m, true))
	alice, tok := h.connectToken(testHubName, "alice")
	first := alice.callOK("Broadcast", "x", 0)
	alice.close()
	waitFor(t, "the server to notice", func() bool { return h.srv.LocalConnections() == 0 })

	tests := []struct {
		name, token, cursor, want string
	}{
		{"another cluster's cursor", tok, "otherepoch:1:0", "another cluster"},
		{"expired cursor", tok, first, "cursor expired"},
	}
	for i := 0; i < 6; i++ { // push the first message out of the 4-entry cache
		if _, err := h.pub.Publish(t.Context(), fsm.Command{Kind: fsm.KindPublish, Hub: "other", Audience: fsm.AudienceAll, Target: "t", Args: []byte("[]")}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := h.resume(testHubName, tc.token, tc.cursor)
			cl := c.waitClose()
			if !strings.Contains(cl.Error, tc.want) || !cl.AllowReconnect {
				t.Fatalf("close %s, want an error naming %q with allowReconnect", cl.Raw, tc.want)
			}
			c.waitDone()
			// The next subtest resumes with the same token: wait until this
			// node has let go of the connection id.
			waitFor(t, "the refused resume to be released", func() bool { return h.srv.LocalConnections() == 0 })
		})
	}

	t.Run("closed connection", func(t *testing.T) {
		bob, btok := h.connectToken(testHubName, "bob")
		cur := bob.callOK("Broadcast", "x", 1)
		bob.sendRaw(`{"type":7}` + "\x1e") // goodbye: closed in the log at once
		bob.waitDone()
		waitFor(t, "bob's ConnClose", func() bool { _, ok := h.m.Connection(testHubName, bob.connID); return !ok })
		c := h.resume(testHubName, btok, cur)
		if cl := c.waitClose(); !strings.Contains(cl.Error, "closed") {
			t.Fatalf("close %s, want 'closed'", cl.Raw)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, q := range []url.Values{
			{"resume": {"garbage"}, "cursor": {first}},
			{"resume": {tok}},
			{"resume": {tok}, "cursor": {"nonsense"}},
		} {
			if _, st, err := h.dial(testHubName, q.Encode(), nil); err == nil || st < 400 {
				t.Fatalf("resume %v: status %d err %v, want a 4xx refusal", q, st, err)
			}
		}
	})
}

func TestServer_DroppedConnectionExpires(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.DisconnectTimeout = 300 * time.Millisecond })
	alice := h.connect(testHubName, "alice")
	alice.close() // no goodbye
	waitFor(t, "the server to notice", func() bool { return h.srv.LocalConnections() == 0 })
	if _, ok := h.m.Connection(testHubName, alice.connID); !ok {
		t.Fatal("a dropped connection must stay registered for the disconnect timeout")
	}
	waitFor(t, "the dropped connection to be closed in the log", func() bool {
		_, ok := h.m.Connection(testHubName, alice.connID)
		return !ok
	})
}
