package hub

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/raftplane/raftplane/fsm"
)

// startAppHub starts a test hub with handlers registered for testHubName.
func startAppHub(t *testing.T, h Handlers, opts ...func(*Config)) *testHub {
	t.Helper()
	cfg := testConfig(t)
	for _, o := range opts {
		o(&cfg)
	}
	m := newTestMachine(t)
	pub := newFakePublisher(t, m, true)
	srv, err := New(cfg, pub, m)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Handle(testHubName, h); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Handle("other", Handlers{}); err == nil {
		t.Fatal("Handle after Start succeeded")
	}
	ts := httptest.NewServer(srv)
	th := &testHub{t: t, cfg: cfg, srv: srv, ts: ts, m: m, pub: pub}
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("Server.Close: %v", err)
		}
	})
	return th
}

// chatHandlers is a small application: Say validates and sends to a room
// the caller joins in the same run; Echo returns its argument; Fail and
// Panic fail.
func chatHandlers() Handlers {
	return Handlers{Methods: map[string]Method{
		"Say": func(ctx *Context, args Args) (any, error) {
			var room, text string
			if err := args.Bind(&room, &text); err != nil {
				return nil, err
			}
			if strings.TrimSpace(text) == "" {
				return nil, Errorf("empty message")
			}
			if err := ctx.Groups().Add(ctx.ConnectionID, room); err != nil {
				return nil, err
			}
			if err := ctx.Clients().Group(room).Send("said", ctx.User, text); err != nil {
				return nil, err
			}
			if err := ctx.Clients().Caller().Send("ack", len(text)); err != nil {
				return nil, err
			}
			return map[string]any{"room": room, "len": len(text)}, nil
		},
		"Echo": func(ctx *Context, args Args) (any, error) {
			var v any
			err := args.Decode(0, &v)
			return v, err
		},
		"Nothing": func(ctx *Context, args Args) (any, error) { return nil, nil },
		"Fail":    func(ctx *Context, args Args) (any, error) { return nil, errors.New("database is down") },
		"Panic":   func(ctx *Context, args Args) (any, error) { panic("boom") },
		"SendAndFail": func(ctx *Context, args Args) (any, error) {
			if err := ctx.Clients().All().Send("leaked"); err != nil {
				return nil, err
			}
			return nil, Errorf("refused after sending")
		},
	}}
}

// TestApp_Methods: an application method's sends and group change commit as
// one group, in one entry, before the caller's Completion; the result goes
// back as JSON; errors are worded as ASP.NET Core words them, and a failed
// method sends nothing.
func TestApp_Methods(t *testing.T) {
	h := startAppHub(t, chatHandlers())
	alice := h.connect(testHubName, "alice")
	bob := h.connect(testHubName, "bob")
	bob.callOK("JoinGroup", "room1")

	done := alice.call("say", "room1", "hello") // case-insensitive, as ASP.NET Core
	if done.Error != "" || string(done.Result) != `{"len":5,"room":"room1"}` {
		t.Fatalf("Say completion = %s", done.Raw)
	}
	// The caller got its ack and the room message before its Completion.
	msgs := alice.messages()
	var order []string
	for _, m := range msgs {
		switch {
		case m.Type == typeInvocation && (m.Target == "said" || m.Target == "ack"):
			order = append(order, m.Target)
		case m.Type == typeCompletion:
			order = append(order, "completion")
		}
	}
	if strings.Join(order, ",") != "said,ack,completion" {
		t.Fatalf("caller saw %v, want said,ack,completion", order)
	}
	got := bob.waitInvocations("said", 1)[0]
	if string(got.Arguments[0]) != `"alice"` || string(got.Arguments[1]) != `"hello"` {
		t.Fatalf("bob got %s", got.Raw)
	}
	// One entry: the join, the group send and the ack, at one index.
	var group []fsm.Command
	for _, c := range h.pub.cmds {
		if c.Kind == fsm.KindGroupJoin && c.Conn == alice.connID {
			group = append(group, c)
		}
	}
	if len(group) != 1 {
		t.Fatalf("the join of the method: %+v, want one", group)
	}
	said := mustCursor(t, got.Headers["cursor"])
	ack := mustCursor(t, alice.waitInvocations("ack", 1)[0].Headers["cursor"])
	if said.Index != ack.Index || ack.Offset != said.Offset+1 {
		t.Fatalf("said at %s, ack at %s: want one entry, in order", said, ack)
	}

	if m := alice.call("Echo", map[string]any{"x": []int{1, 2}}); m.Error != "" || string(m.Result) != `{"x":[1,2]}` {
		t.Fatalf("Echo = %s", m.Raw)
	}
	if m := alice.call("Nothing"); m.Error != "" || m.Result != nil {
		t.Fatalf("Nothing = %s, want a completion without a result", m.Raw)
	}
	alice.callErr("empty message", "Say", "room1", "  ")
	alice.callErr("the method takes 2 argument(s), got 1", "Say", "room1")
	alice.callErr("argument 2:", "Say", "room1", 42)
	alice.callErr("An unexpected error occurred invoking 'Fail' on the server.", "Fail")
	if m := alice.call("Fail"); strings.Contains(m.Error, "database") {
		t.Fatalf("Fail leaked its error text without DetailedErrors: %s", m.Raw)
	}
	alice.callErr("An unexpected error occurred invoking 'Panic' on the server.", "Panic")
	alice.callErr("refused after sending", "SendAndFail")
	h.fence(testHubName, alice, bob)
	if n := len(bob.invocations("leaked")); n != 0 {
		t.Fatalf("a failed method's send was delivered %d time(s)", n)
	}
	// The built-ins are still there, beside the application's methods.
	alice.callOK("Broadcast", "x", 1)
}

// TestApp_Stateful: on a stateful-reconnect connection a method's effects
// and its Completion are one group in the log, the invoke last; the same
// client message resent (a reconnect) applies once.
func TestApp_Stateful(t *testing.T) {
	h := startAppHub(t, chatHandlers())
	bob := h.connect(testHubName, "bob")
	bob.callOK("JoinGroup", "room1")
	c := h.connectStateful(testHubName, "alice")
	c.sendRaw(`{"type":1,"invocationId":"7","target":"Say","arguments":["room1","hi"]}` + "\x1e")
	done := c.completion("7")
	if done.Error != "" || string(done.Result) != `{"len":2,"room":"room1"}` {
		t.Fatalf("completion = %s", done.Raw)
	}
	invs := h.pub.commands(fsm.KindInvoke)
	if len(invs) != 1 || invs[0].Effects != 3 || invs[0].Origin.InvocationID != "7" || invs[0].Origin.Seq != 1 {
		t.Fatalf("invokes in the log: %+v", invs)
	}
	// The client resends message 1 after a (simulated) reconnect: it was
	// applied, so nothing runs or applies again.
	c.sendRaw(`{"type":9,"sequenceId":1}` + "\x1e")
	c.sendRaw(`{"type":1,"invocationId":"7","target":"Say","arguments":["room1","hi"]}` + "\x1e")
	c.sendRaw(`{"type":1,"invocationId":"8","target":"Echo","arguments":[3]}` + "\x1e")
	if m := c.completion("8"); string(m.Result) != "3" {
		t.Fatalf("Echo = %s", m.Raw)
	}
	h.fence(testHubName, bob)
	if n := len(bob.invocations("said")); n != 1 {
		for _, c := range h.pub.cmds {
			t.Logf("%s %s %s %+v", c.Kind, c.ID, c.Target, c.Origin)
		}
		t.Fatalf("bob got %d room messages, want 1", n)
	}
	if n := len(h.pub.commands(fsm.KindInvoke)); n != 2 {
		t.Fatalf("%d invokes in the log, want 2", n)
	}
}

// TestApp_OnConnectedAndAuthenticate: Authenticate identifies the client
// and gives the claims; OnConnected's effects commit before the first
// invocation, and its *Error refuses the connection with its text.
func TestApp_OnConnectedAndAuthenticate(t *testing.T) {
	h := startAppHub(t, Handlers{
		Authenticate: func(r *http.Request) (string, map[string]any, error) {
			k := r.URL.Query().Get("key")
			if k == "" {
				return "", nil, errors.New("no key")
			}
			return "user-" + k, map[string]any{"role": k}, nil
		},
		OnConnected: func(ctx *Context) error {
			if ctx.Claims["role"] == "banned" {
				return Errorf("you are banned")
			}
			if err := ctx.Groups().Add(ctx.ConnectionID, "role:"+ctx.Claims["role"].(string)); err != nil {
				return err
			}
			return ctx.Clients().Caller().Send("welcome", ctx.User)
		},
		Methods: map[string]Method{"Who": func(ctx *Context, _ Args) (any, error) { return ctx.User, nil }},
	})
	st, body := h.negotiate(testHubName, "negotiateVersion=1", nil)
	if st != http.StatusUnauthorized || !strings.Contains(string(body), "no key") {
		t.Fatalf("negotiate without key: %d %s", st, body)
	}
	dialKey := func(key string) *wsClient {
		n := h.negotiateOK(testHubName, url.Values{"negotiateVersion": {"1"}, "key": {key}}.Encode(), nil)
		ws, st, err := h.dial(testHubName, url.Values{"id": {*n.ConnectionToken}, "key": {key}}.Encode(), nil)
		if err != nil {
			t.Fatalf("dial (status %d): %v", st, err)
		}
		ws.connID = n.ConnectionID
		ws.sendRaw(`{"protocol":"json","version":1}` + "\x1e")
		return ws
	}
	c := dialKey("admin")
	if got := c.first(); got.Raw != "{}" {
		t.Fatalf("handshake = %s", got.Raw)
	}
	w := c.waitInvocations("welcome", 1)[0]
	if string(w.Arguments[0]) != `"user-admin"` {
		t.Fatalf("welcome %s", w.Raw)
	}
	if m := c.call("Who"); string(m.Result) != `"user-admin"` {
		t.Fatalf("Who = %s", m.Raw)
	}
	if gs := h.m.GroupConnections(testHubName, "role:admin"); len(gs) != 1 {
		t.Fatalf("role:admin = %v", gs)
	}
	// Refused: the handshake answers with the reason, and the connection
	// is closed in the log at once.
	ws := dialKey("banned")
	if got := ws.first(); !strings.Contains(got.Error, "you are banned") {
		t.Fatalf("handshake = %s, want the refusal", got.Raw)
	}
	waitFor(t, "the refused connection closed in the log", func() bool {
		_, ok := h.m.Connection(testHubName, ws.connID)
		return !ok
	})
}

// TestAuthz: -client-methods removes built-ins, the group claim limits
// them, a token without exp is refused and a connection is closed at its
// token's exp, with allowReconnect.
func TestAuthz(t *testing.T) {
	key := []byte("authz-test-key-0123456789abcdef")
	h := startAppHub(t, chatHandlers(), func(c *Config) {
		c.JWTKey = key
		c.ClientMethods = []string{"JoinGroup", "SendToGroup"}
		c.JWTLeeway = 0
	})
	tok := func(sub string, exp time.Duration, groups any) string {
		claims := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(exp).Unix()}
		if groups != nil {
			claims["raftplane_groups"] = groups
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	conn := func(tk string) *wsClient {
		return h.connectWith(testHubName, url.Values{"negotiateVersion": {"1"}, "access_token": {tk}}, nil)
	}
	c := conn(tok("alice", time.Hour, []string{"room:*", "lobby"}))
	c.callOK("JoinGroup", "lobby")
	c.callOK("JoinGroup", "room:42")
	c.callErr("group 'secret' is not in your token's \"raftplane_groups\" claim", "JoinGroup", "secret")
	c.callErr("not in your token", "SendToGroup", "secret", "t", 1)
	c.callErr("Method 'Broadcast' is not available to clients on this server", "Broadcast", "t", 1)
	// The application's methods are the application's to check.
	if m := c.call("Say", "secret", "hi"); m.Error != "" {
		t.Fatalf("Say = %s", m.Raw)
	}
	// A space-separated claim, and a token without the claim at all.
	d := conn(tok("dave", time.Hour, "a b"))
	d.callOK("JoinGroup", "b")
	free := conn(tok("free", time.Hour, nil))
	free.callOK("JoinGroup", "anything")

	// Expiry: closed with allowReconnect when the token runs out.
	e := conn(tok("eve", 1500*time.Millisecond, nil))
	cl := e.waitClose()
	if !cl.AllowReconnect || !strings.Contains(cl.Error, "access token expired") {
		t.Fatalf("close at expiry = %s", cl.Raw)
	}
	if h.srv.expiredTokens.Load() != 1 {
		t.Fatalf("expired count = %d", h.srv.expiredTokens.Load())
	}
}

// TestConfig_ClientMethods: a name that is not a built-in is refused.
func TestConfig_ClientMethods(t *testing.T) {
	cfg := testConfig(t)
	cfg.ClientMethods = []string{"JoinGroup", "Publish"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `"Publish" is not a built-in`) {
		t.Fatalf("Validate = %v", err)
	}
	cfg.ClientMethods = []string{}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate(none) = %v", err)
	}
}

// connectStateful opens a stateful-reconnect connection (protocol version 2).
func (h *testHub) connectStateful(hub, user string) *wsClient {
	h.t.Helper()
	n := h.negotiateOK(hub, url.Values{"negotiateVersion": {"1"}, "useStatefulReconnect": {"true"}, "user": {user}}.Encode(), nil)
	c, st, err := h.dial(hub, url.Values{"id": {*n.ConnectionToken}}.Encode(), nil)
	if err != nil {
		h.t.Fatalf("dial (status %d): %v", st, err)
	}
	c.connID = n.ConnectionID
	c.sendRaw(`{"protocol":"json","version":2}` + "\x1e")
	if got := c.first(); got.Raw != "{}" {
		h.t.Fatalf("handshake response %s", got.Raw)
	}
	return c
}

// TestServerSend: the server-side API commits and returns the cursor; sends
// to several users are one entry; a group change of an unknown connection
// says so.
func TestServerSend(t *testing.T) {
	h := startAppHub(t, Handlers{})
	alice := h.connect(testHubName, "alice")
	bob := h.connect(testHubName, "bob")
	ctx := context.Background()
	cur, err := h.srv.Clients(testHubName).All().Send(ctx, "news", "hi", 1)
	if err != nil {
		t.Fatal(err)
	}
	got := alice.waitInvocations("news", 1)[0]
	if got.Headers["cursor"] != cur || string(got.Arguments[1]) != "1" {
		t.Fatalf("alice got %s, Send returned %s", got.Raw, cur)
	}
	if _, err := h.srv.Groups(testHubName).Add(ctx, bob.connID, "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.Clients(testHubName).GroupExcept("g", alice.connID).Send(ctx, "g-only"); err != nil {
		t.Fatal(err)
	}
	bob.waitInvocations("g-only", 1)
	last, err := h.srv.Clients(testHubName).Users("alice", "bob").Send(ctx, "both")
	if err != nil {
		t.Fatal(err)
	}
	a, b := alice.waitInvocations("both", 1)[0], bob.waitInvocations("both", 1)[0]
	ca, cb := mustCursor(t, a.Headers["cursor"]), mustCursor(t, b.Headers["cursor"])
	if ca.Index != cb.Index || b.Headers["cursor"] != last {
		t.Fatalf("to two users: %s and %s (returned %s), want one entry, the last returned", ca, cb, last)
	}
	if _, err := h.srv.Groups(testHubName).Add(ctx, "no-such-conn", "g"); !errors.Is(err, fsm.ErrUnknownConnection) {
		t.Fatalf("Add(unknown) = %v", err)
	}
	if _, err := h.srv.Clients("bad/hub").All().Send(ctx, "x"); err == nil {
		t.Fatal("Send to an invalid hub name succeeded")
	}
	if _, err := h.srv.Clients(testHubName).All().Send(ctx, "x", make(chan int)); err == nil {
		t.Fatal("Send of an argument JSON cannot hold succeeded")
	}
	if n := len(alice.invocations("g-only")); n != 0 {
		h.fence(testHubName, alice)
		t.Fatalf("alice got %d g-only messages", n)
	}
}
