//go:build unix

package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftplane/raftplane/internal/testnet"
	"github.com/raftplane/raftplane/internal/testproc"
)

// Helpers shared by the interop tests (single node now; clusters and chaos tests later).

const (
	readyTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second // SIGTERM, then SIGKILL after this
)

// inCI reports whether CI=true (CI must not skip tests for missing tools).
func inCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// skipOrFail skips the test, or fails it when running in CI.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("%s (CI=true: not skipping)", msg)
	}
	t.Skip(msg)
}

// buildServer returns the raftplane binary, built once per test binary
// (testproc).
func buildServer(t *testing.T) string {
	t.Helper()
	return testproc.Build(t, testproc.Main)
}

// freePort returns a loopback TCP port that was free a moment ago and that
// no outgoing connection can take (internal/testnet).
func freePort(t *testing.T) int { return testnet.Port(t) }

// randomKey returns a random hex string, for API and JWT keys.
func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// server is one running raftplane process.
type server struct {
	Name     string
	Addrs    addrs
	HTTPAddr string // 127.0.0.1:PORT
	RaftAddr string
	DataDir  string
	URL      string // http://HTTPAddr
	APIKey   string // the -api-key flag's value, if any (the REST API, /api/v1/status included, needs it)

	proc *testproc.Proc
}

// addrs are one node's listen addresses and data directory.
type addrs struct {
	HTTP, Raft, Gossip, Data string
}

// handedOut holds every port nodeAddrs gave in this process: a port is free
// when picked but not bound until its node starts, so the nodes of one
// cluster, picked before any starts, could otherwise get the same one (seen
// in CI: one node's gossip port was another's Raft port).
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// nodeAddrs picks fresh HTTP, Raft and gossip addresses and a data directory
// for a node; no port is handed out twice in one test process.
func nodeAddrs(t *testing.T) addrs {
	t.Helper()
	pick := func() string {
		for {
			p := freePort(t)
			handedOut.Lock()
			fresh := !handedOut.ports[p]
			handedOut.ports[p] = true
			handedOut.Unlock()
			if fresh {
				return fmt.Sprintf("127.0.0.1:%d", p)
			}
		}
	}
	return addrs{HTTP: pick(), Raft: pick(), Gossip: pick(), Data: t.TempDir()}
}

// startServer starts bin on fresh ports with a fresh data directory, passing extraArgs after the
// standard flags, and waits until it is ready. It is stopped when the test ends.
func startServer(t *testing.T, bin, name string, extraArgs ...string) *server {
	t.Helper()
	s := startServerAt(t, bin, name, nodeAddrs(t), extraArgs...)
	waitReady(t, s, readyTimeout)
	return s
}

// startServerAt starts bin with the given addresses and data directory (for clusters, where peers
// must know each other's addresses up front, and for restarts on the same data). It does not wait
// for readiness. Output goes to the test log, one t.Log line per line, prefixed with name. It is
// stopped when the test ends; an exit the test did not bring about fails it.
func startServerAt(t *testing.T, bin, name string, a addrs, extraArgs ...string) *server {
	t.Helper()
	args := append([]string{"-data", a.Data, "-http", a.HTTP, "-raft", a.Raft, "-gossip", a.Gossip}, extraArgs...)
	return &server{
		Name: name, Addrs: a, HTTPAddr: a.HTTP, RaftAddr: a.Raft, DataDir: a.Data,
		URL: "http://" + a.HTTP, APIKey: flagValue(extraArgs, "api-key"),
		proc: testproc.Start(t, bin, testproc.Options{Name: name, Args: args, StopTimeout: stopTimeout}),
	}
}

// flagValue returns the value of -name / --name (as "-name V" or "-name=V") in args, or "".
func flagValue(args []string, name string) string {
	for i, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func (s *server) hasExited() bool { return s.proc.Exited() }

// exitErr is the process's exit error once it has exited (nil for status 0).
func (s *server) exitErr() error { return s.proc.Err() }

// Stop sends SIGTERM, waits for the process (SIGKILL after stopTimeout) and reports a hung shutdown
// as a test error. Safe to call more than once.
func (s *server) Stop(t *testing.T) {
	t.Helper()
	start := time.Now()
	wasRunning := !s.hasExited()
	err := s.proc.Stop(t)
	if wasRunning {
		t.Logf("%s: stopped in %v: %v", s.Name, time.Since(start).Round(time.Millisecond), err)
	}
}

// waitReady polls GET /api/v1/status (with the API key, if the server has one) until it answers 200.
func waitReady(t *testing.T, s *server, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		req, err := http.NewRequest(http.MethodGet, s.URL+"/api/v1/status", nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+s.APIKey)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if s.hasExited() {
			t.Fatalf("%s: exited while waiting for readiness: %v", s.Name, s.exitErr())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET /api/v1/status not 200 within %v (last: %s)", s.Name, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runNode runs node with args in dir, in its own process group (node --test spawns children), and
// returns its combined output. The whole group is killed when ctx ends.
func runNode(ctx context.Context, node, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return out.Bytes(), err
}

// Kill crashes the process as kill -9 does: SIGKILL, no graceful shutdown. It waits until the
// process has exited; the kill counts as a stop, so the cleanup does not report the exit.
func (s *server) Kill(t *testing.T) {
	t.Helper()
	s.proc.Kill(t)
}

// waitServing polls GET /healthz until the node answers at all and returns the status: 200 when it
// takes clients, 503 while it is not ready (a node that has not been added to a cluster yet has no
// epoch). waitReady is for nodes that must be ready; this is for nodes that may not be yet.
func waitServing(t *testing.T, s *server, timeout time.Duration) int {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		resp, err := client.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusServiceUnavailable {
				return resp.StatusCode
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if s.hasExited() {
			t.Fatalf("%s: exited while waiting for it to serve HTTP: %v", s.Name, s.exitErr())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET /healthz not answered within %v (last: %s)", s.Name, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runServerToExit runs bin as startServerAt does, for a start that must fail: it waits up to timeout
// for the process to exit by itself and returns its combined output (also logged, prefixed with
// name), how long it ran and its exit error (nil for status 0). A process still running after
// timeout is killed and the test fails.
func runServerToExit(t *testing.T, bin, name string, a addrs, timeout time.Duration, extraArgs ...string) (string, time.Duration, error) {
	t.Helper()
	args := append([]string{"-data", a.Data, "-http", a.HTTP, "-raft", a.Raft, "-gossip", a.Gossip}, extraArgs...)
	start := time.Now()
	out, err := testproc.Run(t, bin, timeout, testproc.Options{Name: name, Args: args, StopTimeout: stopTimeout})
	return out, time.Since(start), err
}

// startCluster starts n nodes of bin (node1 bootstraps, the others join through its gossip address),
// each with extraArgs, and waits until every one answers GET /api/v1/status.
func startCluster(t *testing.T, bin string, n int, extraArgs ...string) []*server {
	t.Helper()
	nodes := make([]*server, n)
	nodes[0] = startServerAt(t, bin, "node1", nodeAddrs(t), extraArgs...)
	waitReady(t, nodes[0], readyTimeout)
	for i := 1; i < n; i++ {
		args := append(slices.Clone(extraArgs), "-join", nodes[0].Addrs.Gossip)
		nodes[i] = startServerAt(t, bin, fmt.Sprintf("node%d", i+1), nodeAddrs(t), args...)
	}
	for _, s := range nodes[1:] {
		waitReady(t, s, readyTimeout)
	}
	return nodes
}
