package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/raftplane/raftplane/status"
)

// The latency scenario's breakdown: where the time of a delivery goes, per
// node, read from each node's /metrics before and after a rate, so that
// only that rate's observations count. The stages, in the order a message
// passes them: publish (the publisher's node: accepted to committed and
// applied there; for a follower it includes forward), forward,
// leader_store, log_sync, replicate, follower_store, commit, fsm_apply (the commit
// path, cluster/stages.go), dispatch (the leader's stamp to the dispatcher
// queueing it on this node) and write (queued to written).
var stageMetrics = []struct{ name, family, stage string }{
	{"publish", "raftplane_publish_duration_seconds", ""},
	{"forward", "raftplane_commit_stage_seconds", "forward"},
	{"leader_store", "raftplane_commit_stage_seconds", "leader_store"},
	{"log_sync", "raftplane_commit_stage_seconds", "log_sync"},
	{"replicate", "raftplane_commit_stage_seconds", "replicate"},
	{"follower_store", "raftplane_commit_stage_seconds", "follower_store"},
	{"commit", "raftplane_commit_stage_seconds", "commit"},
	{"fsm_apply", "raftplane_commit_stage_seconds", "fsm_apply"},
	{"dispatch", "raftplane_dispatch_latency_seconds", ""},
	{"write", "raftplane_write_duration_seconds", ""},
}

// stageSnapshot is one node's stage histograms, by stage name.
type stageSnapshot map[string]status.Histogram

// scrapeStages reads the stage histograms of every node; a node that does
// not answer has none (its row is left out).
func (e *env) scrapeStages(ctx context.Context) []stageSnapshot {
	out := make([]stageSnapshot, len(e.nodes))
	for i, nd := range e.nodes {
		s, err := e.scrapeStagesOf(ctx, nd.url)
		if err != nil {
			fmt.Fprintf(e.logw, "raftplane-bench: %s: stages not read: %v\n", nd.name, err)
			continue
		}
		out[i] = s
	}
	return out
}

func (e *env) scrapeStagesOf(ctx context.Context, base string) (stageSnapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET /metrics: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return parseStages(resp.Body)
}

// parseStages reads the stage histograms out of a Prometheus text
// exposition.
func parseStages(r io.Reader) (stageSnapshot, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	out := stageSnapshot{}
	for _, sm := range stageMetrics {
		f := fams[sm.family]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			if sm.stage != "" && label(m, "stage") != sm.stage {
				continue
			}
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			hist := status.Histogram{Count: h.GetSampleCount(), Sum: h.GetSampleSum(), Buckets: map[float64]uint64{}}
			for _, b := range h.GetBucket() {
				hist.Buckets[b.GetUpperBound()] = b.GetCumulativeCount()
			}
			out[sm.name] = hist
		}
	}
	return out, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// stageResults turns the scrapes before and after a rate into one result
// per node: each stage's count, p50 and p99 over that rate (quantiles
// from the buckets, as Prometheus's histogram_quantile estimates them).
func stageResults(e *env, before, after []stageSnapshot, rate float64) []Result {
	var out []Result
	for i := range e.nodes {
		if before[i] == nil || after[i] == nil {
			continue
		}
		r := Result{Scenario: "stages"}
		r.param("node", e.nodes[i].name)
		r.param("rate", rate)
		for _, sm := range stageMetrics {
			d := after[i][sm.name].Sub(before[i][sm.name])
			if d.Count == 0 {
				continue
			}
			r.metric(sm.name+"_n", d.Count)
			r.metric(sm.name+"_p50_ms", 1000*d.Quantile(0.5))
			r.metric(sm.name+"_p99_ms", 1000*d.Quantile(0.99))
		}
		r.note("per node, over this rate only: the stages a message passes (publish on the publisher's node; forward on a follower; leader_store, log_sync, replicate and commit on the leader; follower_store on followers; fsm_apply, dispatch and write on every node); quantiles estimated from the histograms' buckets")
		out = append(out, r)
	}
	return out
}
