package main

import (
	"bytes"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of testdata/")

// testdata/side-by-side-sample.jsonl holds one line of every cell of
// side-by-side.sh, in the harness's own schema (json.Marshal of its
// stepResult and connsResult, field for field); see TestPeersTable_Golden.
const sampleJSONL = "testdata/side-by-side-sample.jsonl"

func readSample(t *testing.T) []peersLine {
	t.Helper()
	f, err := os.Open(sampleJSONL)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ls, err := parsePeersJSONL(f)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func TestParsePeersJSONL(t *testing.T) {
	ls := readSample(t)
	if len(ls) != 46 {
		t.Fatalf("%d lines, want 46", len(ls))
	}
	byLabel := map[string]peersLine{}
	for _, l := range ls {
		byLabel[l.Label] = l
	}
	par := byLabel["rp3-s2-client-par64"]
	if par.Reorders != 2086 || par.LatP99us != 9700 || par.TargetRate != 1000 || !par.Sustainable || par.OtherCPUPct != 6 {
		t.Errorf("rp3-s2-client-par64: %+v", par)
	}
	if len(par.Procs) != 4 || par.Procs[3].Name != "harness" || par.Procs[0].CPUPct != 50 {
		t.Errorf("procs: %+v", par.Procs)
	}
	s3 := byLabel["rp1-s3"]
	if s3.Scenario != "conns" || s3.Connected != 10000 || s3.BytesPerConn["rp0"] != 21200 || s3.BytesPerConnEnd["rp0"] != 26800 {
		t.Errorf("rp1-s3: %+v", s3)
	}
	if d := byLabel["disk3-s2"]; d.Scenario != "disk" || d.Writers != 3 || d.Rate != 1000 || d.Skipped != 1 ||
		d.SyncP50us != 280 || d.SyncP99us != 690 || d.QuorumP50us != 270 || d.QuorumP99us != 610 || d.QuorumP999us != 2400 {
		t.Errorf("disk3-s2: %+v", d)
	}
	if ls[0].line != 1 || ls[45].line != 46 {
		t.Errorf("line numbers %d..%d", ls[0].line, ls[45].line)
	}
}

func TestParsePeersJSONL_Errors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"not json", `{"label":"cf3-s2-client","scenario":"fanout"}` + "\n{oops\n", "line 2"},
		{"no label", `{"scenario":"fanout"}`, "line 1: no label"},
		{"scenario", `{"label":"x","scenario":"sweep"}`, `line 1: scenario "sweep"`},
		{"wrong type", `{"label":"x","scenario":"fanout","target_rate":"fast"}`, "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePeersJSONL(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
	ls, err := parsePeersJSONL(strings.NewReader("\n  \n" + `{"label":"sio3-s2","scenario":"fanout"}` + "\n\n"))
	if err != nil || len(ls) != 1 || ls[0].line != 3 {
		t.Fatalf("blank lines: %v %+v", err, ls)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		label string
		want  cellKey
		ok    bool
	}{
		{"cf3-s1-api", cellKey{"cf", "s1", "api"}, true},
		{"cf3-s1-client", cellKey{"cf", "s1", "client"}, true},
		{"sio3-s1", cellKey{"sio", "s1", ""}, true},
		{"ceil3-s2-client", cellKey{"ceil", "s2", "client"}, true},
		{"rp3-s2-client-500", cellKey{"rp", "s2-500", "client"}, true},
		{"cf3-s2-client-500", cellKey{"cf", "s2-500", "client"}, true},
		{"rp3-s1-client-par64", cellKey{"rp:par64", "s1", "client"}, true},
		{"rp1-s3", cellKey{"rp", "s3", ""}, true},
		{"rp3-s1-500", cellKey{"rp:500", "s1", ""}, true}, // 500 is a rate only in S2
		{"cf3-s1-par64", cellKey{}, false},                // peers have no variant columns
		{"nats3-s1", cellKey{}, false},
		{"rp-s1", cellKey{}, false},
		{"", cellKey{}, false},
	} {
		got, ok := classify(tc.label)
		if ok != tc.ok || got != tc.want {
			t.Errorf("classify(%q) = %+v, %t; want %+v, %t", tc.label, got, ok, tc.want, tc.ok)
		}
	}
	if got := colTitle("rp:par64"); got != "raftplane, `-max-parallel-invocations 64`" {
		t.Errorf("colTitle: %q", got)
	}
}

func step(rate int, ok bool, p99us int64, other float64) peersLine {
	return peersLine{Label: "rp3-s1-client", Scenario: "fanout", TargetRate: rate, Sustainable: ok, LatP99us: p99us, OtherCPUPct: other, PubWorkers: 1}
}

func TestMaxRate(t *testing.T) {
	sust := func(s peersLine) bool { return s.Sustainable }
	for _, tc := range []struct {
		name  string
		steps []peersLine
		v     float64
		text  string
	}{
		{"fails above", []peersLine{step(100, true, 1000, 0), step(200, true, 245000, 0), step(300, false, 2e6, 0)}, 200, "200 (client publish, p99 245 ms) | , 300 fails"},
		{"never fails", []peersLine{step(100, true, 1000, 0), step(200, true, 5000, 0)}, 200, "≥ 200 (client publish, p99 5.00 ms) | , highest rate tried"},
		{"first fails", []peersLine{step(100, false, 2e6, 0)}, math.NaN(), "< 100 (lowest rate tried fails) (client publish) | "},
		{"a hole", []peersLine{step(100, true, 1000, 0), step(200, false, 2e6, 0), step(300, true, 9000, 0)}, 300, "≥ 300 (client publish, p99 9.00 ms) | , highest rate tried"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := maxRate(pickAttempts(tc.steps), sust, "client")
			if got := e.text + " | " + e.tail; got != tc.text {
				t.Errorf("text %q, want %q", got, tc.text)
			}
			if !(e.v == tc.v || math.IsNaN(e.v) && math.IsNaN(tc.v)) {
				t.Errorf("v %v, want %v", e.v, tc.v)
			}
		})
	}
}

func TestPickAttempts_LeastNoisy(t *testing.T) {
	got := pickAttempts([]peersLine{step(200, false, 2e6, 60), step(100, true, 1, 1), step(200, true, 1500, 10)})
	if len(got) != 2 || got[0].TargetRate != 100 || got[1].TargetRate != 200 || !got[1].Sustainable || got[1].OtherCPUPct != 10 {
		t.Fatalf("%+v", got)
	}
}

// TestPeersTable_Golden renders the sample in both formats and compares
// with the files next to it (go test -run Golden -update rewrites them).
func TestPeersTable_Golden(t *testing.T) {
	for _, format := range []string{"markdown", "text"} {
		t.Run(format, func(t *testing.T) {
			var b bytes.Buffer
			if err := printPeersFile(&b, sampleJSONL, format); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "side-by-side-sample."+map[string]string{"markdown": "md", "text": "txt"}[format])
			if *updateGolden {
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("table differs from %s:\n%s", golden, b.String())
			}
		})
	}
}

// TestPeersTable_Figures checks the figures the golden file holds, one by
// one, so a wrong golden file cannot pass unnoticed.
func TestPeersTable_Figures(t *testing.T) {
	tb := buildPeersTable(readSample(t))
	wantCols := []string{"cf", "sio", "ceil", "rp", "rp:par64"}
	if strings.Join(tb.cols, ",") != strings.Join(wantCols, ",") {
		t.Fatalf("columns %v, want %v", tb.cols, wantCols)
	}
	row := func(k string) *peersRow {
		for _, r := range tb.rows {
			if r.key == k {
				return r
			}
		}
		t.Fatalf("no row %s", k)
		return nil
	}
	for _, tc := range []struct{ row, col, want string }{
		// the noisy 200 msg/s attempt failed, the re-run held: 200 counts
		{"s1", "rp", "1,000 (REST, 64 workers, p99 700 ms) [0.33x ceiling, 1.67x best peer], 1,500 fails; 200 (client publish, p99 150 ms) [0.07x ceiling, 0.33x best peer], 300 fails"},
		{"s1", "ceil", "≥ 3,000 (client publish, p99 950 ms), highest rate tried"},
		{"s1-100", "rp:par64", "800 (client publish, p99 99 ms) [0.80x ceiling, 4.00x best peer], 1,000 fails"},
		{"s1-100", "sio", "150 (p99 99 ms), 200 fails"},
		{"s2", "cf", "0.47 ms / 1.15 ms"},
		{"s2", "rp:par64", "4.10 ms / 9.70 ms, 2,086 reorders [13.1x ceiling, 8.43x best peer]"},
		{"s2", "rp", "4.20 ms / 4,000 ms, not sustained: 700/s achieved, 100.00% delivered [5405x ceiling, 3478x best peer]"},
		{"s2-500", "rp", "4.20 ms / 13 ms [14.9x best peer]"},
		{"s3", "rp", "21.2 KB / 26.8 KB (10,000 conns) [2.31x ceiling, 1.68x best peer]"},
		// the servers' (50+30+30)% of a core for 10 s over 30 M deliveries (3,000 msg/s, 1,000 subscribers)
		{"s1-cpu", "ceil", "0.367 (client publish)"},
	} {
		if got := row(tc.row).cell(tc.col); got != tc.want {
			t.Errorf("%s/%s = %q\nwant %q", tc.row, tc.col, got, tc.want)
		}
	}
	if got := strings.Join(tb.foreign["rp"], ", "); got != "S1 10%, S2 7%" {
		t.Errorf("foreign CPU of rp: %q", got)
	}
	wantDisk := "The disk alone, for S2 with fsync (disk3-s2, this tool's probe after the cells): 3 writers, each appending and fdatasyncing 1,000 records/s on the nodes' filesystem, as the three nodes' logs do: one sync p50 / p99 0.28 ms / 0.69 ms; the median of a tick's 3 syncs, under which no commit can come (a majority durable), p50 / p99 / p99.9 0.27 ms / 0.61 ms / 2.40 ms."
	if notes := tb.notes(); !slices.Contains(notes, wantDisk) {
		t.Errorf("notes %q\nlack %q", notes, wantDisk)
	}
}

// TestPeersTable_Recorded reads the JSONL of a real one-cell run
// (raftplane-bench -peers -cells s2-rp -peers-duration 5s on the shared
// machine): both attempts were noisy, the least noisy one (86% foreign
// CPU, against 98%) counts, and only raftplane's column is shown.
func TestPeersTable_Recorded(t *testing.T) {
	var b bytes.Buffer
	if err := printPeersFile(&b, "testdata/side-by-side-s2-rp-recorded.jsonl", "markdown"); err != nil {
		t.Fatal(err)
	}
	want := "| figure | raftplane, default flags |\n|---|---|\n" +
		"| S2 node 1 -> node 3, 1,000 msg/s from one connection, p50 / p99 | 8.03 ms / 58 ms |\n" +
		"| foreign CPU (max other_cpu_pct of the steps used, % of one core) | S2 86% |\n\n" + peersLegend + "\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestPeersTable_Ignored(t *testing.T) {
	ls, err := parsePeersJSONL(strings.NewReader(`{"label":"nats3-s1","scenario":"fanout","target_rate":100}
{"label":"rp3-s3","scenario":"fanout","target_rate":100}
{"label":"rp3-s2-client","scenario":"fanout","target_rate":1000,"lat_p50_us":900,"lat_p99_us":2000,"sustainable":true}
`))
	if err != nil {
		t.Fatal(err)
	}
	tb := buildPeersTable(ls)
	if len(tb.ignored) != 2 || !strings.Contains(tb.ignored[0], "line 1 (nats3-s1)") || !strings.Contains(tb.ignored[1], "line 2 (rp3-s3)") {
		t.Errorf("ignored: %v", tb.ignored)
	}
	var b bytes.Buffer
	if err := tb.markdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	// rows without a figure are left out; rp's S2 has no ratio (no ceiling, no peer)
	if strings.Contains(out, "S1 fan-out") || !strings.Contains(out, "| 0.90 ms / 2.00 ms |") || !strings.Contains(out, "ignored (label not of a known cell)") {
		t.Errorf("markdown:\n%s", out)
	}
}

func TestScriptCells(t *testing.T) {
	script := []byte(`cell() {
	case $1 in
	s1-cf-api) redis; cf 3 redis; s1 -proto centrifugo ;;
	s2-rp-500) rp 3; S2RATE=500 s2 ;;
	s3-ceil) ceil 1; s3 -proto signalr -label ceil1-s3 ;;
	*) echo "unknown cell $1" >&2 ;;
	esac
}`)
	if got := strings.Join(scriptCells(script), " "); got != "s1-cf-api s2-rp-500 s3-ceil" {
		t.Fatalf("cells %q", got)
	}
}

func TestPeersFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-peers", "-cells", "s2-rp,bogus"}, `-cells: "bogus"`},
		{[]string{"-peers", "-peers-format", "html"}, `-peers-format "html"`},
		{[]string{"-peers", "-peers-duration", "5m"}, "-peers-duration"},
		{[]string{"-peers", "-peers-rates-rp", "100,fast"}, "-peers-rates-rp"},
		{[]string{"-peers", "-peers-build", ""}, "-peers-build"},
	} {
		if _, err := parseFlags(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
	c, err := parseFlags([]string{"-peers", "-cells", " s2-rp , s1-rp-client,", "-peers-format", "markdown", "-peers-duration", "5s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.peers.enabled || strings.Join(c.peers.cells, " ") != "s2-rp s1-rp-client" || c.peers.format != "markdown" || c.peers.duration != "5s" || c.peers.build != "/tmp/peers" {
		t.Fatalf("%+v", c.peers)
	}
}

func TestModuleRoot(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := moduleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Join(root, "cmd", "raftplane-bench") != wd {
		t.Fatalf("root %s for %s", root, wd)
	}
	if _, err := moduleRoot(t.TempDir()); err == nil || !strings.Contains(err.Error(), "raftplane checkout") {
		t.Fatalf("outside the module: %v", err)
	}
}

func TestRunPeers_MissingBenchDir(t *testing.T) {
	p := &peersConfig{enabled: true, format: "text", build: t.TempDir(), dir: filepath.Join(t.TempDir(), "nothing")}
	err := runPeers(t.Context(), p, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "needs the shared bench tool") {
		t.Fatalf("err %v", err)
	}
}

func TestFormatters(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1500: "-1,500", math.NaN(): "-"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[int64]string{240: "0.24 ms", 9700: "9.70 ms", 13000: "13 ms", 4000000: "4,000 ms", 12_500_000: "12.5 s"} {
		if got := fmtMS(in); got != want {
			t.Errorf("fmtMS(%d) = %q, want %q", in, got, want)
		}
	}
}
