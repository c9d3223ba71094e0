// Package cluster owns Raft: the log and stable stores, the snapshot store,
// the transport, bootstrap, the leader's duties, and the write side of the
// stream. Publish turns a fsm.Command into a committed log entry (batching
// concurrent commands into one entry) and returns the cursor it got once
// the entry is applied on this node.
//
// cluster imports fsm (the state machine it feeds) and, for membership,
// gossip; it never imports hub.
package cluster
