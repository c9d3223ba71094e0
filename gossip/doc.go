// Package gossip finds the other raftplane nodes: it wraps
// hashicorp/memberlist, advertises each node's metadata (id, Raft and HTTP
// addresses, cluster id, leaving flag) and reports members and their
// changes. It knows nothing about Raft; cluster turns what it reports into
// Raft membership. gossip imports no other raftplane package.
//
// The single-node server needs no gossip; the cluster issue fills this in.
package gossip
