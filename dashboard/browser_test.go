//go:build unix

package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftplane/raftplane/client"
	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/dashboard"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/gossip"
	"github.com/raftplane/raftplane/hub"
	"github.com/raftplane/raftplane/internal/testnet"
	"github.com/raftplane/raftplane/status"
)

// childEnv, when set, makes the test binary run one raftplane node (the
// JSON childSpec in it) instead of the tests: the nodes of the browser test
// are real processes, so one can be killed with SIGKILL.
const childEnv = "RAFTPLANE_DASHBOARD_TEST_NODE"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// childSpec is one node's addresses and settings.
type childSpec struct {
	ID, Data, HTTP, Raft, Gossip, APIKey string
	Join                                 []string
}

// runChild runs a node wired as raftplane wires one (fsm, gossip, cluster,
// hub, the dashboard beside the hub behind the API key) until SIGTERM.
func runChild(raw string) int {
	var cs childSpec
	if err := json.Unmarshal([]byte(raw), &cs); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		return 2
	}
	lg := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", cs.ID)
	fail := func(what string, err error) int {
		lg.Error(what, "err", err)
		return 1
	}
	machine, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		return fail("fsm", err)
	}
	gc := gossip.DefaultConfig()
	gc.BindAddr, gc.Label, gc.LAN = cs.Gossip, "raftplane", false
	gc.Meta = gossip.Meta{ID: cs.ID, RaftAddr: cs.Raft, HTTPAddr: cs.HTTP, Version: gossip.MetaVersion}
	gc.ProbeInterval, gc.ProbeTimeout, gc.GossipInterval = 200*time.Millisecond, 100*time.Millisecond, 20*time.Millisecond
	gc.SuspicionMult, gc.RetransmitMult, gc.PushPullInterval = 4, 4, 2*time.Second
	gc.Logger = lg
	agent, err := gossip.New(gc)
	if err != nil {
		return fail("gossip", err)
	}
	cc := cluster.DefaultConfig()
	cc.NodeID, cc.DataDir, cc.RaftBind, cc.Bootstrap = cs.ID, cs.Data, cs.Raft, len(cs.Join) == 0
	cc.HeartbeatTimeout, cc.ElectionTimeout, cc.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	cc.ReconcileInterval, cc.StabilizeTime, cc.NoSync = 200*time.Millisecond, 500*time.Millisecond, true
	cc.Members, cc.Logger = agent, lg
	node, err := cluster.New(cc, machine)
	if err != nil {
		return fail("cluster", err)
	}
	if err := node.Open(); err != nil {
		return fail("open", err)
	}
	if err := agent.UpdateMeta(func(m *gossip.Meta) { m.ClusterID, m.HasData = node.LocalClusterID(), node.HadState() }); err != nil {
		return fail("meta", err)
	}
	if err := agent.Start(); err != nil {
		return fail("gossip start", err)
	}
	if len(cs.Join) > 0 {
		agent.Join(cs.Join)
	}
	hc := hub.DefaultConfig()
	hc.NodeID, hc.APIKey, hc.Logger = cs.ID, cs.APIKey, lg
	hc.TokenSecretFunc = machine.Secret
	hc.Readiness = node
	hc.Cluster = node
	srv, err := hub.New(hc, node, machine)
	if err != nil {
		return fail("hub", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	err = node.WaitReady(ctx)
	cancel()
	if err != nil {
		return fail("ready", err)
	}
	srv.Start()
	dc := dashboard.DefaultConfig()
	dc.Hub, dc.Cluster, dc.Protect, dc.Logger = srv, node, srv.RequireAPIKey, lg
	dc.SampleInterval = 250 * time.Millisecond
	d, err := dashboard.New(dc)
	if err != nil {
		return fail("dashboard", err)
	}
	d.Start()
	mux := http.NewServeMux()
	mux.Handle("/dashboard", d.Handler())
	mux.Handle("/dashboard/", d.Handler())
	mux.Handle("/", srv)
	ln, err := net.Listen("tcp", cs.HTTP)
	if err != nil {
		return fail("listen", err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = hs.Close()
	_ = d.Close(sctx)
	_ = srv.Close(sctx)
	_ = agent.Leave(time.Second)
	_ = node.Close(sctx)
	_ = agent.Close()
	return 0
}

// inCI reports CI=true: tests that need Node or Chromium fail instead of
// skipping there.
func inCI() bool { return os.Getenv("CI") == "true" }

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if inCI() {
		t.Fatalf(format+" (CI=true: not skipping)", args...)
	}
	t.Skipf(format, args...)
}

// child is a running node process.
type child struct {
	spec   childSpec
	cmd    *exec.Cmd
	exited chan struct{}
}

// lineLog writes a child's output to the test log, line by line, until
// the test ends.
type lineLog struct {
	mu     sync.Mutex
	t      *testing.T
	prefix string
	buf    bytes.Buffer
	done   bool
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line)
			break
		}
		if !l.done {
			l.t.Log(l.prefix + ": " + strings.TrimSuffix(line, "\n"))
		}
	}
	return len(p), nil
}

func startChild(t *testing.T, cs childSpec) *child {
	t.Helper()
	raw, _ := json.Marshal(cs)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	out := &lineLog{t: t, prefix: cs.ID}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", cs.ID, err)
	}
	c := &child{spec: cs, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-c.exited
		}
		out.mu.Lock()
		out.done = true
		out.mu.Unlock()
	})
	return c
}

// kill ends the process as kill -9 does, and waits for its exit.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

// waitUntil polls cond until it holds, failing after testWait.
func waitUntil(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond) // polling against a deadline
	}
}

// TestDashboard_ChromiumCluster: the dashboard of a three-node cluster of
// real processes, in a real headless Chromium (Debian's, driven by
// playwright-core from interop/node_modules): it shows the three members,
// then a member killed with kill -9 as unreachable at the next polls. The
// screenshots are kept (the directory is in the log; RAFTPLANE_ARTIFACTS
// chooses it).
func TestDashboard_ChromiumCluster(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node not found: install Node.js to run the dashboard in Chromium")
	}
	modules, _ := filepath.Abs(filepath.Join("..", "interop", "node_modules"))
	if _, err := os.Stat(filepath.Join(modules, "playwright-core", "package.json")); err != nil {
		skipOrFail(t, "%s/playwright-core missing: run `cd interop && npm ci`", modules)
	}
	chrome := os.Getenv("CHROMIUM")
	if chrome == "" {
		if chrome, err = exec.LookPath("chromium"); err != nil {
			skipOrFail(t, "chromium not found: install Debian's chromium package or set CHROMIUM")
		}
	}
	shots := os.Getenv("RAFTPLANE_ARTIFACTS")
	if shots == "" {
		if shots, err = os.MkdirTemp("", "raftplane-dashboard-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	// The nodes get their ports before any binds one (testnet: never the
	// same port twice in this process).
	specs := make([]childSpec, 3)
	for i := range specs {
		specs[i] = childSpec{ID: "node" + strconv.Itoa(i+1), Data: t.TempDir(), HTTP: testnet.Addr(t), Raft: testnet.Addr(t),
			Gossip: testnet.Addr(t), APIKey: testAPIKey}
		if i > 0 {
			specs[i].Join = []string{specs[0].Gossip}
		}
	}
	nodes := make([]*child, 3)
	for i, cs := range specs {
		nodes[i] = startChild(t, cs)
		waitUntil(t, cs.ID+" ready", func() error {
			select {
			case <-nodes[i].exited:
				t.Fatalf("%s exited", cs.ID)
			default:
			}
			st, _, b := getQuiet("http://"+cs.HTTP+"/readyz", "")
			if st != 200 {
				return fmt.Errorf("/readyz: %d %s", st, b)
			}
			return nil
		})
	}
	waitUntil(t, "three voters", func() error {
		st, _, b := getQuiet("http://"+specs[0].HTTP+"/api/v1/cluster", testAPIKey)
		var cl struct {
			Members []status.Member `json:"members"`
		}
		if st != 200 || json.Unmarshal(b, &cl) != nil {
			return fmt.Errorf("/api/v1/cluster: %d %s", st, b)
		}
		voters := 0
		for _, m := range cl.Members {
			if m.Suffrage == "voter" && m.GossipState == "alive" {
				voters++
			}
		}
		if voters != 3 {
			return fmt.Errorf("%d alive voters: %s", voters, b)
		}
		return nil
	})

	// Clients on every node (node i+1 holds 3-i), and a steady trickle of
	// sends through node 1, so the page has connections and rates to show.
	conns := []string{}
	for i, cs := range specs {
		for k := range 3 - i {
			dialClient(t, "http://"+cs.HTTP+"/hubs/chat?user="+cs.ID+"-"+strconv.Itoa(k))
		}
		conns = append(conns, cs.ID+"="+strconv.Itoa(3-i))
	}
	sendLoop(t, "http://"+specs[0].HTTP+"/api/v1/hubs/chat")

	victim := nodes[2]
	killed := make(chan time.Time, 1)
	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/kill" {
			http.NotFound(w, r)
			return
		}
		victim.kill()
		select {
		case killed <- time.Now():
		default:
		}
		t.Logf("killed %s with SIGKILL", victim.spec.ID)
		_, _ = io.WriteString(w, victim.spec.ID)
	}))
	defer control.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, "--test", filepath.Join("testdata", "dashboard.test.mjs"))
	cmd.Env = append(os.Environ(),
		"PAGE_URL=http://"+specs[0].HTTP+"/dashboard?interval=500",
		"API_KEY="+testAPIKey,
		"VICTIM="+victim.spec.ID,
		"CONTROL_URL="+control.URL,
		"NODE_MODULES="+modules,
		"CHROMIUM="+chrome,
		"SHOTS="+shots,
		"CONNECTIONS="+strings.Join(conns, ","),
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("dashboard.test.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("node --test dashboard.test.mjs: %v", err)
	}
	select {
	case <-killed:
	default:
		t.Fatal("the page test never asked for the kill")
	}
	for _, name := range []string{"dashboard-3-nodes.png", "dashboard-node-killed.png"} {
		p := filepath.Join(shots, name)
		fi, err := os.Stat(p)
		if err != nil || fi.Size() == 0 {
			t.Fatalf("screenshot %s: %v", p, errors.Join(err, fmt.Errorf("size %d", sizeOf(fi))))
		}
		t.Logf("screenshot kept: %s (%d bytes)", p, fi.Size())
	}
}

// dialClient connects a client that reads everything until the test ends.
func dialClient(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: url})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range c.Messages() {
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
}

// sendLoop posts a message to url every 20 ms until the test ends; a send
// that fails (during an election) is not retried.
func sendLoop(t *testing.T, url string) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		hc := &http.Client{Timeout: 5 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"target":"tick","arguments":[`+strconv.Itoa(i)+`]}`))
			req.Header.Set("Authorization", "Bearer "+testAPIKey)
			if resp, err := hc.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return 0
	}
	return fi.Size()
}

// getQuiet is get without failing the test on a transport error (a node
// that is not listening yet).
func getQuiet(url, key string) (int, http.Header, []byte) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}
