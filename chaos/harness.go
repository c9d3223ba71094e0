package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftplane/raftplane/chaos/check"
	"github.com/raftplane/raftplane/chaos/diskfault"
	"github.com/raftplane/raftplane/chaos/history"
	"github.com/raftplane/raftplane/chaos/nemesis"
	"github.com/raftplane/raftplane/chaos/nodes"
	"github.com/raftplane/raftplane/chaos/workload"
)

// Options describe one run.
type Options struct {
	Bin string // the raftplane binary
	Dir string // run directory (history, schedule, node data and logs)
	N   int    // nodes
	// Running is how many of the N nodes start (0: all); the others are
	// spare slots, stopped, with their own addresses, that the membership
	// faults start as new members (the final heal starts them all). The
	// clients know every slot and move on from one that does not answer.
	Running int
	// Steps is the fault schedule (nemesis.Schedule or a replay); empty
	// runs the workload without faults.
	Steps []nemesis.Step
	Seed  uint64 // for the workload's randomness (the schedule has its own)
	// Net is the network layer; nil runs process faults only.
	Net    nemesis.Network
	IP     func(i int) string
	Launch nodes.Launcher
	// Publishers (half through hub invocations, half through REST) and
	// Subscribers.
	Publishers, Subscribers int
	Groups                  []string
	// ReplayProb is the chance that a publisher sends an acknowledged REST
	// message again with the same idempotency key at once, LateReplayProb
	// the chance that it does so 1 to 20 s later (within the 30 s the FSM
	// remembers an id, with room for command time running up to 5/4 of
	// real time: cluster/clock.go).
	ReplayProb, LateReplayProb float64
	// Quiet is how long the workload runs before the first fault and
	// Recovery bounds each phase of the end (convergence, canaries).
	Quiet, Recovery time.Duration
	Flags           []string // extra node flags
	// DiskSize, if set, gives each node a disk of its own of that many
	// bytes (chaos/diskfault: a tmpfs, inside the sandbox only), which the
	// disk faults fill.
	DiskSize int64
	Logf     func(format string, args ...any)
}

// NodeFlags are the node settings of a chaos run: fast Raft timings,
// snapshots every 128 entries with 64 kept (so that a follower cut off for
// seconds catches up from a snapshot), a cache that keeps the whole run
// (so the final reads are complete), 1 s keep-alives and a 60 s disconnect
// timeout (resumes outlive the longest fault).
var NodeFlags = []string{
	"-heartbeat-timeout", "500ms", "-election-timeout", "500ms", "-leader-lease-timeout", "250ms",
	"-commit-timeout", "5ms", "-snapshot-interval", "1s", "-snapshot-threshold", "128", "-trailing-logs", "64",
	"-reap-after", "20s", "-disconnect-timeout", "60s", "-keepalive", "1s", "-client-timeout", "5s",
	"-cache-entries", "10000000", "-cache-bytes", "2147483648", "-cache-age", "24h",
	"-publish-timeout", "10s",
}

// Outcome is what a run produced.
type Outcome struct {
	Report check.Report
	// Err is a harness failure (the cluster never formed, ...), not a
	// checker verdict.
	Err error
}

// Run runs the cluster, the workload and the faults, then the final heal,
// canaries, reads and the checker. It writes history.jsonl, report.json and
// summary.txt into o.Dir. (It is the suite's script, its phases in the
// order they run; it is left whole because the suite needs network
// namespaces to run, so a split could not be tested where it was made.)
func Run(ctx context.Context, o Options) Outcome {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	start := time.Now()
	rec, err := history.NewRecorder(o.Dir, start)
	if err != nil {
		return Outcome{Err: err}
	}
	defer rec.Close()
	ncfg := nodes.Config{Bin: o.Bin, N: o.N, Dir: o.Dir, IP: o.IP, Launch: o.Launch,
		Flags: append(append([]string(nil), NodeFlags...), o.Flags...), Rec: rec}
	var disks *diskfault.Disks
	if o.DiskSize > 0 {
		var dirs []string
		for i := 0; i < o.N; i++ {
			dirs = append(dirs, filepath.Join(o.Dir, fmt.Sprintf("n%d", i), "disk"))
		}
		if disks, err = diskfault.Setup(dirs, o.DiskSize); err != nil {
			return Outcome{Err: err}
		}
		ncfg.DataDir = func(i int) string { return filepath.Join(disks.Dir(i), "data") }
		defer func() {
			// After cl.Stop (deferred later, run first): the nodes are
			// down when their disks go.
			if err := disks.Teardown(); err != nil {
				logf("disk teardown: %v", err)
			}
		}()
	}
	cl, err := nodes.New(ncfg)
	if err != nil {
		return Outcome{Err: err}
	}
	defer cl.Stop()
	note := func(format string, args ...any) {
		rec.Add(history.Event{P: "harness", Type: history.Note, Text: fmt.Sprintf(format, args...)})
		logf(format, args...)
	}
	running := o.N
	if o.Running > 0 {
		running = o.Running
	}
	uctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = cl.StartFirst(uctx, running)
	if err == nil {
		err = cl.WaitLeader(uctx, nil)
	}
	cancel()
	if err != nil {
		return Outcome{Err: fmt.Errorf("cluster did not form: %w", err)}
	}
	note("cluster of %d up (%d slots) after %s", running, o.N, time.Since(start).Round(time.Millisecond))

	env := &workload.Env{Rec: rec, Hub: "chaos", Groups: o.Groups, Timeout: 5 * time.Second,
		HTTP: &http.Client{Timeout: 10 * time.Second}}
	for _, n := range cl.Nodes {
		env.URLs = append(env.URLs, n.URL())
		env.Names = append(env.Names, n.Name)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 1))
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	pubCtx, stopPubs := context.WithCancel(ctx)
	defer stopPubs()
	var subs []*workload.Subscriber
	var subWG, pubWG sync.WaitGroup
	for k := 0; k < o.Subscribers; k++ {
		groups := []string{o.Groups[k%len(o.Groups)]}
		if k%2 == 1 && len(o.Groups) > 1 {
			groups = append(groups, o.Groups[(k+1)%len(o.Groups)])
		}
		s := &workload.Subscriber{Env: env, Name: fmt.Sprintf("sub-%d", k), Groups: groups,
			Rng: rand.New(rand.NewPCG(rng.Uint64(), 0)), HopMin: 5 * time.Second, HopMax: 15 * time.Second}
		if k < 2 {
			s.HopMin, s.HopMax = 0, 0 // sticky: stays on its node while it can
		}
		subs = append(subs, s)
		subWG.Add(1)
		go func() { defer subWG.Done(); s.Run(subCtx) }()
	}
	for k := 0; k < o.Publishers; k++ {
		via := "hub"
		if k%2 == 1 {
			via = "rest"
		}
		p := &workload.Publisher{Env: env, Name: fmt.Sprintf("pub-%d", k), Via: via,
			Rng: rand.New(rand.NewPCG(rng.Uint64(), 0)), Interval: 50 * time.Millisecond,
			RetryProb: 0.5, ReplayProb: o.ReplayProb,
			LateReplayProb: o.LateReplayProb, LateReplayMin: time.Second, LateReplayMax: 15 * time.Second}
		pubWG.Add(1)
		go func() { defer pubWG.Done(); p.Run(pubCtx) }()
	}

	select {
	case <-ctx.Done():
	case <-time.After(o.Quiet):
	}
	nem := &nemesis.Env{Cluster: cl, Net: o.Net, Rec: rec, Logf: logf, Voters: votersFlag(ncfg.Flags)}
	if disks != nil {
		nem.Disks = disks
	}
	if len(o.Steps) > 0 {
		note("fault phase: %d faults", len(o.Steps))
		nemesis.Run(ctx, nem, o.Steps)
	}
	healErr := nem.HealAll()
	for _, s := range subs {
		s.Calm()
	}
	note("healed (%v); recovery", healErr)
	healed := time.Now()
	out := Outcome{}
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		rec.Add(history.Event{P: "harness", Type: history.Anomaly, Kind: "recovery", Text: msg})
		logf("%s", msg)
	}

	rctx, cancel := context.WithTimeout(ctx, o.Recovery)
	if err := cl.WaitLeader(rctx, nil); err != nil {
		fail("no leader agreed by every node %s after the heal: %v", o.Recovery, err)
	}
	cancel()
	note("leader agreed %s after the heal", time.Since(healed).Round(time.Millisecond))
	// A few more seconds of publishing on the healed cluster, then quiet.
	time.Sleep(2 * time.Second)
	stopPubs()
	pubWG.Wait()

	rctx, cancel = context.WithTimeout(ctx, o.Recovery)
	canaries, err := env.Canaries(rctx)
	cancel()
	if err != nil {
		fail("canaries: %v", err)
	}
	rctx, cancel = context.WithTimeout(ctx, o.Recovery)
	waitCanaries(rctx, subs, canaries, fail)
	cancel()
	note("canaries delivered %s after the heal", time.Since(healed).Round(time.Millisecond))
	stopSubs()
	subWG.Wait()

	rctx, cancel = context.WithTimeout(ctx, o.Recovery)
	states, err := cl.Converged(rctx)
	cancel()
	if err != nil {
		fail("%v", err)
	}
	for _, n := range cl.Nodes {
		st, ok := states[n.Name]
		if !ok {
			continue
		}
		_, last, perr := history.ParseCursor(st.Stream.LastCursor)
		if perr != nil {
			fail("%s: last cursor %q: %v", n.Name, st.Stream.LastCursor, perr)
			continue
		}
		rec.Add(history.Event{P: "harness", Type: history.State, Node: n.Name, Pos: &last, Digest: st.Stream.Digest, Role: st.Node.State})
		// The read is complete when nothing was ever evicted from the
		// node's cache (the chaos cache keeps the whole run).
		complete := st.Stream.FloorCursor == "" || strings.HasSuffix(st.Stream.FloorCursor, ":0:0")
		if !complete {
			note("%s evicted up to %s: its read is partial", n.Name, st.Stream.FloorCursor)
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := env.ReadAll(rctx, n.Index, complete); err != nil {
			fail("final read of %s: %v", n.Name, err)
		}
		cancel()
	}
	cl.Stop()
	for _, line := range cl.ScanLogs() {
		rec.Add(history.Event{P: "harness", Type: history.Anomaly, Kind: "log", Text: line})
	}
	if err := rec.Close(); err != nil {
		out.Err = err
	}
	out.Report = check.Check(rec.Events())
	if b, err := json.MarshalIndent(out.Report, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(o.Dir, "report.json"), b, 0o644)
	}
	_ = os.WriteFile(filepath.Join(o.Dir, "summary.txt"), []byte(out.Report.Summary()), 0o644)
	return out
}

// waitCanaries waits until every subscriber's session has every canary
// published after it joined.
func waitCanaries(ctx context.Context, subs []*workload.Subscriber, canaries map[string]history.Pos, fail func(string, ...any)) {
	for {
		var missing []string
		for _, s := range subs {
			if ok, m := s.Has(canaries); !ok {
				missing = append(missing, fmt.Sprintf("%s lacks %v", s.Name, m))
			}
		}
		if len(missing) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			fail("canaries not delivered: %s", strings.Join(missing, "; "))
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// votersFlag is the -voters the nodes run with (the last one in flags), or
// 0 for the node's default.
func votersFlag(flags []string) int {
	v := 0
	for i, f := range flags {
		name, val, ok := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if !strings.HasPrefix(f, "-") || name != "voters" {
			continue
		}
		if !ok && i+1 < len(flags) {
			val = flags[i+1]
		}
		if k, err := strconv.Atoi(val); err == nil {
			v = k
		}
	}
	return v
}
