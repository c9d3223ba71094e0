package main

// -peers: raftplane side by side with its peers, through the one load tool
// in ../shared/bench (peersbench, side-by-side.sh). This file runs that
// tool and turns the JSON lines it writes into issue 17's S1/S2/S3 table,
// so that every raftplane figure is read next to Centrifugo's, Socket.IO's
// and the ceiling's from the same run, on the same machine noise.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// peersStopGrace is how long side-by-side.sh's process group gets between
// SIGTERM (its trap stops the servers it started) and SIGKILL when the run
// is cancelled.
const peersStopGrace = 30 * time.Second

// maxPeersLine bounds one JSON line of the harness's output (a step line
// is about 1 KB; the bound only keeps a corrupt file from eating memory).
const maxPeersLine = 1 << 20

type peersConfig struct {
	enabled  bool
	cells    []string // side-by-side.sh cells; nil: the script's default (every cell)
	build    string   // PEERS: where peers-build.sh puts what it builds
	dir      string   // the shared bench folder ("" = ../shared/bench from the module root)
	format   string   // text or markdown
	duration string   // DURATION for side-by-side.sh ("" = its default, 10s)
	ratesRP  string   // RATES_RP ("" = its default)
	out      string   // OUT: the JSONL file ("" = a fresh file in build)
	jsonl    string   // only render this file, run nothing
	skipBld  bool     // do not run peers-build.sh
	durable  bool     // run the ceiling's cells again with the durable ceiling (durable.go)
}

func addPeersFlags(fs *flag.FlagSet, p *peersConfig, cells *string) {
	fs.BoolVar(&p.enabled, "peers", false, "run ../shared/bench/side-by-side.sh (raftplane against Centrifugo+Redis, Socket.IO+Redis and the ceiling) and print the S1/S2/S3 table; -scenario is ignored")
	fs.StringVar(cells, "cells", "", "-peers: comma-separated side-by-side.sh cells (s1-rp-client,s2-rp,...; default: every cell, about 15 minutes)")
	fs.StringVar(&p.build, "peers-build", "/tmp/peers", "-peers: folder peers-build.sh builds into (its PEERS)")
	fs.StringVar(&p.dir, "peers-dir", "", "-peers: the shared bench folder holding side-by-side.sh (default: ../shared/bench from the module root)")
	fs.StringVar(&p.format, "peers-format", "text", "-peers: table format, text or markdown (ready for docs/performance.md)")
	fs.StringVar(&p.duration, "peers-duration", "", "-peers: each step's duration, side-by-side.sh's DURATION (default: its own, 10s)")
	fs.StringVar(&p.ratesRP, "peers-rates-rp", "", "-peers: raftplane's S1 rate sweep, side-by-side.sh's RATES_RP (e.g. 1000,1500,2000,2500,3000 for a single pipelined publisher connection at high rate)")
	fs.StringVar(&p.out, "peers-out", "", "-peers: the JSONL file side-by-side.sh writes (default: a new side-by-side-<time>.jsonl in -peers-build)")
	fs.StringVar(&p.jsonl, "peers-jsonl", "", "-peers: only print the table of this JSONL file of an earlier run (runs nothing)")
	fs.BoolVar(&p.skipBld, "peers-skip-build", false, "-peers: do not run peers-build.sh (what -peers-build holds is used as it is)")
	fs.BoolVar(&p.durable, "peers-durable-ceiling", true, "-peers: after the cells, run the ceiling's (s1-ceil, s2-ceil) again with the durable ceiling (docs/experiments/durableceiling: delivered once on disk on a majority), the floor of a durable server with the ceiling's fan-out")
}

var cellRE = regexp.MustCompile(`^s[123]-[a-z0-9-]+$`)

func (p *peersConfig) check(cells string) error {
	for _, c := range strings.Split(cells, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		if !cellRE.MatchString(c) {
			return fmt.Errorf("-cells: %q is not a cell name (s1-..., s2-..., s3-...)", c)
		}
		p.cells = append(p.cells, c)
	}
	if p.format != "text" && p.format != "markdown" {
		return fmt.Errorf("-peers-format %q: want text or markdown", p.format)
	}
	if p.duration != "" {
		d, err := time.ParseDuration(p.duration)
		if err != nil || d <= 0 || d > 120*time.Second {
			return fmt.Errorf("-peers-duration %q: want a duration above 0 and at most 120s (the harness's bound)", p.duration)
		}
	}
	if p.ratesRP != "" {
		for _, r := range strings.Split(p.ratesRP, ",") {
			if v, err := strconv.Atoi(strings.TrimSpace(r)); err != nil || v <= 0 || v > 200000 {
				return fmt.Errorf("-peers-rates-rp %q: want whole rates from 1 to 200000, comma-separated", p.ratesRP)
			}
		}
	}
	if p.build == "" {
		return errors.New("-peers-build: a folder is needed")
	}
	return nil
}

// moduleRoot walks up from dir to the go.mod of the raftplane module.
func moduleRoot(dir string) (string, error) {
	for d := dir; ; {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/raftplane/raftplane\n")) {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", fmt.Errorf("no go.mod of github.com/raftplane/raftplane in %s or above: run -peers from inside the raftplane checkout", dir)
		}
		d = up
	}
}

// scriptCells reads the cell names side-by-side.sh knows from its case
// labels, so that a cell name is checked against the script itself.
func scriptCells(script []byte) []string {
	re := regexp.MustCompile(`(?m)^\s*(s[123]-[a-z0-9-]+)\)`)
	var out []string
	for _, m := range re.FindAllSubmatch(script, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

// runPeers builds the peers (once), runs side-by-side.sh for the cells and
// prints the table of what it wrote. The scripts' own output goes to logw.
func runPeers(ctx context.Context, p *peersConfig, w, logw io.Writer) error {
	if p.jsonl != "" {
		return printPeersFile(w, p.jsonl, p.format)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := moduleRoot(cwd)
	if err != nil {
		return err
	}
	dir := p.dir
	if dir == "" {
		dir = filepath.Join(root, "..", "shared", "bench")
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return err
	}
	script, err := os.ReadFile(filepath.Join(dir, "side-by-side.sh"))
	if err != nil {
		return fmt.Errorf("-peers needs the shared bench tool (side-by-side.sh, peers-build.sh) in %s (set -peers-dir): %w", dir, err)
	}
	known := scriptCells(script)
	for _, c := range p.cells {
		if !slices.Contains(known, c) {
			return fmt.Errorf("-cells: side-by-side.sh has no cell %q (it has %s)", c, strings.Join(known, " "))
		}
	}
	if err := os.MkdirAll(p.build, 0o755); err != nil {
		return fmt.Errorf("-peers-build: %w", err)
	}
	build, err := filepath.Abs(p.build)
	if err != nil {
		return err
	}
	out := p.out
	if out == "" {
		out = filepath.Join(build, "side-by-side-"+time.Now().Format("20060102-150405")+".jsonl")
	}
	if out, err = filepath.Abs(out); err != nil {
		return err
	}
	env := append(os.Environ(), "PEERS="+build, "RP="+root, "OUT="+out,
		// Every load client comes from 127.0.0.1 as few users: the nodes'
		// per-IP and per-user connection limits (1,000 and 100 by default)
		// would refuse S3's 10,000. side-by-side.sh passes no flags of its
		// own, so they go through the options' environment variables.
		"RAFTPLANE_MAX_CONNECTIONS_PER_IP=0", "RAFTPLANE_MAX_CONNECTIONS_PER_USER=0")
	if p.duration != "" {
		env = append(env, "DURATION="+p.duration)
	}
	if p.ratesRP != "" {
		env = append(env, "RATES_RP="+p.ratesRP)
	}
	if !p.skipBld {
		fmt.Fprintf(logw, "raftplane-bench: %s/peers-build.sh (PEERS=%s)\n", dir, build)
		if err := runScript(ctx, root, env, logw, filepath.Join(dir, "peers-build.sh")); err != nil {
			return fmt.Errorf("peers-build.sh: %w", err)
		}
	}
	fmt.Fprintf(logw, "raftplane-bench: %s/side-by-side.sh %s (RP=%s OUT=%s)\n", dir, strings.Join(p.cells, " "), root, out)
	if err := runScript(ctx, root, env, logw, filepath.Join(dir, "side-by-side.sh"), p.cells...); err != nil {
		return fmt.Errorf("side-by-side.sh: %w", err)
	}
	if dc := durableCells(p.cells); p.durable && len(dc) > 0 {
		// Like the disk probe below, a column that failed does not cost
		// the run its table; a cancelled run still ends here.
		if err := runDurableCells(ctx, root, dir, build, env, out, dc, logw); err != nil {
			if ctx.Err() != nil {
				return err
			}
			fmt.Fprintf(logw, "raftplane-bench: %v (the table follows without the durable ceiling)\n", err)
		}
	}
	if ranS2RP(p.cells) {
		// The probe explains a figure, it is not one: a failed probe
		// does not cost the run its table.
		if err := appendDiskLine(ctx, out, diskProbeTime, logw); err != nil {
			fmt.Fprintf(logw, "raftplane-bench: %v (the table follows without it)\n", err)
		}
	}
	return printPeersFile(w, out, p.format)
}

// ranS2RP reports whether raftplane's S2 cell with fsync ran (nil cells:
// every cell), whose floor the disk probe measures.
func ranS2RP(cells []string) bool {
	return cells == nil || slices.Contains(cells, "s2-rp")
}

// runScript runs a script in its own process group, so that a cancelled
// run stops the script and every server it started: SIGTERM to the group
// (side-by-side.sh's EXIT trap stops its servers), SIGKILL after
// peersStopGrace.
func runScript(ctx context.Context, dir string, env []string, logw io.Writer, script string, args ...string) error {
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = peersStopGrace
	err := cmd.Run()
	if cmd.Process != nil && ctx.Err() != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever outlived the grace
	}
	return err
}

func printPeersFile(w io.Writer, path, format string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	lines, err := parsePeersJSONL(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	t := buildPeersTable(lines)
	if format == "markdown" {
		return t.markdown(w)
	}
	return t.text(w)
}

// peersLine is one line of the harness's JSONL: a fanout step (S1, S2) or
// a conns result (S3); the fields are the struct tags of stepResult and
// connsResult in peers-harness/main.go.
type peersLine struct {
	Label      string  `json:"label"`
	Scenario   string  `json:"scenario"`
	TargetRate int     `json:"target_rate"`
	PubWorkers int     `json:"pub_workers"`
	DurationS  float64 `json:"duration_s"`
	Published  uint64  `json:"published"`
	PubErrors  uint64  `json:"pub_errors"`
	Achieved   float64 `json:"achieved_pub_rate"`
	Delivered  uint64  `json:"delivered"`
	DelivRatio float64 `json:"delivery_ratio"`
	Reorders   uint64  `json:"reorders"`
	LatP50us   int64   `json:"lat_p50_us"`
	LatP99us   int64   `json:"lat_p99_us"`
	Procs      []struct {
		Name   string  `json:"name"`
		CPUPct float64 `json:"cpu_pct"`
	} `json:"procs"`
	OtherCPUPct float64 `json:"other_cpu_pct"`
	AckP50us    int64   `json:"ack_p50_us"`
	AckP99us    int64   `json:"ack_p99_us"`
	Sustainable bool    `json:"sustainable"`
	Attempt     int     `json:"attempt"`
	Noisy       bool    `json:"noisy"`
	// conns (S3)
	Connected       int                `json:"connected"`
	Requested       int                `json:"requested"`
	BytesPerConn    map[string]float64 `json:"bytes_per_conn"`
	BytesPerConnEnd map[string]float64 `json:"bytes_per_conn_end_of_hold"`
	// disk (this tool's probe, disk.go)
	Writers      int   `json:"writers"`
	Rate         int   `json:"rate"`
	Skipped      int   `json:"skipped"`
	SyncP50us    int64 `json:"sync_p50_us"`
	SyncP99us    int64 `json:"sync_p99_us"`
	QuorumP50us  int64 `json:"quorum_p50_us"`
	QuorumP99us  int64 `json:"quorum_p99_us"`
	QuorumP999us int64 `json:"quorum_p999_us"`

	line int // 1-based line number in the file
}

// parsePeersJSONL reads every non-blank line; a line that is not a JSON
// object with a label and a known scenario is an error naming the line.
func parsePeersJSONL(r io.Reader) ([]peersLine, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxPeersLine)
	var out []peersLine
	n := 0
	for sc.Scan() {
		n++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var l peersLine
		if err := json.Unmarshal(b, &l); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if l.Label == "" {
			return nil, fmt.Errorf("line %d: no label", n)
		}
		if l.Scenario != "fanout" && l.Scenario != "conns" && l.Scenario != "disk" {
			return nil, fmt.Errorf("line %d: scenario %q: want fanout, conns or disk", n, l.Scenario)
		}
		l.line = n
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return out, nil
}

// A label is <system><nodes>-<s1|s2|s3>[-qualifiers], e.g. cf3-s1-api,
// rp3-s2-client-par64, ceil1-s3 (side-by-side.sh's cells).
var labelRE = regexp.MustCompile(`^([a-z]+?)(\d+)-(s[123])(?:-(.+))?$`)

// cellKey says where a line goes in the table.
type cellKey struct {
	col  string // column key: cf, sio, ceil, dceil, rp, or rp:<variant>
	row  string // s1, s2, s2-500, s3
	qual string // publish mode within a cell: api, client or ""
}

func classify(label string) (cellKey, bool) {
	m := labelRE.FindStringSubmatch(label)
	if m == nil {
		return cellKey{}, false
	}
	k := cellKey{col: m[1], row: m[3]}
	switch k.col {
	case "cf", "sio", "ceil", "dceil", "rp":
	default:
		return cellKey{}, false
	}
	var variant []string
	for _, q := range strings.Split(m[4], "-") {
		switch {
		case q == "":
		case q == "api" || q == "client":
			k.qual = q
		case k.row == "s2" && q == "500":
			k.row = "s2-500"
		default:
			variant = append(variant, q)
		}
	}
	if len(variant) > 0 {
		if k.col != "rp" {
			return cellKey{}, false // a peer variant has no column
		}
		k.col = "rp:" + strings.Join(variant, "-")
	}
	return k, true
}

func colTitle(col string) string {
	switch col {
	case "cf":
		return "Centrifugo+Redis"
	case "sio":
		return "Socket.IO+Redis"
	case "ceil":
		return "ceiling"
	case "dceil":
		return "durable ceiling"
	case "rp":
		return "raftplane, default flags"
	}
	v := strings.TrimPrefix(col, "rp:")
	if m := regexp.MustCompile(`^par(\d+)$`).FindStringSubmatch(v); m != nil {
		return "raftplane, `-max-parallel-invocations " + m[1] + "`"
	}
	return "raftplane, " + v
}

func isRP(col string) bool { return col == "rp" || strings.HasPrefix(col, "rp:") }

// entry is one figure in a cell; v is the number the ratios compare (NaN
// when there is none), text what the cell shows.
type entry struct {
	qual string
	v    float64
	text string
	tail string // after the ratios: "; 2,000 fails"
}

type peersRow struct {
	key, title string
	higher     bool // a higher v is better
	cells      map[string][]entry
}

type peersTable struct {
	cols    []string
	rows    []*peersRow
	foreign map[string][]string // col -> "S1 12%" ...
	ignored []string
	disk    []peersLine // the disk probe's lines (disk.go)
}

// pickAttempts keeps, per rate, the least noisy attempt (the harness re-runs
// a noisy step and lets its least noisy attempt decide the sweep), in rate
// order.
func pickAttempts(ls []peersLine) []peersLine {
	best := map[int]peersLine{}
	for _, l := range ls {
		if b, ok := best[l.TargetRate]; !ok || l.OtherCPUPct < b.OtherCPUPct {
			best[l.TargetRate] = l
		}
	}
	out := make([]peersLine, 0, len(best))
	for _, l := range best {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TargetRate < out[j].TargetRate })
	return out
}

func qualText(qual string, workers int) string {
	switch qual {
	case "api":
		return fmt.Sprintf("REST, %d workers", workers)
	case "client":
		return "client publish"
	}
	return ""
}

func withQual(s, qual string, workers int) string {
	if q := qualText(qual, workers); q != "" {
		return s + " (" + q + ")"
	}
	return s
}

// maxRate is the highest rate whose step passed ok, and its text: "1,500
// (p99 245 ms); 2,000 fails", "≥ 3,000 (p99 ..., highest rate tried)".
func maxRate(steps []peersLine, ok func(peersLine) bool, qual string) entry {
	var best, fail *peersLine
	for i := range steps {
		if ok(steps[i]) {
			best = &steps[i]
		}
	}
	for i := range steps { // the first failure above the best (or the first at all)
		if !ok(steps[i]) && (best == nil || steps[i].TargetRate > best.TargetRate) {
			fail = &steps[i]
			break
		}
	}
	workers := 0
	if len(steps) > 0 {
		workers = steps[0].PubWorkers
	}
	if best == nil {
		t := "none"
		if fail != nil {
			t = "< " + thousands(float64(fail.TargetRate)) + " (lowest rate tried fails)"
		}
		return entry{qual: qual, v: math.NaN(), text: withQual(t, qual, workers)}
	}
	q := qualText(qual, workers)
	detail := "p99 " + fmtMS(best.LatP99us)
	if q != "" {
		detail = q + ", " + detail
	}
	t := thousands(float64(best.TargetRate)) + " (" + detail + ")"
	tail := ""
	if fail != nil && fail.TargetRate > best.TargetRate {
		tail = ", " + thousands(float64(fail.TargetRate)) + " fails"
	} else if best.TargetRate == steps[len(steps)-1].TargetRate {
		t = "≥ " + t
		tail = ", highest rate tried"
	}
	return entry{qual: qual, v: float64(best.TargetRate), text: t, tail: tail}
}

// cpuPerMillion is the servers' CPU seconds per million deliveries of a
// step (the harness's own CPU is left out: it is the subscribers' side).
func cpuPerMillion(s peersLine) float64 {
	if s.Delivered == 0 {
		return math.NaN()
	}
	pct := 0.0
	for _, p := range s.Procs {
		if p.Name != "harness" {
			pct += p.CPUPct
		}
	}
	return pct / 100 * s.DurationS / (float64(s.Delivered) / 1e6)
}

// buildPeersTable groups the JSONL lines by cell and system, keeps the
// least noisy attempt of each step, and fills one row per figure with a
// column per system. (One pass per figure of the table, in its
// order; long as the table is.)
func buildPeersTable(lines []peersLine) *peersTable {
	t := &peersTable{foreign: map[string][]string{}}
	type group struct {
		key   cellKey
		lines []peersLine
	}
	var groups []*group
	byKey := map[cellKey]*group{}
	for _, l := range lines {
		if l.Scenario == "disk" {
			t.disk = append(t.disk, l)
			continue
		}
		k, ok := classify(l.Label)
		if !ok || (k.row == "s3") != (l.Scenario == "conns") {
			t.ignored = append(t.ignored, fmt.Sprintf("line %d (%s)", l.line, l.Label))
			continue
		}
		g := byKey[k]
		if g == nil {
			g = &group{key: k}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.lines = append(g.lines, l)
	}
	// The peers, the ceiling and raftplane in a fixed order, raftplane's
	// variants after them as they come; a column without a line (cells not
	// run) is left out.
	for _, c := range []string{"cf", "sio", "ceil", "dceil", "rp"} {
		if slices.ContainsFunc(groups, func(g *group) bool { return g.key.col == c }) {
			t.cols = append(t.cols, c)
		}
	}
	for _, g := range groups {
		if !slices.Contains(t.cols, g.key.col) {
			t.cols = append(t.cols, g.key.col)
		}
	}
	rows := []*peersRow{
		{key: "s1", title: "S1 fan-out, max msg/s with p99 <= 1 s", higher: true},
		{key: "s1-100", title: "S1, max msg/s with p99 <= 100 ms", higher: true},
		{key: "s1-cpu", title: "S1 servers' CPU s per million deliveries, at the max rate (p99 <= 1 s)", higher: false},
		{key: "s2", title: "S2 node 1 -> node 3, 1,000 msg/s from one connection, p50 / p99", higher: false},
		{key: "s2-500", title: "S2 at 500 msg/s, p50 / p99", higher: false},
		{key: "s3", title: "S3 RSS per idle connection (each in a group), after settle / at end of hold", higher: false},
	}
	byRow := map[string]*peersRow{}
	for _, r := range rows {
		r.cells = map[string][]entry{}
		byRow[r.key] = r
	}
	foreign := map[string]map[string]float64{} // col -> row -> max other_cpu_pct
	noteForeign := func(col, row string, v float64) {
		if foreign[col] == nil {
			foreign[col] = map[string]float64{}
		}
		if old, ok := foreign[col][row]; !ok || v > old {
			foreign[col][row] = v
		}
	}
	for _, g := range groups {
		k := g.key
		add := func(row string, e entry) { byRow[row].cells[k.col] = append(byRow[row].cells[k.col], e) }
		switch k.row {
		case "s1":
			steps := pickAttempts(g.lines)
			for _, s := range steps {
				noteForeign(k.col, "S1", s.OtherCPUPct)
			}
			e := maxRate(steps, func(s peersLine) bool { return s.Sustainable }, k.qual)
			add("s1", e)
			add("s1-100", maxRate(steps, func(s peersLine) bool { return s.Sustainable && s.LatP99us <= 100_000 }, k.qual))
			for _, s := range steps {
				if !math.IsNaN(e.v) && float64(s.TargetRate) == e.v {
					c := cpuPerMillion(s)
					add("s1-cpu", entry{qual: k.qual, v: c, text: withQual(fmtFloat(c), k.qual, s.PubWorkers)})
				}
			}
		case "s2", "s2-500":
			steps := pickAttempts(g.lines)
			for _, s := range steps {
				noteForeign(k.col, "S2", s.OtherCPUPct)
				txt := fmtMS(s.LatP50us) + " / " + fmtMS(s.LatP99us)
				var extra []string
				if s.Reorders > 0 {
					extra = append(extra, thousands(float64(s.Reorders))+" reorders")
				}
				if !s.Sustainable {
					extra = append(extra, fmt.Sprintf("not sustained: %s/s achieved, %.2f%% delivered", thousands(s.Achieved), 100*s.DelivRatio))
				}
				if len(extra) > 0 {
					txt += ", " + strings.Join(extra, ", ")
				}
				add(k.row, entry{qual: k.qual, v: float64(s.LatP99us) / 1000, text: txt})
			}
		case "s3":
			for _, s := range g.lines {
				settle, end := serverBytes(s.BytesPerConn), serverBytes(s.BytesPerConnEnd)
				txt := fmt.Sprintf("%s KB / %s KB (%s conns)", fmtFloat(round1(settle/1000)), fmtFloat(round1(end/1000)), thousands(float64(s.Connected)))
				add("s3", entry{v: end / 1000, text: txt})
			}
		}
	}
	for _, c := range t.cols {
		for _, row := range []string{"S1", "S2"} {
			if v, ok := foreign[c][row]; ok {
				t.foreign[c] = append(t.foreign[c], fmt.Sprintf("%s %.0f%%", row, v))
			}
		}
	}
	t.rows = rows
	return t
}

// serverBytes is the bytes per connection of the server process of an S3
// line (the one process that is not the harness); NaN when absent.
func serverBytes(m map[string]float64) float64 {
	v, n := 0.0, 0
	for k, x := range m {
		if k != "harness" {
			v += x
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return v
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// best is the best v of some columns' entries (NaN when none has one).
func (r *peersRow) best(cols ...string) float64 {
	b := math.NaN()
	for _, c := range cols {
		for _, e := range r.cells[c] {
			if math.IsNaN(e.v) {
				continue
			}
			if math.IsNaN(b) || r.higher && e.v > b || !r.higher && e.v < b {
				b = e.v
			}
		}
	}
	return b
}

// cell renders a column of a row; raftplane's figures get their ratios to
// the ceiling and to the best peer (raftplane / reference).
func (r *peersRow) cell(col string) string {
	es := r.cells[col]
	if len(es) == 0 {
		return ""
	}
	ceil, dceil, peer := r.best("ceil"), r.best("dceil"), r.best("cf", "sio")
	parts := make([]string, 0, len(es))
	for _, e := range es {
		s := e.text
		if isRP(col) && !math.IsNaN(e.v) {
			var rs []string
			if !math.IsNaN(ceil) && ceil > 0 {
				rs = append(rs, fmtRatio(e.v/ceil)+" ceiling")
			}
			if !math.IsNaN(dceil) && dceil > 0 {
				rs = append(rs, fmtRatio(e.v/dceil)+" durable ceiling")
			}
			if !math.IsNaN(peer) && peer > 0 {
				rs = append(rs, fmtRatio(e.v/peer)+" best peer")
			}
			if len(rs) > 0 {
				s += " [" + strings.Join(rs, ", ") + "]"
			}
		}
		parts = append(parts, s+e.tail)
	}
	return strings.Join(parts, "; ")
}

func (t *peersTable) header() []string {
	h := []string{"figure"}
	for _, c := range t.cols {
		h = append(h, colTitle(c))
	}
	return h
}

func (t *peersTable) body() [][]string {
	var out [][]string
	for _, r := range t.rows {
		row := []string{r.title}
		empty := true
		for _, c := range t.cols {
			s := r.cell(c)
			empty = empty && s == ""
			row = append(row, s)
		}
		if !empty {
			out = append(out, row)
		}
	}
	row := []string{"foreign CPU (max other_cpu_pct of the steps used, % of one core)"}
	seen := false
	for _, c := range t.cols {
		s := strings.Join(t.foreign[c], ", ")
		seen = seen || s != ""
		row = append(row, s)
	}
	if seen {
		out = append(out, row)
	}
	return out
}

const peersLegend = "Ratios in brackets: raftplane's figure / the ceiling's, / the durable ceiling's (the ceiling delivering only what a majority of its nodes has on disk: docs/experiments/durableceiling) and / the best peer's (the higher rate, the lower latency or memory); S2 ratios are of p99. A step counts when >= 98% of the rate is achieved, >= 99.9% delivered, every publish acknowledged and p99 within the bar; of a re-run (noisy) step the least noisy attempt counts."

func (t *peersTable) notes() []string {
	n := []string{peersLegend}
	for _, d := range t.disk {
		n = append(n, fmt.Sprintf("The disk alone, for S2 with fsync (%s, this tool's probe after the cells): %d writers, each appending and fdatasyncing %s records/s on the nodes' filesystem, as the three nodes' logs do: one sync p50 / p99 %s / %s; the median of a tick's %d syncs, under which no commit can come (a majority durable), p50 / p99 / p99.9 %s / %s / %s.",
			d.Label, d.Writers, thousands(float64(d.Rate)), fmtMS(d.SyncP50us), fmtMS(d.SyncP99us), d.Writers, fmtMS(d.QuorumP50us), fmtMS(d.QuorumP99us), fmtMS(d.QuorumP999us)))
	}
	if len(t.ignored) > 0 {
		n = append(n, "ignored (label not of a known cell): "+strings.Join(t.ignored, ", "))
	}
	return n
}

func (t *peersTable) text(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.header(), "\t"))
	for _, r := range t.body() {
		for i := range r {
			if r[i] == "" {
				r[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range t.notes() {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

func (t *peersTable) markdown(w io.Writer) error {
	var b strings.Builder
	h := t.header()
	b.WriteString("| " + strings.Join(h, " | ") + " |\n|")
	for range h {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.body() {
		for i := range r {
			r[i] = strings.ReplaceAll(r[i], "|", `\|`)
		}
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	b.WriteString("\n")
	for _, n := range t.notes() {
		b.WriteString(n + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtRatio prints a ratio with two significant digits at least (0.33x,
// 2.5x, 14x, 5405x).
func fmtRatio(r float64) string {
	switch {
	case r >= 100:
		return strconv.FormatFloat(r, 'f', 0, 64) + "x"
	case r >= 10:
		return strconv.FormatFloat(r, 'f', 1, 64) + "x"
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "x"
}

// fmtMS prints microseconds as milliseconds: 2 decimals below 10 ms, whole
// milliseconds above, seconds from 10 s.
func fmtMS(us int64) string {
	ms := float64(us) / 1000
	switch {
	case ms >= 10000:
		return strconv.FormatFloat(ms/1000, 'f', 1, 64) + " s"
	case ms >= 10:
		return thousands(math.Round(ms)) + " ms"
	}
	return strconv.FormatFloat(ms, 'f', 2, 64) + " ms"
}

// thousands prints a whole number with comma separators (1,500).
func thousands(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
