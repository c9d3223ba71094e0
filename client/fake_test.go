package client_test

// Tests against a scripted fake SignalR server, for behaviour the real server
// does not produce on demand: batched frames, malformed or incomplete
// messages, handshake errors, a silent server, out-of-order and void
// completions, client-result requests, the exact close sequence.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/raftplane/raftplane/client"
)

const fakeToken = "tok/+=&x" // needs escaping in ?id=

// fake is a one-connection SignalR server whose transport side is a script.
type fake struct {
	URL string // hub URL, http://127.0.0.1:PORT/hubs/f

	mu           sync.Mutex
	negotiate    *http.Request // the negotiate request
	connect      *http.Request // the WebSocket request
	handshake    string        // the client's first message
	scriptDone   chan struct{}
	scriptResult error
}

// startFake serves negotiate and one WebSocket; after reading the client's
// handshake it runs script, which must answer the handshake itself.
func startFake(t *testing.T, script func(ws *websocket.Conn) error) *fake {
	t.Helper()
	f := &fake{scriptDone: make(chan struct{})}
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hubs/f/negotiate", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.negotiate = r.Clone(context.Background())
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"connectionId": "cid-1", "connectionToken": fakeToken, "negotiateVersion": 1,
			"availableTransports": []any{map[string]any{"transport": "WebSockets", "transferFormats": []string{"Text", "Binary"}}},
		})
	})
	mux.HandleFunc("GET /hubs/f", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.connect = r.Clone(context.Background())
		f.mu.Unlock()
		if r.URL.Query().Get("id") != fakeToken {
			http.Error(w, "bad id", http.StatusNotFound)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		defer close(f.scriptDone)
		_, hs, err := ws.ReadMessage()
		if err != nil {
			f.scriptResult = err
			return
		}
		f.mu.Lock()
		f.handshake = string(hs)
		f.mu.Unlock()
		f.scriptResult = script(ws)
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	f.URL = ts.URL + "/hubs/f"
	return f
}

// wait returns the script's error once it has finished.
func (f *fake) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-f.scriptDone:
		return f.scriptResult
	case <-time.After(testWait):
		t.Fatal("fake server script did not finish")
	}
	return nil
}

func send(ws *websocket.Conn, s string) error {
	return ws.WriteMessage(websocket.TextMessage, []byte(s))
}

// readInvocation reads client messages until an Invocation, skipping pings.
func readInvocation(ws *websocket.Conn) (map[string]any, error) {
	for {
		_ = ws.SetReadDeadline(time.Now().Add(testWait))
		_, d, err := ws.ReadMessage()
		if err != nil {
			return nil, err
		}
		for rec := range strings.SplitSeq(strings.TrimSuffix(string(d), "\x1e"), "\x1e") {
			var m map[string]any
			if err := json.Unmarshal([]byte(rec), &m); err != nil {
				return nil, err
			}
			if m["type"] == float64(1) {
				return m, nil
			}
		}
	}
}

func dialFake(t *testing.T, f *fake, mods ...func(*client.Config)) *client.Conn {
	t.Helper()
	cfg := client.Config{URL: f.URL}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := client.Dial(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitNoClientGoroutines polls until no goroutine runs this package's code.
func waitNoClientGoroutines(t *testing.T) {
	t.Helper()
	waitFor(t, "the client's goroutines to end", func() error {
		if n, dump := clientGoroutines(); n > 0 {
			return fmt.Errorf("%d client goroutines left:\n%s", n, dump)
		}
		return nil
	})
}

func TestFakeRequestsFramingAndClose(t *testing.T) {
	closeSeen := make(chan string, 1)
	f := startFake(t, func(ws *websocket.Conn) error {
		// Handshake answer and a message in one frame; then a frame of
		// several records, with a ping, an unknown field and an unknown type.
		if err := send(ws, "{}\x1e"+`{"type":1,"target":"a","arguments":[1],"headers":{"cursor":"e:1:0"}}`+"\x1e"); err != nil {
			return err
		}
		if err := send(ws, `{"type":1,"target":"b","arguments":[]}`+"\x1e"+`{"type":6}`+"\x1e"+
			`{"type":1,"target":"c","arguments":["x",{"y":null}],"extra":5,"headers":{"cursor":"e:2:1","other":"z"}}`+"\x1e"+
			`{"type":99,"whatever":[1]}`+"\x1e"); err != nil {
			return err
		}
		// Expect the client's Close message, then its close frame.
		var got []string
		for {
			_, d, err := ws.ReadMessage()
			if err != nil {
				got = append(got, err.Error())
				closeSeen <- strings.Join(got, " | ")
				return nil
			}
			if s := string(d); s != `{"type":6}`+"\x1e" {
				got = append(got, s)
			}
		}
	})
	c := dialFake(t, f, func(cfg *client.Config) {
		cfg.URL += "?user=alice&x=1"
		cfg.Header = http.Header{"X-Test": {"yes"}}
		cfg.AccessToken = func(context.Context) (string, error) { return "secret", nil }
	})
	if c.ID() != "cid-1" {
		t.Errorf("ID() = %q", c.ID())
	}
	var got []string
	for range 3 {
		m := recv(t, c)
		got = append(got, m.Target+rawArgs(m)+"@"+m.Cursor)
	}
	if want := `a[1]@e:1:0 b[]@ c["x",{"y":null}]@e:2:1`; strings.Join(got, " ") != want {
		t.Errorf("messages %q, want %q", strings.Join(got, " "), want)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	if s := <-closeSeen; s != `{"type":7}`+"\x1e | websocket: close 1000 (normal)" {
		t.Errorf("server saw %q, want the Close message then close 1000", s)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	n, k := f.negotiate, f.connect
	if n.URL.Path != "/hubs/f/negotiate" || n.URL.RawQuery != "user=alice&x=1&negotiateVersion=1" {
		t.Errorf("negotiate URL %s", n.URL)
	}
	if k.URL.Path != "/hubs/f" || !strings.HasPrefix(k.URL.RawQuery, "user=alice&x=1&id=") || k.URL.Query().Get("id") != fakeToken {
		t.Errorf("connect URL %s", k.URL)
	}
	for _, r := range []*http.Request{n, k} {
		if r.Header.Get("Authorization") != "Bearer secret" || r.Header.Get("X-Test") != "yes" {
			t.Errorf("%s %s: headers %v", r.Method, r.URL.Path, r.Header)
		}
	}
	if f.handshake != `{"protocol":"json","version":1}`+"\x1e" {
		t.Errorf("handshake %q", f.handshake)
	}
}

func TestFakeHandshakeErrors(t *testing.T) {
	for _, tc := range []struct{ answer, want string }{
		{`{"error":"The protocol 'json' is not supported."}` + "\x1e", "The protocol 'json' is not supported."},
		{`{"type":6}` + "\x1e", "expected a handshake response"},
		{`{}`, "incomplete handshake"},
		{`nope` + "\x1e", "malformed handshake"},
	} {
		f := startFake(t, func(ws *websocket.Conn) error { return send(ws, tc.answer) })
		_, err := client.Dial(testCtx(t), client.Config{URL: f.URL})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("answer %q: Dial = %v, want %q", tc.answer, err, tc.want)
		}
		f.wait(t)
	}
	// A server that never answers the handshake: Dial gives up at
	// HandshakeTimeout.
	hold := make(chan struct{})
	f := startFake(t, func(ws *websocket.Conn) error { <-hold; return nil })
	start := time.Now()
	_, err := client.Dial(testCtx(t), client.Config{URL: f.URL, HandshakeTimeout: 300 * time.Millisecond})
	close(hold)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("silent handshake: Dial = %v after %s", err, time.Since(start))
	} else {
		t.Logf("silent handshake: %v", err)
	}
	waitNoClientGoroutines(t)
}

func TestFakeCompletions(t *testing.T) {
	f := startFake(t, func(ws *websocket.Conn) error {
		if err := send(ws, "{}\x1e"); err != nil {
			return err
		}
		// Answer two concurrent invocations in reverse order, then the
		// single ones in turn.
		m1, err := readInvocation(ws)
		if err != nil {
			return err
		}
		m2, err := readInvocation(ws)
		if err != nil {
			return err
		}
		reply := func(m map[string]any, rest string) error {
			id, _ := json.Marshal(m["invocationId"])
			return send(ws, `{"type":3,"invocationId":`+string(id)+rest+"}\x1e")
		}
		byTarget := map[string]map[string]any{m1["target"].(string): m1, m2["target"].(string): m2}
		if err := send(ws, `{"type":3,"invocationId":"nobody","result":1}`+"\x1e"); err != nil { // ignored
			return err
		}
		if err := reply(byTarget["second"], `,"result":"two"`); err != nil {
			return err
		}
		if err := reply(byTarget["first"], `,"result":{"n":1}`); err != nil {
			return err
		}
		for _, rest := range []string{``, `,"result":null`, `,"error":""`, `,"error":"boom"`, `,"result":"e:5:0"`} {
			m, err := readInvocation(ws)
			if err != nil {
				return err
			}
			if err := reply(m, rest); err != nil {
				return err
			}
		}
		// Then one the server never answers: it closes instead.
		if _, err := readInvocation(ws); err != nil {
			return err
		}
		if err := send(ws, `{"type":7,"error":"bye","allowReconnect":true}`+"\x1e"); err != nil {
			return err
		}
		return ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	})
	c := dialFake(t, f)
	ctx := testCtx(t)

	var wg sync.WaitGroup
	results := map[string]string{}
	var mu sync.Mutex
	for _, target := range []string{"first", "second"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Invoke(ctx, target)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				results[target] = "error: " + err.Error()
			} else {
				results[target] = string(res)
			}
		}()
	}
	wg.Wait()
	if results["first"] != `{"n":1}` || results["second"] != `"two"` {
		t.Errorf("results %v", results)
	}

	if res, err := c.Invoke(ctx, "void"); err != nil || res != nil {
		t.Errorf("void: %q %v", res, err)
	}
	if res, err := c.Invoke(ctx, "null"); err != nil || string(res) != "null" {
		t.Errorf("null: %q %v", res, err)
	}
	var ie *client.InvocationError
	if _, err := c.Invoke(ctx, "emptyError"); !errors.As(err, &ie) || ie.Message != "" || ie.Method != "emptyError" {
		t.Errorf("empty error: %v", err)
	}
	if _, err := c.Invoke(ctx, "boom"); !errors.As(err, &ie) || ie.Message != "boom" {
		t.Errorf("error: %v", err)
	}
	if cur, err := c.InvokeCursor(ctx, "cursor"); err != nil || cur != "e:5:0" {
		t.Errorf("InvokeCursor: %q %v", cur, err)
	}

	_, err := c.Invoke(ctx, "pending")
	var ce *client.CloseError
	if !errors.As(err, &ce) || ce.Message != "bye" || !ce.AllowReconnect {
		t.Errorf("pending Invoke = %v, want the server's *CloseError", err)
	}
	waitDone(t, c)
	if !errors.As(c.Err(), &ce) {
		t.Errorf("Err() = %v", c.Err())
	}
	if _, ok := <-c.Messages(); ok {
		t.Error("Messages() not closed")
	}
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	waitNoClientGoroutines(t)
}

func TestFakeServerTimeoutAndPings(t *testing.T) {
	pings := make(chan int, 1)
	f := startFake(t, func(ws *websocket.Conn) error {
		if err := send(ws, "{}\x1e"); err != nil {
			return err
		}
		// Say nothing more; count the client's pings until it goes away.
		n := 0
		for {
			_, d, err := ws.ReadMessage()
			if err != nil {
				pings <- n
				return nil
			}
			if string(d) == `{"type":6}`+"\x1e" {
				n++
			}
		}
	})
	c := dialFake(t, f, func(cfg *client.Config) {
		cfg.ServerTimeout = 600 * time.Millisecond
		cfg.KeepAliveInterval = 100 * time.Millisecond
	})
	// An Invoke pending when the timeout hits fails with it.
	_, err := c.Invoke(context.Background(), "never-answered")
	if err == nil || !strings.Contains(err.Error(), "server timeout") {
		t.Fatalf("pending Invoke = %v, want the server timeout", err)
	}
	waitDone(t, c)
	if !strings.Contains(c.Err().Error(), "server timeout") {
		t.Errorf("Err() = %v", c.Err())
	}
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	if n := <-pings; n < 2 {
		t.Errorf("server saw %d pings in 600ms at a 100ms keep-alive interval", n)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after the timeout: %v", err)
	}
	waitNoClientGoroutines(t)
}

func TestFakeBadServerMessages(t *testing.T) {
	for _, tc := range []struct{ frame, want string }{
		{`{"type":1,"target":"a","arguments":[]}`, "incomplete hub message"},
		{"not json\x1e", "malformed hub message"},
		{`{"type":3,"result":1}` + "\x1e", "Completion without invocationId"},
	} {
		f := startFake(t, func(ws *websocket.Conn) error {
			if err := send(ws, "{}\x1e"+tc.frame); err != nil {
				return err
			}
			_, _, _ = ws.ReadMessage() // until the client goes
			return nil
		})
		c := dialFake(t, f)
		waitDone(t, c)
		if c.Err() == nil || !strings.Contains(c.Err().Error(), tc.want) {
			t.Errorf("frame %q: Err() = %v, want %q", tc.frame, c.Err(), tc.want)
		}
		f.wait(t)
	}
	// The socket just drops: the transport error is the cause.
	f := startFake(t, func(ws *websocket.Conn) error {
		if err := send(ws, "{}\x1e"); err != nil {
			return err
		}
		if _, err := readInvocation(ws); err != nil {
			return err
		}
		return ws.NetConn().Close()
	})
	c := dialFake(t, f)
	_, err := c.Invoke(testCtx(t), "x")
	if err == nil || errors.Is(err, client.ErrClosed) {
		t.Errorf("Invoke when the socket drops = %v, want a transport error", err)
	}
	waitDone(t, c)
	if c.Err() == nil || !errors.Is(err, c.Err()) && err.Error() != c.Err().Error() {
		t.Errorf("Invoke error %v, Err() %v", err, c.Err())
	}
	t.Logf("socket dropped: %v", c.Err())
	waitNoClientGoroutines(t)
}

func TestFakeClientResultRequest(t *testing.T) {
	answer := make(chan string, 1)
	f := startFake(t, func(ws *websocket.Conn) error {
		if err := send(ws, "{}\x1e"+`{"type":1,"invocationId":"7","target":"ask","arguments":[]}`+"\x1e"); err != nil {
			return err
		}
		for {
			_ = ws.SetReadDeadline(time.Now().Add(testWait))
			_, d, err := ws.ReadMessage()
			if err != nil {
				return err
			}
			if s := string(d); s != `{"type":6}`+"\x1e" {
				answer <- s
				return nil
			}
		}
	})
	c := dialFake(t, f)
	if m := recv(t, c); m.Target != "ask" {
		t.Errorf("got %s", m.Target)
	}
	select {
	case s := <-answer:
		if s != `{"type":3,"invocationId":"7","error":"Client didn't provide a result."}`+"\x1e" {
			t.Errorf("answer %q", s)
		}
	case <-time.After(testWait):
		t.Fatal("no answer to the client-result request")
	}
}

// TestFakeCloseUnresponsiveServer: Close returns even if the server never
// answers the close frame (reader waiting in a read, or blocked on a full
// Messages channel), and leaves no goroutine behind.
func TestFakeCloseUnresponsiveServer(t *testing.T) {
	for _, buf := range []int{0, 1} {
		release := make(chan struct{})
		f := startFake(t, func(ws *websocket.Conn) error {
			if err := send(ws, "{}\x1e"+`{"type":1,"target":"a","arguments":[]}`+"\x1e"+`{"type":1,"target":"b","arguments":[]}`+"\x1e"); err != nil {
				return err
			}
			<-release // never read, never answer
			return nil
		})
		// With a buffer of 1 the reader blocks on "b"; with the default it
		// waits in a read.
		c := dialFake(t, f, func(cfg *client.Config) { cfg.MessageBuffer = buf })
		if buf == 0 {
			recv(t, c)
			recv(t, c)
		}
		start := time.Now()
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		d := time.Since(start)
		if d > 5*time.Second {
			t.Errorf("Close took %s", d)
		}
		t.Logf("MessageBuffer %d: Close took %s", buf, d)
		close(release)
		if c.Err() != nil {
			t.Errorf("Err() = %v", c.Err())
		}
		f.wait(t)
		waitNoClientGoroutines(t)
	}
}
