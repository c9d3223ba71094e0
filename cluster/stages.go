package cluster

import (
	"sync"
	"time"

	metrics "github.com/hashicorp/go-metrics/compat"
	"github.com/raftplane/raftplane/status"
)

// The stages of the commit path, the keys of Stats.Stages: where the time
// between a client's invocation and its delivery on another node goes.
// hub measures the ends (the commit a publisher waits for, the dispatch and
// the write on each node); these are the middle.
const (
	// StageForward: a follower's batch, from its sending to the leader's
	// answer (the leader's commit included).
	StageForward = "forward"
	// StageLeaderStore: the leader writing new entries to its log store
	// (raft's raft.leader.dispatchLog): the append and the fsync, or, with
	// the parallel append (asynclog.go), the append only.
	StageLeaderStore = "leader_store"
	// StageLogSync: the leader's fsync of entries it appended, in
	// parallel with their replication (asynclog.go; this node's).
	StageLogSync = "log_sync"
	// StageReplicate: an AppendEntries round trip from the leader to a
	// follower, the follower's store included
	// (raft.replication.appendEntries.rpc).
	StageReplicate = "replicate"
	// StageFollowerStore: a follower writing the entries it received to its
	// log store (raft.rpc.appendEntries.storeLogs).
	StageFollowerStore = "follower_store"
	// StageCommit: from the leader's dispatch of an entry to its commit (a
	// quorum stored it; raft.commitTime).
	StageCommit = "commit"
	// StageFSMApply: the FSM applying one batch of committed entries
	// (raft.fsm.applyBatch).
	StageFSMApply = "fsm_apply"
)

// raftStage names the stage of a raft timing's key, "" for the timings not
// kept. It runs on raft's goroutines (the FSM's among them) for every
// sample, so it compares the key's parts rather than joining them.
func raftStage(key []string) string {
	if len(key) < 2 || key[0] != "raft" {
		return ""
	}
	switch k := key[1:]; {
	case len(k) == 1 && k[0] == "commitTime":
		return StageCommit
	case len(k) == 2 && k[0] == "leader" && k[1] == "dispatchLog":
		return StageLeaderStore
	case len(k) == 2 && k[0] == "fsm" && k[1] == "applyBatch":
		return StageFSMApply
	case len(k) == 3 && k[0] == "replication" && k[1] == "appendEntries" && k[2] == "rpc":
		return StageReplicate
	case len(k) == 3 && k[0] == "rpc" && k[1] == "appendEntries" && k[2] == "storeLogs":
		return StageFollowerStore
	}
	return ""
}

// raftStageNames are the stages raftStage gives.
var raftStageNames = []string{StageLeaderStore, StageReplicate, StageFollowerStore, StageCommit, StageFSMApply}

// raftTimings keeps the raft stages. hashicorp/raft reports its timings to
// go-metrics' process-wide sink, so they are process-wide too: the first
// node opened in a process installs the sink (replacing go-metrics' default,
// which discards everything), and every node of the process reports the
// same histograms (a test or an embedder running several nodes in one
// process sees their sum).
var raftTimings = struct {
	once  sync.Once
	hists map[string]*status.Latency // written once, here
}{hists: func() map[string]*status.Latency {
	m := make(map[string]*status.Latency, len(raftStageNames))
	for _, st := range raftStageNames {
		m[st] = new(status.Latency)
	}
	return m
}()}

// installRaftTimings makes go-metrics' global sink record the raft stages.
func installRaftTimings() {
	raftTimings.once.Do(func() {
		cfg := metrics.DefaultConfig("")
		cfg.EnableHostname = false
		cfg.EnableHostnameLabel = false
		cfg.EnableRuntimeMetrics = false // a goroutine of its own, for what /metrics already has
		cfg.EnableTypePrefix = false
		cfg.TimerGranularity = time.Microsecond
		_, _ = metrics.NewGlobal(cfg, &stageSink{})
	})
}

// stageSink is a go-metrics sink that keeps the samples of the raft stages (raftStage) and
// drops everything else.
type stageSink struct{ metrics.BlackholeSink }

func (*stageSink) AddSample(key []string, val float32) { stageSample(key, val) }

func (*stageSink) AddSampleWithLabels(key []string, val float32, _ []metrics.Label) {
	stageSample(key, val)
}

// stageSample records val, in microseconds (the configured granularity).
func stageSample(key []string, val float32) {
	if h := raftTimings.hists[raftStage(key)]; h != nil {
		h.Observe(time.Duration(float64(val) * float64(time.Microsecond)))
	}
}

// stages is Stats.Stages: the raft stages, this node's forwards and its
// leader syncs.
func (n *Node) stages() map[string]Histogram {
	out := make(map[string]Histogram, len(raftStageNames)+1)
	for st, h := range raftTimings.hists {
		out[st] = h.Snapshot()
	}
	out[StageForward] = n.stats.forwardRTT.Snapshot()
	if n.asyncLog != nil {
		out[StageLogSync] = n.asyncLog.syncs.Snapshot()
	}
	return out
}
