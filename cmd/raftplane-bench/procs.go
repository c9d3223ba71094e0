package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftplane/raftplane/internal/testnet"
)

// Bounds of the cluster's life cycle.
const (
	buildTimeout   = 5 * time.Minute
	readyTimeout   = 30 * time.Second // one node's /api/v1/status
	clusterTimeout = 60 * time.Second // all nodes voters (or 3 voters)
	stopTimeout    = 20 * time.Second // SIGTERM, then SIGKILL
)

// clkTck is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100
// on every Linux architecture Go supports (the kernel converts to it).
const clkTck = 100

// node is one raftplane process the tool started (or, with -targets, only
// a URL: cmd is nil).
type node struct {
	name               string
	url                string // http://127.0.0.1:PORT
	httpAddr, gossip   string
	dir                string
	cmd                *exec.Cmd
	exited             chan struct{}
	logPath            string
	killed             bool
	cpuAtKill          float64
	cpuAtKillValid     bool
	mu                 sync.Mutex
	raftAddr, dataPath string
	debugURL           string // -debug-http of a node started with profiling
}

func (n *node) pid() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

func (n *node) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// env is where a scenario runs: the nodes' URLs and, when the tool started
// them, their processes.
type env struct {
	nodes  []*node
	root   string // temp dir holding the nodes' data, "" with -targets
	own    bool   // the tool started the nodes
	client *http.Client
	logw   io.Writer
	prof   *profiler // nil unless -profile
}

// targetsEnv uses running nodes.
func targetsEnv(targets []string, logw io.Writer) *env {
	e := &env{client: &http.Client{Timeout: 5 * time.Second}, logw: logw}
	for i, t := range targets {
		t = strings.TrimRight(strings.TrimSpace(t), "/")
		if !strings.Contains(t, "://") {
			t = "http://" + t
		}
		e.nodes = append(e.nodes, &node{name: fmt.Sprintf("n%d", i+1), url: t})
	}
	return e
}

// resolveBin finds the raftplane binary: -bin, else ./raftplane next to this
// executable, else go build ./cmd/raftplane of the module the current
// directory is in, into tmp. It returns the path and, when it built one,
// the temp dir to remove.
func resolveBin(ctx context.Context, bin string, logw io.Writer) (string, string, error) {
	if bin != "" {
		p, err := filepath.Abs(bin)
		if err != nil {
			return "", "", err
		}
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("-bin: %w", err)
		}
		return p, "", nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "raftplane")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, "", nil
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", "", errors.New("no -bin, no ./raftplane next to the tool and no go command to build one")
	}
	tmp, err := os.MkdirTemp("", "raftplane-bench-bin-")
	if err != nil {
		return "", "", err
	}
	out := filepath.Join(tmp, "raftplane")
	bctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	fmt.Fprintln(logw, "raftplane-bench: building github.com/raftplane/raftplane/cmd/raftplane")
	cmd := exec.CommandContext(bctx, goBin, "build", "-o", out, "github.com/raftplane/raftplane/cmd/raftplane")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", "", fmt.Errorf("go build ./cmd/raftplane (run from inside the module, or pass -bin): %v\n%s", err, b)
	}
	return out, tmp, nil
}

// pickAddrs is freeAddrs; a test makes it hand out a taken port.
var pickAddrs = freeAddrs

// freeAddrs returns n distinct 127.0.0.1 ports that were free a moment ago,
// from below the kernel's ephemeral range where the system has one
// (internal/testnet), so no outgoing connection takes one before the node
// binds it.
func freeAddrs(n int) ([]string, error) {
	out := make([]string, 0, n)
	for range n {
		p, err := testnet.Free()
		if err != nil {
			return nil, err
		}
		out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}
	return out, nil
}

// startCluster starts n nodes from bin: the first bootstraps, the others
// join it by gossip. It waits until the cluster has min(n,3) voters, n
// members and a leader. On error the nodes already started are stopped.
func startCluster(ctx context.Context, bin string, n int, extra []string, profiling bool, logw io.Writer) (*env, error) {
	root, err := os.MkdirTemp("", "raftplane-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{root: root, own: true, client: &http.Client{Timeout: 5 * time.Second}, logw: logw}
	ok := false
	defer func() {
		if !ok {
			e.stop()
		}
	}()
	for i := range n {
		nd := &node{name: fmt.Sprintf("n%d", i+1)}
		e.nodes = append(e.nodes, nd)
		if err := e.startNode(nd, bin, extra, profiling); err != nil {
			return nil, err
		}
		if i == 0 { // the others join it: it must be up first
			if err := e.waitStarted(ctx, nd, bin, extra, profiling); err != nil {
				return nil, err
			}
		}
	}
	for _, nd := range e.nodes[1:] {
		if err := e.waitStarted(ctx, nd, bin, extra, profiling); err != nil {
			return nil, err
		}
	}
	if err := e.waitCluster(ctx, min(n, 3), n); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// portRetries is how often a node whose port was taken is started again on
// fresh ports.
const portRetries = 5

// waitStarted waits until nd answers. A port picked by freeAddrs is free
// only until someone binds it, and the kernel hands the same ports out to
// every process's outgoing connections too (CI saw a node's Raft port
// taken by another test package in the moment between): a node that exits
// with "address already in use" is started again on fresh ports, with a
// fresh data directory.
func (e *env) waitStarted(ctx context.Context, nd *node, bin string, extra []string, profiling bool) error {
	for attempt := 1; ; attempt++ {
		err := e.waitReady(ctx, nd)
		if err == nil || nd.running() || attempt > portRetries {
			return err
		}
		b, rerr := os.ReadFile(nd.logPath)
		if rerr != nil || !bytes.Contains(b, []byte("address already in use")) {
			return err
		}
		fmt.Fprintf(e.logw, "raftplane-bench: %s: a port was taken before it bound it; starting it again on fresh ports\n", nd.name)
		if err := e.startNode(nd, bin, extra, profiling); err != nil {
			return err
		}
	}
}

// startNode starts nd on fresh loopback ports, in a fresh data directory,
// joining the first node's gossip address unless it is the first node.
func (e *env) startNode(nd *node, bin string, extra []string, profiling bool) error {
	addrs, err := pickAddrs(4)
	if err != nil {
		return err
	}
	nd.httpAddr, nd.raftAddr, nd.gossip = addrs[0], addrs[1], addrs[2]
	nd.url = "http://" + nd.httpAddr
	nd.dir, err = os.MkdirTemp(e.root, nd.name+"-")
	if err != nil {
		return err
	}
	nd.dataPath = filepath.Join(nd.dir, "data")
	nd.logPath = nd.dir + ".log"
	args := []string{"-data", nd.dataPath, "-http", nd.httpAddr, "-raft", nd.raftAddr, "-gossip", nd.gossip,
		"-log-level", "warn", "-shutdown-timeout", "5s",
		// Every load client comes from this machine as one user.
		"-max-connections-per-ip", "0", "-max-connections-per-user", "0"}
	if first := e.nodes[0]; first != nd {
		args = append(args, "-join", first.gossip)
	}
	nd.debugURL = ""
	if profiling {
		nd.debugURL = "http://" + addrs[3]
		args = append(args, "-debug-http", addrs[3])
	}
	args = append(args, extra...)
	lf, err := os.Create(nd.logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = os.Environ()
	dieWithTool(cmd)
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("%s: start: %w", nd.name, err)
	}
	exited := make(chan struct{})
	nd.cmd, nd.exited = cmd, exited
	go func() {
		_ = cmd.Wait()
		lf.Close()
		close(exited)
	}()
	return nil
}

func (e *env) logTail(nd *node) string {
	b, err := os.ReadFile(nd.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\n" + nd.name + " log (tail):\n" + strings.Join(lines, "\n")
}

func (e *env) waitReady(ctx context.Context, nd *node) error {
	deadline := time.Now().Add(readyTimeout)
	last := ""
	for {
		st, err := e.getJSON(ctx, nd.url+"/api/v1/status")
		if err == nil && st != nil {
			return nil
		}
		if err != nil {
			last = err.Error()
		}
		if nd.cmd != nil && !nd.running() {
			return fmt.Errorf("%s exited while starting%s", nd.name, e.logTail(nd))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: /api/v1/status not ready within %v (last: %s)%s", nd.name, readyTimeout, last, e.logTail(nd))
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

type member struct {
	ID          string `json:"id"`
	HTTPAddr    string `json:"http_addr"`
	Suffrage    string `json:"suffrage"`
	Leader      bool   `json:"leader"`
	GossipState string `json:"gossip_state"`
}

func (e *env) members(ctx context.Context, url string) ([]member, error) {
	var out struct {
		Members []member `json:"members"`
	}
	if err := e.getInto(ctx, url+"/api/v1/cluster", &out); err != nil {
		return nil, err
	}
	return out.Members, nil
}

// waitCluster waits until the first node sees `voters` voters, `total`
// members in Raft and a leader.
func (e *env) waitCluster(ctx context.Context, voters, total int) error {
	deadline := time.Now().Add(clusterTimeout)
	last := ""
	for {
		ms, err := e.members(ctx, e.nodes[0].url)
		if err == nil {
			v, inRaft, leader := 0, 0, false
			for _, m := range ms {
				switch m.Suffrage {
				case "voter":
					v++
					inRaft++
				case "nonvoter":
					inRaft++
				}
				leader = leader || m.Leader
			}
			if v == voters && inRaft == total && leader {
				return nil
			}
			last = fmt.Sprintf("%d voters, %d in Raft, leader %t", v, inRaft, leader)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not formed within %v: want %d voters and %d members (last: %s)", clusterTimeout, voters, total, last)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// leader returns the index of the node that leads, as any live node sees
// it.
func (e *env) leader(ctx context.Context) (int, error) {
	var lastErr error
	for _, nd := range e.nodes {
		if nd.cmd != nil && !nd.running() {
			continue
		}
		ms, err := e.members(ctx, nd.url)
		if err != nil {
			lastErr = err
			continue
		}
		for _, m := range ms {
			if !m.Leader {
				continue
			}
			for i, x := range e.nodes {
				if x.httpAddr == m.HTTPAddr || strings.TrimPrefix(x.url, "http://") == m.HTTPAddr {
					return i, nil
				}
			}
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no node reports a leader")
	}
	return -1, lastErr
}

func (e *env) getJSON(ctx context.Context, url string) (map[string]any, error) {
	var out map[string]any
	err := e.getInto(ctx, url, &out)
	return out, err
}

func (e *env) getInto(ctx context.Context, url string, v any) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}

// localConnections reads hub.local_connections from a node's status.
func (e *env) localConnections(ctx context.Context, nd *node) (int, error) {
	var st struct {
		Hub struct {
			Local int `json:"local_connections"`
		} `json:"hub"`
	}
	if err := e.getInto(ctx, nd.url+"/api/v1/status", &st); err != nil {
		return 0, err
	}
	return st.Hub.Local, nil
}

// kill sends SIGKILL to a node and waits for it to exit, keeping its CPU
// time as of just before.
func (e *env) kill(nd *node) error {
	if nd.cmd == nil {
		return errors.New("not started by the tool")
	}
	nd.mu.Lock()
	if c, err := procCPU(nd.pid()); err == nil {
		nd.cpuAtKill, nd.cpuAtKillValid = c, true
	}
	nd.killed = true
	nd.mu.Unlock()
	if err := nd.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-nd.exited:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("did not exit within 10s of SIGKILL")
	}
}

// stop sends SIGTERM to every running node, SIGKILL after stopTimeout, and
// removes the temp dir.
func (e *env) stop() {
	var wg sync.WaitGroup
	for _, nd := range e.nodes {
		if !nd.running() {
			continue
		}
		wg.Add(1)
		go func(nd *node) {
			defer wg.Done()
			_ = nd.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-nd.exited:
			case <-time.After(stopTimeout):
				fmt.Fprintf(e.logw, "raftplane-bench: %s did not exit within %v of SIGTERM; killing it\n", nd.name, stopTimeout)
				_ = nd.cmd.Process.Kill()
				<-nd.exited
			}
		}(nd)
	}
	wg.Wait()
	if e.root != "" {
		if err := os.RemoveAll(e.root); err != nil {
			fmt.Fprintf(e.logw, "raftplane-bench: removing %s: %v\n", e.root, err)
		}
	}
}

// cpuTimes returns the CPU seconds of the tool and of every node it
// started (a killed node: as of just before the kill).
func (e *env) cpuTimes() map[string]float64 {
	out := map[string]float64{}
	if c, err := procCPU(os.Getpid()); err == nil {
		out["tool"] = c
	}
	for _, nd := range e.nodes {
		if nd.cmd == nil {
			continue
		}
		nd.mu.Lock()
		killed, at, valid := nd.killed, nd.cpuAtKill, nd.cpuAtKillValid
		nd.mu.Unlock()
		if killed {
			if valid {
				out[nd.name] = at
			}
			continue
		}
		if c, err := procCPU(nd.pid()); err == nil {
			out[nd.name] = c
		}
	}
	return out
}

// cpuDelta is after-before, in the order tool, n1, n2, ...
func (e *env) cpuDelta(before, after map[string]float64) []kv {
	names := []string{"tool"}
	for _, nd := range e.nodes {
		if nd.cmd != nil {
			names = append(names, nd.name)
		}
	}
	var out []kv
	for _, n := range names {
		a, okA := after[n]
		b, okB := before[n]
		if okA && okB {
			out = append(out, kv{n, a - b})
		}
	}
	return out
}

// procCPU is utime+stime of a process, in seconds, from /proc/<pid>/stat.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads fields 14 (utime) and 15 (stime) of a /proc/<pid>/stat
// line; the command name (field 2) may hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStatCPU(s string) (float64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed utime/stime in /proc stat")
	}
	return float64(ut+st) / clkTck, nil
}

// procRSS is VmRSS of a process, in bytes, from /proc/<pid>/status.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

func parseVmRSS(s string) (int64, error) {
	for _, line := range strings.Split(s, "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		return kb * 1024, nil
	}
	return 0, errors.New("no VmRSS line")
}

// raiseNoFile raises RLIMIT_NOFILE's soft limit to at least want (up to the
// hard limit). Child processes inherit it. It returns a note when it could
// not reach want.
func raiseNoFile(want uint64) string {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Sprintf("getrlimit NOFILE: %v", err)
	}
	if lim.Cur >= want {
		return ""
	}
	nl := lim
	nl.Cur = min(want, lim.Max)
	if want > lim.Max {
		// Only a privileged process may raise the hard limit; try.
		try := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try); err == nil {
			return ""
		}
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl); err != nil {
		return fmt.Sprintf("could not raise RLIMIT_NOFILE from %d to %d: %v", lim.Cur, want, err)
	}
	if nl.Cur < want {
		return fmt.Sprintf("RLIMIT_NOFILE is %d (hard limit), below the %d wanted: expect dial failures", nl.Cur, want)
	}
	return ""
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
