package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/raftplane/raftplane/internal/testnet"
	"github.com/raftplane/raftplane/internal/testproc"
)

func TestDurableCells(t *testing.T) {
	for _, tc := range []struct {
		cells, want []string
	}{
		{nil, []string{"s2-ceil", "s1-ceil"}},
		{[]string{"s1-rp-client", "s1-ceil"}, []string{"s1-ceil"}},
		{[]string{"s2-rp"}, nil},
	} {
		if got := durableCells(tc.cells); !slices.Equal(got, tc.want) {
			t.Errorf("durableCells(%v) = %v, want %v", tc.cells, got, tc.want)
		}
	}
}

func TestRelabelDurable(t *testing.T) {
	in := `{"time":"t","label":"ceil3-s1-client","scenario":"fanout"}

{"time":"t","label":"ceil3-s2-client","scenario":"fanout","note":"\"label\":\"ceil"}
{"time":"t","label":"rp3-s2-client","scenario":"fanout"}
`
	want := `{"time":"t","label":"dceil3-s1-client","scenario":"fanout"}
{"time":"t","label":"dceil3-s2-client","scenario":"fanout","note":"\"label\":\"ceil"}
{"time":"t","label":"rp3-s2-client","scenario":"fanout"}
`
	got, err := relabelDurable([]byte(in))
	if err != nil || string(got) != want {
		t.Fatalf("relabelDurable = %q, %v\nwant %q", got, err, want)
	}
	k, ok := classify("dceil3-s1-client")
	if !ok || k != (cellKey{"dceil", "s1", "client"}) || colTitle(k.col) != "durable ceiling" {
		t.Fatalf("classify(dceil3-s1-client) = %+v, %t (%q)", k, ok, colTitle(k.col))
	}
	if _, err := relabelDurable(bytes.Repeat([]byte("x"), maxPeersLine+1)); err == nil {
		t.Fatal("a line over the bound was taken")
	}
}

// TestPeersTable_DurableColumn: the durable ceiling's column comes between
// the ceiling's and raftplane's, and raftplane's figures get a ratio to it.
func TestPeersTable_DurableColumn(t *testing.T) {
	s2 := func(label string, p50, p99 int64) string {
		return fmt.Sprintf(`{"label":%q,"scenario":"fanout","target_rate":1000,"pub_workers":1,"achieved_pub_rate":1000,"delivery_ratio":1,"lat_p50_us":%d,"lat_p99_us":%d,"sustainable":true}`, label, p50, p99)
	}
	ls, err := parsePeersJSONL(strings.NewReader(strings.Join([]string{
		s2("rp3-s2-client", 1000, 3000), s2("dceil3-s2-client", 800, 2000), s2("ceil3-s2-client", 250, 1000),
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	tb := buildPeersTable(ls)
	if got := strings.Join(tb.cols, ","); got != "ceil,dceil,rp" {
		t.Fatalf("columns %s", got)
	}
	want := "1.00 ms / 3.00 ms [3.00x ceiling, 1.50x durable ceiling]"
	if got := tb.rows[3].cell("rp"); tb.rows[3].key != "s2" || got != want {
		t.Fatalf("S2 raftplane cell %q, want %q", got, want)
	}
}

// sharedBench is ../shared/bench from the module root, or skips (never in
// CI, whose checkout has it beside).
func sharedBench(t *testing.T) (root, bench string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err = moduleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	bench = filepath.Join(root, "..", "shared", "bench")
	_, err1 := os.Stat(filepath.Join(bench, "ceiling", "main.go"))
	_, err2 := exec.LookPath("patch")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: the durable ceiling needs the shared bench's ceiling and patch(1): %v, %v", err1, err2)
		}
		t.Skipf("no shared bench ceiling or patch(1): %v, %v", err1, err2)
	}
	return root, bench
}

// TestDurableCeiling_DeliversWhatAMajorityWrote builds the durable ceiling
// as -peers does, runs three nodes over loopback, and publishes from node 1
// to a subscriber on node 3: the message arrives, and when it does the
// record is in the logs of node 3 and of the leader, node 1 (a majority),
// written before the delivery. (That the writes were synced is the code's
// word: fdatasync before the notices, durable.go.)
func TestDurableCeiling_DeliversWhatAMajorityWrote(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the ceiling")
	}
	root, bench := sharedBench(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := t.TempDir()
	if err := os.WriteFile(filepath.Join(build, "peersbench"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := buildDurableCeiling(ctx, root, bench, build, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "peersbench")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the rest of the build is not linked beside: %v", err)
	}
	logs := t.TempDir()
	var httpAddr, link [3]string
	for i := range 3 {
		httpAddr[i], link[i] = testnet.Addr(t), testnet.Addr(t)
	}
	var nodes [3]*testproc.Proc
	for i := range 3 {
		var peers []string
		for j := range 3 {
			if j != i {
				peers = append(peers, link[j])
			}
		}
		nodes[i] = testproc.Start(t, filepath.Join(dir, "ceiling"), testproc.Options{
			Name: fmt.Sprintf("c%d", i),
			Args: []string{"-addr", httpAddr[i], "-node", fmt.Sprintf("c%d", i), "-link", link[i], "-peers", strings.Join(peers, ",")},
			Env:  []string{"CEILING_DURABLE_DIR=" + logs},
		})
	}
	// A publish is replicated only over links that are up (the durable
	// ceiling, like the ceiling, drops what a down link would carry): wait
	// for each node's two, and for its line saying it listens for clients.
	for _, n := range nodes {
		testproc.WaitFor(t, n, time.Minute, n.Name+"'s links", func() error {
			out := n.Output()
			if k := strings.Count(out, "link: connected to peer"); k < 2 || !strings.Contains(out, "ceiling node "+n.Name+": http") {
				return fmt.Errorf("%d of 2 links up, listening: %t", k, strings.Contains(out, "ceiling node "))
			}
			return nil
		})
	}
	sub := dialCeiling(t, httpAddr[2])
	invoke(t, sub, `{"type":1,"invocationId":"1","target":"JoinGroup","arguments":["g"]}`)
	if m := readRecord(t, sub); !strings.Contains(m, `"invocationId":"1"`) || strings.Contains(m, "error") {
		t.Fatalf("JoinGroup answered %s", m)
	}
	pub := dialCeiling(t, httpAddr[0])
	invoke(t, pub, `{"type":1,"invocationId":"2","target":"SendToGroup","arguments":["g","m","hello-durable"]}`)
	if m := readRecord(t, sub); !strings.Contains(m, `"target":"m"`) || !strings.Contains(m, "hello-durable") {
		t.Fatalf("node 3 delivered %s", m)
	}
	for _, node := range []string{"c0", "c2"} {
		lb, err := os.ReadFile(filepath.Join(logs, node+".log"))
		if err != nil || !bytes.Contains(lb, []byte("hello-durable")) {
			t.Fatalf("delivered on node 3 but not in %s's log (%v)", node, err)
		}
	}
	// The publisher's completion comes once committed, with the log's index.
	if m := readRecord(t, pub); !strings.Contains(m, `"invocationId":"2"`) || !strings.Contains(m, `"result":"1"`) {
		t.Fatalf("the publisher got %s", m)
	}
}

// dialCeiling connects to a ceiling node's hub over WebSockets and makes
// the JSON protocol's handshake (the node has logged that it listens).
func dialCeiling(t *testing.T, addr string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/hubs/bench", nil)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	invoke(t, c, `{"protocol":"json","version":1}`)
	if m := readRecord(t, c); m != "{}" {
		t.Fatalf("handshake answered %q", m)
	}
	return c
}

func invoke(t *testing.T, c *websocket.Conn, rec string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(rec+"\x1e")); err != nil {
		t.Fatal(err)
	}
}

func readRecord(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\x1e")
}

// TestRunPeers_DurableCeilingFailureKeepsTable: a durable ceiling that does
// not build (here: a ceiling the patch does not fit) is logged, and the
// run's table is still printed from what side-by-side.sh wrote.
func TestRunPeers_DurableCeilingFailureKeepsTable(t *testing.T) {
	if _, err := exec.LookPath("patch"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI: patch(1) is needed")
		}
		t.Skip("no patch(1)")
	}
	bench := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bench, "ceiling"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bench, "ceiling", "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	line := `{"label":"ceil3-s2-client","scenario":"fanout","target_rate":1000,"pub_workers":1,"achieved_pub_rate":1000,"delivery_ratio":1,"lat_p50_us":250,"lat_p99_us":1000,"sustainable":true}`
	script := "#!/usr/bin/env bash\ncase $1 in\n\ts2-ceil) echo '" + line + "' >> \"$OUT\" ;;\nesac\n"
	if err := os.WriteFile(filepath.Join(bench, "side-by-side.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	build := t.TempDir()
	p := &peersConfig{enabled: true, format: "text", build: build, dir: bench, skipBld: true, durable: true,
		cells: []string{"s2-ceil"}, out: filepath.Join(build, "run.jsonl")}
	var out, logs bytes.Buffer
	if err := runPeers(t.Context(), p, &out, &logs); err != nil {
		t.Fatalf("runPeers: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "the table follows without the durable ceiling") {
		t.Errorf("the failure was not logged:\n%s", logs.String())
	}
	if !strings.Contains(out.String(), "0.25 ms / 1.00 ms") || strings.Contains(out.String(), "durable ceiling  ") {
		t.Errorf("table:\n%s", out.String())
	}
}
