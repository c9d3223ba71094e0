// Package gossip lets raftplane nodes find each other. It wraps
// hashicorp/memberlist (v0.6.0): it advertises each node's Meta (id, Raft
// and HTTP addresses, cluster id, leaving flag) as memberlist node meta,
// keeps a table of members with their state, and reports membership
// changes as Events.
//
// It owns the gossip port (UDP and TCP), the join-with-retry loop, the
// member table and the memberlist log bridge. It knows nothing about Raft:
// the cluster package turns members into Raft servers from the Raft
// leader's loop. gossip imports no other raftplane package.
//
// # Lifecycle
//
// New validates a Config and starts nothing. Start listens; Join joins
// seeds in the background (Joined tells when it worked); Leave announces a
// graceful departure; Close shuts down and waits for every goroutine the
// Agent started. A left or closed Agent cannot be reused.
//
// # Left versus dead
//
// memberlist reports leaves and deaths through the same callback, without
// saying which (hashicorp/memberlist#266). Leave therefore first
// advertises Meta.Leaving; a member that disappears with Leaving set is
// StateLeft, any other is StateDead. Suspicion is not visible through
// memberlist's delegates, so a member is StateAlive until declared dead.
//
// # Events
//
// memberlist calls the delegates with its own lock held, so they never
// block: they update the table under a short mutex and offer the event to
// a buffered channel (1024). When the channel is full the event is dropped
// and counted (DroppedEvents), never waited for. Consumers must treat
// Events as a hint and also reconcile periodically from Members(), which
// is always complete. Events for one Agent arrive in memberlist's order;
// the channel is never closed.
package gossip
