// Command raftplane-bench is raftplane's load tool. It speaks the SignalR
// JSON protocol over WebSocket (through the Go client in client/) to a
// cluster of real raftplane processes it starts itself (or to running nodes
// given with -targets), runs one scenario bounded in time and count, and
// prints one table row plus one JSON line per result.
//
//	raftplane-bench -scenario fanout|latency|publish|conns|failover|scale [-nodes 3]
//	    [-subscribers 1000] [-rate 500[,1000...]] [-duration 10s] [-payload 120]
//	    [-publishers 64] [-conns 10000] [-bin path/to/raftplane] [-json]
//	    [-targets http://a,http://b] [-p99-bar 100ms] [-server-args "-no-sync"]
//	    [-pub-conns 1] [-profile dir]
//
// Scenarios:
//
//   - fanout: -subscribers connections spread round robin over the nodes,
//     all in one group; one publisher on node 1 invokes SendToGroup at
//     -rate msg/s (a comma-separated list sweeps the rates on the same
//     subscribers; -pub-conns spreads the publisher over several
//     connections, since the server runs one connection's hub methods one
//     at a time, which caps one connection at 1/commit latency msg/s).
//     Each message carries its send time (one process, one
//     clock), so latency is publish-invoke to delivery. "holds" means the
//     achieved rate is at least 98% of the target, every committed message
//     reached every subscriber, and p99 is under -p99-bar.
//   - latency: fanout with one publisher on node 1 and one subscriber on
//     node 3 (the last node if fewer), 1000 msg/s unless -rate is given.
//   - publish: -publishers connections spread over the nodes, each invoking
//     SendToGroup into a group nobody is in, back to back (closed loop), no
//     subscribers; committed publishes/s and invoke latency.
//   - conns: -conns idle connections to node 1; node 1's VmRSS before and
//     after, bytes per connection.
//   - failover: fanout at -rate with the clients' Resume on; after a third
//     of -duration the leader is killed with SIGKILL: time from the kill to
//     the first commit of an invoke issued after it, and until every
//     subscriber of the killed node has resumed on another node, with
//     delivery checked across the resume.
//   - scale: one paced publisher on the leader, SendToGroup into a group
//     nobody is in, at -rate (1000 unless set); per node: CPU, bytes on the
//     Raft port's sockets and rchar/wchar per committed message, and log
//     entries per second (run it at -nodes 3, 5, 7, 9: docs/scaling.md).
//
// With -peers the tool runs ../shared/bench/side-by-side.sh instead
// (raftplane against Centrifugo, Socket.IO and a bare ceiling server, one
// load tool for all), then the ceiling's cells once more with the durable
// ceiling (durable.go: the ceiling delivering only what a majority of its
// nodes has on disk), and prints issue 17's S1/S2/S3 table of what it
// measured (peers.go):
//
//	raftplane-bench -peers [-cells s1-rp-client,s2-rp,...] [-peers-format markdown]
//	raftplane-bench -peers -peers-jsonl /tmp/peers/side-by-side-....jsonl
//
// Every result also reports the CPU time (user+system) each process the tool
// started used during the scenario, since the tool and the servers share
// the machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	scenario    string
	nodes       int
	subscribers int
	rates       []float64
	rateSet     bool
	duration    time.Duration
	payload     int
	publishers  int
	pubConns    int
	conns       int
	bin         string
	targets     []string
	jsonOnly    bool
	p99Bar      time.Duration
	dialConc    int
	serverArgs  []string
	timeout     time.Duration
	profileDir  string
	idle        time.Duration
	inflight    int
	hub         string
	peers       peersConfig
	ssInterval  time.Duration
}

// parseFlags reads the command line into a config. It is a flag table and
// the checks of each value, one after another: long and branchy by nature.
func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("raftplane-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rates, targets, serverArgs, cells string
	fs.StringVar(&c.scenario, "scenario", "fanout", "fanout, latency, publish, conns, failover or scale")
	fs.IntVar(&c.nodes, "nodes", 3, "nodes to start (ignored with -targets)")
	fs.IntVar(&c.subscribers, "subscribers", 1000, "fanout/failover: subscribers in the group")
	fs.StringVar(&rates, "rate", "500", "fanout/latency/failover/scale: publish rate, msg/s; fanout takes a comma-separated sweep (latency and scale: 1000 unless set)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long the load runs")
	fs.IntVar(&c.payload, "payload", 120, "padding bytes in each message")
	fs.IntVar(&c.publishers, "publishers", 64, "publish: concurrent publishers, one connection each")
	fs.IntVar(&c.inflight, "inflight", 1, "publish: invocations each publisher connection keeps in flight (the nodes pipeline up to -max-pipelined-invocations of a connection's, in order)")
	fs.IntVar(&c.pubConns, "pub-conns", 1, "fanout/latency/failover: connections the one paced publisher spreads its messages over (the server runs one connection's invocations one at a time)")
	fs.IntVar(&c.conns, "conns", 10000, "conns: idle connections to node 1")
	fs.DurationVar(&c.idle, "idle", 2*time.Second, "conns: how long the connections stay idle before node 1's memory is measured")
	fs.StringVar(&c.bin, "bin", "", "raftplane binary (default: ./raftplane next to this tool, else go build ./cmd/raftplane)")
	fs.StringVar(&targets, "targets", "", "comma-separated URLs of running nodes to use instead of starting a cluster")
	fs.BoolVar(&c.jsonOnly, "json", false, "print only the JSON lines")
	fs.DurationVar(&c.p99Bar, "p99-bar", 100*time.Millisecond, "fanout/latency: p99 latency a rate must stay under to hold")
	fs.IntVar(&c.dialConc, "dial-concurrency", 200, "connections dialled at once during ramp-up")
	fs.StringVar(&serverArgs, "server-args", "", "extra flags for every node, space-separated (e.g. -no-sync)")
	fs.DurationVar(&c.timeout, "timeout", 0, "hard bound on the whole run (default: 3 x -duration + 3m)")
	fs.StringVar(&c.hub, "hub", "bench", "hub name")
	fs.StringVar(&c.profileDir, "profile", "", "folder for Go profiles: the tool's CPU, and each started node's CPU over each load window and heap after it (nodes get -debug-http)")
	fs.DurationVar(&c.ssInterval, "scale-ss-interval", 250*time.Millisecond, "scale: how often the Raft sockets' byte counters are sampled (ss), so that a socket Raft replaces mid-window still counts up to its last sample")
	addPeersFlags(fs, &c.peers, &cells)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := c.peers.check(cells); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { c.rateSet = c.rateSet || f.Name == "rate" })
	for _, r := range strings.Split(rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("-rate %q: want positive numbers", rates)
		}
		c.rates = append(c.rates, v)
	}
	if (c.scenario == "latency" || c.scenario == "scale") && !c.rateSet {
		c.rates = []float64{1000}
	}
	if targets != "" {
		for _, t := range strings.Split(targets, ",") {
			if t = strings.TrimSpace(t); t != "" {
				c.targets = append(c.targets, t)
			}
		}
	}
	c.serverArgs = strings.Fields(serverArgs)
	switch c.scenario {
	case "fanout", "latency", "publish", "conns", "failover", "scale":
	default:
		return nil, fmt.Errorf("-scenario %q: want fanout, latency, publish, conns, failover or scale", c.scenario)
	}
	switch {
	case c.nodes < 1 || c.nodes > 15:
		return nil, errors.New("-nodes: 1 to 15")
	case c.duration <= 0 || c.duration > time.Hour:
		return nil, errors.New("-duration: above 0, at most 1h")
	case c.subscribers < 1 || c.subscribers > 100000:
		return nil, errors.New("-subscribers: 1 to 100000")
	case c.publishers < 1 || c.publishers > 10000:
		return nil, errors.New("-publishers: 1 to 10000")
	case c.conns < 1 || c.conns > 200000:
		return nil, errors.New("-conns: 1 to 200000")
	case c.payload < 0 || c.payload > 30000:
		return nil, errors.New("-payload: 0 to 30000 (the server's default message limit is 32 KiB)")
	case c.pubConns < 1 || c.pubConns > 1000:
		return nil, errors.New("-pub-conns: 1 to 1000")
	case c.inflight < 1 || c.inflight > 1024:
		return nil, errors.New("-inflight: 1 to 1024")
	case c.idle < 0 || c.idle > time.Hour:
		return nil, errors.New("-idle: 0 to 1h")
	case c.dialConc < 1:
		return nil, errors.New("-dial-concurrency: at least 1")
	case c.scenario != "fanout" && len(c.rates) > 1:
		return nil, errors.New("-rate: a sweep (several rates) is for fanout only")
	case c.scenario == "failover" && len(c.targets) > 0:
		return nil, errors.New("failover kills the leader: it needs the tool's own cluster, not -targets")
	case c.ssInterval < 10*time.Millisecond || c.ssInterval > time.Minute:
		return nil, errors.New("-scale-ss-interval: 10ms to 1m")
	case c.scenario == "scale" && len(c.targets) > 0:
		return nil, errors.New("scale reads each node's /proc and sockets: it needs the tool's own cluster, not -targets")
	case c.scenario == "failover" && c.nodes < 3:
		return nil, errors.New("failover: -nodes at least 3")
	}
	if c.timeout <= 0 {
		c.timeout = 3*c.duration*time.Duration(len(c.rates)) + 3*time.Minute
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftplane-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.peers.enabled {
		if err := runPeers(ctx, &cfg.peers, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "raftplane-bench:", err)
			os.Exit(1)
		}
		return
	}
	results, err := run(ctx, cfg, os.Stderr)
	if perr := printResults(os.Stdout, results, cfg.jsonOnly); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftplane-bench:", err)
		os.Exit(1)
	}
}

func printResults(w io.Writer, results []Result, jsonOnly bool) error {
	if len(results) == 0 {
		return nil
	}
	if !jsonOnly {
		if err := writeTable(w, results); err != nil {
			return err
		}
	}
	for i := range results {
		b, err := jsonLine(&results[i])
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
			return err
		}
	}
	return nil
}

// run sets up the environment (a cluster of its own, or -targets), runs the
// scenario and tears down. It returns the results obtained even on error.
func run(ctx context.Context, cfg *config, logw io.Writer) (results []Result, err error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	var notes []string
	if cfg.scenario == "conns" {
		if n := raiseNoFile(uint64(cfg.conns) + 1024); n != "" {
			notes = append(notes, n)
			fmt.Fprintln(logw, "raftplane-bench:", n)
		}
	}
	var e *env
	if len(cfg.targets) > 0 {
		e = targetsEnv(cfg.targets, logw)
	} else {
		bin, tmp, err := resolveBin(ctx, cfg.bin, logw)
		if err != nil {
			return nil, err
		}
		if tmp != "" {
			defer os.RemoveAll(tmp)
		}
		start := time.Now()
		e, err = startCluster(ctx, bin, cfg.nodes, cfg.serverArgs, cfg.profileDir != "", logw)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(logw, "raftplane-bench: %d nodes up in %v\n", cfg.nodes, time.Since(start).Round(time.Millisecond))
		defer func() {
			e.stop()
		}()
	}
	if cfg.profileDir != "" {
		if e.prof, err = startProfiler(cfg.profileDir, logw); err != nil {
			return nil, fmt.Errorf("-profile: %w", err)
		}
		defer e.prof.stop()
	}
	before := e.cpuTimes()
	switch cfg.scenario {
	case "fanout":
		results, err = runFanout(ctx, e, cfg, fanoutPlan{kind: "fanout", subs: cfg.subscribers, pubNode: 0, rates: cfg.rates})
	case "latency":
		results, err = runFanout(ctx, e, cfg, fanoutPlan{kind: "latency", subs: 1, subNode: min(2, len(e.nodes)-1), pubNode: 0, rates: cfg.rates})
	case "publish":
		results, err = runPublish(ctx, e, cfg)
	case "conns":
		results, err = runConns(ctx, e, cfg)
	case "failover":
		results, err = runFailover(ctx, e, cfg)
	case "scale":
		results, err = runScale(ctx, e, cfg)
	}
	after := e.cpuTimes()
	cpu := e.cpuDelta(before, after)
	for i := range results {
		results[i].Notes = append(append([]string(nil), notes...), results[i].Notes...)
		if results[i].CPU == nil { // scenarios that measure a narrower window set their own
			results[i].CPU = cpu
		}
	}
	return results, err
}
