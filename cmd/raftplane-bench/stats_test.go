package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHistIndexMonotonic(t *testing.T) {
	prev := -1
	for v := int64(0); v < 1<<20; v++ {
		i := histIndex(v)
		if i < prev || i > prev+1 {
			t.Fatalf("histIndex(%d) = %d after %d: buckets must be contiguous and increasing", v, i, prev)
		}
		if up := histUpper(i); v > up {
			t.Fatalf("value %d above its bucket %d's upper bound %d", v, i, up)
		}
		if i > 0 && v <= histUpper(i-1) {
			t.Fatalf("value %d also fits bucket %d (upper %d)", v, i-1, histUpper(i-1))
		}
		prev = i
	}
}

func TestHistQuantileMatchesExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h hist
	vals := make([]int64, 0, 100000)
	for range 100000 {
		v := int64(r.ExpFloat64() * 20000) // ~20ms mean, long tail
		vals = append(vals, v)
		h.record(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0, 0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		got, want := h.quantile(q), exactQuantile(vals, q)
		if want < 128 && got != want {
			t.Errorf("q%.3f: got %d, want exactly %d below 128", q, got, want)
		}
		if math.Abs(float64(got-want)) > 0.016*float64(want)+1 {
			t.Errorf("q%.3f: got %d, want %d within 1.6%%", q, got, want)
		}
		if got < want {
			t.Errorf("q%.3f: got %d below the true %d (the bucket's upper bound is reported)", q, got, want)
		}
	}
	if h.quantile(1) != vals[len(vals)-1] || h.max != vals[len(vals)-1] || h.min != vals[0] {
		t.Errorf("min/max: got %d/%d, want %d/%d", h.min, h.max, vals[0], vals[len(vals)-1])
	}
}

func TestHistSmallAndMerge(t *testing.T) {
	var empty hist
	if empty.quantile(0.5) != 0 {
		t.Error("empty quantile not 0")
	}
	var a, b hist
	for v := int64(1); v <= 100; v++ {
		if v%2 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	a.merge(&b)
	a.merge(&empty)
	if a.n != 100 || a.min != 1 || a.max != 100 {
		t.Fatalf("merged n=%d min=%d max=%d", a.n, a.min, a.max)
	}
	// Nearest rank over 1..100: p50 = 50, p90 = 90, p99 = 99.
	for q, want := range map[float64]int64{0.5: 50, 0.9: 90, 0.99: 99, 1: 100} {
		if got := a.quantile(q); got != want {
			t.Errorf("q%v = %d, want %d", q, got, want)
		}
	}
	var neg hist
	neg.record(-5)
	if neg.min != 0 || neg.quantile(0.5) != 0 {
		t.Error("negative values (clock skew) must clamp to 0")
	}
}

func TestExactQuantile(t *testing.T) {
	v := []int64{10, 20, 30, 40}
	for q, want := range map[float64]int64{0: 10, 0.25: 10, 0.26: 20, 0.5: 20, 0.75: 30, 0.99: 40, 1: 40} {
		if got := exactQuantile(v, q); got != want {
			t.Errorf("q%v = %d, want %d", q, got, want)
		}
	}
	if exactQuantile(nil, 0.5) != 0 {
		t.Error("empty")
	}
}

func TestPacer(t *testing.T) {
	start := time.Unix(1000, 0)
	p := newPacer(start, 500, 10*time.Second)
	if p.interval != 2*time.Millisecond {
		t.Fatalf("interval %v", p.interval)
	}
	if got := p.count(); got != 5000 {
		t.Errorf("count = %d, want 5000", got)
	}
	if d, ok := p.due(0); !ok || !d.Equal(start) {
		t.Errorf("due(0) = %v %v", d, ok)
	}
	if d, ok := p.due(4999); !ok || d.Sub(start) != 9998*time.Millisecond {
		t.Errorf("due(4999) = %v %v", d.Sub(start), ok)
	}
	if _, ok := p.due(5000); ok {
		t.Error("due(5000) inside a 10s window at 500/s")
	}
	if got := newPacer(start, 3, time.Second).count(); got != 3 {
		t.Errorf("3/s for 1s: %d sends", got)
	}
	if got := newPacer(start, 0.5, 3*time.Second).count(); got != 2 {
		t.Errorf("0.5/s for 3s: %d sends, want 2 (t=0, t=2s)", got)
	}
}

func TestPacerWaitPaces(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	p := newPacer(start, 200, 100*time.Millisecond)
	n := 0
	for i := 0; p.wait(ctx, i); i++ {
		n++
	}
	if n != 20 {
		t.Errorf("%d sends in 100ms at 200/s, want 20", n)
	}
	if el := time.Since(start); el < 95*time.Millisecond {
		t.Errorf("finished after %v: not paced", el)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if newPacer(time.Now().Add(time.Hour), 1, 2*time.Hour).wait(cctx, 0) {
		t.Error("wait ignored a cancelled context")
	}
}

func TestBitset(t *testing.T) {
	var a, b bitset
	for _, i := range []int{0, 1, 63, 64, 200, 1000} {
		if a.set(i) {
			t.Errorf("set(%d) reported present", i)
		}
	}
	if !a.set(63) {
		t.Error("second set(63) not reported present")
	}
	if !a.has(1000) || a.has(999) || a.has(100000) {
		t.Error("has")
	}
	for _, i := range []int{1, 64, 999, 5000} {
		b.set(i)
	}
	if a.count() != 6 || b.count() != 4 || a.andCount(b) != 2 || b.andCount(a) != 2 {
		t.Errorf("count %d %d and %d", a.count(), b.count(), a.andCount(b))
	}
}

func TestHolds(t *testing.T) {
	bar := 100 * time.Millisecond
	cases := []struct {
		achieved, target float64
		del, exp, p99    int64
		want             bool
	}{
		{500, 500, 1000, 1000, 50000, true},
		{490, 500, 1000, 1000, 50000, true},   // exactly 98%
		{489, 500, 1000, 1000, 50000, false},  // under 98%
		{500, 500, 999, 1000, 50000, false},   // one lost
		{500, 500, 1000, 1000, 100000, false}, // p99 not under the bar
		{500, 500, 0, 0, 0, false},            // nothing committed
	}
	for _, c := range cases {
		if got := holds(c.achieved, c.target, c.del, c.exp, c.p99, bar); got != c.want {
			t.Errorf("holds(%+v) = %t", c, got)
		}
	}
}

func TestParseProc(t *testing.T) {
	stat := "4242 (rapt (plane) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 12 0 100 0 0"
	c, err := parseStatCPU(stat)
	if err != nil || c != 3.25 {
		t.Errorf("parseStatCPU = %v, %v; want 3.25", c, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("garbage accepted")
	}
	status := "Name:\traftplane\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"
	if v, err := parseVmRSS(status); err != nil || v != 20480*1024 {
		t.Errorf("parseVmRSS = %v, %v", v, err)
	}
	if _, err := parseVmRSS("Name:\tx\n"); err == nil {
		t.Error("missing VmRSS accepted")
	}
	if c, err := procCPU(1 << 30); err == nil {
		t.Errorf("procCPU of no process = %v", c)
	}
}

func TestFmtFloat(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0", 1: "1", 0.5: "0.5", 9.4711: "9.471", 99.9996: "100", 99.998: "99.998", 100: "100",
		250: "250", 1009.786: "1010", 123456.7: "123457", math.NaN(): "-",
	} {
		if got := fmtFloat(in); got != want {
			t.Errorf("fmtFloat(%v) = %q, want %q", in, got, want)
		}
	}
}

func sampleResult() Result {
	r := Result{Scenario: "fanout"}
	r.param("nodes", 3)
	r.param("rate", 500.0)
	r.metric("delivered_pct", 99.9994)
	r.metric("p99_ms", 12.34567)
	r.metric("first_commit_ms", nil)
	r.metric("lost", int64(2))
	h := true
	r.Holds = &h
	r.CPU = []kv{{"tool", 1.5}, {"n1", 2.25}}
	r.note("a %s", "note")
	return r
}

func TestJSONLine(t *testing.T) {
	r := sampleResult()
	b, err := jsonLine(&r)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsRune(b, '\n') {
		t.Error("not one line")
	}
	want := `{"scenario":"fanout","params":{"nodes":3,"rate":500},"metrics":{"delivered_pct":99.999,"p99_ms":12.346,"first_commit_ms":null,"lost":2},"holds":true,"cpu_s":{"tool":1.5,"n1":2.25},"notes":["a note"]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Errorf("not JSON: %v", err)
	}
}

func TestWriteTable(t *testing.T) {
	a, b := sampleResult(), sampleResult()
	b.Params[1].Val = 1000.0
	c := Result{Scenario: "conns"}
	c.param("conns", 200)
	var buf bytes.Buffer
	if err := printResults(&buf, []Result{a, b, c}, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	// header, 2 rows, blank, header, row, 3 JSON lines
	if len(lines) != 9 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	if f := strings.Fields(lines[0]); f[0] != "scenario" || !slices.Contains(f, "holds") || !slices.Contains(f, "cpu_n1_s") {
		t.Errorf("header %q", lines[0])
	}
	if f := strings.Fields(lines[2]); f[0] != "fanout" || f[2] != "1000" || f[3] != "99.999" || f[5] != "-" || f[7] != "yes" {
		t.Errorf("row %q", lines[2])
	}
	if lines[3] != "" || !strings.HasPrefix(lines[4], "scenario") || !strings.HasPrefix(lines[6], "{") {
		t.Errorf("layout:\n%s", buf.String())
	}
	buf.Reset()
	if err := printResults(&buf, []Result{a}, true); err != nil {
		t.Fatal(err)
	}
	if strings.Count(buf.String(), "\n") != 1 || !strings.HasPrefix(buf.String(), "{") {
		t.Errorf("-json output %q", buf.String())
	}
}

func TestParseFlags(t *testing.T) {
	var errs bytes.Buffer
	c, err := parseFlags([]string{"-scenario", "latency"}, &errs)
	if err != nil || len(c.rates) != 1 || c.rates[0] != 1000 {
		t.Errorf("latency default rate: %+v %v", c, err)
	}
	c, err = parseFlags([]string{"-rate", "250,500"}, &errs)
	if err != nil || !slices.Equal(c.rates, []float64{250, 500}) || c.timeout <= 2*c.duration {
		t.Errorf("sweep: %+v %v", c, err)
	}
	for _, bad := range [][]string{
		{"-scenario", "nope"}, {"-rate", "0"}, {"-scenario", "publish", "-rate", "1,2"},
		{"-scenario", "failover", "-nodes", "2"}, {"-scenario", "failover", "-targets", "http://x"}, {"extra"},
	} {
		if _, err := parseFlags(bad, &errs); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"42", 42, true}, {"-7", -7, true}, {"123456789012345678", 123456789012345678, true},
		{"", 0, false}, {"-", 0, false}, {"1.5", 0, false}, {`"3"`, 0, false}, {"1234567890123456789", 0, false}, {"1e3", 0, false},
	} {
		got, ok := parseInt([]byte(tc.in))
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseInt(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
