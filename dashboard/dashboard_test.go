package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/dashboard"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/hub"
	"github.com/raftplane/raftplane/status"
)

const (
	testAPIKey = "dashboard-test-key"
	testWait   = 30 * time.Second
)

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

// startOne runs a real one-node raftplane (fsm, Raft over loopback, hub)
// with the dashboard mounted as raftplane mounts it, and returns its URL.
func startOne(t *testing.T) string {
	t.Helper()
	tw := &testWriter{t: t}
	t.Cleanup(func() { tw.mu.Lock(); tw.done = true; tw.mu.Unlock() })
	lg := slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	machine, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cc := cluster.DefaultConfig()
	cc.NodeID, cc.DataDir, cc.RaftBind, cc.NoSync = "n1", t.TempDir(), "127.0.0.1:0", true
	cc.HeartbeatTimeout, cc.ElectionTimeout, cc.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	cc.Logger = lg
	cn, err := cluster.New(cc, machine)
	if err != nil {
		t.Fatal(err)
	}
	if err := cn.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cn.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := cn.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	hc := hub.DefaultConfig()
	hc.NodeID, hc.APIKey, hc.Logger = "n1", testAPIKey, lg
	hc.TokenSecret = []byte("0123456789abcdef0123456789abcdef")
	srv, err := hub.New(hc, cn, machine)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	dc := dashboard.DefaultConfig()
	dc.Hub, dc.Cluster, dc.Protect, dc.Logger = srv, cn, srv.RequireAPIKey, lg
	dc.SampleInterval = 20 * time.Millisecond
	d, err := dashboard.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	mux := http.NewServeMux()
	mux.Handle("/dashboard", d.Handler())
	mux.Handle("/dashboard/", d.Handler())
	mux.Handle("/", srv)
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("dashboard Close: %v", err)
		}
		if err := srv.Close(ctx); err != nil {
			t.Errorf("hub Close: %v", err)
		}
		ts.Close()
	})
	return ts.URL
}

func get(t *testing.T, url, key string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestDashboard_PageAndAuth: the page is public and holds no data; the JSON
// needs the API key, as the REST API does.
func TestDashboard_PageAndAuth(t *testing.T) {
	url := startOne(t)
	for _, path := range []string{"/dashboard", "/dashboard/"} {
		st, h, b := get(t, url+path, "")
		if st != 200 || !strings.Contains(string(b), "<title>raftplane</title>") {
			t.Fatalf("GET %s: %d %.200s", path, st, b)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'sha256-") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: CSP %q, want inline code allowed by hash only", path, csp)
		}
	}
	for _, path := range []string{"/dashboard/api/state", "/dashboard/api/node"} {
		if st, _, b := get(t, url+path, ""); st != http.StatusUnauthorized {
			t.Errorf("GET %s without the key: %d %s", path, st, b)
		}
		if st, _, b := get(t, url+path, "wrong"); st != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong key: %d %s", path, st, b)
		}
	}
}

// TestDashboard_State: the state of a one-node cluster, its history growing
// as the sampler runs, and a REST send showing in the rates.
func TestDashboard_State(t *testing.T) {
	url := startOne(t)
	send := func() {
		req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/hubs/chat", strings.NewReader(`{"target":"t","arguments":[1]}`))
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("send: %s", resp.Status)
		}
	}
	deadline := time.Now().Add(testWait)
	var st dashboard.State
	for {
		send()
		code, _, b := get(t, url+"/dashboard/api/state", testAPIKey)
		if code != 200 {
			t.Fatalf("state: %d %s", code, b)
		}
		st = dashboard.State{}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("state: %v: %s", err, b)
		}
		// Lag (commit index minus applied index) is 0 once the node has
		// applied what it committed: a sample taken in between shows 1.
		if len(st.Members) == 1 && st.Members[0].Node != nil && committedSome(st.Members[0].Node.History) && st.Members[0].Lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sample shows the sends after %s: %s", testWait, b)
		}
		time.Sleep(20 * time.Millisecond) // polling against a deadline
	}
	m := st.Members[0]
	if st.Node != "n1" || st.ClusterID == "" || m.ID != "n1" || !m.Reachable || m.Suffrage != "voter" {
		t.Fatalf("state %+v", st)
	}
	n := m.Node
	if n.State != "Leader" || n.Term < 1 || n.CommitIndex < 1 || n.LastContactMs != 0 || m.Lag != 0 {
		t.Errorf("node %+v lag %d", n, m.Lag)
	}
	if _, ok := n.Connections["websockets"]; !ok || n.ConnectionsTotal != 0 {
		t.Errorf("connections %v (%d)", n.Connections, n.ConnectionsTotal)
	}
}

func committedSome(h []dashboard.Sample) bool {
	for _, s := range h {
		if s.Committed > 0 && s.Received > 0 && s.P50 != nil && s.P99 != nil {
			return true
		}
	}
	return false
}

func TestConfig_Validate(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*dashboard.Config)
		want string
	}{
		{"interval", func(c *dashboard.Config) { c.SampleInterval = time.Millisecond }, "SampleInterval (1ms)"},
		{"history", func(c *dashboard.Config) { c.History = 1 }, "History (1)"},
		{"peer timeout", func(c *dashboard.Config) { c.PeerTimeout = 0 }, "PeerTimeout (0s)"},
		{"scheme", func(c *dashboard.Config) { c.PeerScheme = "ftp" }, `PeerScheme ("ftp")`},
		{"peer bytes", func(c *dashboard.Config) { c.MaxPeerBytes = 10 }, "MaxPeerBytes (10)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := dashboard.DefaultConfig()
			c.edit(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate: %v, want an error naming %s", err, c.want)
			}
		})
	}
	if _, err := dashboard.New(dashboard.DefaultConfig()); err == nil || !strings.Contains(err.Error(), "Hub is nil") {
		t.Fatalf("New without a hub: %v", err)
	}
}

// fakeSources is a hub with nothing to report.
type fakeSources struct{}

func (fakeSources) Stats() hub.Stats { return hub.Stats{} }

// fakeCluster is a cluster with given members.
type fakeCluster struct{ members []status.Member }

func (f fakeCluster) Stats() cluster.Stats {
	return cluster.Stats{NodeID: "n1", State: "Leader", CommitIndex: 10, AppliedIndex: 10, LastContact: 0}
}

func (f fakeCluster) ClusterStatus(context.Context) []status.Member { return f.members }

// TestDashboard_PeersAsked: the members of the Raft configuration are asked
// for their report with the caller's key and their lag computed; a member
// gossip alone knows is listed but never sent the key; one that does not
// answer is unreachable.
func TestDashboard_PeersAsked(t *testing.T) {
	var mu sync.Mutex
	asked := map[string]string{} // path: Authorization
	peer := func(id string, applied uint64) *httptest.Server {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			asked[id] = r.Header.Get("Authorization")
			mu.Unlock()
			_ = json.NewEncoder(w).Encode(dashboard.NodeView{ID: id, State: "Follower", CommitIndex: 10, AppliedIndex: applied,
				Behind: []dashboard.BehindConnection{{Node: id, ID: "c-" + id, Bytes: int(applied)}}})
		}))
		t.Cleanup(ts.Close)
		return ts
	}
	n2, stranger := peer("n2", 7), peer("stranger", 1)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close() // nothing listens there any more
	host := func(ts *httptest.Server) string { return strings.TrimPrefix(ts.URL, "http://") }
	dc := dashboard.DefaultConfig()
	dc.Hub = fakeSources{}
	dc.Cluster = fakeCluster{members: []status.Member{
		{ID: "n1", Suffrage: "voter", Leader: true},
		{ID: "n2", Suffrage: "voter", HTTPAddr: host(n2)},
		{ID: "n3", Suffrage: "nonvoter", HTTPAddr: deadAddr, Applied: 4},
		{ID: "stranger", Suffrage: "none", HTTPAddr: host(stranger)},
	}}
	d, err := dashboard.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/dashboard/api/state", nil)
	req.Header.Set("Authorization", "Bearer secret")
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, req)
	var st dashboard.State
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	by := map[string]dashboard.Member{}
	for _, m := range st.Members {
		by[m.ID] = m
	}
	if m := by["n1"]; !m.Reachable || m.Node == nil || m.Node.State != "Leader" || m.Lag != 0 {
		t.Errorf("n1 (this node): %+v", m)
	}
	if m := by["n2"]; !m.Reachable || m.Node == nil || m.Lag != 3 {
		t.Errorf("n2: %+v (want reachable, lag 10-7)", m)
	}
	if m := by["n3"]; m.Reachable || m.Error == "" || m.Lag != 6 {
		t.Errorf("n3: %+v (want unreachable with the reason, lag 10-4 from the cluster's view)", m)
	}
	if m := by["stranger"]; m.Reachable || !strings.Contains(m.Error, "not asked") {
		t.Errorf("stranger: %+v", m)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked["n2"] != "Bearer secret" {
		t.Errorf("n2 asked with %q, want the caller's key", asked["n2"])
	}
	if _, ok := asked["stranger"]; ok {
		t.Error("a member outside the Raft configuration was sent the key")
	}
	if len(st.Behind) != 1 || st.Behind[0].ID != "c-n2" {
		t.Errorf("behind %+v", st.Behind)
	}
}
