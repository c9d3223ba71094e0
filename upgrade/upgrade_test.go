//go:build unix

package upgrade

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftplane/raftplane/client"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/internal/testnet"
)

// release is an earlier release the current tree must take over from: its
// tag, and its commit as the fallback (CI runs in a fresh clone that may
// lack tags; the commit is in main's history). Neither is ever skipped.
// logInBolt says its data folder keeps the Raft log in raft.db (before
// v0.4.0), which the current tree moves to wal/ at its first start.
type release struct {
	tag, commit string
	logInBolt   bool
}

// releases are tested newest first: the previous release (the upgrade
// operators make; v0.4.0 writes log format 3, as the tree does, and keeps
// the log in wal/) and those before it (v0.3.0 writes format 3 with the
// log in raft.db, v0.2.0 format 2, v0.1.0 format 1: the roll from them
// raises the format).
var releases = []release{
	{"v0.4.0", "57c751dd00ec5fef8b584507f1c8b20c8f989bc9", false},
	{"v0.3.0", "0d42f2ba12a9eca07348ce367a62d8f8809a5e48", true},
	{"v0.2.0", "ce3272386287c08647a14a7770b374970ac5a82f", true},
	{"v0.1.0", "69b620c2ebaf7bce59a6bb431a88c865c59916d0", true},
}

const (
	buildTimeout = 5 * time.Minute
	startTimeout = 30 * time.Second // a (re)started node answers and is caught up
	stopTimeout  = 20 * time.Second // SIGTERM, then SIGKILL after this (nodes get -shutdown-timeout 10s or the default 15s)
	pollEvery    = 50 * time.Millisecond
	hub          = "chat"
)

// builds are the two binaries under test, and the release of the old one.
type builds struct {
	old, cur string
	rel      release
}

// binCache holds the binaries built by this test process, each built once
// (the current tree and every release), in binDir; TestMain removes it.
var (
	binMu    sync.Mutex
	binDir   string
	binCache = map[string]string{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBoth builds rel from git and the current tree (once per test
// process each).
func buildBoth(t *testing.T, rel release) builds {
	t.Helper()
	return builds{old: build(t, rel), cur: build(t, release{}), rel: rel}
}

// build builds rel (the current tree for the zero release) and returns
// the binary's path.
func build(t *testing.T, rel release) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	name := "raftplane-current"
	if rel.tag != "" {
		name = "raftplane-" + rel.tag
	}
	if b, ok := binCache[name]; ok {
		return b
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command on PATH: %v", err)
	}
	if binDir == "" {
		if binDir, err = os.MkdirTemp("", "raftplane-upgrade-bin-"); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(binDir, name)
	// The module cache is shared, so neither build downloads anything.
	if rel.tag == "" {
		run(t, "..", goCmd, "build", "-o", out, "./cmd/raftplane")
	} else {
		rev := revision(t, rel)
		src := t.TempDir()
		tarball := filepath.Join(t.TempDir(), "prev.tar")
		run(t, "..", "git", "archive", "--format=tar", "-o", tarball, rev)
		run(t, src, "tar", "-xf", tarball)
		run(t, src, goCmd, "build", "-o", out, "./cmd/raftplane")
	}
	binCache[name] = out
	return out
}

// revision returns the commit of rel's tag, or its commit when the tag is
// missing; it fails the test when neither is in the repository.
func revision(t *testing.T, rel release) string {
	t.Helper()
	for _, ref := range []string{rel.tag + "^{commit}", rel.commit + "^{commit}"} {
		out, err := exec.Command("git", "-C", "..", "rev-parse", "--verify", "--quiet", ref).Output()
		if err == nil {
			rev := strings.TrimSpace(string(out))
			t.Logf("release %s: %s = %s", rel.tag, ref, rev)
			return rev
		}
	}
	t.Fatalf("neither %s nor %s is in the repository (a shallow clone? fetch with full history)", rel.tag, rel.commit)
	return ""
}

// run runs a command in dir and fails the test with its output if it fails.
func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T, taken map[string]bool) string {
	t.Helper()
	for {
		a := testnet.Addr(t) // no outgoing connection can take it
		if !taken[a] {
			taken[a] = true
			return a
		}
	}
}

// node is one member's fixed identity: ports, data folder and log file. It
// keeps them across restarts and builds; proc is the running process.
type node struct {
	name                        string
	http, raft, gossip, data    string
	logPath                     string
	proc                        *exec.Cmd
	exited                      chan struct{}
	mu                          sync.Mutex
	stopping, unexpectedlyEnded bool
}

func newNode(t *testing.T, name string, taken map[string]bool, logDir string) *node {
	t.Helper()
	return &node{name: name, http: freeAddr(t, taken), raft: freeAddr(t, taken), gossip: freeAddr(t, taken),
		data: t.TempDir(), logPath: filepath.Join(logDir, name+".log")}
}

func (n *node) url() string { return "http://" + n.http }

// start runs bin for the node, appending its output to the node's log file.
// The process is stopped when the test ends.
func (n *node) start(t *testing.T, bin string, extra ...string) {
	t.Helper()
	args := append([]string{"-data", n.data, "-http", n.http, "-raft", n.raft, "-gossip", n.gossip, "-log-level", "info"}, extra...)
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n==== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("%s: start %s: %v", n.name, bin, err)
	}
	t.Logf("%s: started %s (pid %d)", n.name, filepath.Base(bin), cmd.Process.Pid)
	exited := make(chan struct{})
	n.mu.Lock()
	n.proc, n.exited, n.stopping = cmd, exited, false
	n.mu.Unlock()
	// The owner of this goroutine is the process: it returns when the
	// process exits, which stop (or the cleanup) brings about.
	go func() {
		err := cmd.Wait()
		f.Close()
		n.mu.Lock()
		if !n.stopping {
			n.unexpectedlyEnded = true
		}
		n.mu.Unlock()
		if err != nil {
			t.Logf("%s: pid %d exited: %v", n.name, cmd.Process.Pid, err)
		}
		close(exited)
	}()
	t.Cleanup(func() { n.stop(t) })
}

// stop sends SIGTERM and waits for the exit, SIGKILL after stopTimeout (a
// test error: shutdown must be bounded). It does nothing if not running.
func (n *node) stop(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	cmd, exited := n.proc, n.exited
	n.stopping = true
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		t.Errorf("%s: did not exit within %v of SIGTERM; killed", n.name, stopTimeout)
	}
}

// alive fails the test if the process ended without stop.
func (n *node) alive(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.unexpectedlyEnded {
		t.Fatalf("%s: exited without being stopped (see its log)", n.name)
	}
}

// dumpLogsOnFailure prints every node's log file when the test failed.
func dumpLogsOnFailure(t *testing.T, nodes ...*node) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range nodes {
			b, err := os.ReadFile(n.logPath)
			if err != nil {
				t.Logf("%s: no log: %v", n.name, err)
				continue
			}
			const keep = 64 << 10
			if len(b) > keep {
				b = append([]byte("...\n"), b[len(b)-keep:]...)
			}
			t.Logf("==== log of %s (%s)\n%s", n.name, n.logPath, b)
		}
	})
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// status is what the test reads of GET /api/v1/status (the same fields in
// both builds).
type status struct {
	Stream struct {
		Epoch        string `json:"epoch"`
		AppliedIndex uint64 `json:"applied_index"`
		LastCursor   string `json:"last_cursor"`
		Digest       string `json:"digest"`
	} `json:"stream"`
	Node struct {
		State        string `json:"state"`
		LeaderID     string `json:"leader_id"`
		CommitIndex  uint64 `json:"commit_index"`
		LastLogIndex uint64 `json:"last_log_index"`
	} `json:"node"`
}

type member struct {
	ID          string `json:"id"`
	Suffrage    string `json:"suffrage"`
	GossipState string `json:"gossip_state"`
}

// getJSON GETs url into v; it returns an error for any status but 200.
func getJSON(url string, v any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, v)
}

func (n *node) status() (status, error) {
	var s status
	err := getJSON(n.url()+"/api/v1/status", &s)
	return s, err
}

// eventually polls cond until it returns nil, failing the test with cond's
// last error after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(pollEvery)
	}
}

// send POSTs a hub message to path (relative to the hub's REST URL) and
// returns the cursor of its commit.
func send(base, path string, body any, idemKey string) (string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/hubs/"+hub+path, bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(rb))
	}
	var out struct {
		Cursor string `json:"cursor"`
	}
	if err := json.Unmarshal(rb, &out); err != nil || out.Cursor == "" {
		return "", fmt.Errorf("POST %s: 200 without a cursor: %q", path, rb)
	}
	return out.Cursor, nil
}

// drain consumes a connection's messages until it ends, so that the server
// never sheds it for being slow; it returns how many arrived per target.
func drain(c *client.Conn) <-chan map[string]int {
	out := make(chan map[string]int, 1)
	go func() {
		counts := map[string]int{}
		for m := range c.Messages() {
			counts[m.Target]++
		}
		out <- counts
	}()
	return out
}

// newestSnapshot returns the Raft index of the newest complete snapshot in
// a data folder (raft's file store: snapshots/<term>-<index>-<ms>/meta.json),
// or 0 when there is none.
func newestSnapshot(data string) (uint64, error) {
	dirs, err := os.ReadDir(filepath.Join(data, "snapshots"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var newest uint64
	for _, d := range dirs {
		if !d.IsDir() || strings.HasSuffix(d.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(data, "snapshots", d.Name(), "meta.json"))
		if err != nil {
			continue // being written
		}
		var meta struct{ Index uint64 }
		if err := json.Unmarshal(b, &meta); err != nil {
			return 0, fmt.Errorf("snapshot %s: meta.json: %w", d.Name(), err)
		}
		if _, err := os.Stat(filepath.Join(data, "snapshots", d.Name(), "state.bin")); err == nil && meta.Index > newest {
			newest = meta.Index
		}
	}
	return newest, nil
}

// TestRestartOnOldData: a node of the previous release writes a log and a
// snapshot with every kind of send; the current build restarts on that data
// folder, reaches the same last cursor and digest, and commits new sends.
func TestRestartOnOldData(t *testing.T) {
	for _, rel := range releases {
		t.Run("from-"+rel.tag, func(t *testing.T) { restartOnOldData(t, buildBoth(t, rel)) })
	}
}

func restartOnOldData(t *testing.T, b builds) {
	const threshold = 64
	flags := []string{"-snapshot-threshold", strconv.Itoa(threshold), "-trailing-logs", "16", "-snapshot-interval", "1s"}
	n := newNode(t, "solo", map[string]bool{}, t.TempDir())
	dumpLogsOnFailure(t, n)
	n.start(t, b.old, flags...)
	eventually(t, startTimeout, "old node leads", func() error {
		s, err := n.status()
		if err == nil && (s.Node.State != "Leader" || s.Stream.Epoch == "") {
			err = fmt.Errorf("state %s, epoch %q", s.Node.State, s.Stream.Epoch)
		}
		return err
	})

	// A real connection that joins groups, so the log and the snapshot hold
	// connections and memberships, not only messages.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := client.Dial(ctx, client.Config{URL: n.url() + "/hubs/" + hub + "?user=alice"})
	if err != nil {
		t.Fatalf("dial the old node: %v", err)
	}
	received := drain(conn)
	for _, g := range []string{"g1", "g2"} {
		if _, err := conn.Invoke(ctx, "JoinGroup", g); err != nil {
			t.Fatalf("JoinGroup %s: %v", g, err)
		}
	}
	// A second connection, added to a group over REST, stays registered.
	other, err := client.Dial(ctx, client.Config{URL: n.url() + "/hubs/" + hub + "?user=bob"})
	if err != nil {
		t.Fatalf("dial the old node: %v", err)
	}
	defer other.Close()
	drain(other)
	req, _ := http.NewRequest(http.MethodPut, n.url()+"/api/v1/hubs/"+hub+"/groups/g3/connections/"+other.ID(), nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("PUT g3 membership: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT g3 membership: %s", resp.Status)
	}

	// A mix of every send, with idempotency keys on some.
	mixed := func(i int) error {
		arg := map[string]any{"target": "m", "arguments": []any{i, "text " + strconv.Itoa(i)}}
		var path, key string
		switch i % 5 {
		case 0:
			path = ""
		case 1:
			path, arg["excluded"] = "", []string{conn.ID()}
		case 2:
			path = "/groups/g" + strconv.Itoa(1+i%3)
		case 3:
			path, key = "/users/alice", "k"+strconv.Itoa(i)
		case 4:
			path, key = "/connections/"+other.ID(), "k"+strconv.Itoa(i)
		}
		_, err := send(n.url(), path, arg, key)
		return err
	}
	for i := range 300 {
		if err := mixed(i); err != nil {
			t.Fatalf("send %d to the old node: %v", i, err)
		}
	}
	// Close one connection for good: its disconnect is in the log, then
	// wait until no snapshot is pending, so that a few more sends stay in
	// the log after the newest snapshot and the new build must replay them.
	if err := conn.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := <-received; got["m"] == 0 {
		t.Errorf("the connection received no message: %v", got)
	}
	eventually(t, 10*time.Second, "the closed connection is gone", func() error {
		resp, err := httpClient.Get(n.url() + "/api/v1/hubs/" + hub + "/connections/" + conn.ID())
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			return fmt.Errorf("GET the connection: %s", resp.Status)
		}
		return nil
	})
	var tail uint64
	eventually(t, 15*time.Second, "a snapshot with fewer than the threshold's entries after it", func() error {
		s, err := n.status()
		if err != nil {
			return err
		}
		snap, err := newestSnapshot(n.data)
		if err != nil {
			return err
		}
		if snap == 0 || s.Node.LastLogIndex-snap >= threshold {
			return fmt.Errorf("newest snapshot at %d, last log index %d", snap, s.Node.LastLogIndex)
		}
		tail = threshold - 1 - (s.Node.LastLogIndex - snap)
		return nil
	})
	tail = min(tail, 20)
	for i := range int(tail) {
		if err := mixed(300 + i); err != nil {
			t.Fatalf("send %d to the old node: %v", 300+i, err)
		}
	}
	before, err := n.status()
	if err != nil {
		t.Fatal(err)
	}
	n.stop(t)
	snap, err := newestSnapshot(n.data)
	if err != nil {
		t.Fatal(err)
	}
	if snap == 0 {
		t.Fatal("the old node left no snapshot")
	}
	t.Logf("old node: last cursor %s, digest %s, applied %d; newest snapshot at %d, %d sends after it",
		before.Stream.LastCursor, before.Stream.Digest, before.Stream.AppliedIndex, snap, tail)

	// The new build on the same data folder and ports.
	n.start(t, b.cur, flags...)
	eventually(t, startTimeout, "the new build applied the old data", func() error {
		n.alive(t)
		s, err := n.status()
		if err != nil {
			return err
		}
		if s.Stream.AppliedIndex < before.Stream.AppliedIndex {
			return fmt.Errorf("applied %d of %d", s.Stream.AppliedIndex, before.Stream.AppliedIndex)
		}
		if s.Stream.LastCursor != before.Stream.LastCursor || s.Stream.Digest != before.Stream.Digest {
			t.Fatalf("after the upgrade: last cursor %s digest %s, before it: %s %s",
				s.Stream.LastCursor, s.Stream.Digest, before.Stream.LastCursor, before.Stream.Digest)
		}
		return nil
	})
	var last string
	eventually(t, startTimeout, "the new build commits", func() error {
		n.alive(t)
		c, err := send(n.url(), "/groups/g3", map[string]any{"target": "m", "arguments": []any{"after upgrade"}}, "")
		last = c
		return err
	})
	s, err := n.status()
	if err != nil {
		t.Fatal(err)
	}
	if s.Stream.LastCursor != last || s.Stream.Epoch != before.Stream.Epoch {
		t.Errorf("after a send: last cursor %s epoch %s, want %s in epoch %s", s.Stream.LastCursor, s.Stream.Epoch, last, before.Stream.Epoch)
	}
	// Releases before v0.4.0 kept the log in raft.db; the tree moves it to
	// wal/ (cluster/stores.go) and replayed it from there above.
	if fi, err := os.Stat(filepath.Join(n.data, "wal")); err != nil || !fi.IsDir() {
		t.Errorf("no wal/ folder in the data after the upgrade: %v", err)
	}
	out, err := os.ReadFile(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if moved := bytes.Contains(out, []byte("moved the Raft log from raft.db")); moved != b.rel.logInBolt {
		t.Errorf("the new build logged moving the log out of raft.db: %v, want %v (%s)", moved, b.rel.logInBolt, b.rel.tag)
	}
	if compacted := bytes.Contains(out, []byte("compacted raft.db after moving the log")); compacted != b.rel.logInBolt {
		t.Errorf("the new build logged compacting raft.db: %v, want %v (%s)", compacted, b.rel.logInBolt, b.rel.tag)
	}
}

// tick is one numbered broadcast as the subscriber received it.
type tick struct {
	n      int
	cursor string
}

// publisher sends numbered broadcasts one at a time to a node, moving to the
// next node when one fails; each send carries an idempotency key, so a
// retry after a lost answer is applied once. A send is acknowledged when it
// got 200.
type publisher struct {
	nodes   []*node
	every   time.Duration
	timeout time.Duration // one send's retries

	mu       sync.Mutex
	acked    map[int]string // number -> cursor
	unknown  []int          // gave up: may or may not be committed
	retries  int
	lastSent int
}

// run publishes until ctx ends; it is the publisher goroutine's body.
func (p *publisher) run(ctx context.Context) {
	at := 0
	ticker := time.NewTicker(p.every)
	defer ticker.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		body := map[string]any{"target": "tick", "arguments": []any{n}}
		key := "tick-" + strconv.Itoa(n)
		deadline := time.Now().Add(p.timeout)
		for {
			cur, err := send(p.nodes[at].url(), "", body, key)
			if err == nil {
				p.mu.Lock()
				p.acked[n], p.lastSent = cur, n
				p.mu.Unlock()
				break
			}
			p.mu.Lock()
			p.retries++
			p.mu.Unlock()
			if time.Now().After(deadline) || ctx.Err() != nil {
				p.mu.Lock()
				p.unknown = append(p.unknown, n)
				p.lastSent = n
				p.mu.Unlock()
				break
			}
			at = (at + 1) % len(p.nodes)
			select {
			case <-ctx.Done():
			case <-time.After(pollEvery):
			}
		}
	}
}

func (p *publisher) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// waitAcked waits until k more sends have been acknowledged.
func (p *publisher) waitMore(t *testing.T, k int) {
	t.Helper()
	want := p.ackedCount() + k
	eventually(t, startTimeout, fmt.Sprintf("%d more acknowledged sends", k), func() error {
		if got := p.ackedCount(); got < want {
			return fmt.Errorf("%d of %d acknowledged", got, want)
		}
		return nil
	})
}

// clusterReady checks, through n, that the cluster has three live voters, a
// leader, and that n has applied what the leader had committed when asked.
func clusterReady(n *node, nodes []*node) error {
	var m struct {
		Members []member `json:"members"`
	}
	if err := getJSON(n.url()+"/api/v1/cluster", &m); err != nil {
		return err
	}
	voters := 0
	for _, x := range m.Members {
		if x.Suffrage == "voter" && x.GossipState == "alive" {
			voters++
		}
	}
	if voters != len(nodes) {
		return fmt.Errorf("%d live voters of %d: %+v", voters, len(nodes), m.Members)
	}
	var commit uint64
	for _, o := range nodes {
		s, err := o.status()
		if err == nil && s.Node.State == "Leader" {
			commit = s.Node.CommitIndex
		}
	}
	if commit == 0 {
		return errors.New("no leader")
	}
	s, err := n.status()
	if err != nil {
		return err
	}
	if s.Node.LeaderID == "" || s.Stream.AppliedIndex < commit {
		return fmt.Errorf("%s: leader %q, applied %d, leader's commit %d", n.name, s.Node.LeaderID, s.Stream.AppliedIndex, commit)
	}
	return nil
}

// leaderOf returns the running node that says it leads.
func leaderOf(nodes []*node) (*node, error) {
	var states []string
	for _, n := range nodes {
		s, err := n.status()
		if err == nil && s.Node.State == "Leader" {
			return n, nil
		}
		states = append(states, fmt.Sprintf("%s: %s %v", n.name, s.Node.State, err))
	}
	return nil, fmt.Errorf("no leader: %s", strings.Join(states, "; "))
}

// ready polls GET /readyz (the new build's: 200 when it can commit).
func ready(n *node) error {
	resp, err := httpClient.Get(n.url() + "/readyz")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// formatRe matches the line a leader logs when it records the cluster's
// log format (cluster/leader.go raiseFormat), in both builds' text logs.
var formatRe = regexp.MustCompile(`msg="every server knows the log format; recorded".* format=(\d+)`)

// recordedFormat is the newest log format the nodes' leaders recorded,
// from their logs; 1 (every build's first format) when none did.
func recordedFormat(nodes []*node) (uint32, error) {
	f := uint32(1)
	for _, n := range nodes {
		b, err := os.ReadFile(n.logPath)
		if err != nil {
			return 0, err
		}
		for _, m := range formatRe.FindAllSubmatch(b, -1) {
			k, err := strconv.ParseUint(string(m[1]), 10, 32)
			if err != nil {
				return 0, fmt.Errorf("%s: %q: %w", n.logPath, m[0], err)
			}
			f = max(f, uint32(k))
		}
	}
	return f, nil
}

// TestRollingUpgrade: three nodes of the previous release, a subscriber and
// a publisher; the nodes are replaced by the current build one at a time,
// the subscriber's node last. Every acknowledged send reaches the subscriber
// exactly once and in order, and the nodes end with the same stream.
func TestRollingUpgrade(t *testing.T) {
	for _, rel := range releases {
		t.Run("from-"+rel.tag, func(t *testing.T) { rollingUpgrade(t, buildBoth(t, rel)) })
	}
}

func rollingUpgrade(t *testing.T, b builds) {
	taken := map[string]bool{}
	logDir := t.TempDir()
	nodes := []*node{newNode(t, "n1", taken, logDir), newNode(t, "n2", taken, logDir), newNode(t, "n3", taken, logDir)}
	dumpLogsOnFailure(t, nodes...)
	// Snapshots during the test, so a restarted node may be sent one
	// written by the other build.
	const trailing = 20
	// A node that is shut down while it holds a send waits for the commit
	// at most -publish-timeout: shorter than the default, so the publisher
	// retries elsewhere (with the same idempotency key) sooner.
	flags := []string{"-snapshot-threshold", "100", "-trailing-logs", strconv.Itoa(trailing), "-snapshot-interval", "1s",
		"-publish-timeout", "3s", "-shutdown-timeout", "10s"}
	joinArgs := func(n *node) []string {
		var seeds []string
		for _, o := range nodes {
			if o != n {
				seeds = append(seeds, o.gossip)
			}
		}
		return append([]string{"-join", strings.Join(seeds, ",")}, flags...)
	}
	nodes[0].start(t, b.old, flags...)
	eventually(t, startTimeout, "n1 bootstraps", func() error {
		nodes[0].alive(t)
		s, err := nodes[0].status()
		if err == nil && (s.Node.State != "Leader" || s.Stream.Epoch == "") {
			err = fmt.Errorf("state %s, epoch %q", s.Node.State, s.Stream.Epoch)
		}
		return err
	})
	for _, n := range nodes[1:] {
		n.start(t, b.old, joinArgs(n)...)
	}
	for _, n := range nodes {
		eventually(t, startTimeout, n.name+" is a caught-up voter", func() error { n.alive(t); return clusterReady(n, nodes) })
	}

	// The subscriber starts on n3, replaced last, and resumes on the others.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sub, err := client.Dial(ctx, client.Config{
		URL:    nodes[2].url() + "/hubs/" + hub + "?user=sub",
		URLs:   []string{nodes[0].url() + "/hubs/" + hub + "?user=sub", nodes[1].url() + "/hubs/" + hub + "?user=sub"},
		Resume: true, ResumeTimeout: 30 * time.Second,
		OnEvent: func(ev client.Event) { t.Logf("subscriber: %+v", ev) },
	})
	if err != nil {
		t.Fatalf("dial n3: %v", err)
	}
	defer func() { sub.Close(); <-sub.Done() }() // no OnEvent after the test
	// A first call gives the connection a resume position before any
	// broadcast (client/doc.go, "Resume").
	if _, err := sub.Invoke(ctx, "JoinGroup", "subscribers"); err != nil {
		t.Fatalf("JoinGroup: %v", err)
	}
	var (
		gotMu sync.Mutex
		got   []tick
		bad   []string
	)
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for m := range sub.Messages() {
			var n int
			if m.Target != "tick" || len(m.Arguments) != 1 || json.Unmarshal(m.Arguments[0], &n) != nil {
				gotMu.Lock()
				bad = append(bad, fmt.Sprintf("%s %s %q", m.Cursor, m.Target, m.Arguments))
				gotMu.Unlock()
				continue
			}
			gotMu.Lock()
			got = append(got, tick{n: n, cursor: m.Cursor})
			gotMu.Unlock()
		}
	}()

	// The publisher starts on n1 and fails over to the next node when its
	// node goes away.
	pub := &publisher{nodes: nodes, every: 20 * time.Millisecond, timeout: 20 * time.Second, acked: map[int]string{}}
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pub.run(pubCtx) }()
	defer func() { stopPub(); <-pubDone }()
	pub.waitMore(t, 50)
	oldFormat, err := recordedFormat(nodes)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the old cluster's log format: %d; this build writes %d (fsm.LogFormat)", oldFormat, fsm.LogFormat)
	if oldFormat > fsm.LogFormat {
		t.Fatalf("the old release recorded log format %d, newer than this build's %d", oldFormat, fsm.LogFormat)
	}

	for k, i := range []int{1, 0, 2} {
		n := nodes[i]
		leader, err := leaderOf(nodes)
		if err != nil {
			t.Fatal(err)
		}
		s, err := n.status()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("replacing %s, at log index %d; leader %s; %d sends acknowledged so far", n.name, s.Node.LastLogIndex, leader.name, pub.ackedCount())
		n.stop(t)
		pub.waitMore(t, 20) // the cluster commits without it
		// Until the leader has compacted its log past what the stopped
		// node holds, so that it catches up from a snapshot (written by
		// whichever build leads), not only from log entries. Entries
		// appended between the status read and the exit are few: the
		// margin covers them.
		const margin = 30
		eventually(t, startTimeout, "the leader compacts past "+n.name+"'s log", func() error {
			leader, err := leaderOf(nodes)
			if err != nil {
				return err
			}
			snap, err := newestSnapshot(leader.data)
			if err != nil {
				return err
			}
			if snap <= s.Node.LastLogIndex+trailing+margin {
				return fmt.Errorf("%s's newest snapshot at %d", leader.name, snap)
			}
			return nil
		})
		n.start(t, b.cur, joinArgs(n)...)
		eventually(t, startTimeout, n.name+" on the new build is ready", func() error { n.alive(t); return ready(n) })
		eventually(t, startTimeout, n.name+" on the new build is a caught-up voter", func() error { n.alive(t); return clusterReady(n, nodes) })
		pub.waitMore(t, 50) // the mixed cluster commits
		if k < 2 {
			// Old builds still vote: the format must stay where it was,
			// or they would stop at the first entry of the new one.
			f, err := recordedFormat(nodes)
			if err != nil {
				t.Fatal(err)
			}
			if f != oldFormat {
				t.Fatalf("log format %d recorded while %d node(s) of the old build run; want %d until all run the new build", f, 2-k, oldFormat)
			}
		}
	}
	// Every node runs the new build: a leader records the new format.
	eventually(t, startTimeout, fmt.Sprintf("log format %d recorded", fsm.LogFormat), func() error {
		f, err := recordedFormat(nodes)
		if err == nil && f != fsm.LogFormat {
			err = fmt.Errorf("log format %d recorded, want %d", f, fsm.LogFormat)
		}
		return err
	})
	if oldFormat < fsm.LogFormat {
		t.Logf("log format raised from %d to %d once every node ran the new build", oldFormat, fsm.LogFormat)
	} else {
		t.Logf("the old release already wrote log format %d: nothing to raise", fsm.LogFormat)
	}
	stopPub()
	<-pubDone

	pub.mu.Lock()
	acked, unknown, retries, lastSent := pub.acked, pub.unknown, pub.retries, pub.lastSent
	pub.mu.Unlock()
	t.Logf("publisher: %d acknowledged, %d unknown %v, %d retries", len(acked), len(unknown), unknown, retries)
	if len(unknown) > 0 {
		t.Errorf("sends without an answer after %v of retries: %v", pub.timeout, unknown)
	}

	// Wait for the subscriber to receive the last acknowledged send.
	lastAcked := 0
	for n := range acked {
		lastAcked = max(lastAcked, n)
	}
	eventually(t, startTimeout, "the subscriber receives the last acknowledged send", func() error {
		gotMu.Lock()
		defer gotMu.Unlock()
		if len(got) > 0 && got[len(got)-1].n >= lastAcked {
			return nil
		}
		select {
		case <-subDone:
			t.Fatalf("the subscriber ended: %v", sub.Err())
		default:
		}
		return fmt.Errorf("%d received; waiting for #%d", len(got), lastAcked)
	})

	gotMu.Lock()
	defer gotMu.Unlock()
	if len(bad) > 0 {
		t.Errorf("unexpected messages: %q", bad)
	}
	// Exactly once and in cursor order: numbers and cursors both strictly
	// increase (the publisher sends one at a time), and every acknowledged
	// number is there, at the cursor its send answered.
	seen := map[int]string{}
	var prevEpoch string
	var prevIdx uint64
	var prevOff uint32
	for i, m := range got {
		if c, dup := seen[m.n]; dup {
			t.Errorf("#%d delivered twice: at %s and %s", m.n, c, m.cursor)
		}
		seen[m.n] = m.cursor
		epoch, idx, off, err := client.ParseCursor(m.cursor)
		if err != nil {
			t.Errorf("#%d: cursor %q: %v", m.n, m.cursor, err)
			continue
		}
		if i > 0 {
			if epoch != prevEpoch || idx < prevIdx || (idx == prevIdx && off <= prevOff) {
				t.Errorf("#%d at %s does not come after %s", m.n, m.cursor, got[i-1].cursor)
			}
			if m.n <= got[i-1].n {
				t.Errorf("#%d delivered after #%d", m.n, got[i-1].n)
			}
		}
		prevEpoch, prevIdx, prevOff = epoch, idx, off
		if m.n > lastSent {
			t.Errorf("#%d delivered but never sent", m.n)
		}
	}
	missing := 0
	for n, c := range acked {
		d, ok := seen[n]
		switch {
		case !ok:
			missing++
			if missing <= 10 {
				t.Errorf("acknowledged #%d (cursor %s) never delivered", n, c)
			}
		case d != c:
			t.Errorf("acknowledged #%d at cursor %s, delivered at %s", n, c, d)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged sends never delivered", missing, len(acked))
	}
	st := sub.Stats()
	t.Logf("subscriber: %d received, stats %+v", len(got), st)
	if st.Duplicates != 0 || st.Resets != 0 {
		t.Errorf("subscriber: %d duplicates dropped, %d resets; want none", st.Duplicates, st.Resets)
	}
	if st.Resumes == 0 {
		t.Errorf("the subscriber never resumed: its node was not replaced under it")
	}

	// The three nodes, all on the new build, agree.
	eventually(t, startTimeout, "the nodes agree", func() error {
		var first status
		for i, n := range nodes {
			n.alive(t)
			s, err := n.status()
			if err != nil {
				return err
			}
			if i == 0 {
				first = s
				continue
			}
			if s.Stream.LastCursor != first.Stream.LastCursor || s.Stream.Digest != first.Stream.Digest {
				return fmt.Errorf("%s at %s digest %s, %s at %s digest %s", nodes[0].name, first.Stream.LastCursor,
					first.Stream.Digest, n.name, s.Stream.LastCursor, s.Stream.Digest)
			}
		}
		return nil
	})
}
