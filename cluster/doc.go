// Package cluster owns Raft: the log and stable stores, the snapshot store,
// the transport, bootstrap, the leader's duties, and the write side of the
// stream. Publish turns a fsm.Command into a committed log entry (batching
// concurrent commands into one entry) and returns the cursor it got once
// the entry is applied on this node; PublishGroup keeps several commands in
// one entry (a hub method's effects). The leader also turns gossip members
// into the Raft configuration (plan.go) and raises the log format once
// every server knows it (leader.go), and tells each follower of a commit as
// soon as it applies it (notice.go), not with the next entry; without
// fsync, a follower that with the leader makes a quorum takes the commit
// of what it stored by itself (followercommit.go). Every node writes its
// log off raft's loop and syncs it behind, with nothing of a write seen
// before it is on disk (asynclog.go). Alive tells the hub which
// nodes are alive; closing a gone node's connections is the hub's
// (hub/reap.go).
//
// Operations: Stats is the node's Raft view for metrics; backup.go takes a
// consistent copy of the state for GET /api/v1/snapshot and seeds a new
// cluster from one; recover.go rewrites a stopped node's Raft
// configuration when a majority of voters is lost for good (hashicorp/raft's
// RecoverCluster).
//
// What a node is given rather than builds (network.go), as hashicorp/raft's
// NewRaft is given its stores and transport: Config.Network, the network
// its one port lives on (nil: TCP), and Config.RaftStores, its Raft log,
// stable and snapshot stores (nil: the log in wal/ (package cluster/wal),
// the stable store in raft.db and snapshots/ in DataDir: stores.go).
// Raft's transport and the node's RPC share that port behind a mux (one
// address per node, one thing for a partition to cut), so an injected
// network carries both; peer TLS is layered on it either way. Tests run
// clusters on internal/memnet, which they can partition, with raft's
// in-memory stores. What needs the files in DataDir refuses injected
// stores with ErrInjectedStores (DiscardFresh); the offline Recover and
// RestoreBackup work on a data folder by definition.
//
// cluster imports fsm (the state machine it feeds) and, for membership,
// gossip; it never imports hub.
package cluster
