package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/raftplane/raftplane/client"
	"github.com/raftplane/raftplane/hub"
)

// testWait bounds every wait for something that should happen promptly.
const testWait = 10 * time.Second

// pollEvery is how often waitFor checks its condition.
const pollEvery = 10 * time.Millisecond

// waitFor polls cond until it returns nil, failing the test after testWait
// with cond's last error. It is the package's one wait for a condition
// (a state to reach, never a pause standing for "nothing happened").
func waitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", testWait, what, err)
		}
		<-tick.C
	}
}

// waitGone waits until the server at base no longer has connection id.
func waitGone(t *testing.T, base, id string) {
	t.Helper()
	waitFor(t, "the server to let "+id+" go", func() error {
		if code, body := restDo(t, http.MethodGet, base+"/api/v1/hubs/chat/connections/"+id); code != http.StatusNotFound {
			return fmt.Errorf("GET connection: %d %s", code, body)
		}
		return nil
	})
}

// waitBlockedIn waits until a goroutine is parked in fn (a function name
// as runtime stacks print it, such as "client.(*Conn).currentLink"): the
// observable sign that a call has reached the wait a test is about.
func waitBlockedIn(t *testing.T, fn string) {
	t.Helper()
	waitFor(t, "a goroutine waiting in "+fn, func() error {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
			if bytes.Contains(g, []byte(fn+"(")) && bytes.Contains(g, []byte("[select")) {
				return nil
			}
		}
		return errors.New("none yet")
	})
}

func hubURL(base, user string) string {
	return base + "/hubs/chat?user=" + url.QueryEscape(user)
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	return ctx
}

// dial connects user to the chat hub; the connection is closed when the test
// ends.
func dial(t *testing.T, base, user string, mods ...func(*client.Config)) *client.Conn {
	t.Helper()
	cfg := client.Config{URL: hubURL(base, user)}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := client.Dial(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Dial(%s): %v", cfg.URL, err)
	}
	if c.ID() == "" {
		t.Fatal("empty connection id")
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// recv returns the next message of c.
func recv(t *testing.T, c *client.Conn) client.Message {
	t.Helper()
	select {
	case m, ok := <-c.Messages():
		if !ok {
			t.Fatalf("connection %s ended while waiting for a message: %v", c.ID(), c.Err())
		}
		return m
	case <-time.After(testWait):
		t.Fatalf("connection %s: no message within %s", c.ID(), testWait)
	}
	panic("unreachable")
}

// readUntil returns c's messages up to and including the first with target.
func readUntil(t *testing.T, c *client.Conn, target string) []client.Message {
	t.Helper()
	var out []client.Message
	for {
		m := recv(t, c)
		out = append(out, m)
		if m.Target == target {
			return out
		}
	}
}

func targets(ms []client.Message) []string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.Target
	}
	return s
}

func rawArgs(m client.Message) string {
	parts := make([]string, len(m.Arguments))
	for i, a := range m.Arguments {
		parts[i] = string(a)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

type cursor struct {
	epoch  string
	index  uint64
	offset uint32
}

func parseCursor(t *testing.T, s string) cursor {
	t.Helper()
	e, i, o, err := client.ParseCursor(s)
	if err != nil {
		t.Fatalf("ParseCursor(%q): %v", s, err)
	}
	return cursor{e, i, o}
}

// before reports whether a comes before b in the same stream.
func (a cursor) before(b cursor) bool {
	if a.index != b.index {
		return a.index < b.index
	}
	return a.offset < b.offset
}

// checkIncreasing fails unless the messages' cursors are strictly increasing
// within one epoch.
func checkIncreasing(t *testing.T, who string, ms []client.Message) {
	t.Helper()
	var prev *cursor
	for _, m := range ms {
		c := parseCursor(t, m.Cursor)
		if prev != nil && (c.epoch != prev.epoch || !prev.before(c)) {
			t.Errorf("%s: cursor %s does not follow %s:%d:%d", who, m.Cursor, prev.epoch, prev.index, prev.offset)
		}
		prev = &c
	}
}

func waitDone(t *testing.T, c *client.Conn) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(testWait):
		t.Fatalf("connection %s did not end within %s", c.ID(), testWait)
	}
}

// drain reads c's messages until the channel is closed.
func drain(t *testing.T, c *client.Conn) []client.Message {
	t.Helper()
	var out []client.Message
	timeout := time.After(testWait)
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return out
			}
			out = append(out, m)
		case <-timeout:
			t.Fatalf("Messages() of %s not closed within %s", c.ID(), testWait)
		}
	}
}

func restDo(t *testing.T, method, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSendToGroup(t *testing.T) {
	base := startStack(t)
	ctx := testCtx(t)
	a := dial(t, base, "alice")
	b := dial(t, base, "bob")
	if a.ID() == b.ID() {
		t.Fatalf("two connections share id %s", a.ID())
	}

	ja, err := a.InvokeCursor(ctx, "JoinGroup", "room")
	if err != nil {
		t.Fatalf("JoinGroup: %v", err)
	}
	jb, err := b.InvokeCursor(ctx, "JoinGroup", "room")
	if err != nil {
		t.Fatalf("JoinGroup: %v", err)
	}
	cur, err := a.InvokeCursor(ctx, "SendToGroup", "room", "say", "hello", 42, map[string]any{"k": []int{1, 2}})
	if err != nil {
		t.Fatalf("SendToGroup: %v", err)
	}
	cc := parseCursor(t, cur)
	for _, j := range []string{ja, jb} {
		jc := parseCursor(t, j)
		if jc.epoch != cc.epoch || !jc.before(cc) {
			t.Errorf("join cursor %s does not precede send cursor %s", j, cur)
		}
	}
	for _, c := range []*client.Conn{a, b} {
		m := recv(t, c)
		if m.Target != "say" || rawArgs(m) != `["hello",42,{"k":[1,2]}]` {
			t.Errorf("%s got %s%s, want say[\"hello\",42,{\"k\":[1,2]}]", c.ID(), m.Target, rawArgs(m))
		}
		if m.Cursor != cur {
			t.Errorf("%s: message cursor %q, InvokeCursor returned %q", c.ID(), m.Cursor, cur)
		}
	}

	// After LeaveGroup, b no longer gets the group's messages.
	if _, err := b.InvokeCursor(ctx, "LeaveGroup", "room"); err != nil {
		t.Fatalf("LeaveGroup: %v", err)
	}
	if _, err := a.InvokeCursor(ctx, "SendToGroup", "room", "after-leave"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.InvokeCursor(ctx, "Broadcast", "end"); err != nil {
		t.Fatal(err)
	}
	if got := targets(readUntil(t, a, "end")); strings.Join(got, ",") != "after-leave,end" {
		t.Errorf("alice got %v, want [after-leave end]", got)
	}
	if got := targets(readUntil(t, b, "end")); strings.Join(got, ",") != "end" {
		t.Errorf("bob got %v after leaving, want [end]", got)
	}
}

func TestAudiences(t *testing.T) {
	base := startStack(t)
	ctx := testCtx(t)
	a := dial(t, base, "alice")
	b := dial(t, base, "bob")
	c := dial(t, base, "carol")
	d := dial(t, base, "bob") // bob's second connection

	sent := map[string]string{} // target -> cursor
	invoke := func(method string, args ...any) {
		t.Helper()
		cur, err := a.InvokeCursor(ctx, method, args...)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		parseCursor(t, cur)
		sent[args[len(args)-2].(string)] = cur
	}
	invoke("Broadcast", "all", 1)
	invoke("SendToOthers", "others", 2)
	invoke("SendToUser", "bob", "user", 3)
	invoke("SendToConnection", c.ID(), "conn", 4)
	invoke("Broadcast", "end", 5)

	want := map[*client.Conn]string{
		a: "all,end",
		b: "all,others,user,end",
		c: "all,others,conn,end",
		d: "all,others,user,end",
	}
	names := map[*client.Conn]string{a: "alice", b: "bob", c: "carol", d: "bob#2"}
	for conn, w := range want {
		ms := readUntil(t, conn, "end")
		if got := strings.Join(targets(ms), ","); got != w {
			t.Errorf("%s got %s, want %s", names[conn], got, w)
		}
		for _, m := range ms {
			if m.Cursor != sent[m.Target] {
				t.Errorf("%s: %s has cursor %q, sender got %q", names[conn], m.Target, m.Cursor, sent[m.Target])
			}
		}
		checkIncreasing(t, names[conn], ms)
	}
}

func TestInvocationError(t *testing.T) {
	base := startStack(t)
	ctx := testCtx(t)
	a := dial(t, base, "alice")

	_, err := a.Invoke(ctx, "NoSuchMethod", 1)
	var ie *client.InvocationError
	if !errors.As(err, &ie) {
		t.Fatalf("unknown method: got %v (%T), want *InvocationError", err, err)
	}
	if ie.Method != "NoSuchMethod" || !strings.Contains(ie.Message, "Unknown hub method 'NoSuchMethod'") {
		t.Errorf("InvocationError = %+v", ie)
	}

	if _, err := a.Invoke(ctx, "JoinGroup"); !errors.As(err, &ie) {
		t.Errorf("JoinGroup without arguments: got %v, want *InvocationError", err)
	} else {
		t.Logf("JoinGroup(): %v", err)
	}
	if _, err := a.Invoke(ctx, "SendToConnection", "no-such-connection", "x"); !errors.As(err, &ie) {
		t.Errorf("SendToConnection to an unknown id: got %v, want *InvocationError", err)
	} else {
		t.Logf("SendToConnection(unknown): %v", err)
	}
	// An argument that cannot be encoded fails locally.
	if _, err := a.Invoke(ctx, "Broadcast", "x", make(chan int)); err == nil || errors.As(err, &ie) {
		t.Errorf("unencodable argument: got %v, want a local encoding error", err)
	}

	// The connection is still fine.
	cur, err := a.InvokeCursor(ctx, "Broadcast", "still-here", true)
	if err != nil {
		t.Fatalf("Broadcast after errors: %v", err)
	}
	if m := recv(t, a); m.Target != "still-here" || m.Cursor != cur || rawArgs(m) != "[true]" {
		t.Errorf("got %s%s cursor %s", m.Target, rawArgs(m), m.Cursor)
	}
	if a.Err() != nil {
		t.Errorf("Err() = %v on a live connection", a.Err())
	}
	// A void-or-non-string result is reported by InvokeCursor, not a panic.
	if _, err := a.InvokeCursor(ctx, "NoSuchMethod"); !errors.As(err, &ie) {
		t.Errorf("InvokeCursor(unknown) = %v", err)
	}
}

func TestSendFireAndForget(t *testing.T) {
	base := startStack(t)
	ctx := testCtx(t)
	a := dial(t, base, "alice")
	b := dial(t, base, "bob")

	if err := a.Send(ctx, "SendToConnection", b.ID(), "fire", "x", 1); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if m := recv(t, b); m.Target != "fire" || rawArgs(m) != `["x",1]` || m.Cursor == "" {
		t.Errorf("bob got %s%s cursor %q", m.Target, rawArgs(m), m.Cursor)
	}
	// A Send the server rejects is silent and leaves the connection usable.
	if err := a.Send(ctx, "NoSuchMethod"); err != nil {
		t.Fatalf("Send: %v", err)
	}

	// Many goroutines sending and invoking at once: every message arrives,
	// in a single order.
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- a.Send(ctx, "SendToConnection", b.ID(), "burst", i)
		}()
		go func() {
			defer wg.Done()
			_, err := a.InvokeCursor(ctx, "SendToConnection", b.ID(), "burst", n+i)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.InvokeCursor(ctx, "SendToConnection", b.ID(), "end"); err != nil {
		t.Fatal(err)
	}
	ms := readUntil(t, b, "end")
	seen := map[string]bool{}
	for _, m := range ms[:len(ms)-1] {
		if m.Target != "burst" {
			t.Errorf("unexpected %s", m.Target)
		}
		seen[string(m.Arguments[0])] = true
	}
	if len(seen) != 2*n || len(ms) != 2*n+1 {
		t.Errorf("got %d burst messages (%d distinct), want %d", len(ms)-1, len(seen), 2*n)
	}
	checkIncreasing(t, "bob", ms)
	select {
	case m := <-a.Messages():
		t.Errorf("sender got unexpected message %s", m.Target)
	default:
	}
}

func TestKeepAlive(t *testing.T) {
	base := startStack(t, func(h *hub.Config) {
		h.KeepAliveInterval = 100 * time.Millisecond
		h.ClientTimeout = 2 * time.Second
	})
	c := dial(t, base, "alice", func(cfg *client.Config) {
		cfg.ServerTimeout = time.Second                // needs the server's pings
		cfg.KeepAliveInterval = 250 * time.Millisecond // keeps the server's 2s timeout away
	})
	// No application traffic for several timeouts on both sides.
	select {
	case <-c.Done():
		t.Fatalf("idle connection ended: %v", c.Err())
	case <-time.After(4500 * time.Millisecond):
	}
	cur, err := c.InvokeCursor(testCtx(t), "Broadcast", "alive")
	if err != nil {
		t.Fatal(err)
	}
	if m := recv(t, c); m.Cursor != cur {
		t.Errorf("got %s %s, want cursor %s", m.Target, m.Cursor, cur)
	}
}

// TestServerTimesOutSilentClient: with client pings off, the server's client
// timeout ends the connection. The test records how it ends.
func TestServerTimesOutSilentClient(t *testing.T) {
	base := startStack(t, func(h *hub.Config) {
		h.KeepAliveInterval = 100 * time.Millisecond
		h.ClientTimeout = 500 * time.Millisecond
	})
	c := dial(t, base, "alice", func(cfg *client.Config) { cfg.KeepAliveInterval = -1 })
	waitDone(t, c)
	if c.Err() == nil {
		t.Fatal("Err() = nil after the server timed the client out")
	}
	var ce *client.CloseError
	if errors.As(c.Err(), &ce) {
		t.Logf("server timeout surfaced as a Close message: %+v", ce)
	} else {
		t.Logf("server timeout surfaced WITHOUT a hub Close message: %v", c.Err())
	}
}

func TestClose(t *testing.T) {
	base := startStack(t)
	ctx := testCtx(t)
	a := dial(t, base, "alice")
	if _, err := a.InvokeCursor(ctx, "Broadcast", "x"); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-a.Done():
	default:
		t.Fatal("Done() not closed when Close returned")
	}
	if err := a.Err(); err != nil {
		t.Errorf("Err() after Close = %v, want nil", err)
	}
	if ms := drain(t, a); len(ms) > 1 {
		t.Errorf("after Close: %d buffered messages, want at most 1", len(ms))
	}
	if _, err := a.Invoke(ctx, "Broadcast", "y"); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Invoke after Close = %v, want ErrClosed", err)
	}
	if err := a.Send(ctx, "Broadcast", "y"); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	// The server has let the connection go.
	waitGone(t, base, a.ID())
}

func TestCloseWithPendingInvokes(t *testing.T) {
	base := startStack(t)
	a := dial(t, base, "alice")
	var wg sync.WaitGroup
	var answered atomic.Int64
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				_, err := a.InvokeCursor(context.Background(), "Broadcast", "spam", i, j)
				if err == nil {
					answered.Add(1)
				}
				if err != nil {
					if !errors.Is(err, client.ErrClosed) {
						t.Errorf("Invoke during Close: %v, want ErrClosed", err)
					}
					return
				}
			}
		}()
	}
	go func() {
		for range a.Messages() {
		}
	}()
	// Close while traffic flows: once a good many Invokes were answered,
	// each of the 20 callers is sending its next one.
	waitFor(t, "Invokes answered", func() error {
		if n := answered.Load(); n < 100 {
			return fmt.Errorf("%d answered", n)
		}
		return nil
	})
	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	if a.Err() != nil {
		t.Errorf("Err() = %v", a.Err())
	}
}

func TestServerCloseViaREST(t *testing.T) {
	base := startStack(t)
	a := dial(t, base, "alice")
	b := dial(t, base, "bob")
	code, body := restDo(t, http.MethodDelete, base+"/api/v1/hubs/chat/connections/"+a.ID())
	if code != http.StatusOK {
		t.Fatalf("DELETE connection: %d %s", code, body)
	}
	waitDone(t, a)
	var ce *client.CloseError
	if !errors.As(a.Err(), &ce) {
		t.Fatalf("Err() = %v (%T), want *CloseError", a.Err(), a.Err())
	}
	t.Logf("Err() = %v", ce)
	if !strings.Contains(ce.Message, "closed through the REST API") || ce.AllowReconnect {
		t.Errorf("CloseError = %+v", ce)
	}
	drain(t, a)
	if _, err := a.Invoke(testCtx(t), "Broadcast", "x"); !errors.As(err, &ce) {
		t.Errorf("Invoke after server close = %v, want the *CloseError", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close after server close = %v", err)
	}
	if !errors.As(a.Err(), &ce) {
		t.Errorf("Close changed Err() to %v", a.Err())
	}

	// With a reason; the other connection is unaffected.
	code, body = restDo(t, http.MethodDelete, base+"/api/v1/hubs/chat/connections/"+b.ID()+"?reason=maintenance")
	if code != http.StatusOK {
		t.Fatalf("DELETE connection: %d %s", code, body)
	}
	waitDone(t, b)
	if !errors.As(b.Err(), &ce) || !strings.Contains(ce.Message, "maintenance") {
		t.Errorf("Err() = %v, want a *CloseError naming the reason", b.Err())
	}
}

func TestServerShutdownAllowsReconnect(t *testing.T) {
	st := startStackServer(t)
	a := dial(t, st.URL, "alice")
	ctx := testCtx(t)
	if err := st.Hub.Close(ctx); err != nil {
		t.Fatalf("hub Close: %v", err)
	}
	waitDone(t, a)
	var ce *client.CloseError
	if !errors.As(a.Err(), &ce) || !ce.AllowReconnect {
		t.Fatalf("Err() = %v, want *CloseError with AllowReconnect", a.Err())
	}
	t.Logf("Err() = %v", ce)
	// A new Dial is refused while the node shuts down.
	_, err := client.Dial(ctx, client.Config{URL: hubURL(st.URL, "alice")})
	var he *client.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("Dial to a closing node = %v, want HTTP 503", err)
	}
}

// TestBackpressure: a consumer that does not read blocks the reader, loses
// nothing, and gets everything in order once it reads.
func TestBackpressure(t *testing.T) {
	base := startStack(t)
	ctx := testCtx(t)
	slow := dial(t, base, "slow", func(cfg *client.Config) { cfg.MessageBuffer = 2 })
	fast := dial(t, base, "fast")
	const n = 200
	for i := range n {
		if _, err := fast.InvokeCursor(ctx, "SendToConnection", slow.ID(), "m", i); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-slow.Done():
		t.Fatalf("slow connection ended: %v", slow.Err())
	default:
	}
	var ms []client.Message
	for range n {
		ms = append(ms, recv(t, slow))
	}
	for i, m := range ms {
		if string(m.Arguments[0]) != fmt.Sprint(i) {
			t.Fatalf("message %d has argument %s", i, m.Arguments[0])
		}
	}
	checkIncreasing(t, "slow", ms)
	// Invokes still work after the backlog is gone.
	if _, err := slow.InvokeCursor(ctx, "JoinGroup", "g"); err != nil {
		t.Fatal(err)
	}
}

// TestSlowConsumerDropped: when the consumer stops reading for good, the
// server's per-connection queue overflows and it closes the connection with
// allowReconnect, which Err reports once the consumer drains.
func TestSlowConsumerDropped(t *testing.T) {
	if testing.Short() {
		t.Skip("moves tens of MB")
	}
	base := startStack(t, func(h *hub.Config) {
		h.MaxQueuedMessages = 8
		h.SendTimeout = time.Minute // the blocked write must not time out first
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	slow := dial(t, base, "slow", func(cfg *client.Config) {
		cfg.MessageBuffer = 1
		cfg.ServerTimeout = -1 // the reader is blocked on purpose
	})
	fast := dial(t, base, "fast")
	payload := strings.Repeat("x", 30<<10)
	const sent = 1024 // 30 MiB: more than the socket buffers hold
	start := time.Now()
	for i := range sent {
		if err := fast.Send(ctx, "SendToConnection", slow.ID(), "big", payload); err != nil {
			t.Fatalf("after %d messages: %v", i, err)
		}
	}
	// The last Send is applied once an Invoke after it returns.
	if _, err := fast.InvokeCursor(ctx, "JoinGroup", "sync"); err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d messages in %s", sent, time.Since(start))
	got := len(drain(t, slow))
	var ce *client.CloseError
	if !errors.As(slow.Err(), &ce) || !ce.AllowReconnect {
		t.Fatalf("after %d sent, %d received: Err() = %v, want *CloseError with AllowReconnect", sent, got, slow.Err())
	}
	t.Logf("sent %d x 30KiB, received %d before the server closed with: %v", sent, got, ce)
}

// TestAccessToken: with a JWT key the hub needs the bearer token on both
// negotiate and the WebSocket request.
func TestAccessToken(t *testing.T) {
	key := []byte("test-jwt-key-0123456789")
	base := startStack(t, func(h *hub.Config) { h.JWTKey = key })
	ctx := testCtx(t)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   "alice",
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	c, err := client.Dial(ctx, client.Config{
		URL: base + "/hubs/chat",
		AccessToken: func(context.Context) (string, error) {
			calls++
			return tok, nil
		},
	})
	if err != nil {
		t.Fatalf("Dial with token: %v", err)
	}
	defer c.Close()
	if calls != 1 {
		t.Errorf("AccessToken called %d times, want 1", calls)
	}
	if _, err := c.InvokeCursor(ctx, "SendToUser", "alice", "me"); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, c); m.Target != "me" {
		t.Errorf("got %s", m.Target)
	}

	_, err = client.Dial(ctx, client.Config{URL: base + "/hubs/chat"})
	var he *client.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized || he.Op != "negotiate" {
		t.Errorf("Dial without token = %v, want negotiate HTTP 401", err)
	}
	_, err = client.Dial(ctx, client.Config{URL: base + "/hubs/chat",
		AccessToken: func(context.Context) (string, error) { return "", errors.New("no token today") }})
	if err == nil || !strings.Contains(err.Error(), "no token today") {
		t.Errorf("Dial with a failing AccessToken = %v", err)
	}
}

func TestDialErrors(t *testing.T) {
	base := startStack(t)
	ctx := testCtx(t)
	_, err := client.Dial(ctx, client.Config{URL: base + "/hubs/bad!name"})
	var he *client.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
		t.Errorf("bad hub name: %v, want HTTP 404", err)
	} else {
		t.Logf("bad hub name: %v", err)
	}
	for _, u := range []string{"", "ftp://x/hubs/chat", "http:///hubs/chat", "http://127.0.0.1:1/hubs/chat"} {
		if _, err := client.Dial(ctx, client.Config{URL: u}); err == nil {
			t.Errorf("Dial(%q) succeeded", u)
		}
	}
	// A ws:// URL works too.
	c, err := client.Dial(ctx, client.Config{URL: "ws" + strings.TrimPrefix(base, "http") + "/hubs/chat?user=x"})
	if err != nil {
		t.Fatalf("ws:// URL: %v", err)
	}
	c.Close()
	// An expired context fails promptly.
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := client.Dial(dead, client.Config{URL: hubURL(base, "x")}); !errors.Is(err, context.Canceled) {
		t.Errorf("Dial with a cancelled context = %v", err)
	}
}

func TestParseCursor(t *testing.T) {
	e, i, o, err := client.ParseCursor("5f1c0a9e:1042:3")
	if err != nil || e != "5f1c0a9e" || i != 1042 || o != 3 {
		t.Errorf("ParseCursor = %q %d %d %v", e, i, o, err)
	}
	for _, bad := range []string{"", "a:1", ":1:2", "a:b:2", "a:1:x", "a:1:2:3", "a:-1:0", "a:1:4294967296"} {
		if _, _, _, err := client.ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) succeeded", bad)
		}
	}
}

// clientGoroutines counts goroutines running this package's code.
func clientGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	var dump strings.Builder
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("raftplane/client.(*")) || bytes.Contains(g, []byte("raftplane/client.Dial")) {
			count++
			dump.Write(g)
			dump.WriteString("\n\n")
		}
	}
	return count, dump.String()
}

// waitGoroutines polls until no client goroutine is left and the total is
// back to baseline.
func waitGoroutines(t *testing.T, baseline int) {
	t.Helper()
	waitFor(t, "the client's goroutines to end", func() error {
		http.DefaultClient.CloseIdleConnections() // negotiate's keep-alive connections
		n, dump := clientGoroutines()
		total := runtime.NumGoroutine()
		if n == 0 && total <= baseline {
			return nil
		}
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		return fmt.Errorf("goroutines: %d of the client, %d in total (baseline %d)\nclient:\n%s\nall:\n%s", n, total, baseline, dump, buf)
	})
}

func TestNoGoroutineLeaks(t *testing.T) {
	base := startStack(t)
	ctx := testCtx(t)
	http.DefaultClient.CloseIdleConnections()
	baseline := runtime.NumGoroutine()

	dialPlain := func(user string, mods ...func(*client.Config)) *client.Conn {
		cfg := client.Config{URL: hubURL(base, user)}
		for _, m := range mods {
			m(&cfg)
		}
		c, err := client.Dial(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	// 1. Ordinary use, then Close.
	var conns []*client.Conn
	for i := range 5 {
		c := dialPlain(fmt.Sprint("u", i))
		if _, err := c.InvokeCursor(ctx, "JoinGroup", "g"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if _, err := conns[0].InvokeCursor(ctx, "SendToGroup", "g", "hello"); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		recv(t, c)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	waitGoroutines(t, baseline)

	// 2. Close while the reader is blocked on a full Messages channel.
	blocked := dialPlain("blocked", func(cfg *client.Config) { cfg.MessageBuffer = 1 })
	for i := range 10 {
		if err := blocked.Send(ctx, "SendToConnection", blocked.ID(), "m", i); err != nil {
			t.Fatal(err)
		}
	}
	// The Completion is stuck behind the blocked reader: the Invoke gives up
	// at its deadline.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := blocked.InvokeCursor(short, "Broadcast", "x")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Invoke behind a blocked reader = %v, want DeadlineExceeded", err)
	}
	if err := blocked.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, baseline)

	// 3. The server closes the connection; nobody calls Close.
	victim := dialPlain("victim")
	if code, body := restDo(t, http.MethodDelete, base+"/api/v1/hubs/chat/connections/"+victim.ID()); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	waitDone(t, victim)
	drain(t, victim)
	waitGoroutines(t, baseline)

	// 4. Failed dials leave nothing behind.
	if _, err := client.Dial(ctx, client.Config{URL: base + "/hubs/bad!name"}); err == nil {
		t.Fatal("bad hub name accepted")
	}
	waitGoroutines(t, baseline)
}
