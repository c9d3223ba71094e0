package metrics_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/raftplane/raftplane/client"
	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/hub"
	"github.com/raftplane/raftplane/metrics"
)

const (
	testAPIKey = "metrics-test-key"
	testHub    = "chat"
	// testWait bounds every wait; generous for -race on a busy machine.
	testWait = 20 * time.Second
)

// node is a real one-node raftplane (fsm, Raft over loopback TCP, hub) with
// /metrics mounted behind the API key as the raftplane package mounts it.
type node struct {
	url string
	hub *hub.Server
}

// testWriter sends logs to t.Log until the test ends.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func startNode(t *testing.T) *node {
	t.Helper()
	tw := &testWriter{t: t}
	t.Cleanup(func() { tw.mu.Lock(); tw.done = true; tw.mu.Unlock() }) // first registered: runs last
	lg := slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelWarn}))

	machine, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cc := cluster.DefaultConfig()
	cc.NodeID = "n1"
	cc.DataDir = t.TempDir()
	cc.RaftBind = "127.0.0.1:0"
	cc.HeartbeatTimeout = 200 * time.Millisecond
	cc.ElectionTimeout = 200 * time.Millisecond
	cc.LeaderLeaseTimeout = 100 * time.Millisecond
	cc.NoSync = true
	cc.Logger = lg.With("component", "cluster")
	cn, err := cluster.New(cc, machine)
	if err != nil {
		t.Fatal(err)
	}
	if err := cn.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := cn.Close(ctx); err != nil {
			t.Errorf("cluster Close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := cn.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	hc := hub.DefaultConfig()
	hc.NodeID = cc.NodeID
	hc.APIKey = testAPIKey
	hc.TokenSecret = []byte("0123456789abcdef0123456789abcdef")
	hc.Logger = lg.With("component", "hub")
	srv, err := hub.New(hc, cn, machine)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()

	mc := metrics.DefaultConfig()
	mc.Hub, mc.Cluster, mc.Logger = srv, cn, lg
	m, err := metrics.New(mc)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", srv.RequireAPIKey(m.Handler()))
	mux.Handle("/", srv)
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("hub Close: %v", err)
		}
		ts.Close()
	})
	return &node{url: ts.URL, hub: srv}
}

// scrape fetches /metrics with the API key and parses it with the
// Prometheus text parser.
func (n *node) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value returns the value of the series of family name whose labels
// include want (name=value pairs), summed over every matching series; for
// a histogram, its sample count.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	var sum float64
	for _, m := range f.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == want[i] && l.GetValue() == want[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// waitValue scrapes until the series reaches want, failing after testWait.
func (n *node) waitValue(t *testing.T, want float64, name string, labels ...string) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		fams := n.scrape(t)
		got := value(fams, name, labels...)
		if got == want {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(20 * time.Millisecond) // polling against a deadline
	}
}

// rest sends one REST request with the API key.
func (n *node) rest(t *testing.T, method, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, n.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", method, path, resp.Status, b)
	}
}

func (n *node) dial(t *testing.T, user string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: n.url + "/hubs/" + testHub + "?user=" + user})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMetrics_PublishesMoveCounters(t *testing.T) {
	n := startNode(t)
	sub := n.dial(t, "sub")
	n.waitValue(t, 1, "raftplane_connections")
	before := n.scrape(t)
	const N = 25
	for i := range N {
		n.rest(t, http.MethodPost, "/api/v1/hubs/"+testHub, fmt.Sprintf(`{"target":"tick","arguments":[%d]}`, i))
	}
	for i := range N {
		select {
		case m, ok := <-sub.Messages():
			if !ok {
				t.Fatalf("subscriber ended after %d messages: %v", i, sub.Err())
			}
			if m.Target != "tick" {
				t.Fatalf("message %d: target %q", i, m.Target)
			}
		case <-time.After(testWait):
			t.Fatalf("subscriber got %d of %d messages", i, N)
		}
	}
	// The dispatcher and the writer count after the client can see the
	// message: wait for them, then check nothing else moved.
	pubs := value(before, "raftplane_commands_committed_total", "kind", "publish")
	n.waitValue(t, pubs+N, "raftplane_commands_committed_total", "kind", "publish")
	after := n.waitValue(t, value(before, "raftplane_deliveries_total")+N, "raftplane_deliveries_total")
	checks := []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"raftplane_commands_committed_total", []string{"kind", "publish"}, N},
		{"raftplane_messages_received_total", []string{"source", "rest"}, N},
		{"raftplane_publishes_total", []string{"result", "committed"}, N},
		{"raftplane_publish_duration_seconds", nil, N},
		{"raftplane_dispatch_latency_seconds", nil, N},
		{"raftplane_deliveries_total", nil, N},
	}
	for _, c := range checks {
		if d := value(after, c.name, c.labels...) - value(before, c.name, c.labels...); d != c.delta {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, d, c.delta)
		}
	}
	// Stages: the writes of deliveries (at least one, the subscriber's
	// may share writes), the leader's log writes, commits and FSM batches
	// (entries may hold several publishes, and the process's raft timings
	// count other tests' nodes too: at least one each).
	for _, c := range []struct{ name, stage string }{
		{"raftplane_write_duration_seconds", ""},
		{"raftplane_commit_stage_seconds", "leader_store"},
		{"raftplane_commit_stage_seconds", "commit"},
		{"raftplane_commit_stage_seconds", "fsm_apply"},
	} {
		var labels []string
		if c.stage != "" {
			labels = []string{"stage", c.stage}
		}
		if d := value(after, c.name, labels...) - value(before, c.name, labels...); d < 1 {
			t.Errorf("%s%v moved by %v, want at least 1", c.name, labels, d)
		}
	}
	if d := value(after, "raftplane_delivered_bytes_total") - value(before, "raftplane_delivered_bytes_total"); d < float64(N*len(`{"type":1,"target":"tick","arguments":[0]}`)) {
		t.Errorf("delivered bytes moved by %v for %d messages", d, N)
	}
	// The node's own view.
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"raftplane_raft_state", []string{"state", "leader"}, 1},
		{"raftplane_raft_state", []string{"state", "follower"}, 0},
		{"raftplane_raft_servers", []string{"suffrage", "voter"}, 1},
		{"raftplane_raft_last_contact_seconds", nil, 0},
		{"raftplane_dispatcher_lag_entries", nil, 0},
	} {
		if got := value(after, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value(after, "raftplane_fsm_cache_entries"); got < N {
		t.Errorf("fsm cache entries = %v, want at least %d", got, N)
	}
	if ci, ai := value(after, "raftplane_raft_commit_index"), value(after, "raftplane_fsm_applied_index"); ci < N || ai < N {
		t.Errorf("commit index %v, applied %v: want at least %d", ci, ai, N)
	}
	if value(after, "raftplane_raft_term") < 1 || value(after, "raftplane_raft_leader_changes_total") < 0 {
		t.Errorf("term %v", value(after, "raftplane_raft_term"))
	}
	if value(after, "raftplane_node_info", "node_id", "n1") != 1 {
		t.Errorf("node_info for n1 missing")
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if after[name] == nil {
			t.Errorf("%s missing: the runtime and process collectors are not registered", name)
		}
	}
}

func TestMetrics_ConnectionsAndDisconnects(t *testing.T) {
	n := startNode(t)
	const K = 3
	conns := make([]*client.Conn, K)
	for i := range conns {
		conns[i] = n.dial(t, fmt.Sprintf("u%d", i))
		go func(c *client.Conn) {
			for range c.Messages() {
			}
		}(conns[i])
	}
	n.waitValue(t, K, "raftplane_connections", "hub", testHub, "transport", "websockets", "protocol", "json")
	// A connection is in the gauge from its claim, and counted as a
	// connect by its reader once the handshake is written: the client may
	// see it a moment before the counter moves.
	n.waitValue(t, K, "raftplane_connects_total", "transport", "websockets")

	// The client says goodbye.
	if err := conns[0].Close(); err != nil {
		t.Fatal(err)
	}
	n.waitValue(t, K-1, "raftplane_connections")
	n.waitValue(t, 1, "raftplane_disconnects_total", "reason", "client")

	// The server closes one through the REST API.
	n.rest(t, http.MethodDelete, "/api/v1/hubs/"+testHub+"/connections/"+conns[1].ID(), "")
	n.waitValue(t, K-2, "raftplane_connections")
	fams := n.waitValue(t, 1, "raftplane_disconnects_total", "reason", "server")
	for _, reason := range []string{"slow_consumer", "token_expired", "client_timeout", "protocol_error", "moved", "reaped"} {
		if got := value(fams, "raftplane_disconnects_total", "reason", reason); got != 0 {
			t.Errorf("disconnects{reason=%q} = %v, want 0", reason, got)
		}
	}
	if got := value(fams, "raftplane_disconnects_total"); got != 2 {
		t.Errorf("disconnects in all = %v, want 2", got)
	}
	if got := value(fams, "raftplane_commands_committed_total", "kind", "conn_open"); got != K {
		t.Errorf("conn_open commands = %v, want %d", got, K)
	}
}

func TestMetrics_RequiresAPIKey(t *testing.T) {
	n := startNode(t)
	for _, c := range []struct{ name, auth string }{
		{"no key", ""},
		{"wrong key", "Bearer nope"},
		{"not bearer", "Basic " + testAPIKey},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, n.url+"/metrics", nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %s, want 401", resp.Status)
			}
			if strings.Contains(string(b), "raftplane_") {
				t.Fatalf("the refusal carries metrics: %s", b)
			}
		})
	}
	// With the key, the whole output parses, and every family has a help
	// text and the prefix.
	fams := n.scrape(t)
	for name, f := range fams {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		if !strings.HasPrefix(name, "raftplane_") {
			t.Errorf("metric %s without the raftplane_ prefix", name)
		}
		if f.GetHelp() == "" {
			t.Errorf("metric %s has no help", name)
		}
	}
}

func TestConfig_Validate(t *testing.T) {
	cases := []struct {
		name string
		edit func(*metrics.Config)
		want string
	}{
		{"no hub", func(c *metrics.Config) { c.Hub = nil }, "Hub is nil"},
		{"hub labels", func(c *metrics.Config) { c.MaxHubLabels = 0 }, "MaxHubLabels (0)"},
		{"scrapes", func(c *metrics.Config) { c.MaxScrapes = -1 }, "MaxScrapes (-1)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := metrics.DefaultConfig()
			cfg.Hub = fixedHub{}
			c.edit(&cfg)
			_, err := metrics.New(cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, want an error naming %q", err, c.want)
			}
		})
	}
}

// fixedHub is a HubSource with given stats: the collector's output for
// shapes a real node reaches only under load (many hubs).
type fixedHub struct{ st hub.Stats }

func (f fixedHub) Stats() hub.Stats { return f.st }

func TestMetrics_HubLabelsCapped(t *testing.T) {
	st := hub.Stats{Connections: []hub.ConnectionCount{
		{Hub: "a", Transport: "websockets", Protocol: "json", Count: 5},
		{Hub: "b", Transport: "websockets", Protocol: "json", Count: 3},
		{Hub: "b", Transport: "sse", Protocol: "json", Count: 3},
		{Hub: "c", Transport: "websockets", Protocol: "json", Count: 2},
		{Hub: "d", Transport: "websockets", Protocol: "json", Count: 1},
		{Hub: "d", Transport: "sse", Protocol: "json", Count: 4},
	}}
	cfg := metrics.DefaultConfig()
	cfg.Hub, cfg.MaxHubLabels = fixedHub{st}, 2
	m, err := metrics.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	// b (6) keeps its name, and a (5), which ties with d (5) and comes
	// first by name; c and d are summed by transport.
	want := map[string]float64{
		"a|websockets": 5, "b|websockets": 3, "b|sse": 3,
		metrics.OtherHubs + "|websockets": 3, metrics.OtherHubs + "|sse": 4,
	}
	got := map[string]float64{}
	for _, mm := range fams["raftplane_connections"].GetMetric() {
		var h, tr string
		for _, l := range mm.GetLabel() {
			switch l.GetName() {
			case "hub":
				h = l.GetValue()
			case "transport":
				tr = l.GetValue()
			}
		}
		got[h+"|"+tr] += mm.GetGauge().GetValue()
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("connections by hub|transport = %v, want %v", got, want)
	}
	// Without a cluster source the raft metrics are absent, not zero.
	if fams["raftplane_raft_term"] != nil {
		t.Errorf("raft metrics without a cluster source")
	}
}
