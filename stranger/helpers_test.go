//go:build unix

package stranger_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftplane/raftplane/client"
	"github.com/raftplane/raftplane/internal/testnet"
	"github.com/raftplane/raftplane/internal/testproc"
	"github.com/raftplane/raftplane/stranger"
)

// Helpers: real raftplane processes, a real stranger process, and the
// status reads that show what changed.

const (
	readyTimeout  = 30 * time.Second
	stableTimeout = 30 * time.Second
	stopTimeout   = 10 * time.Second // SIGTERM, then SIGKILL after this
	// nodeShutdown bounds a node's own graceful stop (-shutdown-timeout,
	// 15s by default) below stopTimeout: after the attacks that wreck the
	// terms no leader can take a leaving node out, and it waits its whole
	// timeout (a CI run killed node3 so, at 10s of 15).
	nodeShutdown   = "5s"
	strangerBudget = 2 * time.Minute // one stranger run, every attack
	pollInterval   = 50 * time.Millisecond
)

func TestMain(m *testing.M) {
	code := m.Run()
	testproc.Cleanup()
	os.Exit(code)
}

// binaries builds ./cmd/raftplane and ./stranger/cmd/stranger (once per
// test binary) and returns their paths.
func binaries(t *testing.T) (raftplane, strangerBin string) {
	t.Helper()
	return testproc.Build(t, testproc.Main), testproc.Build(t, "github.com/raftplane/raftplane/stranger/cmd/stranger")
}

// freeAddr returns a loopback address no other test of this process got:
// the nodes of one cluster are given theirs before any binds one.
func freeAddr(t *testing.T) string { return testnet.Addr(t) }

// node is one running raftplane process.
type node struct {
	name                   string
	httpAddr, raft, gossip string
	url                    string // http://httpAddr
	proc                   *testproc.Proc
}

// startNode starts bin on fresh loopback ports with a fresh data folder.
// It is stopped when the test ends; a node that exits before (a crash)
// fails the test.
func startNode(t *testing.T, bin, name string, extra ...string) *node {
	t.Helper()
	n := &node{name: name, httpAddr: freeAddr(t), raft: freeAddr(t), gossip: freeAddr(t)}
	n.url = "http://" + n.httpAddr
	args := append([]string{"-data", t.TempDir(), "-http", n.httpAddr, "-raft", n.raft, "-gossip", n.gossip, "-node-id", name,
		"-shutdown-timeout", nodeShutdown}, extra...)
	n.proc = testproc.Start(t, bin, testproc.Options{Name: name, Args: args, StopTimeout: stopTimeout})
	return n
}

// status reads the node's GET /api/v1/status.
func (n *node) status() (stranger.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := stranger.FetchStatus(ctx, n.url, "")
	if err != nil {
		return st, fmt.Errorf("%s: %w", n.name, err)
	}
	return st, nil
}

// member is one entry of GET /api/v1/cluster.
type member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	Gossip   string `json:"gossip_addr"`
	Suffrage string `json:"suffrage"`
}

func (n *node) members() ([]member, error) {
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(n.url + "/api/v1/cluster")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: GET /api/v1/cluster: %s %s", n.name, resp.Status, body)
	}
	var out struct {
		Members []member `json:"members"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("%s: GET /api/v1/cluster: %w", n.name, err)
	}
	return out.Members, nil
}

// waitReady polls GET /api/v1/status until it answers.
func (n *node) waitReady(t *testing.T) {
	t.Helper()
	poll(t, n.name+" ready", readyTimeout, []*node{n}, func() error {
		_, err := n.status()
		return err
	})
}

// startCluster starts three nodes with extra flags: node1 bootstraps, the
// others join through its gossip address.
func startCluster(t *testing.T, bin string, extra ...string) []*node {
	t.Helper()
	nodes := []*node{startNode(t, bin, "node1", extra...)}
	nodes[0].waitReady(t)
	for i := 2; i <= 3; i++ {
		nodes = append(nodes, startNode(t, bin, fmt.Sprintf("node%d", i), append(slices.Clone(extra), "-join", nodes[0].gossip)...))
	}
	for _, n := range nodes[1:] {
		n.waitReady(t)
	}
	return nodes
}

// poll runs check until it returns nil, failing the test after timeout or
// when a node crashed.
func poll(t *testing.T, what string, timeout time.Duration, watch []*node, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		for _, n := range watch {
			if n.proc.Exited() {
				t.Fatalf("%s: %s exited: %v", what, n.name, n.proc.Err())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// view is what the tests compare across an attack: per node, the Raft
// position, term and leader, and the FSM's digest.
type view struct {
	Term, LastLogIndex, CommitIndex, Applied uint64
	LeaderID, State, Epoch, Digest           string
}

func (v view) String() string {
	return fmt.Sprintf("term=%d last=%d commit=%d applied=%d leader=%q state=%s epoch=%s digest=%s",
		v.Term, v.LastLogIndex, v.CommitIndex, v.Applied, v.LeaderID, v.State, v.Epoch, v.Digest)
}

func viewOf(st stranger.Status) view {
	return view{Term: st.Node.Term, LastLogIndex: st.Node.LastLogIndex, CommitIndex: st.Node.CommitIndex,
		Applied: st.Stream.AppliedIndex, LeaderID: st.Node.LeaderID, State: st.Node.State,
		Epoch: st.Stream.Epoch, Digest: st.Stream.Digest}
}

// views reads every node's view.
func views(nodes []*node) ([]view, error) {
	out := make([]view, len(nodes))
	for i, n := range nodes {
		st, err := n.status()
		if err != nil {
			return nil, err
		}
		out[i] = viewOf(st)
	}
	return out, nil
}

// waitStable waits until the cluster is at rest: three voters, one leader
// every node knows, the same term, and every log applied to the same index
// with the same digest. That is the state the attacks must not change.
func waitStable(t *testing.T, nodes []*node) []view {
	t.Helper()
	var vs []view
	poll(t, "cluster at rest", stableTimeout, nodes, func() error {
		ms, err := nodes[0].members()
		if err != nil {
			return err
		}
		voters := 0
		for _, m := range ms {
			if m.Suffrage == "voter" {
				voters++
			}
		}
		if voters != len(nodes) {
			return fmt.Errorf("%d voters of %d: %+v", voters, len(nodes), ms)
		}
		if vs, err = views(nodes); err != nil {
			return err
		}
		leaders := 0
		for i, v := range vs {
			if v.State == "Leader" {
				leaders++
			}
			if v.LeaderID == "" || v.Epoch == "" || v.LastLogIndex != v.CommitIndex || v.CommitIndex != v.Applied {
				return fmt.Errorf("%s not at rest: %v", nodes[i].name, v)
			}
			if v.Term != vs[0].Term || v.LeaderID != vs[0].LeaderID || v.Applied != vs[0].Applied || v.Digest != vs[0].Digest {
				return fmt.Errorf("%s and %s differ: %v / %v", nodes[0].name, nodes[i].name, vs[0], v)
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d leaders", leaders)
		}
		return nil
	})
	return vs
}

func leaderOf(t *testing.T, nodes []*node, vs []view) (leader *node, followers []*node) {
	t.Helper()
	for i, v := range vs {
		if v.State == "Leader" {
			leader = nodes[i]
		} else {
			followers = append(followers, nodes[i])
		}
	}
	if leader == nil {
		t.Fatalf("no leader in %v", vs)
	}
	return leader, followers
}

// runStranger runs the stranger process to completion and returns its
// results, one per attack.
func runStranger(t *testing.T, bin string, args ...string) []stranger.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), strangerBudget)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = stopTimeout
	if err := cmd.Run(); err != nil {
		t.Fatalf("stranger %q: %v\nstderr: %s\nstdout: %s", args, err, stderr.Bytes(), stdout.Bytes())
	}
	var out []stranger.Result
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r stranger.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("stranger output %q: %v", sc.Bytes(), err)
		}
		t.Logf("stranger: %s", sc.Bytes())
		out = append(out, r)
	}
	if len(out) == 0 {
		t.Fatalf("stranger %q printed nothing; stderr: %s", args, stderr.Bytes())
	}
	return out
}

// watcher is a SignalR client that records every message it receives.
type watcher struct {
	name string
	conn *client.Conn
	mu   sync.Mutex
	msgs []client.Message
	wake chan struct{}
	done chan struct{}
}

// watch connects a client to hub on n and records what it receives.
func watch(t *testing.T, n *node, hub, user string) *watcher {
	t.Helper()
	var conn *client.Conn
	poll(t, "client connects to "+n.name, readyTimeout, []*node{n}, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, client.Config{URL: n.url + "/hubs/" + hub + "?user=" + user})
		if err == nil {
			conn = c
		}
		return err
	})
	w := &watcher{name: user + "@" + n.name, conn: conn, wake: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for m := range conn.Messages() {
			w.mu.Lock()
			w.msgs = append(w.msgs, m)
			close(w.wake)
			w.wake = make(chan struct{})
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-w.done
	})
	return w
}

func (w *watcher) received() []client.Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}

// waitMessage waits until a message calling target arrived.
func (w *watcher) waitMessage(target string, timeout time.Duration) (client.Message, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		w.mu.Lock()
		for _, m := range w.msgs {
			if m.Target == target {
				w.mu.Unlock()
				return m, nil
			}
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-w.done:
			return client.Message{}, fmt.Errorf("%s: connection ended: %v", w.name, w.conn.Err())
		case <-timer.C:
			return client.Message{}, fmt.Errorf("%s: no %q message within %v", w.name, target, timeout)
		}
	}
}

// runToExit runs bin with args, expecting it to exit by itself within
// timeout, and returns its combined output and exit error.
func runToExit(t *testing.T, bin string, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	return testproc.Run(t, bin, timeout, testproc.Options{Name: filepath.Base(bin), Args: args, Quiet: true})
}

// helpMentions reports whether bin -help lists every flag.
func helpMentions(t *testing.T, bin string, flags ...string) (missing []string) {
	t.Helper()
	out, _ := runToExit(t, bin, 30*time.Second, "-help")
	for _, f := range flags {
		if !strings.Contains(out, "-"+f) {
			missing = append(missing, f)
		}
	}
	return missing
}
