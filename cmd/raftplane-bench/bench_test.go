package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testBin builds raftplane from this module (resolveBin) for a test,
// removing it when the test ends.
func testBin(ctx context.Context, t *testing.T) string {
	t.Helper()
	var logw bytes.Buffer
	bin, tmp, err := resolveBin(ctx, "", &logw)
	if err != nil {
		t.Fatalf("building raftplane: %v\n%s", err, logw.String())
	}
	if tmp != "" {
		t.Cleanup(func() { os.RemoveAll(tmp) })
	}
	return bin
}

// TestScenarios_Smoke runs every scenario once, with tiny parameters,
// against real raftplane processes (built once from this module), and
// checks that the figures are sane: everything delivered at a low rate, in
// log order, nonzero rates, RSS growing with connections, the leader's
// death survived. It takes well under a minute on an idle machine.
func TestScenarios_Smoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real server processes; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var logw bytes.Buffer
	bin := testBin(ctx, t)
	base := []string{"-bin", bin, "-nodes", "3", "-duration", "2s", "-payload", "64", "-timeout", "90s"}
	scenario := func(t *testing.T, args ...string) []Result {
		t.Helper()
		cfg, err := parseFlags(append(append([]string(nil), base...), args...), &logw)
		if err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		start := time.Now()
		results, err := run(ctx, cfg, &log)
		t.Logf("%v in %v\n%s", args, time.Since(start).Round(time.Millisecond), log.String())
		var out bytes.Buffer
		if perr := printResults(&out, results, false); perr != nil {
			t.Error(perr)
		}
		t.Logf("\n%s", out.String())
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if len(results) == 0 {
			t.Fatal("no result")
		}
		for i := range results {
			if results[i].Scenario != "scale-node" { // one node's figures, not the run's CPU
				checkCPU(t, &results[i])
			}
		}
		return results
	}

	t.Run("fanout", func(t *testing.T) {
		rs := scenario(t, "-scenario", "fanout", "-subscribers", "20", "-rate", "50,100")
		if len(rs) != 2 {
			t.Fatalf("%d results for a sweep of 2 rates", len(rs))
		}
		for i := range rs {
			checkDelivery(t, &rs[i], 20)
			if rs[i].Holds == nil {
				t.Error("fanout without holds")
			}
		}
	})
	t.Run("latency", func(t *testing.T) {
		rs := scenario(t, "-scenario", "latency", "-rate", "50")
		checkDelivery(t, &rs[0], 1)
	})
	t.Run("publish", func(t *testing.T) {
		rs := scenario(t, "-scenario", "publish", "-publishers", "4")
		r := &rs[0]
		if r.num("committed") <= 0 || r.num("committed_per_s") <= 0 || r.num("errors") != 0 {
			t.Errorf("publish: committed %v (%v/s), errors %v", r.num("committed"), r.num("committed_per_s"), r.num("errors"))
		}
		if p50, p99 := r.num("invoke_p50_ms"), r.num("invoke_p99_ms"); !(p50 > 0 && p99 >= p50) {
			t.Errorf("invoke latency p50 %v p99 %v", p50, p99)
		}
	})
	t.Run("conns", func(t *testing.T) {
		rs := scenario(t, "-scenario", "conns", "-conns", "200")
		r := &rs[0]
		if r.num("connected") != 200 || r.num("failed") != 0 {
			t.Errorf("connected %v, failed %v", r.num("connected"), r.num("failed"))
		}
		if r.num("server_local_conns") < 200 {
			t.Errorf("the server counts %v local connections, want at least 200", r.num("server_local_conns"))
		}
		if !(r.num("rss_after_mib") > r.num("rss_before_mib")) || !(r.num("bytes_per_conn") > 0) {
			t.Errorf("RSS %v -> %v MiB, %v bytes/conn", r.num("rss_before_mib"), r.num("rss_after_mib"), r.num("bytes_per_conn"))
		}
	})
	t.Run("scale", func(t *testing.T) {
		rs := scenario(t, "-scenario", "scale", "-rate", "100")
		if len(rs) != 4 || rs[3].Scenario != "scale" {
			t.Fatalf("%d results, want one per node and the summary", len(rs))
		}
		r := &rs[3]
		committed := r.num("committed")
		if committed != 200 || r.num("publish_errors") != 0 || !(r.num("entries") > 0) {
			t.Errorf("committed %v (want 100/s for 2s), errors %v, entries %v", committed, r.num("publish_errors"), r.num("entries"))
		}
		// every message reaches both followers: the leader sends each at
		// least its 64-byte payload twice
		if tx, rx := r.num("leader_tx_b_per_msg"), r.num("follower_rx_b_per_msg"); !(tx > 2*64 && rx > 64) {
			t.Errorf("leader tx %v B/msg, follower rx %v B/msg", tx, rx)
		}
		leaders := 0
		for _, n := range rs[:3] {
			if v, _ := n.get("role"); v == "leader" {
				leaders++
			}
			if !(n.num("cpu_us_per_msg") > 0) || !(n.num("wchar_b_per_msg") > 0) {
				t.Errorf("%v: cpu %v us/msg, wchar %v B/msg", n.Params, n.num("cpu_us_per_msg"), n.num("wchar_b_per_msg"))
			}
		}
		if leaders != 1 {
			t.Errorf("%d leaders among the nodes' results", leaders)
		}
	})
	t.Run("failover", func(t *testing.T) {
		rs := scenario(t, "-scenario", "failover", "-subscribers", "15", "-rate", "50", "-duration", "3s")
		r := &rs[0]
		if fc := r.num("first_commit_ms"); !(fc > 0 && fc < 15000) {
			t.Errorf("first commit after the kill: %v ms", fc)
		}
		if on, res := r.num("subs_on_killed"), r.num("resumed"); on != 5 || res != on {
			t.Errorf("%v subscribers on the killed node, %v resumed", on, res)
		}
		if r.num("resets") != 0 || r.num("gave_up") != 0 {
			t.Errorf("resets %v, gave up %v", r.num("resets"), r.num("gave_up"))
		}
		if r.num("lost") != 0 || r.num("reorders") != 0 || !(r.num("committed") > 0) {
			t.Errorf("across the failover: committed %v, lost %v, reorders %v", r.num("committed"), r.num("lost"), r.num("reorders"))
		}
	})
}

// checkDelivery: at a low rate every committed message reaches every
// subscriber once, in log order, with plausible latencies.
func checkDelivery(t *testing.T, r *Result, subs int) {
	t.Helper()
	rate := r.num("rate")
	if got := r.num("subscribers"); got != float64(subs) {
		t.Errorf("rate %v: %v subscribers, want %d", rate, got, subs)
	}
	committed := r.num("committed")
	if committed <= 0 || r.num("publish_errors") != 0 || committed != r.num("offered") {
		t.Errorf("rate %v: offered %v, committed %v, errors %v", rate, r.num("offered"), committed, r.num("publish_errors"))
	}
	if r.num("delivered_pct") != 100 || r.num("lost") != 0 {
		t.Errorf("rate %v: delivered %v%%, lost %v", rate, r.num("delivered_pct"), r.num("lost"))
	}
	if r.num("subs_ended") != 0 {
		t.Errorf("rate %v: %v subscriber connections ended", rate, r.num("subs_ended"))
	}
	if r.num("reorders") != 0 || r.num("dups") != 0 {
		t.Errorf("rate %v: reorders %v, dups %v", rate, r.num("reorders"), r.num("dups"))
	}
	if a := r.num("achieved_per_s"); math.Abs(a-rate) > 0.05*rate {
		t.Errorf("rate %v: achieved %v/s", rate, a)
	}
	if d := r.num("delivered_per_s"); math.Abs(d-rate*float64(subs)) > 0.05*rate*float64(subs) {
		t.Errorf("rate %v: delivered %v/s, want about %v", rate, d, rate*float64(subs))
	}
	p50, p99, mx := r.num("p50_ms"), r.num("p99_ms"), r.num("max_ms")
	if !(p50 > 0 && p50 <= p99 && p99 <= mx && mx < 10000) {
		t.Errorf("rate %v: latency p50 %v p99 %v max %v", rate, p50, p99, mx)
	}
}

// checkCPU: the tool and each of the 3 nodes report CPU time.
func checkCPU(t *testing.T, r *Result) {
	t.Helper()
	names := make([]string, 0, len(r.CPU))
	for _, c := range r.CPU {
		names = append(names, c.Key)
		if v, ok := c.Val.(float64); !ok || v < 0 {
			t.Errorf("cpu %s = %v", c.Key, c.Val)
		}
	}
	if got := strings.Join(names, ","); got != "tool,n1,n2,n3" {
		t.Errorf("CPU figures for %s, want tool,n1,n2,n3", got)
	}
	// The temp dirs of the nodes are gone.
	if m, _ := filepath.Glob(filepath.Join(os.TempDir(), "raftplane-bench-*", "n1", "data")); len(m) > 0 {
		t.Logf("note: leftover data dirs (maybe from a concurrent run): %v", m)
	}
}
