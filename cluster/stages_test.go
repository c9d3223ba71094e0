package cluster

import (
	"testing"
)

// TestStageSample: raft's timings land in their stage's histogram, in the
// sink's unit (microseconds); every other key is dropped. Not parallel: the
// histograms are the process's, and a running node would add to them.
func TestStageSample(t *testing.T) {
	before := map[string]uint64{}
	for st, h := range raftTimings.hists {
		before[st] = h.Snapshot().Count
	}
	for _, c := range []struct {
		key   []string
		stage string // "" : dropped
	}{
		{[]string{"raft", "commitTime"}, StageCommit},
		{[]string{"raft", "leader", "dispatchLog"}, StageLeaderStore},
		{[]string{"raft", "replication", "appendEntries", "rpc"}, StageReplicate},
		{[]string{"raft", "rpc", "appendEntries", "storeLogs"}, StageFollowerStore},
		{[]string{"raft", "fsm", "applyBatch"}, StageFSMApply},
		{[]string{"raft", "fsm", "apply"}, ""},
		{[]string{"raft"}, ""},
		{[]string{"consul", "commitTime"}, ""},
	} {
		var s stageSink
		s.AddSample(c.key, 1500) // 1.5 ms
		for st, h := range raftTimings.hists {
			got := h.Snapshot()
			want := before[st]
			if st == c.stage {
				want++
			}
			if got.Count != want {
				t.Errorf("%v: stage %s counted %d, want %d", c.key, st, got.Count, want)
			}
			before[st] = got.Count
			if st == c.stage && got.Buckets[0.001] == got.Buckets[0.0025] {
				t.Errorf("%v: 1500 µs not in the 1-2.5 ms bucket: %v", c.key, got.Buckets)
			}
		}
	}
}
