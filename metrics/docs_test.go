package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/hub"
	"github.com/raftplane/raftplane/metrics"
)

// upstreamHub is a fixedHub with upstream stats.
type upstreamHub struct {
	fixedHub
	us hub.UpstreamStats
}

func (u upstreamHub) UpstreamStats() hub.UpstreamStats { return u.us }

// fixedCluster is a ClusterSource with given stats.
type fixedCluster struct{ st cluster.Stats }

func (f fixedCluster) Stats() cluster.Stats { return f.st }

// exported returns the raftplane_* families a node with every source
// exports, by name, with their types.
func exported(t *testing.T) map[string]string {
	t.Helper()
	cfg := metrics.DefaultConfig()
	one := func(k string) map[string]uint64 { return map[string]uint64{k: 1} }
	cfg.Hub = upstreamHub{fixedHub{hub.Stats{
		Connections:        []hub.ConnectionCount{{Hub: "h", Transport: "websockets", Protocol: "json", Count: 1}},
		Connects:           one("websockets"),
		Disconnects:        one(hub.DisconnectClient),
		Resumes:            one(hub.ResumeResumed),
		StatefulReconnects: one(hub.ResumeResumed),
		Commands:           one("publish"),
		Publishes:          one(hub.PublishCommitted),
		LimitRefusals:      one("max_connections"),
	}}, hub.UpstreamStats{Enabled: true, Calls: map[string]map[string]uint64{"messages": one("ok")}}}
	// LastContact 0: present, as on a leader.
	cfg.Cluster = fixedCluster{cluster.Stats{State: "Leader", Forwards: one(cluster.ForwardOK), CommitNotices: one("sent"),
		Stages: map[string]cluster.Histogram{cluster.StageCommit: {Count: 1, Sum: 0.001, Buckets: map[float64]uint64{0.001: 1}}}}}
	m, err := metrics.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "raftplane_") {
			out[f.GetName()] = strings.ToLower(f.GetType().String())
		}
	}
	return out
}

var metricName = regexp.MustCompile(`raftplane_[a-z_]+`)

// TestREADME_ListsEveryMetric: the README's Metrics table names every
// metric the node exports, with its type, and nothing else.
func TestREADME_ListsEveryMetric(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "### Metrics")
	if start < 0 {
		t.Fatal(`README has no "### Metrics" section`)
	}
	sec := s[start+len("### Metrics"):]
	if end := strings.Index(sec, "\n#"); end >= 0 {
		sec = sec[:end]
	}
	documented := map[string]string{} // name: type, from the table rows
	for _, line := range strings.Split(sec, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.Contains(cells[1], "`raftplane_") {
			continue
		}
		for _, name := range metricName.FindAllString(cells[1], -1) {
			documented[name] = strings.TrimSpace(cells[2])
		}
	}
	have := exported(t)
	for name, typ := range have {
		switch got, ok := documented[name]; {
		case !ok:
			t.Errorf("%s (%s) is not in the README's Metrics table", name, typ)
		case got != typ:
			t.Errorf("README says %s is a %s; it is a %s", name, got, typ)
		}
	}
	for name := range documented {
		if _, ok := have[name]; !ok {
			t.Errorf("the README lists %s, which the node does not export", name)
		}
	}
}

// TestGrafanaDashboard: deploy/grafana/raftplane.json is a dashboard whose
// queries name only exported metrics, with the panels the operations issue
// asks for.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana/raftplane.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string      `json:"title"`
		UID    string      `json:"uid"`
		Panels []dashPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("not valid JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q uid %q", d.Title, d.UID)
	}
	have := exported(t)
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			for _, name := range metricName.FindAllString(tg.Expr, -1) {
				base := name
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, suf); ok && have[b] == "histogram" {
						base = b
					}
				}
				if _, ok := have[base]; !ok {
					t.Errorf("panel %q queries %s, which the node does not export", p.Title, name)
				}
			}
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{
		"raftplane_connections",
		"raftplane_messages_received_total", "raftplane_deliveries_total",
		"histogram_quantile(0.5, sum by (le) (rate(raftplane_publish_duration_seconds_bucket",
		"histogram_quantile(0.99, sum by (le) (rate(raftplane_publish_duration_seconds_bucket",
		"raftplane_raft_commit_index", "raftplane_raft_applied_index",
		"raftplane_dispatcher_lag_entries",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no panel queries %s", want)
		}
	}
	if !slices.ContainsFunc(d.Panels, func(p dashPanel) bool { return p.Type == "timeseries" }) {
		t.Error("no time series panel")
	}
}

// dashPanel is what the test reads of a Grafana panel.
type dashPanel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}
