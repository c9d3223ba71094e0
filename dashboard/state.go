package dashboard

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/raftplane/raftplane/hub"
	"github.com/raftplane/raftplane/status"
)

// Sample is one point of a node's history: rates over the interval that
// ended at T.
type Sample struct {
	// T is when the interval ended, in Unix milliseconds.
	T int64 `json:"t"`
	// Committed is publishes committed to the log per second (the whole
	// cluster's: every node reads every command); Received the messages
	// this node received from clients and the REST API; Delivered the
	// messages it wrote to its clients.
	Committed float64 `json:"committed_per_s"`
	Received  float64 `json:"received_per_s"`
	Delivered float64 `json:"delivered_per_s"`
	// P50 and P99 are this node's publish latency over the interval, in
	// milliseconds; nil when it committed nothing.
	P50 *float64 `json:"publish_p50_ms"`
	P99 *float64 `json:"publish_p99_ms"`
	// Connections is the open connections at T.
	Connections int `json:"connections"`
}

// NodeView is one node's own report (GET /dashboard/api/node).
type NodeView struct {
	ID string `json:"id"`
	// State is the Raft state (Leader, Follower, Candidate, Shutdown).
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastLogIndex uint64 `json:"last_log_index"`
	LeaderID     string `json:"leader_id"`
	// LastContactMs is the time since it heard from the leader, in
	// milliseconds (0 on the leader, -1 never).
	LastContactMs float64 `json:"last_contact_ms"`
	// Connections by transport (websockets, sse, longpolling) and in all.
	Connections      map[string]int `json:"connections"`
	ConnectionsTotal int            `json:"connections_total"`
	DispatcherLag    uint64         `json:"dispatcher_lag"`
	QueuedBytes      uint64         `json:"queued_bytes"`
	// SlowConsumers counts the connections closed as slow consumers since
	// the node started.
	SlowConsumers uint64             `json:"slow_consumers"`
	Behind        []BehindConnection `json:"behind"`
	History       []Sample           `json:"history"`
}

// BehindConnection is a connection with messages queued.
type BehindConnection struct {
	Node     string `json:"node"`
	ID       string `json:"id"`
	Hub      string `json:"hub"`
	User     string `json:"user,omitempty"`
	Messages int    `json:"messages"`
	Bytes    int    `json:"bytes"`
}

// Member is one member of the cluster in the state: what /api/v1/cluster
// says of it, and its own report when it answered.
type Member struct {
	status.Member
	// Reachable says whether it answered for its report; Error why not.
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// Lag is how many log indexes its applied index is behind the highest
	// commit index any member reported.
	Lag  uint64    `json:"lag"`
	Node *NodeView `json:"node,omitempty"`
}

// State is GET /dashboard/api/state.
type State struct {
	// Node is the node that answered.
	Node      string   `json:"node"`
	ClusterID string   `json:"cluster_id"`
	Time      int64    `json:"time"`
	Members   []Member `json:"members"`
	// Behind lists the connections furthest behind across the reachable
	// members (at most 10).
	Behind []BehindConnection `json:"behind"`
}

// notAsked is the Error of a member gossip knows that is not in the Raft
// configuration: it is not sent the caller's API key.
const notAsked = "not in the Raft configuration: not asked for its report"

// nodeView is this node's report.
func (d *Dashboard) nodeView() NodeView {
	hs := d.cfg.Hub.Stats()
	nv := NodeView{
		Connections:   map[string]int{hub.StatsWebSockets: 0, hub.StatsSSE: 0, hub.StatsLongPolling: 0},
		DispatcherLag: hs.DispatcherLag,
		QueuedBytes:   hs.QueuedBytes,
		SlowConsumers: hs.Disconnects[hub.DisconnectSlowConsumer],
		AppliedIndex:  hs.Position.Applied,
		LastContactMs: -1,
		Behind:        []BehindConnection{},
		History:       d.history(),
	}
	for _, cc := range hs.Connections {
		nv.Connections[cc.Transport] += cc.Count
		nv.ConnectionsTotal += cc.Count
	}
	if d.cfg.Cluster != nil {
		cs := d.cfg.Cluster.Stats()
		nv.ID, nv.State, nv.Term, nv.LeaderID = cs.NodeID, cs.State, cs.Term, cs.LeaderID
		nv.CommitIndex, nv.AppliedIndex, nv.LastLogIndex = cs.CommitIndex, cs.AppliedIndex, cs.LastLogIndex
		if cs.LastContact >= 0 {
			nv.LastContactMs = float64(cs.LastContact) / float64(time.Millisecond)
		}
	}
	for _, b := range hs.Behind {
		nv.Behind = append(nv.Behind, BehindConnection{Node: nv.ID, ID: b.ID, Hub: b.Hub, User: b.User, Messages: b.Messages, Bytes: b.Bytes})
	}
	return nv
}

// state assembles the cluster's state: the members, each one's report
// fetched in parallel (this node's read locally), within ctx.
func (d *Dashboard) state(ctx context.Context, auth string) State {
	self := d.nodeView()
	st := State{Node: self.ID, ClusterID: d.cfg.Hub.Stats().Position.Epoch, Time: time.Now().UnixMilli()}
	var members []status.Member
	if d.cfg.Cluster != nil {
		members = d.cfg.Cluster.ClusterStatus(ctx)
	}
	if len(members) == 0 {
		members = []status.Member{{ID: self.ID, GossipState: "alive", Leader: self.State == "Leader", Applied: self.AppliedIndex}}
	}
	st.Members = make([]Member, len(members))
	var wg sync.WaitGroup
	for i, ms := range members {
		m := &st.Members[i]
		m.Member = ms
		switch {
		case ms.ID == self.ID:
			m.Reachable, m.Node = true, &self
		case ms.Suffrage == "none":
			// Only servers the leader has added are sent the caller's key:
			// gossip alone does not make a member.
			m.Error = notAsked
		case ms.HTTPAddr == "":
			m.Error = "no HTTP address in gossip"
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				nv, err := d.fetchNode(ctx, ms.HTTPAddr, auth)
				if err != nil {
					m.Error = err.Error()
					return
				}
				m.Reachable, m.Node = true, nv
			}()
		}
	}
	wg.Wait()
	var commit uint64
	for _, m := range st.Members {
		if m.Node != nil {
			commit = max(commit, m.Node.CommitIndex)
		}
	}
	st.Behind = []BehindConnection{}
	for i := range st.Members {
		m := &st.Members[i]
		applied := m.Applied
		if m.Node != nil {
			applied = m.Node.AppliedIndex
			st.Behind = append(st.Behind, m.Node.Behind...)
		}
		if commit > applied && (m.Node != nil || applied > 0) {
			m.Lag = commit - applied
		}
	}
	st.Behind = sortBehind(st.Behind, 10)
	sort.SliceStable(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	return st
}

// sampler turns successive hub.Stats into Samples.
type sampler struct {
	prev   hub.Stats
	prevAt time.Time
	primed bool
}

// take records st; after the first call it returns the sample of the
// interval since the previous one.
func (s *sampler) take(st hub.Stats, now time.Time) (Sample, bool) {
	defer func() { s.prev, s.prevAt, s.primed = st, now, true }()
	if !s.primed {
		return Sample{}, false
	}
	secs := now.Sub(s.prevAt).Seconds()
	if secs <= 0 {
		return Sample{}, false
	}
	rate := func(now, before uint64) float64 {
		if now < before {
			return 0
		}
		return float64(now-before) / secs
	}
	smp := Sample{
		T:         now.UnixMilli(),
		Committed: rate(st.Commands["publish"], s.prev.Commands["publish"]),
		Received:  rate(st.ClientMessages+st.RESTMessages, s.prev.ClientMessages+s.prev.RESTMessages),
		Delivered: rate(st.Deliveries, s.prev.Deliveries),
	}
	for _, cc := range st.Connections {
		smp.Connections += cc.Count
	}
	if p, ok := quantile(0.5, st.PublishLatency, s.prev.PublishLatency); ok {
		smp.P50 = &p
	}
	if p, ok := quantile(0.99, st.PublishLatency, s.prev.PublishLatency); ok {
		smp.P99 = &p
	}
	return smp, true
}

// quantile estimates, in milliseconds, the q-quantile of the observations
// made between two snapshots of a histogram (status.Histogram.Quantile);
// ok is false without observations.
func quantile(q float64, now, before hub.Histogram) (float64, bool) {
	d := now.Sub(before)
	if d.Count == 0 {
		return 0, false
	}
	return d.Quantile(q) * 1000, true
}
