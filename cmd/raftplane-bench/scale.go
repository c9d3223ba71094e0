package main

// The scale scenario: what one committed message costs each node, so that
// runs at -nodes 3, 5, 7, 9 show how the cost grows with the cluster
// (docs/scaling.md). The nodes beyond 3 are non-voters, which receive the
// whole log from the leader like voters do.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ssTimeout bounds one run of ss(8).
const ssTimeout = 10 * time.Second

// sockStat is one established TCP socket as ss -tinp reports it.
type sockStat struct {
	pid               int
	local, peer       string
	localPort, peerPt int
	sent, received    uint64
}

var (
	ssPidRE  = regexp.MustCompile(`pid=(\d+)`)
	ssSentRE = regexp.MustCompile(`\bbytes_sent:(\d+)`)
	ssRecvRE = regexp.MustCompile(`\bbytes_received:(\d+)`)
)

func addrPort(a string) int {
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return -1
	}
	p, err := strconv.Atoi(a[i+1:])
	if err != nil {
		return -1
	}
	return p
}

// parseSS reads the output of `ss -tinpH`: a socket line (state, queues,
// local and peer address, users:((name,pid=N,fd=M))) followed by an
// indented line of TCP info holding bytes_sent and bytes_received (each
// left out by ss while 0). Only ESTAB sockets with a pid are kept.
func parseSS(out string) []sockStat {
	var socks []sockStat
	var cur *sockStat
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			cur = nil
			f := strings.Fields(line)
			if len(f) < 6 || f[0] != "ESTAB" {
				continue
			}
			m := ssPidRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			pid, _ := strconv.Atoi(m[1])
			socks = append(socks, sockStat{pid: pid, local: f[3], peer: f[4], localPort: addrPort(f[3]), peerPt: addrPort(f[4])})
			cur = &socks[len(socks)-1]
			continue
		}
		if cur == nil {
			continue
		}
		if m := ssSentRE.FindStringSubmatch(line); m != nil {
			cur.sent, _ = strconv.ParseUint(m[1], 10, 64)
		}
		if m := ssRecvRE.FindStringSubmatch(line); m != nil {
			cur.received, _ = strconv.ParseUint(m[1], 10, 64)
		}
	}
	return socks
}

// procIO is /proc/<pid>/io: rchar and wchar count every read and write
// syscall's bytes (sockets and files alike), write_bytes what reached the
// block layer.
type procIO struct {
	rchar, wchar, writeBytes uint64
}

func parseProcIO(s string) (procIO, error) {
	var io procIO
	seen := 0
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return io, fmt.Errorf("/proc io: %q: %v", line, err)
		}
		switch k {
		case "rchar":
			io.rchar, seen = n, seen+1
		case "wchar":
			io.wchar, seen = n, seen+1
		case "write_bytes":
			io.writeBytes, seen = n, seen+1
		}
	}
	if seen != 3 {
		return io, errors.New("/proc io: rchar, wchar or write_bytes missing")
	}
	return io, nil
}

// parseSysCPU reads /proc/stat: the busy and total ticks of every CPU
// (its first line; idle and iowait are not busy) and how many CPUs it sums
// (the cpuN lines), so that busy/total scales to cores.
func parseSysCPU(s string) (busy, total uint64, cpus int, err error) {
	lines := strings.Split(s, "\n")
	f := strings.Fields(lines[0])
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, 0, errors.New("/proc/stat: no cpu line")
	}
	for i, x := range f[1:] {
		v, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("/proc/stat: %q: %v", x, err)
		}
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "cpu") {
			cpus++
		}
	}
	return busy, total, cpus, nil
}

// scaleSample is what the scenario reads of the machine at the start and
// the end of the window (the sockets are followed by a sockTracker).
type scaleSample struct {
	at             time.Time
	cpu            map[string]float64 // cpuTimes: tool and nodes, seconds
	io             map[int]procIO     // by node index
	sysBusy, sysTo uint64
	cpus           int
}

func (e *env) sampleScale() scaleSample {
	s := scaleSample{at: time.Now(), cpu: e.cpuTimes(), io: map[int]procIO{}}
	for i, nd := range e.nodes {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(nd.pid()) + "/io"); err == nil {
			if v, err := parseProcIO(string(b)); err == nil {
				s.io[i] = v
			}
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		s.sysBusy, s.sysTo, s.cpus, _ = parseSysCPU(string(b))
	}
	return s
}

// raftSockets lists the established sockets of the nodes (pids) on a Raft
// port, keyed by pid and addresses.
func raftSockets(ctx context.Context, pids, ports map[int]bool) (map[string]sockStat, error) {
	sctx, cancel := context.WithTimeout(ctx, ssTimeout)
	defer cancel()
	out, err := exec.CommandContext(sctx, "ss", "-tinpH").Output()
	if err != nil {
		return nil, fmt.Errorf("ss -tinpH: %w", err)
	}
	m := map[string]sockStat{}
	for _, k := range parseSS(string(out)) {
		if pids[k.pid] && (ports[k.localPort] || ports[k.peerPt]) {
			m[strconv.Itoa(k.pid)+" "+k.local+" "+k.peer] = k
		}
	}
	return m, nil
}

// sockTracker follows the Raft sockets through the window by sampling
// them: Raft replaces a follower's connections when it falls behind, and
// a socket's counters die with it, so each socket's last sampled counters
// are kept. A socket of the first sample counts from there, one that
// appears later from 0 (it opened in the window); of one that closed, the
// bytes after its last sample are missing.
type sockTracker struct {
	first, last map[string]sockStat
	gone        map[string]bool
	samples     int
	err         error
}

func newSockTracker() *sockTracker {
	return &sockTracker{first: map[string]sockStat{}, last: map[string]sockStat{}, gone: map[string]bool{}}
}

func (tr *sockTracker) observe(socks map[string]sockStat) {
	for k, s := range socks {
		if tr.samples == 0 {
			tr.first[k] = s
		}
		tr.last[k] = s
		delete(tr.gone, k)
	}
	for k := range tr.last {
		if _, ok := socks[k]; !ok {
			tr.gone[k] = true
		}
	}
	tr.samples++
}

// delta is the bytes each pid sent and received over the window, and how
// many sockets closed in it.
func (tr *sockTracker) delta() (sent, recv map[int]uint64, closed int) {
	sent, recv = map[int]uint64{}, map[int]uint64{}
	for k, s1 := range tr.last {
		s0 := tr.first[k]
		if s1.sent >= s0.sent && s1.received >= s0.received {
			sent[s1.pid] += s1.sent - s0.sent
			recv[s1.pid] += s1.received - s0.received
		}
	}
	return sent, recv, len(tr.gone)
}

// track samples the Raft sockets every interval until stop is closed, then
// once more; it closes done when finished. The caller reads tr only after
// done is closed.
func (tr *sockTracker) track(ctx context.Context, pids, ports map[int]bool, interval time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		socks, err := raftSockets(ctx, pids, ports)
		if err != nil {
			tr.err = err
			return
		}
		tr.observe(socks)
		select {
		case <-t.C:
		case <-stop:
			if socks, err := raftSockets(ctx, pids, ports); err == nil {
				tr.observe(socks)
			} else {
				tr.err = err
			}
			return
		case <-ctx.Done():
			tr.err = ctx.Err()
			return
		}
	}
}

func (e *env) commitIndex(ctx context.Context, nd *node) (uint64, error) {
	var st struct {
		Node struct {
			CommitIndex uint64 `json:"commit_index"`
		} `json:"node"`
	}
	err := e.getInto(ctx, nd.url+"/api/v1/status", &st)
	return st.Node.CommitIndex, err
}

// runScale: one paced publisher on the leader (its invocations pipelined
// on one connection, unless -pub-conns), SendToGroup into a group nobody is
// in, at -rate for -duration; per node: CPU, bytes on the Raft port's
// sockets (ss), rchar/wchar and block writes (/proc/<pid>/io), per
// committed message. (A scenario script, read top to bottom.)
func runScale(ctx context.Context, e *env, cfg *config) ([]Result, error) {
	leader, err := e.leader(ctx)
	if err != nil {
		return nil, fmt.Errorf("finding the leader: %w", err)
	}
	ms, err := e.members(ctx, e.nodes[leader].url)
	if err != nil {
		return nil, err
	}
	role := map[string]string{}
	voters, nonvoters := 0, 0
	for _, m := range ms {
		role[m.HTTPAddr] = m.Suffrage
		switch m.Suffrage {
		case "voter":
			voters++
		case "nonvoter":
			nonvoters++
		}
	}
	raftPorts, pids := map[int]bool{}, map[int]bool{}
	for _, nd := range e.nodes {
		raftPorts[addrPort(nd.raftAddr)] = true
		pids[nd.pid()] = true
	}
	pcs, err := dialPublishers(ctx, e, cfg, leader)
	defer closeAll(pcs)
	if err != nil {
		return nil, err
	}
	p := &publisher{cs: pcs, hub: cfg.hub}
	pad := strings.Repeat("x", cfg.payload)
	rate := cfg.rates[0]
	idx0, err := e.commitIndex(ctx, e.nodes[leader])
	if err != nil {
		return nil, err
	}
	tr := newSockTracker()
	stopTr, trDone := make(chan struct{}), make(chan struct{})
	go tr.track(ctx, pids, raftPorts, cfg.ssInterval, stopTr, trDone)
	a := e.sampleScale()
	rr := runRound(ctx, p, nil, 0, rate, cfg.duration, pad, 0, nil)
	b := e.sampleScale()
	close(stopTr)
	<-trDone
	idx1, err := e.commitIndex(ctx, e.nodes[leader])
	if err != nil {
		return nil, err
	}
	el := b.at.Sub(a.at).Seconds()
	msgs := float64(rr.committed)
	per := func(x float64) float64 {
		if msgs == 0 {
			return 0
		}
		return x / msgs
	}
	sent, recv, closed := tr.delta()
	cpu := e.cpuDelta(a.cpu, b.cpu)
	cpuOf := map[string]float64{}
	ours := 0.0
	for _, c := range cpu {
		cpuOf[c.Key] = c.Val.(float64)
		ours += c.Val.(float64)
	}
	var results []Result
	var nodesCPU, leaderTx, followerRx float64
	for i, nd := range e.nodes {
		r := Result{Scenario: "scale-node", CPU: []kv{}}
		rl := role[nd.httpAddr]
		if i == leader {
			rl = "leader"
		}
		r.param("nodes", len(e.nodes))
		r.param("node", nd.name)
		r.param("role", rl)
		c := cpuOf[nd.name]
		nodesCPU += c
		pid := nd.pid()
		r.metric("cpu_s", c)
		r.metric("cpu_us_per_msg", per(c*1e6))
		r.metric("raft_tx_b_per_msg", per(float64(sent[pid])))
		r.metric("raft_rx_b_per_msg", per(float64(recv[pid])))
		io0, ok0 := a.io[i]
		io1, ok1 := b.io[i]
		if ok0 && ok1 {
			r.metric("wchar_b_per_msg", per(float64(io1.wchar-io0.wchar)))
			r.metric("rchar_b_per_msg", per(float64(io1.rchar-io0.rchar)))
			r.metric("disk_w_b_per_msg", per(float64(io1.writeBytes-io0.writeBytes)))
		}
		if i == leader {
			leaderTx = float64(sent[pid])
		} else {
			followerRx += float64(recv[pid])
		}
		results = append(results, r)
	}
	r := Result{Scenario: "scale", CPU: cpu}
	r.param("nodes", len(e.nodes))
	r.param("voters", voters)
	r.param("nonvoters", nonvoters)
	r.param("rate", rate)
	r.param("pub_conns", len(pcs))
	r.param("duration_s", cfg.duration.Seconds())
	r.param("payload", cfg.payload)
	r.metric("committed", rr.committed)
	r.metric("publish_errors", rr.failed)
	r.metric("achieved_per_s", msgs/rr.window.Seconds())
	entries := idx1 - idx0
	r.metric("entries", entries)
	if entries > 0 {
		r.metric("msgs_per_entry", msgs/float64(entries))
		r.metric("entries_per_s", float64(entries)/el)
	}
	r.metric("nodes_cpu_us_per_msg", per(nodesCPU*1e6))
	r.metric("leader_tx_b_per_msg", per(leaderTx))
	if n := len(e.nodes) - 1; n > 0 {
		r.metric("follower_rx_b_per_msg", per(followerRx/float64(n)))
	}
	r.metric("commit_p50_ms", msOf(rr.commitLat.quantile(0.5)))
	r.metric("commit_p99_ms", msOf(rr.commitLat.quantile(0.99)))
	if b.sysTo > a.sysTo {
		sys := float64(b.sysBusy-a.sysBusy) / float64(b.sysTo-a.sysTo) * 100 * float64(b.cpus)
		r.metric("other_cpu_pct", max(0, sys-ours/el*100))
	}
	r.note("publisher: %d connection(s) on the leader %s, SendToGroup into a group nobody is in, paced at %g msg/s; per-message figures divide by the %d committed messages and include the heartbeats of the window", len(pcs), e.nodes[leader].name, rate, rr.committed)
	r.note("raft_*: bytes on the established TCP sockets of the Raft port (Raft and the internal RPC share it), from ss -tinp's bytes_sent/bytes_received; wchar/rchar (/proc/<pid>/io): every write/read syscall, sockets and files, so an upper bound of network plus disk; disk_w: bytes that reached the block layer (0 when the data folder is on tmpfs)")
	r.note("other_cpu_pct: the machine's busy CPU minus the tool's and the nodes', %% of one core over the window")
	if tr.err != nil {
		r.note("sampling the Raft sockets failed (%v): raft_* figures are incomplete", tr.err)
	}
	r.metric("raft_sockets_closed", closed)
	if closed > 0 {
		r.note("%d Raft-port sockets closed during the window (Raft replaces a lagging follower's connections): their bytes after their last sample (every %v) are missing", closed, cfg.ssInterval)
	}
	if rr.firstErr != nil {
		r.note("first publish error: %v", rr.firstErr)
	}
	return append(results, r), ctx.Err()
}
