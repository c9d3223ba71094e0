// Package raftplane embeds a whole raftplane node in a Go program: a
// SignalR-compatible hub server whose every message goes through a Raft log
// replicated by the nodes of the cluster, so a client may resume on any node
// exactly where it left off.
//
// A Config holds every setting (DefaultConfig is a complete one-node
// cluster on loopback); New builds a Node, Start opens it, Handler is its
// HTTP API, Close shuts it down in order:
//
//	cfg := raftplane.DefaultConfig()
//	cfg.DataDir = "/var/lib/myapp/raftplane"
//	n, err := raftplane.New(cfg)
//	...
//	if err := n.Start(ctx); err != nil { ... }
//	defer n.Close(context.Background())
//
// cmd/raftplane is this package behind flags: each Option is a flag, an
// environment variable and a key of its configuration file at once, and
// Validate's errors name the option to fix.
//
// The parts live in their own packages: fsm (the replicated state: the
// message cache, connections, groups), cluster (Raft and membership), gossip
// (discovery and failure detection) and hub (the SignalR endpoints, the REST
// API and delivery). This package only wires them together; see each
// package's documentation and DESIGN.md for how they work.
package raftplane
