package cluster

// Counters for operators. cluster knows nothing of Prometheus: Stats
// answers a plain snapshot, read from Raft when asked, plus the few
// counters only a hook can keep (forward attempts, leader changes seen,
// snapshots written, connections reaped). The metrics package exports it.

import (
	"github.com/raftplane/raftplane/status"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Forward results, the keys of Stats.Forwards: one per attempt to hand a
// batch to the leader (a forward retries until HoldTimeout).
const (
	// ForwardOK: the leader committed the batch.
	ForwardOK = "ok"
	// ForwardRefused: the leader refused the batch as invalid or rejected
	// it; it is not retried.
	ForwardRefused = "refused"
	// ForwardNotLeader: the node asked was no longer the leader.
	ForwardNotLeader = "not_leader"
	// ForwardFailed: the leader answered with an error (shutting down, a
	// commit that failed).
	ForwardFailed = "failed"
	// ForwardError: no answer (dial or connection failure, timeout, the
	// leader changed while waiting).
	ForwardError = "error"
	// ForwardGaveUp: no leader committed the batch within HoldTimeout; its
	// submitters got ErrNoLeader. Counted once per batch, besides its
	// attempts.
	ForwardGaveUp = "gave_up"
)

// snapshotBounds are the upper bounds, in seconds, of the buckets of
// Stats.SnapshotDuration.
var snapshotBounds = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Stats is a snapshot of a node's Raft view and of its counters, which
// count from New.
type Stats struct {
	NodeID string
	// State is Raft's state (Follower, Candidate, Leader, Shutdown), ""
	// before Open.
	State             string
	Term              uint64
	CommitIndex       uint64
	AppliedIndex      uint64
	LastLogIndex      uint64
	LastSnapshotIndex uint64
	// FSMPending is how many committed batches wait for the FSM.
	FSMPending uint64
	LeaderID   string
	// LastContact is how long ago this node last heard from the leader: 0
	// on the leader, negative if never.
	LastContact time.Duration
	// Voters and NonVoters count the servers of the Raft configuration.
	Voters, NonVoters int
	// LeaderChanges counts the leaders this node has seen elected (Raft's
	// leader observations naming a leader).
	LeaderChanges uint64
	// SnapshotDuration is how long each snapshot this node wrote took, from
	// the snapshot store's Create to the sink's Close (the FSM's Persist;
	// a snapshot installed from the leader counts too); SnapshotFailures
	// counts those cancelled or failed.
	SnapshotDuration Histogram
	SnapshotFailures uint64
	// Forwards counts attempts to forward a batch to the leader, by result
	// (Forward*).
	Forwards map[string]uint64
	// Stages are the latencies of the commit path's stages (Stage*,
	// stages.go): raft's are the process's, StageForward this node's.
	Stages          map[string]Histogram
	PeerTLSFailures uint64
	RejectedEntries uint64
	// CommitNotices counts the commit notices this node sent as leader
	// (notice.go), by result: "sent" (answered) and "failed" (durable
	// notices too), the acknowledgements it sent none for, "skipped": their
	// follower commits them itself (followercommit.go), and the durable
	// notices it sent to such followers with fsync, "durable".
	CommitNotices map[string]uint64
	// FollowerCommits counts the commits this node took by itself as a
	// follower (followercommit.go); -1 when they are off.
	FollowerCommits int64
	// LogBytes is the size of the log's files (wal/); -1 with injected
	// stores or before Open.
	LogBytes int64
}

// Histogram is a snapshot of a histogram (status.Histogram).
type Histogram = status.Histogram

// Stats reports the node's Raft view and counters. It does not block on
// the network and may be called from many goroutines.
func (n *Node) Stats() Stats {
	st := &n.stats
	out := Stats{
		NodeID:           n.cfg.NodeID,
		LastContact:      -1,
		LeaderChanges:    st.leaderChanges.Load(),
		SnapshotFailures: st.snapFailures.Load(),
		PeerTLSFailures:  n.PeerTLSFailures(),
		RejectedEntries:  n.machine.Rejected(),
		Forwards:         make(map[string]uint64, numForwardResults),
		Stages:           n.stages(),
		LogBytes:         -1,
		FollowerCommits:  -1,
	}
	for i, name := range forwardResultNames {
		out.Forwards[name] = st.forwards[i].Load()
	}
	if c := n.notices; c != nil {
		out.CommitNotices = map[string]uint64{"sent": c.sent.Load(), "failed": c.failed.Load(),
			"skipped": c.skipped.Load(), "durable": c.durables.Load()}
	}
	if f := n.commits; f != nil {
		out.FollowerCommits = int64(f.taken.Load())
	}
	st.snapMu.Lock()
	out.SnapshotDuration = Histogram{Count: st.snapCount, Sum: st.snapSum, Buckets: make(map[float64]uint64, len(snapshotBounds))}
	var cum uint64
	for i, b := range snapshotBounds {
		cum += st.snapCounts[i]
		out.SnapshotDuration.Buckets[b] = cum
	}
	st.snapMu.Unlock()
	if n.raft == nil {
		return out
	}
	if w := n.stores.wal; w != nil {
		out.LogBytes = w.Size()
	}
	rs := n.raft.Stats()
	num := func(k string) uint64 { v, _ := strconv.ParseUint(rs[k], 10, 64); return v }
	out.State = n.raft.State().String()
	out.Term = num("term")
	out.CommitIndex = num("commit_index")
	out.AppliedIndex = num("applied_index")
	out.LastLogIndex = num("last_log_index")
	out.LastSnapshotIndex = num("last_snapshot_index")
	out.FSMPending = num("fsm_pending")
	_, id := n.raft.LeaderWithID()
	out.LeaderID = string(id)
	switch last := n.raft.LastContact(); {
	case n.raft.State() == raft.Leader:
		out.LastContact = 0
	case !last.IsZero():
		out.LastContact = time.Since(last)
	}
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				out.Voters++
			} else {
				out.NonVoters++
			}
		}
	}
	return out
}

// nodeStats are a Node's counters.
type nodeStats struct {
	forwards      [numForwardResults]atomic.Uint64
	leaderChanges atomic.Uint64
	snapFailures  atomic.Uint64

	// Snapshots are rare: a mutex is cheap enough.
	snapMu     sync.Mutex
	snapCounts [len(snapshotBounds) + 1]uint64
	snapCount  uint64
	snapSum    float64

	forwardRTT status.Latency // StageForward
}

const (
	fwdOK = iota
	fwdRefused
	fwdNotLeader
	fwdFailed
	fwdError
	fwdGaveUp
	numForwardResults
)

var forwardResultNames = [numForwardResults]string{
	fwdOK: ForwardOK, fwdRefused: ForwardRefused, fwdNotLeader: ForwardNotLeader,
	fwdFailed: ForwardFailed, fwdError: ForwardError, fwdGaveUp: ForwardGaveUp,
}

// forward counts a forward attempt's result.
func (st *nodeStats) forward(result int) { st.forwards[result].Add(1) }

// forwardReply counts a forward answered with a frame of type typ.
func (st *nodeStats) forwardReply(typ byte) {
	switch typ {
	case rpcForwardOK:
		st.forward(fwdOK)
	case rpcRefused:
		st.forward(fwdRefused)
	case rpcNotLeader:
		st.forward(fwdNotLeader)
	default:
		st.forward(fwdFailed)
	}
}

func (st *nodeStats) snapshotDone(d time.Duration, err error) {
	if err != nil {
		st.snapFailures.Add(1)
		return
	}
	s := d.Seconds()
	i := sort.SearchFloat64s(snapshotBounds[:], s)
	st.snapMu.Lock()
	st.snapCounts[i]++
	st.snapCount++
	st.snapSum += s
	st.snapMu.Unlock()
}

// observeLeaders starts counting the leaders Raft reports, until the node
// stops. The observer does not block Raft: a change it cannot take at once
// is dropped (and Raft counts the drop); the channel's room makes that
// rare, as leaders change rarely.
func (n *Node) observeLeaders() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.raft.DeregisterObserver(obs)
		for {
			select {
			case <-n.stop:
				return
			case o := <-ch:
				if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
					n.stats.leaderChanges.Add(1)
				}
			}
		}
	}()
}

// timedSnapshots is the snapshot store Raft is given: the real one, with
// every snapshot written timed.
type timedSnapshots struct {
	raft.SnapshotStore
	st *nodeStats
}

// Create implements raft.SnapshotStore.
func (t timedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := t.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		t.st.snapshotDone(0, err)
		return nil, err
	}
	return &timedSink{SnapshotSink: sink, st: t.st, start: time.Now()}, nil
}

// timedSink times one snapshot.
type timedSink struct {
	raft.SnapshotSink
	st    *nodeStats
	start time.Time
	once  sync.Once
}

// Close implements raft.SnapshotSink.
func (s *timedSink) Close() error {
	err := s.SnapshotSink.Close()
	s.once.Do(func() { s.st.snapshotDone(time.Since(s.start), err) })
	return err
}

// Cancel implements raft.SnapshotSink.
func (s *timedSink) Cancel() error {
	err := s.SnapshotSink.Cancel()
	s.once.Do(func() { s.st.snapFailures.Add(1) })
	return err
}
