package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/chaos/history"
	"github.com/raftplane/raftplane/chaos/nemesis"
	"github.com/raftplane/raftplane/chaos/sandbox"
)

var (
	seedFlag    = flag.Uint64("chaos.seed", 0, "schedule seed (0: CHAOS_SEED, else from the clock); printed by every run")
	profileFlag = flag.String("chaos.profile", "", "profile: short (default) or soak; or CHAOS_PROFILE")
	replayFlag  = flag.String("chaos.replay", "", "replay a recorded schedule.json instead of generating one")
)

// binEnv carries the built binaries' folder from the host process into the
// sandbox, so they are built once.
const binEnv = "RAFTPLANE_CHAOS_BIN"

// sb is where TestMain left this process.
var sb sandbox.Result

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // chaos runs are skipped; nothing to prepare
	}
	if os.Getenv(binEnv) == "" {
		dir, err := buildBinaries()
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos: build:", err)
			os.Exit(1)
		}
		os.Setenv(binEnv, dir)
		defer os.RemoveAll(dir)
	}
	code := sandbox.Run(func(r sandbox.Result) int { sb = r; return m.Run() })
	if !sb.Inside {
		os.RemoveAll(os.Getenv(binEnv)) // the host process built the binaries
	}
	os.Exit(code)
}

// buildBinaries builds raftplane, and the deliberately broken
// raftplane-nodedup, into a temporary folder.
func buildBinaries() (string, error) {
	dir, err := os.MkdirTemp("", "raftplane-chaos-bin-")
	if err != nil {
		return "", err
	}
	builds := [][]string{
		{"build", "-o", filepath.Join(dir, "raftplane"), "../cmd/raftplane"},
		{"build", "-tags", "chaos_nodedup", "-o", filepath.Join(dir, "raftplane-nodedup"), "../cmd/raftplane"},
	}
	if os.Getenv("CHAOS_RACE") == "1" {
		for i := range builds {
			builds[i] = append([]string{builds[i][0], "-race"}, builds[i][1:]...)
		}
	}
	for _, args := range builds {
		cmd := exec.Command("go", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("go %v: %w", args, err)
		}
	}
	return dir, nil
}

// runDir makes the run's artefact folder: under CHAOS_OUT if set, else a
// temporary one removed after a passing run unless CHAOS_KEEP=1.
func runDir(t *testing.T) string {
	base := os.Getenv("CHAOS_OUT")
	if base == "" {
		base = os.TempDir()
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(base, "chaos-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("CHAOS_KEEP") != "1" && os.Getenv("CHAOS_OUT") == "" {
			os.RemoveAll(dir)
		} else {
			t.Logf("run artefacts kept in %s (history.jsonl, schedule.json, report.json, summary.txt, node logs and data)", dir)
		}
	})
	return dir
}

func seed() uint64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	if s, err := strconv.ParseUint(os.Getenv("CHAOS_SEED"), 10, 64); err == nil && s != 0 {
		return s
	}
	return uint64(time.Now().UnixNano())
}

func profile(t *testing.T) nemesis.Profile {
	name := *profileFlag
	if name == "" {
		name = os.Getenv("CHAOS_PROFILE")
	}
	if name == "" {
		name = "short"
	}
	p, ok := nemesis.Profiles[name]
	if !ok {
		t.Fatalf("unknown chaos profile %q", name)
	}
	if v := os.Getenv("CHAOS_FAULTS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("CHAOS_FAULTS=%q: want a duration such as 10m", v)
		}
		p.Faults = d // a shorter or longer fault phase for the same profile
	}
	return p
}

// TestChaos runs a profile (short by default: about 3 minutes, one fault at
// a time on 5 nodes) with a seeded schedule and checks the history.
//
//	go test ./chaos -run TestChaos -v                       # short, new seed
//	go test ./chaos -run TestChaos -v -chaos.seed=1234      # replay a seed
//	CHAOS_PROFILE=soak go test ./chaos -run TestChaos -v -timeout 90m
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos runs are skipped with -short")
	}
	p := profile(t)
	s := seed()
	dir := runDir(t)
	steps := nemesis.Schedule(s, p)
	if *replayFlag != "" {
		var err error
		if steps, err = nemesis.LoadSchedule(*replayFlag); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("chaos profile %s, seed %d (replay: -chaos.seed=%d), %d faults, artefacts in %s", p.Name, s, s, len(steps), dir)
	for _, st := range steps {
		t.Logf("  %s", st)
	}
	if err := nemesis.SaveSchedule(filepath.Join(dir, "schedule.json"), steps); err != nil {
		t.Fatal(err)
	}
	netw, ip, launch := setupNetwork(t, p.Nodes)
	o := Options{Bin: bin(t, "raftplane"), Dir: dir, N: p.Nodes, Steps: steps, Seed: s, Net: netw, IP: ip, Launch: launch,
		Publishers: 4, Subscribers: 6, Groups: []string{"g0", "g1", "g2"}, ReplayProb: 0.05, LateReplayProb: 0.05,
		Quiet: 3 * time.Second, Recovery: 60 * time.Second, DiskSize: diskSize(t, 128<<20), Logf: t.Logf}
	if p.Name == "soak" {
		o.Publishers, o.Subscribers = 8, 16
		o.DiskSize = diskSize(t, 1<<30) // 30 min of a cache that keeps everything, in every snapshot
	}
	out := Run(context.Background(), o)
	if out.Err != nil {
		t.Fatalf("seed %d: %v", s, out.Err)
	}
	t.Logf("seed %d:\n%s", s, out.Report.Summary())
	if !out.Report.OK() {
		t.Fatalf("seed %d: the checker found violations (see above and %s/report.json); replay with -chaos.seed=%d", s, dir, s)
	}
}

// TestChaosCatchesDuplicates runs a build whose FSM skips its duplicate-id
// check, with publishers that resend acknowledged messages under the same
// idempotency key: the checker must report duplicates. It shows the suite
// can fail.
func TestChaosCatchesDuplicates(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos runs are skipped with -short")
	}
	dir := runDir(t)
	netw, ip, launch := setupNetwork(t, 3)
	o := Options{Bin: bin(t, "raftplane-nodedup"), Dir: dir, N: 3, Seed: seed(), Net: netw, IP: ip, Launch: launch,
		Publishers: 2, Subscribers: 2, Groups: []string{"g0", "g1"}, ReplayProb: 0.5,
		Quiet: 5 * time.Second, Recovery: 30 * time.Second, Logf: t.Logf}
	out := Run(context.Background(), o)
	if out.Err != nil {
		t.Fatal(out.Err)
	}
	if out.Report.Counts["duplicate"] == 0 {
		t.Fatalf("the checker did not report the broken build's duplicates:\n%s", out.Report.Summary())
	}
	t.Logf("the broken build was caught, as it must be:\n%s", out.Report.Summary())
}

// diskSize is the size of each node's own disk (the disk faults fill it):
// def, or CHAOS_DISK_MB; 0 (no disks, no disk faults) outside the sandbox,
// where mounting one would touch the host.
func diskSize(t *testing.T, def int64) int64 {
	if !sb.Inside {
		return 0
	}
	if v := os.Getenv("CHAOS_DISK_MB"); v != "" {
		mb, err := strconv.ParseInt(v, 10, 64)
		if err != nil || mb < 16 {
			t.Fatalf("CHAOS_DISK_MB=%q: want a size in MiB, at least 16", v)
		}
		return mb << 20
	}
	return def
}

func bin(t *testing.T, name string) string {
	dir := os.Getenv(binEnv)
	if dir == "" {
		t.Fatal("no chaos binaries (TestMain builds them)")
	}
	return filepath.Join(dir, name)
}

// TestChaosScenarios runs scripted faults, one per run, as regressions for
// the situations most likely to break an acknowledged message or a resume.
func TestChaosScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos runs are skipped with -short")
	}
	scenarios := []struct {
		name   string
		kind   string
		dur    time.Duration
		offset time.Duration
		// running is how many of the 5 nodes start (0: all), flags more
		// node flags.
		running int
		flags   []string
		// check, if set, asserts more on the run's history.
		check func(t *testing.T, dir string, h history.History, out Outcome)
	}{
		{"leader isolated while publishing", nemesis.PartitionLeader, 6 * time.Second, 0, 0, nil, nil},
		{"leader paused past the election timeout", nemesis.PauseLeader, 4 * time.Second, 0, 0, nil, nil},
		{"leader killed and restarted", nemesis.KillLeader, 3 * time.Second, 0, 0, nil, nil},
		{"majority killed: no quorum, then recovery", nemesis.KillMajority, 4 * time.Second, 0, 0, nil, nil},
		{"follower wiped and rejoined as a new member", nemesis.Wipe, 0, 0, 0, nil, nil},
		{"follower catches up from a snapshot", nemesis.SnapshotLag, 8 * time.Second, 0, 0, nil, nil},
		{"gossip cut, Raft flowing", nemesis.GossipCut, 6 * time.Second, 0, 0, nil, nil},
		{"leader an hour ahead killed: the next leader commits at once", nemesis.ClockSkew, 8 * time.Second, time.Hour, 0, nil, checkClockFailover},
		{"leader's clock an hour forward, then an hour behind", nemesis.ClockJump, 8 * time.Second, time.Hour, 0, nil, noExpired},
		{"every clock set off by up to an hour", nemesis.ClockScramble, 6 * time.Second, time.Hour, 0, nil, noExpired},
		{"a follower's disk full", nemesis.DiskFull, 8 * time.Second, 0, 0, nil, checkDiskFault},
		{"the leader's disk full", nemesis.DiskFullLeader, 8 * time.Second, 0, 0, nil, checkDiskFault},
		{"a follower's writes fail", nemesis.DiskFail, 8 * time.Second, 0, 0, nil, checkDiskFault},
		{"the leader's writes fail", nemesis.DiskFailLeader, 8 * time.Second, 0, 0, nil, checkDiskFault},
		{"grow 1 -> 3 -> 5 voters under load, shrink back to 1", nemesis.GrowShrink, 6 * time.Second, 0, 1,
			[]string{"-voters", "5"}, wantSettled([2]int{3, 3}, [2]int{5, 5}, [2]int{4, 3}, [2]int{3, 3}, [2]int{2, 1}, [2]int{1, 1})},
		{"shrink 5 -> 3 -> 1 by leaves, grow back with new members (3 voters)", nemesis.ShrinkGrow, 6 * time.Second, 0, 0, nil,
			wantSettled([2]int{4, 3}, [2]int{3, 3}, [2]int{2, 1}, [2]int{1, 1}, [2]int{3, 3}, [2]int{5, 3})},
		{"a voter killed for good, a brand-new node replaces it", nemesis.ReplaceVoter, 4 * time.Second, 0, 3, nil,
			wantJournal("replaced: ", "is a voter")},
		{"a new node joins as a non-voter, a voter leaves, the newcomer is promoted", nemesis.JoinPromote, 6 * time.Second, 0, 3, nil,
			wantJournal("promoted: the newcomer")},
	}
	for _, sc := range scenarios {
		t.Run(sc.kind, func(t *testing.T) {
			dir := runDir(t)
			netw, ip, launch := setupNetwork(t, 5)
			steps := []nemesis.Step{{At: 0, Kind: sc.kind, Dur: sc.dur, Pick: uint64(len(sc.name)), Offset: sc.offset}}
			o := Options{Bin: bin(t, "raftplane"), Dir: dir, N: 5, Running: sc.running, Steps: steps, Seed: seed(), Net: netw, IP: ip, Launch: launch,
				Publishers: 4, Subscribers: 4, Groups: []string{"g0", "g1"}, ReplayProb: 0.05, LateReplayProb: 0.05,
				Quiet: 3 * time.Second, Recovery: 60 * time.Second, DiskSize: diskSize(t, 128<<20), Flags: sc.flags, Logf: t.Logf}
			out := Run(context.Background(), o)
			if out.Err != nil {
				t.Fatalf("%s: %v", sc.name, out.Err)
			}
			if out.Report.Faults[sc.kind] != 1 {
				t.Errorf("%s: the fault was not injected (faults %v, notes %v)", sc.name, out.Report.Faults, out.Report.Notes)
			}
			if !out.Report.OK() {
				t.Fatalf("%s:\n%s", sc.name, out.Report.Summary())
			}
			if sc.check != nil {
				h, err := history.Load(filepath.Join(dir, history.FileName))
				if err != nil {
					t.Fatal(err)
				}
				sc.check(t, dir, h, out)
			}
			t.Logf("%s: max unavailable %s, %d resumes, %d deliveries", sc.name, out.Report.MaxUnavailable,
				out.Report.Subscribers.Resumes, out.Report.Subscribers.Deliveries)
		})
	}
}

// noExpired fails a run where the FSM refused a send as expired: after a
// clock fault, that would be the storm of issue 15 (a new leader stamping
// behind the log's time, every command older than fsm.MaxCommandAge).
func noExpired(t *testing.T, dir string, h history.History, out Outcome) {
	t.Helper()
	if n := out.Report.Publishes.Expired; n > 0 {
		t.Errorf("%d sends refused as expired", n)
	}
	clockApplied(t, dir, h)
}

// clockApplied checks that every node a clock fault targeted logged the
// offset change (the test hook read the nemesis's file): the fault was
// injected, not just journalled.
func clockApplied(t *testing.T, dir string, h history.History) {
	t.Helper()
	for _, e := range h {
		if e.Type != history.FaultStart || !strings.HasPrefix(e.Kind, "clock-") {
			continue
		}
		for _, name := range e.Targets {
			b, err := os.ReadFile(filepath.Join(dir, name+".log"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "clock offset changed") {
				t.Errorf("%s: %s's log does not show its clock offset changing", e.Kind, name)
			}
		}
	}
}

// checkClockFailover: the leader, its clock an hour ahead, is killed
// halfway through the fault; a send invoked after the kill must be
// acknowledged (by the next leader) before the fault ends, with none
// refused as expired. The time from the kill to that acknowledgement is
// logged: the election plus one commit.
func checkClockFailover(t *testing.T, dir string, h history.History, out Outcome) {
	t.Helper()
	noExpired(t, dir, h, out)
	killAt, endAt := int64(-1), int64(-1)
	for _, e := range h {
		switch {
		case e.P != "nemesis" || e.Kind != nemesis.ClockSkew:
		case e.Type == history.Note && killAt < 0:
			killAt = e.T
			t.Logf("nemesis: %s", e.Text)
		case e.Type == history.FaultEnd:
			endAt = e.T
		}
	}
	if killAt < 0 || endAt < 0 {
		t.Fatalf("no kill (%d) or end (%d) of the clock fault in the history", killAt, endAt)
	}
	type key struct{ p, id string }
	invoked := map[key]int64{}
	first := int64(-1)
	for _, e := range h {
		switch {
		case e.T <= killAt:
		case e.Type == history.Invoke:
			invoked[key{e.P, e.ID}] = e.T
		case e.Type == history.OK:
			if _, ok := invoked[key{e.P, e.ID}]; ok && first < 0 {
				first = e.T
			}
		}
	}
	if first < 0 || first > endAt {
		t.Fatalf("no send invoked after the leader an hour ahead was killed was acknowledged before the fault ended (first at %d, end at %d)", first, endAt)
	}
	t.Logf("first send invoked after the kill acknowledged %s after it", time.Duration(first-killAt).Round(time.Millisecond))
}

// checkDiskFault: the node whose disk was filled, or whose writes failed,
// said so loudly (its log
// says its writes fail, then succeed again after the heal; its /readyz
// answered 503 naming the disk halfway through the fault), and the checker
// (run by the caller) found nothing acknowledged lost, duplicated or
// reordered, and every node at the same position with the same digest.
func checkDiskFault(t *testing.T, dir string, h history.History, out Outcome) {
	t.Helper()
	var ready string
	for _, e := range h {
		switch {
		case e.P != "nemesis" || !strings.HasPrefix(e.Kind, "disk-"):
		case e.Type == history.Note:
			ready = e.Text
			t.Logf("%s", e.Text)
		case e.Type == history.FaultStart:
			t.Logf("%s on %v: %v", e.Kind, e.Targets, e.Cmds)
			for _, name := range e.Targets {
				b, err := os.ReadFile(filepath.Join(dir, name+".log"))
				if err != nil {
					t.Fatal(err)
				}
				log := string(b)
				if !strings.Contains(log, "writes to the disk fail") {
					t.Errorf("%s: %s's log lacks %q", e.Kind, name, "writes to the disk fail")
				}
				// It says so when writes succeed again, or, when its
				// writes failed outright, it stopped (raft cannot save its
				// term: a fail-stop) and was started again on its data.
				if !strings.Contains(log, "writes to the disk succeed again") && !strings.Contains(log, "failed to save current term") {
					t.Errorf("%s: %s's log shows neither writes succeeding again nor a fail-stop", e.Kind, name)
				}
			}
		}
	}
	if (!strings.Contains(ready, "/readyz: 503") || !strings.Contains(ready, "cannot write to its disk")) && !strings.Contains(ready, "connection refused") {
		t.Errorf("the faulty node's /readyz halfway through: %q, want 503 naming the disk (or no answer: it stopped)", ready)
	}
}

// membershipJournal returns what the nemesis journalled of a membership
// fault, in order (its commands, its midpoint, its heal), and fails the
// test if any part of it failed: a membership that did not settle, a node
// that did not start or leave.
func membershipJournal(t *testing.T, h history.History) []string {
	t.Helper()
	var out []string
	for _, e := range h {
		if e.P != "nemesis" || e.Kind == "heal-all" {
			continue
		}
		switch e.Type {
		case history.FaultStart:
			out = append(out, e.Cmds...)
		case history.Note:
			if strings.HasPrefix(e.Text, "could not start") || strings.Contains(e.Text, "not settled") {
				t.Errorf("%s: %s", e.Kind, e.Text)
			}
			out = append(out, strings.Split(e.Text, "; ")...)
		case history.FaultEnd:
			if e.Text != "" {
				t.Errorf("%s: %s", e.Kind, e.Text)
			}
			out = append(out, e.Cmds...)
		}
	}
	for _, line := range out {
		t.Logf("nemesis: %s", line)
	}
	return out
}

// settledRe reads the counts of a settled membership view.
var settledRe = regexp.MustCompile(`^settled in .*\((\d+) running, (\d+) voters`)

// wantSettled checks that the membership settled through exactly these
// (running nodes, voters) steps, in order.
func wantSettled(want ...[2]int) func(t *testing.T, dir string, h history.History, out Outcome) {
	return func(t *testing.T, _ string, h history.History, _ Outcome) {
		t.Helper()
		var got [][2]int
		for _, line := range membershipJournal(t, h) {
			if m := settledRe.FindStringSubmatch(line); m != nil {
				r, _ := strconv.Atoi(m[1])
				v, _ := strconv.Atoi(m[2])
				got = append(got, [2]int{r, v})
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("the membership settled at (running, voters) %v, want %v", got, want)
		}
	}
}

// wantJournal checks that a line of the membership fault's journal holds
// every one of parts.
func wantJournal(parts ...string) func(t *testing.T, dir string, h history.History, out Outcome) {
	return func(t *testing.T, _ string, h history.History, _ Outcome) {
		t.Helper()
		for _, line := range membershipJournal(t, h) {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return
			}
		}
		t.Errorf("no line of the membership journal holds %q", parts)
	}
}
