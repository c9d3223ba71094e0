package metrics

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/hub"
)

// collector turns one hub.Stats and one cluster.Stats per scrape into the
// raftplane_* metrics. The README's Metrics section lists them: keep the
// two in step.
type collector struct {
	cfg   Config
	descs []*prometheus.Desc

	// hub
	connections, connects, disconnects, resumes, reattaches *prometheus.Desc
	received, commands, deliveries, deliveredBytes          *prometheus.Desc
	pipelineResent                                          *prometheus.Desc
	publishes, publishDuration, dispatchLatency             *prometheus.Desc
	writeDuration, commitStage                              *prometheus.Desc
	dispatcherLag, dispatchedIndex                          *prometheus.Desc
	queueDepth, queuedBytes, limitRefusals                  *prometheus.Desc
	// fsm (through hub's view of the stream)
	cacheEntries, cacheBytes, oldestCursor, floorCursor *prometheus.Desc
	lastCursor, fsmApplied, rejected, info              *prometheus.Desc
	// upstream webhooks and connection events (hub/upstream.go, events.go)
	upstreamCalls, eventsDelivered, eventGaps, eventsLeading *prometheus.Desc
	// cluster
	raftState, term, commitIndex, appliedIndex, lastLogIndex, lastSnapIndex, logBytes     *prometheus.Desc
	fsmPending, lastContact, leaderChanges, servers                                       *prometheus.Desc
	snapDuration, snapFailures, forwards, peerTLSFailures, commitNotices, followerCommits *prometheus.Desc
}

func newCollector(cfg Config) *collector {
	c := &collector{cfg: cfg}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		desc := prometheus.NewDesc("raftplane_"+name, help, labels, nil)
		c.descs = append(c.descs, desc)
		return desc
	}
	c.connections = d("connections", "Open client connections on this node (handshake done).", "hub", "transport", "protocol")
	c.connects = d("connects_total", "Client handshakes completed on this node; a resume or stateful reconnect is a new one.", "transport")
	c.disconnects = d("disconnects_total", "Client connections ended on this node, by reason; reaped counts connections closed in the log for a process that is gone.", "reason")
	c.resumes = d("resumes_total", "Cursor resumes on this node, by outcome.", "outcome")
	c.reattaches = d("stateful_reconnects_total", "Stateful reconnects on this node, by outcome.", "outcome")
	c.pipelineResent = d("pipeline_resent_total", "Pipelined invocations sent again because they reached the log before an earlier one of their connection (after a leader change, most often).")
	c.received = d("messages_received_total", "Messages received on this node: hub messages from clients (every type), sends through the REST API.", "source")
	c.commands = d("commands_committed_total", "Commands of the log read by this node's dispatcher, by kind (every node counts every command once).", "kind")
	c.deliveries = d("deliveries_total", "Hub messages written to this node's clients by live delivery.")
	c.deliveredBytes = d("delivered_bytes_total", "Bytes of the hub messages written to this node's clients by live delivery.")
	c.publishes = d("publishes_total", "Commands this node's hub submitted to the log, by result.", "result")
	c.publishDuration = d("publish_duration_seconds", "Time from a submission on this node to its commit and apply on this node, for the committed ones.")
	c.dispatchLatency = d("dispatch_latency_seconds", "Time from the leader accepting a publish to this node's dispatcher queueing it to its recipients (includes clock skew between nodes).")
	c.writeDuration = d("write_duration_seconds", "Time from the dispatcher handing delivered messages to a connection's writer to the transport's write returning.")
	c.commitStage = d("commit_stage_seconds", "Time of each stage of the commit path: forward (a follower's batch to the leader and back), leader_store, replicate (an AppendEntries round trip), follower_store, commit (leader dispatch to commit), fsm_apply. Raft's stages are the process's.", "stage")
	c.dispatcherLag = d("dispatcher_lag_entries", "Log indexes applied on this node but not yet dispatched to its connections.")
	c.dispatchedIndex = d("dispatched_index", "Log index up to which this node's dispatcher has queued everything.")
	c.queueDepth = d("connection_queue_messages", "Distribution of messages queued per open connection on this node at scrape time (a snapshot, not cumulative).")
	c.queuedBytes = d("connection_queued_bytes", "Bytes queued to this node's connections at scrape time.")
	c.limitRefusals = d("limit_refusals_total", "Refusals by a configured limit on this node.", "limit")

	c.cacheEntries = d("fsm_cache_entries", "Entries in this node's message cache (the resume window).")
	c.cacheBytes = d("fsm_cache_bytes", "Bytes of the entries in this node's message cache.")
	c.oldestCursor = d("fsm_oldest_cursor_index", "Log index of the oldest entry in this node's message cache.")
	c.floorCursor = d("fsm_floor_cursor_index", "Log index from which a client can resume on this node.")
	c.lastCursor = d("fsm_last_cursor_index", "Log index of the last command applied on this node.")
	c.fsmApplied = d("fsm_applied_index", "Last log index applied to this node's state machine (any entry type).")
	c.rejected = d("fsm_rejected_entries_total", "Malformed log entries this node's state machine rejected.")
	c.info = d("node_info", "Always 1: the node's id and its cluster id (the cursor epoch).", "node_id", "cluster_id")

	c.upstreamCalls = d("upstream_calls_total", "Calls to the upstream webhook (-upstream) from this node, by category and result.", "category", "result")
	c.eventsDelivered = d("disconnected_events_total", "Disconnected events this node delivered while it ran the connection events, by where to.", "delivery")
	c.eventGaps = d("disconnected_event_gaps_total", "Times disconnected events were lost because the log's cache moved past them.")
	c.eventsLeading = d("events_leading", "1 while this node runs the connection events (it leads).")

	c.raftState = d("raft_state", "1 for this node's current Raft state, 0 for the others.", "state")
	c.term = d("raft_term", "Current Raft term.")
	c.commitIndex = d("raft_commit_index", "Raft commit index known to this node.")
	c.appliedIndex = d("raft_applied_index", "Raft index applied on this node.")
	c.lastLogIndex = d("raft_last_log_index", "Last index in this node's Raft log.")
	c.lastSnapIndex = d("raft_last_snapshot_index", "Index of this node's latest Raft snapshot.")
	c.logBytes = d("raft_log_bytes", "Size of this node's Raft log files (wal/ in the data folder).")
	c.fsmPending = d("raft_fsm_pending", "Committed batches waiting for this node's state machine.")
	c.lastContact = d("raft_last_contact_seconds", "Time since this node last heard from the leader (0 on the leader; absent if never).")
	c.leaderChanges = d("raft_leader_changes_total", "Leaders this node has seen elected.")
	c.servers = d("raft_servers", "Servers in the Raft configuration, by suffrage.", "suffrage")
	c.snapDuration = d("raft_snapshot_duration_seconds", "Time to write each Raft snapshot (taken, or installed from the leader), store create to close.")
	c.snapFailures = d("raft_snapshot_failures_total", "Raft snapshots cancelled or failed.")
	c.forwards = d("forward_rpcs_total", "Attempts to forward a batch to the leader, by result.", "result")
	c.peerTLSFailures = d("peer_tls_failures_total", "TLS handshakes the Raft port refused.")
	c.commitNotices = d("raft_commit_notices_total", "Commit notices this node sent to followers as leader, by result (sent, failed), acknowledgements it sent none for because their follower commits them itself (skipped), and durable notices it sent such followers with fsync (durable).", "result")
	c.followerCommits = d("raft_follower_commits_total", "Commits this node took by itself as a follower, the leader and it being a quorum.")
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one snapshot of each source.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	hs := c.cfg.Hub.Stats()
	var cs *cluster.Stats
	if c.cfg.Cluster != nil {
		st := c.cfg.Cluster.Stats()
		cs = &st
	}
	c.collectHub(ch, &hs, cs)
	c.collectStream(ch, &hs, cs)
	if us, ok := c.cfg.Hub.(UpstreamSource); ok {
		c.collectUpstream(ch, us.UpstreamStats())
	}
	if cs != nil {
		c.collectCluster(ch, cs)
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

// counters emits one series per key of m, in key order.
func counters(ch chan<- prometheus.Metric, d *prometheus.Desc, m map[string]uint64) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		counter(ch, d, m[k], k)
	}
}

func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, count uint64, sum float64, buckets map[float64]uint64) {
	ch <- prometheus.MustNewConstHistogram(d, count, sum, buckets)
}

func (c *collector) collectHub(ch chan<- prometheus.Metric, hs *hub.Stats, cs *cluster.Stats) {
	for _, cc := range capHubs(hs.Connections, c.cfg.MaxHubLabels) {
		gauge(ch, c.connections, float64(cc.Count), cc.Hub, cc.Transport, cc.Protocol)
	}
	counters(ch, c.connects, hs.Connects)
	disc := make(map[string]uint64, len(hs.Disconnects))
	for k, v := range hs.Disconnects {
		disc[k] = v
	}
	counters(ch, c.disconnects, disc)
	counters(ch, c.resumes, hs.Resumes)
	counters(ch, c.reattaches, hs.StatefulReconnects)
	counter(ch, c.received, hs.ClientMessages, "client")
	counter(ch, c.received, hs.RESTMessages, "rest")
	counter(ch, c.pipelineResent, hs.PipelineResent)
	kinds := make(map[string]uint64, len(hs.Commands))
	for k, v := range hs.Commands {
		kinds[strings.ReplaceAll(k, "-", "_")] = v // label values as the other labels: snake case
	}
	counters(ch, c.commands, kinds)
	counter(ch, c.deliveries, hs.Deliveries)
	counter(ch, c.deliveredBytes, hs.DeliveredBytes)
	counters(ch, c.publishes, hs.Publishes)
	histogram(ch, c.publishDuration, hs.PublishLatency.Count, hs.PublishLatency.Sum, hs.PublishLatency.Buckets)
	histogram(ch, c.dispatchLatency, hs.DispatchLatency.Count, hs.DispatchLatency.Sum, hs.DispatchLatency.Buckets)
	histogram(ch, c.writeDuration, hs.WriteLatency.Count, hs.WriteLatency.Sum, hs.WriteLatency.Buckets)
	gauge(ch, c.dispatcherLag, float64(hs.DispatcherLag))
	gauge(ch, c.dispatchedIndex, float64(hs.Dispatched.Index))
	histogram(ch, c.queueDepth, hs.QueueDepth.Count, hs.QueueDepth.Sum, hs.QueueDepth.Buckets)
	gauge(ch, c.queuedBytes, float64(hs.QueuedBytes))
	counters(ch, c.limitRefusals, hs.LimitRefusals)
}

func (c *collector) collectStream(ch chan<- prometheus.Metric, hs *hub.Stats, cs *cluster.Stats) {
	p := hs.Position
	gauge(ch, c.cacheEntries, float64(p.Entries))
	gauge(ch, c.cacheBytes, float64(p.Bytes))
	gauge(ch, c.oldestCursor, float64(p.First.Index))
	gauge(ch, c.floorCursor, float64(p.Floor.Index))
	gauge(ch, c.lastCursor, float64(p.Last.Index))
	gauge(ch, c.fsmApplied, float64(p.Applied))
	node := ""
	if cs != nil {
		counter(ch, c.rejected, cs.RejectedEntries)
		node = cs.NodeID
	}
	gauge(ch, c.info, 1, node, p.Epoch)
}

// UpstreamSource is the optional part of a HubSource that reports the
// upstream webhook calls and the connection events; *hub.Server has it.
type UpstreamSource interface {
	UpstreamStats() hub.UpstreamStats
}

var _ UpstreamSource = (*hub.Server)(nil)

func (c *collector) collectUpstream(ch chan<- prometheus.Metric, us hub.UpstreamStats) {
	for _, cat := range slices.Sorted(maps.Keys(us.Calls)) {
		for _, res := range slices.Sorted(maps.Keys(us.Calls[cat])) {
			counter(ch, c.upstreamCalls, us.Calls[cat][res], cat, res)
		}
	}
	ev := us.Events
	counter(ch, c.eventsDelivered, ev.Upstream, "upstream")
	counter(ch, c.eventsDelivered, ev.Dropped, "upstream_dropped")
	counter(ch, c.eventsDelivered, ev.Handler, "handler")
	counter(ch, c.eventGaps, ev.Gaps)
	v := 0.0
	if ev.Leading {
		v = 1
	}
	gauge(ch, c.eventsLeading, v)
}

// raftStates are the values of raft_state's label.
var raftStates = []string{"Follower", "Candidate", "Leader", "Shutdown"}

func (c *collector) collectCluster(ch chan<- prometheus.Metric, cs *cluster.Stats) {
	for _, s := range raftStates {
		v := 0.0
		if cs.State == s {
			v = 1
		}
		gauge(ch, c.raftState, v, strings.ToLower(s))
	}
	gauge(ch, c.term, float64(cs.Term))
	gauge(ch, c.commitIndex, float64(cs.CommitIndex))
	gauge(ch, c.appliedIndex, float64(cs.AppliedIndex))
	gauge(ch, c.lastLogIndex, float64(cs.LastLogIndex))
	gauge(ch, c.lastSnapIndex, float64(cs.LastSnapshotIndex))
	if cs.LogBytes >= 0 {
		gauge(ch, c.logBytes, float64(cs.LogBytes))
	}
	gauge(ch, c.fsmPending, float64(cs.FSMPending))
	if cs.LastContact >= 0 {
		gauge(ch, c.lastContact, cs.LastContact.Seconds())
	}
	counter(ch, c.leaderChanges, cs.LeaderChanges)
	gauge(ch, c.servers, float64(cs.Voters), "voter")
	gauge(ch, c.servers, float64(cs.NonVoters), "nonvoter")
	histogram(ch, c.snapDuration, cs.SnapshotDuration.Count, cs.SnapshotDuration.Sum, cs.SnapshotDuration.Buckets)
	for _, st := range slices.Sorted(maps.Keys(cs.Stages)) {
		h := cs.Stages[st]
		ch <- prometheus.MustNewConstHistogram(c.commitStage, h.Count, h.Sum, h.Buckets, st)
	}
	counter(ch, c.snapFailures, cs.SnapshotFailures)
	counters(ch, c.forwards, cs.Forwards)
	counter(ch, c.peerTLSFailures, cs.PeerTLSFailures)
	counters(ch, c.commitNotices, cs.CommitNotices)
	if cs.FollowerCommits >= 0 {
		counter(ch, c.followerCommits, uint64(cs.FollowerCommits))
	}
}

// capHubs keeps the max hubs with the most connections (ties by name) and
// sums the others under OtherHubs, by transport and protocol.
func capHubs(in []hub.ConnectionCount, maxHubs int) []hub.ConnectionCount {
	totals := map[string]int{}
	for _, cc := range in {
		totals[cc.Hub] += cc.Count
	}
	if len(totals) <= maxHubs {
		return in
	}
	hubs := make([]string, 0, len(totals))
	for h := range totals {
		hubs = append(hubs, h)
	}
	slices.SortFunc(hubs, func(a, b string) int {
		return cmp.Or(cmp.Compare(totals[b], totals[a]), strings.Compare(a, b))
	})
	keep := make(map[string]bool, maxHubs)
	for _, h := range hubs[:maxHubs] {
		keep[h] = true
	}
	type key struct{ tr, proto string }
	other := map[key]int{}
	var out []hub.ConnectionCount
	for _, cc := range in {
		if keep[cc.Hub] {
			out = append(out, cc)
		} else {
			other[key{cc.Transport, cc.Protocol}] += cc.Count
		}
	}
	for k, n := range other {
		out = append(out, hub.ConnectionCount{Hub: OtherHubs, Transport: k.tr, Protocol: k.proto, Count: n})
	}
	return out
}
