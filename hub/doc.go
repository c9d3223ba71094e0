// Package hub owns the SignalR side of raftplane: negotiate, the transports,
// the hub protocols (JSON and MessagePack: their wire format is package
// signalr's, which codec.go adapts), the connections of this node,
// the built-in hub methods, cursor resume, the server REST API, and delivery
// to local connections.
//
// hub knows nothing of Raft or gossip. It consumes small interfaces
// declared in ports.go: a Publisher that turns a fsm.Command (built with
// fsm's constructors) into a committed cursor; a Stream, which is the Log
// from which it reads every applied entry and the Registry of connections,
// groups and users; and, optionally, what it reads of the cluster
// (ClusterView, Readiness, Leadership, Liveness, Peers). A node never
// delivers anything to its clients except what it reads from the Log, the
// sender's own node included.
//
// Application logic (handlers.go, invoke.go, send.go, authz.go): an
// application registers Handlers for a hub (Authenticate, OnConnected and
// methods by name, shaped like an ASP.NET Core Hub). A method's sends and
// group changes are collected while it runs and committed as one group in
// one log entry when it returns; on a stateful-reconnect connection the
// group ends with an fsm.KindInvoke carrying the Completion, so any node
// replays it and a resent client message applies once. Server.Clients and
// Server.Groups are the server-side senders (IHubContext). Config's
// ClientMethods and GroupClaim limit what clients may do with the
// built-in methods.
//
// Goroutines: Server.Start runs one dispatcher that reads the log in order,
// keeps the local index of connections, groups and users, and encodes each
// message once per protocol before queueing it on its recipients. Each
// connection has one reader goroutine, which only reads; its messages are
// handled, and its writes made, by goroutines that exist only while
// something is due (inbox.go, conn.startWriter), so an idle connection has
// one goroutine with a small stack. A connection whose queue overflows is
// closed with allowReconnect; nothing the dispatcher does ever blocks on a
// client. Start also runs the reaper (reap.go) and, when there are
// connection events to deliver, the leader's events runner (events.go).
// Lock order: Server.mu, then conn.mu.
package hub
