package cluster

import "errors"

// Sentinel errors of the write path. Callers match them with errors.Is.
var (
	// ErrNoLeader means no leader was known within the hold time; nothing
	// was applied and the caller may retry.
	ErrNoLeader = errors.New("cluster: no leader")
	// ErrNotLeader means this node is not the leader and cannot forward.
	ErrNotLeader = errors.New("cluster: not the leader")
	// ErrNotReady means the node cannot serve yet: Raft is not open, or
	// the stream has no epoch (cluster-init not applied; the error then
	// wraps fsm.ErrNoEpoch too).
	ErrNotReady = errors.New("cluster: not ready")
	// ErrClosed means the node is shutting down.
	ErrClosed = errors.New("cluster: node closed")
	// ErrLagging means the command is committed but this node has not
	// applied it within ApplyTimeout.
	ErrLagging = errors.New("cluster: node lagging")
	// ErrOverloaded means the submission queue stayed full past the timeout.
	ErrOverloaded = errors.New("cluster: submission queue full")
)
