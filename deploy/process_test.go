package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftplane/raftplane/internal/testnet"
)

const (
	startTimeout = 60 * time.Second // a node answers and has a leader
	stopTimeout  = 30 * time.Second // SIGTERM, then SIGKILL (and a test error)
	pollEvery    = 50 * time.Millisecond
	hubName      = "chat"
	apiKey       = "deploy-test-api-key"
)

func freeAddr(t *testing.T) string { return testnet.Addr(t) }

// node is one raftplane process with a fixed identity: addresses, data
// folder, log file. It keeps them across restarts.
type node struct {
	name                string
	http, raft, gossip  string
	data, logPath       string
	key                 string   // the REST API key
	extra               []string // flags added to every start
	mu                  sync.Mutex
	proc                *exec.Cmd
	exited              chan struct{}
	stopping, unplanned bool
}

func newNode(t *testing.T, name string, extra ...string) *node {
	t.Helper()
	dir := t.TempDir()
	return &node{name: name, http: freeAddr(t), raft: freeAddr(t), gossip: freeAddr(t),
		data: filepath.Join(dir, "data"), logPath: filepath.Join(dir, name+".log"), key: apiKey, extra: extra}
}

func (n *node) url() string { return "http://" + n.http }

// start runs the binary as this node, with the flags every test node gets
// (-api-key, fast Raft timings are not used: the defaults are what
// operators run) and args.
func (n *node) start(t *testing.T, args ...string) {
	t.Helper()
	base := []string{"-data", n.data, "-http", n.http, "-raft", n.raft, "-gossip", n.gossip, "-api-key", apiKey}
	n.startRaw(t, needBinary(t), append(append(base, n.extra...), args...)...)
}

// startRaw runs b with exactly args, its output appended to the node's
// log. The process is stopped when the test ends.
func (n *node) startRaw(t *testing.T, b string, args ...string) {
	t.Helper()
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n==== %s %s %s\n", time.Now().Format(time.RFC3339Nano), b, strings.Join(args, " "))
	cmd := exec.Command(b, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("%s: start: %v", n.name, err)
	}
	exited := make(chan struct{})
	n.mu.Lock()
	n.proc, n.exited, n.stopping = cmd, exited, false
	n.mu.Unlock()
	// Owned by the process: it returns when the process exits, which stop,
	// kill or the cleanup bring about.
	go func() {
		err := cmd.Wait()
		f.Close()
		n.mu.Lock()
		if !n.stopping {
			n.unplanned = true
		}
		n.mu.Unlock()
		if err != nil {
			t.Logf("%s: pid %d exited: %v", n.name, cmd.Process.Pid, err)
		}
		close(exited)
	}()
	t.Logf("%s: started pid %d", n.name, cmd.Process.Pid)
	t.Cleanup(func() { n.stop(t) })
	dumpLogOnFailure(t, n)
}

// stop sends SIGTERM and waits; SIGKILL after stopTimeout is a test error.
func (n *node) stop(t *testing.T) {
	t.Helper()
	n.signal(t, syscall.SIGTERM)
}

// kill is kill -9: no goodbye to anyone.
func (n *node) kill(t *testing.T) {
	t.Helper()
	n.signal(t, syscall.SIGKILL)
}

func (n *node) signal(t *testing.T, sig syscall.Signal) {
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
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		t.Errorf("%s: did not exit within %v of %v; killed", n.name, stopTimeout, sig)
	}
}

// alive fails the test when the process ended on its own.
func (n *node) alive(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.unplanned {
		t.Fatalf("%s exited on its own (see its log)", n.name)
	}
}

var dumped sync.Map // *testing.T → set of logs already registered

// dumpLogOnFailure prints the node's log when the test fails (once per
// node and test).
func dumpLogOnFailure(t *testing.T, n *node) {
	key := fmt.Sprintf("%p/%s", t, n.logPath)
	if _, loaded := dumped.LoadOrStore(key, true); loaded {
		return
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		b, err := os.ReadFile(n.logPath)
		if err != nil {
			t.Logf("%s: no log: %v", n.name, err)
			return
		}
		const keep = 48 << 10
		if len(b) > keep {
			b = append([]byte("...\n"), b[len(b)-keep:]...)
		}
		t.Logf("==== log of %s\n%s", n.name, b)
	})
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// api calls n's REST API (path from /api/v1/ on) with its API key; out,
// when set, gets the JSON answer. Any status but 200 is an error.
func (n *node) api(method, path string, body, out any) error {
	url := n.url() + "/api/v1/" + path
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+n.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// status is what the tests read of GET /api/v1/status.
type status struct {
	Stream struct {
		Epoch        string `json:"epoch"`
		AppliedIndex uint64 `json:"applied_index"`
		LastCursor   string `json:"last_cursor"`
		FirstCursor  string `json:"first_cursor"`
		Cached       int    `json:"cached"`
		Digest       string `json:"digest"`
	} `json:"stream"`
	Node struct {
		NodeID   string `json:"node_id"`
		State    string `json:"state"`
		LeaderID string `json:"leader_id"`
		PeerTLS  bool   `json:"peer_tls"`
	} `json:"node"`
}

func (n *node) status() (status, error) {
	var s status
	err := n.api("GET", "status", nil, &s)
	return s, err
}

type member struct {
	ID          string `json:"id"`
	Suffrage    string `json:"suffrage"`
	GossipState string `json:"gossip_state"`
	Leader      bool   `json:"leader"`
}

func (n *node) members() ([]member, error) {
	var out struct {
		Members []member `json:"members"`
	}
	err := n.api("GET", "cluster", nil, &out)
	return out.Members, err
}

// waitLeader waits until the node answers, knows a leader and has a
// cluster id.
func (n *node) waitLeader(t *testing.T) status {
	t.Helper()
	var st status
	eventually(t, startTimeout, n.name+" to know a leader", func() error {
		n.alive(t)
		var err error
		if st, err = n.status(); err != nil {
			return err
		}
		if st.Node.LeaderID == "" || st.Stream.Epoch == "" {
			return fmt.Errorf("leader %q, cluster id %q", st.Node.LeaderID, st.Stream.Epoch)
		}
		return nil
	})
	return st
}

// waitVoters waits until n sees exactly the given number of voters, all
// alive.
func (n *node) waitVoters(t *testing.T, voters int) []member {
	t.Helper()
	var ms []member
	eventually(t, startTimeout, fmt.Sprintf("%s to see %d live voters", n.name, voters), func() error {
		var err error
		if ms, err = n.members(); err != nil {
			return err
		}
		v := 0
		for _, m := range ms {
			if m.Suffrage == "voter" && m.GossipState == "alive" {
				v++
			}
		}
		if v != voters {
			return fmt.Errorf("members %+v", ms)
		}
		return nil
	})
	return ms
}

// eventually polls cond until it returns nil, failing after timeout with
// its last error.
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

// send publishes to a group through n's REST API and returns the cursor.
func send(n *node, group string, arg any) (string, error) {
	var out struct {
		Cursor string `json:"cursor"`
	}
	err := n.api("POST", "hubs/"+hubName+"/groups/"+group, map[string]any{"target": "say", "arguments": []any{arg}}, &out)
	if err == nil && out.Cursor == "" {
		err = fmt.Errorf("no cursor")
	}
	return out.Cursor, err
}

// historyMsg is one message of a group's history.
type historyMsg struct {
	Cursor    string          `json:"cursor"`
	Target    string          `json:"target"`
	Arguments json.RawMessage `json:"arguments"`
}

// history returns every cached message sent to group, oldest first.
func history(n *node, group string) ([]historyMsg, error) {
	var all []historyMsg
	after := ""
	for {
		var page struct {
			Messages []historyMsg `json:"messages"`
			Next     string       `json:"next"`
		}
		path := "hubs/" + hubName + "/groups/" + group + "/messages?limit=1000"
		if after != "" {
			path += "&after=" + after
		}
		if err := n.api("GET", path, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		if len(page.Messages) < 1000 { // the page stopped at the end of the stream
			return all, nil
		}
		after = page.Next
	}
}

// groupMembers returns the connections in a group.
func groupMembers(n *node, group string) ([]string, error) {
	var out struct {
		Connections []string `json:"connections"`
	}
	err := n.api("GET", "hubs/"+hubName+"/groups/"+group, nil, &out)
	return out.Connections, err
}

// run runs the binary with args and returns its output; it fails the test
// on error.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(needBinary(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("raftplane %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("raftplane %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}
