package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
		Publishers: 4, Subscribers: 6, Groups: []string{"g0", "g1", "g2"}, ReplayProb: 0.05,
		Quiet: 3 * time.Second, Recovery: 60 * time.Second, Logf: t.Logf}
	if p.Name == "soak" {
		o.Publishers, o.Subscribers = 8, 16
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
		name string
		kind string
		dur  time.Duration
	}{
		{"leader isolated while publishing", nemesis.PartitionLeader, 6 * time.Second},
		{"leader paused past the election timeout", nemesis.PauseLeader, 4 * time.Second},
		{"leader killed and restarted", nemesis.KillLeader, 3 * time.Second},
		{"majority killed: no quorum, then recovery", nemesis.KillMajority, 4 * time.Second},
		{"follower wiped and rejoined as a new member", nemesis.Wipe, 0},
		{"follower catches up from a snapshot", nemesis.SnapshotLag, 8 * time.Second},
		{"gossip cut, Raft flowing", nemesis.GossipCut, 6 * time.Second},
	}
	for _, sc := range scenarios {
		t.Run(sc.kind, func(t *testing.T) {
			dir := runDir(t)
			netw, ip, launch := setupNetwork(t, 5)
			steps := []nemesis.Step{{At: 0, Kind: sc.kind, Dur: sc.dur, Pick: uint64(len(sc.name))}}
			o := Options{Bin: bin(t, "raftplane"), Dir: dir, N: 5, Steps: steps, Seed: seed(), Net: netw, IP: ip, Launch: launch,
				Publishers: 4, Subscribers: 4, Groups: []string{"g0", "g1"}, ReplayProb: 0.05,
				Quiet: 3 * time.Second, Recovery: 60 * time.Second, Logf: t.Logf}
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
			t.Logf("%s: max unavailable %s, %d resumes, %d deliveries", sc.name, out.Report.MaxUnavailable,
				out.Report.Subscribers.Resumes, out.Report.Subscribers.Deliveries)
		})
	}
}
