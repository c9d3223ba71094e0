// Package status holds the JSON shapes of a node's status, in one place for
// the code that writes them and the code that reads them. The hub serves
// them (GET /api/v1/status: Node and Stream; GET /api/v1/cluster: Member);
// cluster fills Node and Member, hub fills Stream; cmd/raftplane's status
// command, the stranger attacks and the chaos harness decode them.
//
// status is a leaf: it imports nothing of the project, so hub may import
// it without importing cluster (hub never imports cluster or gossip).
package status

// Node is this node's Raft view: the "node" object of GET /api/v1/status.
type Node struct {
	NodeID       string `json:"node_id"`
	RaftAddr     string `json:"raft_addr"`
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	LeaderID     string `json:"leader_id"`
	LeaderAddr   string `json:"leader_addr"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastLogIndex uint64 `json:"last_log_index"`
	LastContact  string `json:"last_contact"`
	// PeerTLS says whether the Raft port requires mutual TLS;
	// PeerTLSFailures counts the handshakes it refused since start
	// (strangers, expired or foreign certificates).
	PeerTLS         bool   `json:"peer_tls"`
	PeerTLSFailures uint64 `json:"peer_tls_failures"`
	// RejectedEntries counts the malformed log entries this process's FSM
	// rejected (each rejected on every replica alike; see fsm.ErrRejected).
	RejectedEntries uint64 `json:"rejected_entries"`
}

// Member is one member of the cluster as a node sees it, the union of the
// Raft configuration and gossip: one element of the "members" array of
// GET /api/v1/cluster.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Gossip   string `json:"gossip_addr,omitempty"`
	// GossipState is alive, suspect, dead, left, or "unknown" for a Raft
	// server gossip has not reported.
	GossipState string `json:"gossip_state"`
	// Suffrage is voter, nonvoter, or none (in gossip, not in Raft).
	Suffrage  string `json:"suffrage"`
	Leader    bool   `json:"leader"`
	Leaving   bool   `json:"leaving,omitempty"`
	ClusterID string `json:"cluster_id,omitempty"`
	// LastContact is how long ago the node last heard from the member: for
	// itself, Raft's time since it last heard from the leader; for others,
	// the age of their answer to this status request (so it is about the
	// RPC round trip) or "unreachable".
	LastContact string `json:"last_contact"`
	// Applied is the member's applied Raft index (0 if unreachable).
	Applied uint64 `json:"applied_index"`
}

// Stream is the node's read side of the log: the "stream" object of
// GET /api/v1/status. The cursors are formatted (epoch:term:index), ""
// while there is none.
type Stream struct {
	// Epoch is the cluster id, "" until it is applied.
	Epoch        string `json:"epoch"`
	AppliedIndex uint64 `json:"applied_index"`
	// FirstCursor and LastCursor bound the message cache; FloorCursor is
	// the oldest cursor a client may still resume from.
	FirstCursor string `json:"first_cursor"`
	LastCursor  string `json:"last_cursor"`
	FloorCursor string `json:"floor_cursor"`
	// Cached and CachedBytes are the entries in the message cache and
	// their estimated size.
	Cached      int   `json:"cached"`
	CachedBytes int64 `json:"cached_bytes"`
	// Digest is the FSM's running digest of what it applied, in hex: two
	// replicas at the same applied index with different digests have
	// diverged.
	Digest string `json:"digest"`
}

// Histogram is a snapshot of a histogram: Buckets holds, by upper bound
// (seconds for latencies), how many observations were at most that bound
// (cumulative, as Prometheus has them); Count includes those above the
// largest bound. hub and cluster report theirs in it.
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64
}
