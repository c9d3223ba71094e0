package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// heartbeats guards raft's heartbeat fast path. The NetworkTransport runs
// that handler on its own connection goroutines, not on raft's: raft checks
// for shutdown once on entry, so a heartbeat that got past the check can
// still write the current term after Shutdown returned. Nothing waits for
// those goroutines (NetworkTransport.Close does not), and a heartbeat that
// reaches a store Close has shut panics the node ("failed to save current
// term: database not open", seen in CI). Node.Close calls close after raft's
// shutdown and before the stores close: it waits for every handler under way,
// and a heartbeat after it is refused.
type heartbeats struct {
	mu     sync.RWMutex
	closed bool
}

// wrap returns fn guarded (nil stays nil: the transport then takes
// heartbeats through its consumer like any other RPC).
func (h *heartbeats) wrap(fn func(raft.RPC)) func(raft.RPC) {
	if fn == nil {
		return nil
	}
	return func(rpc raft.RPC) {
		h.mu.RLock()
		defer h.mu.RUnlock()
		if h.closed {
			rpc.Respond(nil, raft.ErrRaftShutdown)
			return
		}
		fn(rpc)
	}
}

// close waits for the heartbeats being handled and refuses later ones.
// Raft must be shut down first: a handler may wait on raft's loop until then.
func (h *heartbeats) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}

// guardedTransport is the node's NetworkTransport with its heartbeat handler
// guarded by beats; every transport raft is given is one.
type guardedTransport struct {
	*raft.NetworkTransport
	beats *heartbeats
}

// SetHeartbeatHandler implements raft.Transport.
func (t guardedTransport) SetHeartbeatHandler(fn func(raft.RPC)) {
	t.NetworkTransport.SetHeartbeatHandler(t.beats.wrap(fn))
}
