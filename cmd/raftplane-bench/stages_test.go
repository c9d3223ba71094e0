package main

import (
	"strings"
	"testing"
)

// TestParseStages: the stage histograms are read out of a node's
// exposition, by family and stage label; the rest is ignored.
func TestParseStages(t *testing.T) {
	const text = `# TYPE raftplane_commit_stage_seconds histogram
raftplane_commit_stage_seconds_bucket{stage="commit",le="0.001"} 2
raftplane_commit_stage_seconds_bucket{stage="commit",le="0.0025"} 10
raftplane_commit_stage_seconds_bucket{stage="commit",le="+Inf"} 10
raftplane_commit_stage_seconds_sum{stage="commit"} 0.015
raftplane_commit_stage_seconds_count{stage="commit"} 10
raftplane_commit_stage_seconds_bucket{stage="other",le="+Inf"} 3
raftplane_commit_stage_seconds_sum{stage="other"} 1
raftplane_commit_stage_seconds_count{stage="other"} 3
# TYPE raftplane_write_duration_seconds histogram
raftplane_write_duration_seconds_bucket{le="0.0001"} 4
raftplane_write_duration_seconds_bucket{le="+Inf"} 4
raftplane_write_duration_seconds_sum 0.0002
raftplane_write_duration_seconds_count 4
# TYPE raftplane_deliveries_total counter
raftplane_deliveries_total 7
`
	s, err := parseStages(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 {
		t.Fatalf("stages %v, want commit and write", s)
	}
	if c := s["commit"]; c.Count != 10 || c.Buckets[0.001] != 2 || c.Buckets[0.0025] != 10 {
		t.Errorf("commit: %+v", c)
	}
	if w := s["write"]; w.Count != 4 {
		t.Errorf("write: %+v", w)
	}

	// A rate's result is the difference of two scrapes.
	e := &env{nodes: []*node{{name: "n1"}}}
	before := []stageSnapshot{{"commit": s["commit"]}}
	later, _ := parseStages(strings.NewReader(strings.NewReplacer(`le="0.001"} 2`, `le="0.001"} 12`, `le="0.0025"} 10`, `le="0.0025"} 20`,
		`le="+Inf"} 10`, `le="+Inf"} 20`, `_count{stage="commit"} 10`, `_count{stage="commit"} 20`).Replace(text)))
	rs := stageResults(e, before, []stageSnapshot{later}, 500)
	if len(rs) != 1 {
		t.Fatalf("%d results", len(rs))
	}
	got := map[string]any{}
	for _, m := range rs[0].Metrics {
		got[m.Key] = m.Val
	}
	if got["commit_n"] != uint64(10) || got["commit_p50_ms"] != 0.5 || got["commit_p99_ms"] != 0.99 {
		t.Errorf("commit over the rate: %v (10 new, all at most 1 ms)", got)
	}
	if got["write_n"] != uint64(4) {
		t.Errorf("write, absent from the first scrape (no observation yet): %v, want its 4", got["write_n"])
	}
}
