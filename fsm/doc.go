// Package fsm owns the replicated state of a raftplane cluster and its read
// side: the raft.FSM that applies committed log entries into a bounded message
// cache and into the connection, group and user registry, and the stream API
// (Since, Changed, Position) from which every node delivers messages to its own
// clients.
//
// The FSM is deterministic: Apply does no I/O, reads no clock and calls no
// network. Every command carries the time its submitter stamped on it, and
// every time-based decision (cache age, duplicate-id window) is taken against
// the newest stamp applied, so every node reaches the same state from the same
// log. fsm imports no other raftplane package.
package fsm
