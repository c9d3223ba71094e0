package client_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/hub"
	"github.com/raftplane/raftplane/internal/testnet"
)

// startStack runs a real one-node raftplane (fsm, Raft over loopback TCP,
// hub) behind an httptest server, the way cmd/raftplane wires it, and returns
// the base URL (http://127.0.0.1:PORT). Options adjust the hub config. It is
// torn down when the test ends.
func startStack(t *testing.T, opts ...func(*hub.Config)) string {
	t.Helper()
	return startStackServer(t, opts...).URL
}

// stack is a running node: its base URL, its hub server and its HTTP
// server.
type stack struct {
	URL  string
	Hub  *hub.Server
	HTTP *trackedServer
}

// startStackServer is startStack that also returns the hub server, for tests
// that shut it down themselves (Close is idempotent, so cleanup still works).
func startStackServer(t *testing.T, opts ...func(*hub.Config)) *stack {
	t.Helper()
	tw := &testWriter{t: t}
	t.Cleanup(tw.stop) // registered first, so it runs last
	lg := slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelWarn}))

	machine, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ccfg := cluster.DefaultConfig()
	ccfg.NodeID = "n1"
	ccfg.DataDir = t.TempDir()
	ccfg.RaftBind = "127.0.0.1:0"
	ccfg.HeartbeatTimeout = 200 * time.Millisecond
	ccfg.ElectionTimeout = 200 * time.Millisecond
	ccfg.LeaderLeaseTimeout = 100 * time.Millisecond
	ccfg.NoSync = true
	ccfg.Logger = lg.With("component", "cluster")
	node, err := cluster.New(ccfg, machine)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Open(); err != nil {
		// RaftBind with port 0 did not work: use a port that was free a
		// moment ago.
		t.Logf("raft on 127.0.0.1:0: %v; retrying on a picked port", err)
		ccfg.RaftBind = freeAddr(t)
		if node, err = cluster.New(ccfg, machine); err != nil {
			t.Fatal(err)
		}
		if err := node.Open(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := node.Close(ctx); err != nil {
			t.Errorf("node.Close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		t.Fatalf("node.WaitReady: %v", err)
	}

	hcfg := hub.DefaultConfig()
	hcfg.NodeID = ccfg.NodeID
	hcfg.TokenSecret = []byte("0123456789abcdef0123456789abcdef")
	hcfg.Logger = lg.With("component", "hub")
	for _, o := range opts {
		o(&hcfg)
	}
	srv, err := hub.New(hcfg, node, machine)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	ts := serveTracked(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("hub Close: %v", err)
		}
		ts.Close()
	})
	return &stack{URL: ts.URL, Hub: srv, HTTP: ts}
}

// trackedServer is an httptest server that remembers every connection it
// accepted, WebSockets included (httptest forgets hijacked connections),
// so that a test can cut them all at once.
type trackedServer struct {
	*httptest.Server
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func serveTracked(h http.Handler) *trackedServer {
	ts := &trackedServer{Server: httptest.NewUnstartedServer(h), conns: map[net.Conn]struct{}{}}
	ts.Config.ConnState = func(c net.Conn, st http.ConnState) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		switch st {
		case http.StateNew:
			ts.conns[c] = struct{}{}
		case http.StateClosed:
			delete(ts.conns, c)
		}
	}
	ts.Start()
	return ts
}

// Kill makes the node unreachable abruptly, as a crash of its HTTP side:
// the listener closes and every connection is cut, with no WebSocket close
// frame and no SignalR Close message. The hub behind it keeps running.
func (ts *trackedServer) Kill() {
	_ = ts.Listener.Close()
	ts.CutConnections()
}

// CutConnections closes every connection (the listener stays open).
func (ts *trackedServer) CutConnections() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for c := range ts.conns {
		_ = c.Close()
	}
}

func freeAddr(t *testing.T) string { return testnet.Addr(t) }

// testWriter sends server logs to t.Log until the test is over.
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log("server: " + strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
