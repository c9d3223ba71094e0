package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftplane/raftplane"
	"github.com/raftplane/raftplane/client"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/internal/testnet"
)

// testWriter sends log lines to t.Log, so they show only when a test fails.
type testWriter struct {
	mu sync.Mutex
	t  *testing.T
	on bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.on {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() { w.mu.Lock(); w.on = false; w.mu.Unlock() }

// freePort returns a loopback port no other test of this process is given
// (internal/testnet), for the listeners that must keep their port across a
// restart; the others bind port 0.
func freePort(t *testing.T) string { return freePortTB(t) }

func freePortTB(t testing.TB) string {
	t.Helper()
	return strconv.Itoa(testnet.Port(t))
}

// node is one run() in this process.
type node struct {
	base     string
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

func startNode(t *testing.T, args ...string) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &testWriter{t: t, on: true}
	ready := make(chan string, 1)
	n := &node{cancel: cancel, done: make(chan error, 1)}
	go func() {
		n.done <- run(ctx, args, w, func(addr string) { ready <- addr })
		w.stop()
	}()
	select {
	case addr := <-ready:
		n.base = "http://" + addr
	case err := <-n.done:
		cancel()
		t.Fatalf("run exited before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("node not ready within 30s")
	}
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *node) stop(t *testing.T) {
	t.Helper()
	n.stopOnce.Do(func() {
		n.cancel()
		select {
		case err := <-n.done:
			if err != nil {
				t.Errorf("run returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("node did not stop within 30s")
		}
	})
}

func restJSON(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

type status struct {
	Stream struct {
		Epoch       string `json:"epoch"`
		FirstCursor string `json:"first_cursor"`
		LastCursor  string `json:"last_cursor"`
		Cached      int    `json:"cached"`
	} `json:"stream"`
	Node struct {
		State string `json:"state"`
	} `json:"node"`
}

func getStatus(t *testing.T, base string) status {
	t.Helper()
	var st status
	if code := restJSON(t, "GET", base+"/api/v1/status", nil, &st); code != 200 {
		t.Fatalf("status: HTTP %d", code)
	}
	return st
}

func broadcast(t *testing.T, base, target string, args ...any) string {
	t.Helper()
	var out struct{ Cursor string }
	if code := restJSON(t, "POST", base+"/api/v1/hubs/chat", map[string]any{"target": target, "arguments": args}, &out); code != 200 {
		t.Fatalf("broadcast: HTTP %d", code)
	}
	return out.Cursor
}

func cursorOf(t *testing.T, s string) (string, fsm.Cursor) {
	t.Helper()
	e, c, err := fsm.ParseCursor(s)
	if err != nil {
		t.Fatal(err)
	}
	return e, c
}

func receive(t *testing.T, c *client.Conn, target string) client.Message {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				t.Fatalf("connection ended waiting for %q: %v", target, c.Err())
			}
			if m.Target == target {
				return m
			}
		case <-timeout:
			t.Fatalf("no %q within 10s", target)
		}
	}
}

// TestRun_RestartKeepsCacheAndCursor runs the embedded default twice on one
// data folder: the second run keeps the epoch, the cached messages and the
// cursor sequence.
func TestRun_RestartKeepsCacheAndCursor(t *testing.T) {
	dir := t.TempDir()
	raft := "127.0.0.1:" + freePort(t)
	args := []string{"-data", dir, "-http", "127.0.0.1:0", "-raft", raft, "-gossip", "127.0.0.1:" + freePort(t), "-log-level", "warn"}
	n1 := startNode(t, args...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	alice, err := client.Dial(ctx, client.Config{URL: n1.base + "/hubs/chat?user=alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.InvokeCursor(ctx, "JoinGroup", "room"); err != nil {
		t.Fatal(err)
	}
	c1, err := alice.InvokeCursor(ctx, "SendToGroup", "room", "say", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if m := receive(t, alice, "say"); m.Cursor != c1 {
		t.Fatalf("message cursor %q, invoke result %q", m.Cursor, c1)
	}
	c2 := broadcast(t, n1.base, "news", 1)
	if m := receive(t, alice, "news"); m.Cursor != c2 {
		t.Fatalf("broadcast cursor %q, REST result %q", m.Cursor, c2)
	}
	before := getStatus(t, n1.base)
	if before.Stream.LastCursor != c2 {
		t.Fatalf("status last_cursor %q, want %q", before.Stream.LastCursor, c2)
	}

	n1.stop(t)
	select {
	case <-alice.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client not closed by shutdown")
	}
	var ce *client.CloseError
	if err := alice.Err(); !errors.As(err, &ce) || !ce.AllowReconnect {
		t.Fatalf("shutdown should close clients with allowReconnect, got %v", err)
	}

	n2 := startNode(t, args...)
	after := getStatus(t, n2.base)
	if after.Stream.Epoch != before.Stream.Epoch {
		t.Fatalf("epoch changed across restart: %q -> %q", before.Stream.Epoch, after.Stream.Epoch)
	}
	if after.Stream.FirstCursor != before.Stream.FirstCursor {
		t.Fatalf("cache lost across restart: first cursor %q -> %q", before.Stream.FirstCursor, after.Stream.FirstCursor)
	}
	_, last2 := cursorOf(t, c2)
	_, lastAfter := cursorOf(t, after.Stream.LastCursor)
	if lastAfter.Less(last2) {
		t.Fatalf("last cursor went back: %s -> %s", c2, after.Stream.LastCursor)
	}

	bob, err := client.Dial(ctx, client.Config{URL: n2.base + "/hubs/chat?user=bob"})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	c3 := broadcast(t, n2.base, "news", 2)
	e3, cur3 := cursorOf(t, c3)
	if e3 != before.Stream.Epoch || !lastAfter.Less(cur3) {
		t.Fatalf("new cursor %q does not continue after %q", c3, after.Stream.LastCursor)
	}
	if m := receive(t, bob, "news"); m.Cursor != c3 {
		t.Fatalf("bob got cursor %q, want %q", m.Cursor, c3)
	}
}

func TestParseFlags_Environment(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		check   func(*raftplane.Config) bool
		wantErr string
	}{
		{name: "defaults", check: func(c *raftplane.Config) bool {
			return c.HTTPAddr == "127.0.0.1:5000" && c.RaftAddr == "127.0.0.1:7000" && c.DataDir == "raftplane-data" &&
				c.Hub.MaxMessageSize == 32<<10 && c.Hub.KeepAliveInterval == 15*time.Second
		}},
		{name: "env sets a flag", env: map[string]string{"RAFTPLANE_HTTP": "127.0.0.1:6000", "RAFTPLANE_MAX_MESSAGE_SIZE": "1024"},
			check: func(c *raftplane.Config) bool { return c.HTTPAddr == "127.0.0.1:6000" && c.Hub.MaxMessageSize == 1024 }},
		{name: "command line wins", env: map[string]string{"RAFTPLANE_HTTP": "127.0.0.1:6000"}, args: []string{"-http", "127.0.0.1:6001"},
			check: func(c *raftplane.Config) bool { return c.HTTPAddr == "127.0.0.1:6001" }},
		{name: "list flag", args: []string{"-join", "10.0.0.1:7946, 10.0.0.2:7946", "-transports", "sse,lp"},
			check: func(c *raftplane.Config) bool {
				return len(c.Join) == 2 && c.Join[1] == "10.0.0.2:7946" && c.Hub.DisableWebSockets && !c.Hub.DisableServerSentEvents && !c.Hub.DisableLongPolling
			}},
		{name: "stateful-reconnect takes a value", args: []string{"-stateful-reconnect", "false", "-insecure"},
			check: func(c *raftplane.Config) bool { return c.Hub.DisableStatefulReconnect && c.Insecure }},
		{name: "bad flag value", args: []string{"-voters", "three"}, wantErr: `"three" is not an integer`},
		{name: "bad env value", env: map[string]string{"RAFTPLANE_KEEPALIVE": "soon"}, wantErr: "RAFTPLANE_KEEPALIVE"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			o, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(&o.cfg) {
				t.Fatalf("unexpected config: %+v", o.cfg)
			}
		})
	}
}

func TestRun_InvalidConfigIsAClearError(t *testing.T) {
	// Errors name the flag to fix, not a Go field.
	err := run(context.Background(), []string{"-data", t.TempDir(), "-keepalive", "40s"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "-keepalive: 40s must be less than -client-timeout (30s)") {
		t.Fatalf("err = %v", err)
	}
	err = run(context.Background(), []string{"-data", t.TempDir(), "-http", "0.0.0.0:5000"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "set -advertise") {
		t.Fatalf("err = %v", err)
	}
	err = run(context.Background(), []string{"-data", t.TempDir(), "-voters", "2"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "-voters: 2 must be odd") {
		t.Fatalf("err = %v", err)
	}
	// A value from the environment says so.
	t.Setenv("RAFTPLANE_CACHE_ENTRIES", "0")
	err = run(context.Background(), []string{"-data", t.TempDir()}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "-cache-entries: 0 must be at least 1 (set in RAFTPLANE_CACHE_ENTRIES)") {
		t.Fatalf("err = %v", err)
	}
	err = run(context.Background(), []string{"-data", t.TempDir(), "-log-level", "loud"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "-log-level") {
		t.Fatalf("err = %v", err)
	}
}

func TestRunStatus_Table(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/cluster" || r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, `{"code":"Unauthorized"}`, http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, `{"members":[
			{"id":"a1","raft_addr":"127.0.0.1:7001","http_addr":"127.0.0.1:5001","gossip_addr":"127.0.0.1:7946","gossip_state":"alive","suffrage":"voter","leader":true,"last_contact":"0","applied_index":42},
			{"id":"b2","raft_addr":"127.0.0.1:7002","gossip_state":"dead","suffrage":"nonvoter","leader":false,"last_contact":"unreachable","applied_index":0}]}`)
	}))
	defer ts.Close()
	var out bytes.Buffer
	if err := runStatus(context.Background(), []string{"-http", ts.URL, "-api-key", "k"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("table:\n%s", out.String())
	}
	for _, want := range [][]string{{"a1", "alive", "voter", "*", "42", "127.0.0.1:5001"}, {"b2", "dead", "nonvoter", "unreachable", "-"}} {
		row := strings.Join(strings.Fields(lines[map[string]int{"a1": 1, "b2": 2}[want[0]]]), " ")
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Fatalf("row %q lacks %q", row, w)
			}
		}
	}
	err := runStatus(context.Background(), []string{"-http", ts.URL}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without the key: err = %v, want the 401 surfaced", err)
	}
}
