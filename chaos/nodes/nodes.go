// Package nodes owns the chaos suite's raftplane processes: it starts the
// real binary once per node (inside the node's network namespace, through a
// Launcher), kills, pauses, wipes and restarts them, reads their status, and
// notices a node that exits when no fault killed it.
package nodes

import (
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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftplane/raftplane/chaos/history"
	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/status"
)

// Launcher builds the command that runs name with args as node i (for
// example "ip netns exec ch<i> name args...", or plain exec on loopback).
// The started process must be the node itself, so that signals reach it.
type Launcher func(i int, name string, args ...string) *exec.Cmd

// Ports every node listens on, at its own IP.
const (
	HTTPPort   = 5000
	RaftPort   = 7000
	GossipPort = 7946
)

// Config describes the cluster to run.
type Config struct {
	Bin    string             // the raftplane binary
	N      int                // number of nodes
	Dir    string             // run directory: node data and logs go under it
	IP     func(i int) string // node i's address
	Launch Launcher
	// Flags are extra flags for every node (timings, limits).
	Flags []string
	// DataDir, if set, is node i's data folder (a folder on a disk of its
	// own, for the disk faults); by default <Dir>/n<i>/data.
	DataDir func(i int) string
	Rec     *history.Recorder
}

// Node is one raftplane process slot. Its process may be running, paused,
// killed or not started yet; the slot keeps its address and data folder.
type Node struct {
	Index int
	Name  string // n0, n1, ... (the harness's name; the Raft id is in Status)
	IP    string
	Data  string
	Log   string
	// Clock is the file the node's test clock hook reads its offset from
	// (cluster.ClockFileEnv): SetClock writes it.
	Clock string
	// DiskFail is the file whose presence makes the node's disk writes
	// fail (cluster.DiskFailFileEnv): SetDiskFail makes and removes it.
	DiskFail string

	c       *Cluster
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	running bool
	paused  bool
	// expect is set before the harness kills the process, so the exit
	// watcher does not report it.
	expect bool
	starts int
	wipes  int
	offset time.Duration // the clock offset SetClock last wrote
}

// Cluster is the set of nodes.
type Cluster struct {
	cfg   Config
	Nodes []*Node
	http  *http.Client
}

// New prepares the slots; nothing is started.
func New(cfg Config) (*Cluster, error) {
	if cfg.N < 1 || cfg.Bin == "" || cfg.Launch == nil || cfg.IP == nil || cfg.Rec == nil {
		return nil, errors.New("nodes: incomplete Config")
	}
	c := &Cluster{cfg: cfg, http: &http.Client{Timeout: 2 * time.Second}}
	for i := 0; i < cfg.N; i++ {
		name := fmt.Sprintf("n%d", i)
		n := &Node{Index: i, Name: name, IP: cfg.IP(i), c: c,
			Data: filepath.Join(cfg.Dir, name, "data"), Log: filepath.Join(cfg.Dir, name+".log"),
			Clock: filepath.Join(cfg.Dir, name, "clock"), DiskFail: filepath.Join(cfg.Dir, name, "diskfail")}
		if cfg.DataDir != nil {
			n.Data = cfg.DataDir(i)
		}
		for _, d := range []string{filepath.Dir(n.Data), filepath.Dir(n.Clock)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
		}
		c.Nodes = append(c.Nodes, n)
	}
	return c, nil
}

// HTTPAddr is node i's client address.
func (n *Node) HTTPAddr() string { return net.JoinHostPort(n.IP, fmt.Sprint(HTTPPort)) }

// URL is node i's base URL.
func (n *Node) URL() string { return "http://" + n.HTTPAddr() }

func (n *Node) gossipAddr() string { return net.JoinHostPort(n.IP, fmt.Sprint(GossipPort)) }

// Start starts every node: n0 first, alone, so that it bootstraps the
// cluster; the others join through every other node's gossip address.
func (c *Cluster) Start(ctx context.Context) error { return c.StartFirst(ctx, len(c.Nodes)) }

// StartFirst starts the first k nodes as Start does and leaves the others
// stopped: spare slots, with their own addresses, that the membership
// faults start as new members.
func (c *Cluster) StartFirst(ctx context.Context, k int) error {
	if k < 1 || k > len(c.Nodes) {
		return fmt.Errorf("nodes: start %d of %d nodes", k, len(c.Nodes))
	}
	if err := c.Nodes[0].Start(); err != nil {
		return err
	}
	if err := c.WaitLeader(ctx, c.Nodes[:1]); err != nil {
		return fmt.Errorf("n0 did not bootstrap: %w", err)
	}
	for _, n := range c.Nodes[1:k] {
		if err := n.Start(); err != nil {
			return err
		}
	}
	return nil
}

// Start runs the node's process (again), on the same data folder. Every
// start but the first cluster start of n0 joins through the other nodes, so
// a node never bootstraps a second cluster.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running {
		return fmt.Errorf("%s is already running", n.Name)
	}
	args := []string{
		"-data", n.Data,
		"-http", n.HTTPAddr(),
		"-raft", net.JoinHostPort(n.IP, fmt.Sprint(RaftPort)),
		"-gossip", n.gossipAddr(),
		"-log-level", "info",
		// The sandbox's hosts are private namespaces of this test: trusted.
		// (The stranger suite proves the peer TLS set-up.)
		"-insecure",
	}
	if n.Index != 0 || n.starts > 0 || n.wipes > 0 {
		var seeds []string
		for _, o := range n.c.Nodes {
			if o != n {
				seeds = append(seeds, o.gossipAddr())
			}
		}
		args = append(args, "-join", strings.Join(seeds, ","))
	}
	args = append(args, n.c.cfg.Flags...)
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "\n==== %s start #%d: %s %s\n", time.Now().Format(time.RFC3339Nano), n.starts+1, n.c.cfg.Bin, strings.Join(args, " "))
	cmd := n.c.cfg.Launch(n.Index, n.c.cfg.Bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The clock nemeses step the node's clock through this file; the node
	// reads it every cluster.ClockPoll (and at start).
	cmd.Env = append(os.Environ(), cluster.ClockFileEnv+"="+n.Clock, cluster.DiskFailFileEnv+"="+n.DiskFail)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	n.cmd, n.running, n.paused, n.expect = cmd, true, false, false
	n.starts++
	n.exited = make(chan struct{})
	go n.watch(cmd, logf, n.exited)
	return nil
}

// watch waits for the process; an exit the harness did not cause is an
// anomaly.
func (n *Node) watch(cmd *exec.Cmd, logf io.Closer, exited chan struct{}) {
	err := cmd.Wait()
	logf.Close()
	n.mu.Lock()
	expected := n.expect
	if n.cmd == cmd {
		n.running, n.paused = false, false
	}
	n.mu.Unlock()
	close(exited)
	if !expected {
		n.c.cfg.Rec.Add(history.Event{P: "harness", Type: history.Anomaly, Kind: "exit", Node: n.Name,
			Text: fmt.Sprintf("%s exited without a fault killing it: %v (see %s)", n.Name, err, n.Log)})
	}
}

// Running reports whether the process is up (possibly paused).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running
}

// Kill sends SIGKILL (continuing a paused process is not needed: SIGKILL
// ends stopped processes too) and waits for the exit.
func (n *Node) Kill() error {
	n.mu.Lock()
	if !n.running {
		n.mu.Unlock()
		return nil
	}
	n.expect = true
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not exit after SIGKILL", n.Name)
	}
}

// Terminate asks the node to shut down gracefully (SIGTERM) and waits.
func (n *Node) Terminate(timeout time.Duration) error {
	n.mu.Lock()
	if !n.running {
		n.mu.Unlock()
		return nil
	}
	n.expect = true
	cmd, exited, paused := n.cmd, n.exited, n.paused
	n.mu.Unlock()
	if paused {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", n.Name, timeout)
	}
}

// Pause stops the process (SIGSTOP), as a long GC pause or a frozen VM.
func (n *Node) Pause() error { return n.signalPaused(syscall.SIGSTOP, true) }

// Continue resumes a paused process (SIGCONT).
func (n *Node) Continue() error { return n.signalPaused(syscall.SIGCONT, false) }

func (n *Node) signalPaused(sig syscall.Signal, paused bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running || n.paused == paused {
		return nil
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return err
	}
	n.paused = paused
	return nil
}

// Paused reports whether the process is stopped by Pause.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// Wipe kills the node and deletes its data folder; the next Start makes
// it a new member (a new Raft id) that joins through the others.
func (n *Node) Wipe() error {
	if err := n.Kill(); err != nil {
		return err
	}
	n.mu.Lock()
	n.wipes++
	n.mu.Unlock()
	return os.RemoveAll(n.Data)
}

// SetDiskFail makes the node's disk writes fail (on) or go through again,
// through its test hook's file; the node sees it within cluster.ClockPoll.
// While they fail the node may stop by itself, and that is no anomaly:
// hashicorp/raft panics when it cannot save its term or vote (a fail-stop),
// which an election on a node whose every write fails comes to.
func (n *Node) SetDiskFail(on bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if on {
		n.expect = true
	}
	if !on {
		if err := os.Remove(n.DiskFail); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	return os.WriteFile(n.DiskFail, nil, 0o644)
}

// SetClock sets the offset of the node's clock (the test hook of
// cluster/clock.go: it moves the time the node stamps commands with, as an
// NTP step would), running or not; 0 puts the clock right. It takes effect
// within cluster.ClockPoll.
func (n *Node) SetClock(d time.Duration) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d == 0 {
		if err := os.Remove(n.Clock); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		// Written aside and renamed, so the node never reads half a file.
		tmp := n.Clock + ".tmp"
		if err := os.WriteFile(tmp, []byte(d.String()+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, n.Clock); err != nil {
			return err
		}
	}
	n.offset = d
	return nil
}

// ClockOffset is the offset SetClock last set.
func (n *Node) ClockOffset() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.offset
}

// Status is what the harness reads from GET /api/v1/status.
type Status struct {
	Node   status.Node   `json:"node"`
	Stream status.Stream `json:"stream"`
}

// Ready asks the node's GET /readyz: the HTTP status and the body (the
// reason when it is not ready).
func (n *Node) Ready(ctx context.Context) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", n.URL()+"/readyz", nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := n.c.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// Status asks the node for its status.
func (n *Node) Status(ctx context.Context) (Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, "GET", n.URL()+"/api/v1/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := n.c.http.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return st, fmt.Errorf("%s status: %s: %s", n.Name, resp.Status, b)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// Members asks the node for the cluster's members as it sees them (GET
// /api/v1/cluster: the Raft configuration with each server's suffrage, and
// gossip's members).
func (n *Node) Members(ctx context.Context) ([]status.Member, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", n.URL()+"/api/v1/cluster", nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s cluster: %s: %s", n.Name, resp.Status, b)
	}
	var out struct {
		Members []status.Member `json:"members"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	return out.Members, err
}

// Started reports whether the node's process was ever started (a spare
// slot that never ran has no data).
func (n *Node) Started() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.starts > 0
}

// Leader returns the node that every reachable running node agrees is the
// leader (by Raft id), or nil.
func (c *Cluster) Leader(ctx context.Context) *Node {
	ids := map[string]*Node{}
	leaders := map[string]int{}
	for _, n := range c.Nodes {
		if !n.Running() || n.Paused() {
			continue
		}
		st, err := n.Status(ctx)
		if err != nil {
			continue
		}
		ids[st.Node.NodeID] = n
		if st.Node.LeaderID != "" {
			leaders[st.Node.LeaderID]++
		}
	}
	var best string
	for id, k := range leaders {
		if best == "" || k > leaders[best] {
			best = id
		}
	}
	return ids[best]
}

// WaitLeader waits until every node of among (all running nodes if nil)
// reports the same leader.
func (c *Cluster) WaitLeader(ctx context.Context, among []*Node) error {
	if among == nil {
		among = c.Nodes
	}
	var last error
	for {
		leader, ok := "", true
		for _, n := range among {
			if !n.Running() {
				continue
			}
			st, err := n.Status(ctx)
			if err != nil || st.Node.LeaderID == "" || (leader != "" && st.Node.LeaderID != leader) {
				ok, last = false, fmt.Errorf("%s: leader %q, err %v", n.Name, st.Node.LeaderID, err)
				break
			}
			leader = st.Node.LeaderID
		}
		if ok && leader != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no agreed leader: %v (%w)", last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Converged waits until every running node reports the same last cursor
// and applied index, and returns their statuses by node name.
func (c *Cluster) Converged(ctx context.Context) (map[string]Status, error) {
	var last string
	for {
		out := map[string]Status{}
		ok := true
		var ref *Status
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			st, err := n.Status(ctx)
			if err != nil {
				ok, last = false, err.Error()
				break
			}
			out[n.Name] = st
			if ref == nil {
				s := st
				ref = &s
			} else if st.Stream.LastCursor != ref.Stream.LastCursor || st.Stream.AppliedIndex != ref.Stream.AppliedIndex || st.Node.CommitIndex > st.Node.AppliedIndex {
				ok, last = false, fmt.Sprintf("%s at %s/%d, others at %s/%d", n.Name, st.Stream.LastCursor, st.Stream.AppliedIndex, ref.Stream.LastCursor, ref.Stream.AppliedIndex)
				break
			}
		}
		if ok && ref != nil {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("nodes did not converge: %s (%w)", last, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Stop kills every node (the final teardown).
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		_ = n.Kill()
	}
}

// ScanLogs reports every node log line that shows a panic or a data race,
// but for the fail-stop of a node whose writes the disk-fail nemesis made
// fail: hashicorp/raft panics when it cannot save its term or vote, and
// the panic names the injected error (cluster.DiskFailFileEnv).
func (c *Cluster) ScanLogs() []string {
	var bad []string
	for _, n := range c.Nodes {
		b, err := os.ReadFile(n.Log)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "panic:") && strings.Contains(line, cluster.DiskFailFileEnv) {
				continue // the injected fault's fail-stop
			}
			if strings.HasPrefix(line, "panic:") || strings.Contains(line, "WARNING: DATA RACE") || strings.HasPrefix(line, "fatal error:") {
				bad = append(bad, n.Name+": "+line)
			}
		}
	}
	return bad
}
