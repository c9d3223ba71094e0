package raftplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftplane/raftplane/client"
	"github.com/raftplane/raftplane/fsm"
)

// testLog sends log lines to t.Log until the test ends, so they show only
// when it fails (and never after it ended).
type testLog struct {
	mu sync.Mutex
	t  *testing.T
	on bool
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.on {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testConfig is a node on loopback with every port picked by the kernel
// (port 0: no race with other tests for a port), its data in a temporary
// folder, its logs in the test's.
func testConfig(t *testing.T) Config {
	t.Helper()
	w := &testLog{t: t, on: true}
	t.Cleanup(func() { w.mu.Lock(); w.on = false; w.mu.Unlock() })
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

// startNode builds and starts a node, and closes it when the test ends.
func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(context.Background()); err != nil {
			t.Errorf("close %s: %v", n.ID(), err)
		}
	})
	return n
}

// httpClient is the tests' own client, so its idle connections can be
// closed before goroutines are counted.
var httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}

func post(t *testing.T, url string, body any, out any) int {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// publish broadcasts target(args) to a hub through the REST API and
// returns the message's cursor.
func publish(t *testing.T, base, hub, target string, args ...any) string {
	t.Helper()
	var out struct{ Cursor string }
	if code := post(t, base+"/api/v1/hubs/"+hub, map[string]any{"target": target, "arguments": args}, &out); code != http.StatusOK {
		t.Fatalf("REST publish on %s: HTTP %d", base, code)
	}
	if out.Cursor == "" {
		t.Fatalf("REST publish on %s: no cursor", base)
	}
	return out.Cursor
}

// receive waits for the next message to target.
func receive(t *testing.T, c *client.Conn, target string) client.Message {
	t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				t.Fatalf("connection ended waiting for %q: %v", target, c.Err())
			}
			if m.Target == target {
				return m
			}
		case <-timeout.C:
			t.Fatalf("no %q within 20s", target)
		}
	}
}

func dial(t *testing.T, base, hub, user string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: base + "/hubs/" + hub + "?user=" + user})
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not standing for "nothing happened"
	}
}

// TestNode_OneNode: the embedded default on ports 0 in a temporary folder
// answers negotiate and a REST publish over real HTTP, and the publish
// reaches a connected client with the cursor the REST call returned.
func TestNode_OneNode(t *testing.T) {
	n := startNode(t, testConfig(t))
	base := "http://" + n.HTTPAddr()
	if strings.HasSuffix(n.HTTPAddr(), ":0") || strings.HasSuffix(n.RaftAddr(), ":0") || strings.HasSuffix(n.GossipAddr(), ":0") {
		t.Fatalf("addresses %s %s %s: want the bound ports", n.HTTPAddr(), n.RaftAddr(), n.GossipAddr())
	}
	if n.ID() == "" || n.ClusterID() == "" || n.Status().State != "Leader" {
		t.Fatalf("id %q cluster %q state %q: want a leader of an initialised cluster", n.ID(), n.ClusterID(), n.Status().State)
	}

	var neg struct {
		ConnectionToken     string `json:"connectionToken"`
		AvailableTransports []struct {
			Transport string `json:"transport"`
		} `json:"availableTransports"`
	}
	if code := post(t, base+"/hubs/chat/negotiate?negotiateVersion=1", nil, &neg); code != http.StatusOK {
		t.Fatalf("negotiate: HTTP %d", code)
	}
	if neg.ConnectionToken == "" || len(neg.AvailableTransports) != 3 {
		t.Fatalf("negotiate: %+v, want a token and the three transports", neg)
	}

	alice := dial(t, base, "chat", "alice")
	cursor := publish(t, base, "chat", "news", "hello")
	if m := receive(t, alice, "news"); m.Cursor != cursor || string(m.Arguments[0]) != `"hello"` {
		t.Fatalf("received %+v, want cursor %s and \"hello\"", m, cursor)
	}
	if epoch, _, err := fsm.ParseCursor(cursor); err != nil || epoch != n.ClusterID() {
		t.Fatalf("cursor %q: epoch %q, err %v; want the cluster id %q", cursor, epoch, err, n.ClusterID())
	}
}

// TestNode_ThreeNodes: three embedded nodes joined over loopback; a REST
// publish on node 1 reaches clients of nodes 2 and 3 with the same cursor,
// and a publish on node 3 reaches a client of node 1.
func TestNode_ThreeNodes(t *testing.T) {
	n1 := startNode(t, testConfig(t))
	var nodes = []*Node{n1}
	for range 2 {
		cfg := testConfig(t)
		cfg.Join = []string{n1.GossipAddr()}
		nodes = append(nodes, startNode(t, cfg))
	}
	for _, n := range nodes[1:] {
		if n.ClusterID() != n1.ClusterID() {
			t.Fatalf("node %s is in cluster %q, node 1 in %q", n.ID(), n.ClusterID(), n1.ClusterID())
		}
	}
	base := func(n *Node) string { return "http://" + n.HTTPAddr() }
	bob, carol, alice := dial(t, base(nodes[1]), "chat", "bob"), dial(t, base(nodes[2]), "chat", "carol"), dial(t, base(n1), "chat", "alice")

	cursor := publish(t, base(n1), "chat", "news", 1)
	for _, c := range []*client.Conn{bob, carol, alice} {
		if m := receive(t, c, "news"); m.Cursor != cursor {
			t.Fatalf("received cursor %s, want %s", m.Cursor, cursor)
		}
	}
	back := publish(t, base(nodes[2]), "chat", "reply", 2)
	if m := receive(t, alice, "reply"); m.Cursor != back {
		t.Fatalf("node 1's client: cursor %s, want %s", m.Cursor, back)
	}

	waitFor(t, 30*time.Second, "every node in the Raft configuration", func() bool {
		var out struct {
			Members []struct {
				Suffrage string `json:"suffrage"`
			} `json:"members"`
		}
		resp, err := httpClient.Get(base(n1) + "/api/v1/cluster")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&out) != nil {
			return false
		}
		in := 0
		for _, m := range out.Members {
			if m.Suffrage == "voter" || m.Suffrage == "nonvoter" {
				in++
			}
		}
		return in == 3
	})
}

// TestNode_CloseIsIdempotentAndLeavesNoGoroutine: after Close, a second
// Close returns the same, Start refuses, and the process has no more
// goroutines than before the node.
func TestNode_CloseIsIdempotentAndLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := testConfig(t)
	cfg.DebugAddr = "127.0.0.1:0"
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := "http://" + n.HTTPAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: base + "/hubs/chat?user=u"})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, base, "chat", "m", 1)
	receive(t, c, "m")

	if err := n.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case <-n.Done():
	default:
		t.Fatal("Done is open after Close")
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := n.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
	<-c.Done() // closed by the node, with allowReconnect
	c.Close()
	httpClient.CloseIdleConnections()
	noLeaks(t, before)
}

// noLeaks waits until the goroutines are back to before, and fails with
// their stacks if they are not within 10s.
func noLeaks(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the node:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond) // polling for goroutines to end
	}
}

// TestNode_FailedStartCleansUp: a Start that fails half way (the data
// folder is held by another node, so Raft cannot open) returns the error,
// frees the HTTP port it had bound, and leaves no goroutine; Close is then
// a no-op.
func TestNode_FailedStartCleansUp(t *testing.T) {
	first := startNode(t, testConfig(t))
	// A fresh node is ready (its cluster id is in the bootstrap) before it
	// has won its election: count its goroutines once it leads and has done
	// its leader's one-time duties, so its own start is not taken for a leak.
	waitFor(t, 30*time.Second, "the first node to lead and raise the log format", func() bool {
		return first.raft.IsLeader() && first.machine.Format() >= fsm.LogFormat
	})
	before := runtime.NumGoroutine()

	cfg := testConfig(t)
	cfg.DataDir = first.cfg.DataDir // raft.db is locked by first
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTPAddr = ln.Addr().String()
	ln.Close()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = n.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "raft.db") {
		t.Fatalf("Start on a held data folder: %v, want the raft.db error", err)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatalf("Close after a failed Start: %v", err)
	}
	again, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		t.Fatalf("the failed Start kept the HTTP port: %v", err)
	}
	again.Close()
	noLeaks(t, before)
}

// TestNode_HandlerOnOwnServer: with HTTPAddr empty the program serves
// Handler itself; before Start it answers (not ready, no Raft view) rather
// than failing, and after Start it is the whole API.
func TestNode_HandlerOnOwnServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.HTTPAddr, cfg.HTTPAdvertise = "", ln.Addr().String()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()

	get := func(path string) (int, string) {
		resp, err := httpClient.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not started") {
		t.Fatalf("/readyz before Start: %d %s", code, body)
	}
	if code, body := get("/api/v1/status"); code != http.StatusOK || !strings.Contains(body, "NotStarted") {
		t.Fatalf("/api/v1/status before Start: %d %s", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })
	if n.HTTPAddr() != "" {
		t.Fatalf("HTTPAddr %q without a listener of its own", n.HTTPAddr())
	}
	waitFor(t, 10*time.Second, "/readyz 200", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	alice := dial(t, base, "chat", "alice")
	cursor := publish(t, base, "chat", "news", "x")
	if m := receive(t, alice, "news"); m.Cursor != cursor {
		t.Fatalf("cursor %s, want %s", m.Cursor, cursor)
	}
}

// TestNode_StartEndsWithItsContext: a node told to join a seed that never
// answers gives up when Start's context ends, and stops what it started.
func TestNode_StartEndsWithItsContext(t *testing.T) {
	before := runtime.NumGoroutine()
	// A port just freed: connections to it are refused, so the join
	// keeps retrying (a seed that accepts and never answers would hold
	// gossip's Close for memberlist's 10s TCP timeout).
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	cfg := testConfig(t)
	cfg.Join = []string{dead.Addr().String()}
	cfg.JoinTimeout = time.Hour
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Ended once Start waits for the seed: gossip is up by then.
		for n.GossipAddr() == "" {
			time.Sleep(5 * time.Millisecond) // polling for gossip to start
		}
		cancel()
	}()
	if err := n.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start: %v, want context.Canceled", err)
	}
	noLeaks(t, before)
}
