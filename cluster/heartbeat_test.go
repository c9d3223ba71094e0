package cluster

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// TestHeartbeats_CloseWaits: close returns only after a heartbeat under
// way has finished, and a heartbeat after close is refused without reaching
// raft (which would write the term into stores about to close).
func TestHeartbeats_CloseWaits(t *testing.T) {
	var h heartbeats
	started, release := make(chan struct{}), make(chan struct{})
	finished := false
	calls := 0
	handler := h.wrap(func(rpc raft.RPC) {
		calls++
		if calls == 1 {
			close(started)
			<-release
		}
		finished = true
		rpc.Respond(nil, nil)
	})
	rpc := func() (raft.RPC, chan raft.RPCResponse) {
		ch := make(chan raft.RPCResponse, 1)
		return raft.RPC{Command: &raft.AppendEntriesRequest{}, RespChan: ch}, ch
	}
	first, firstResp := rpc()
	go handler(first)
	<-started
	closed := make(chan struct{})
	go func() { h.close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("close returned while a heartbeat was being handled")
	default:
	}
	close(release)
	<-closed
	if !finished { // read after close returned: the handler's write happened before (RWMutex)
		t.Fatal("close returned before the heartbeat under way finished")
	}
	if r := <-firstResp; r.Error != nil {
		t.Fatalf("heartbeat under way answered %v", r.Error)
	}

	late, lateResp := rpc()
	handler(late)
	if calls != 1 {
		t.Fatalf("raft's handler ran %d times; a heartbeat after close reached it", calls)
	}
	if r := <-lateResp; !errors.Is(r.Error, raft.ErrRaftShutdown) {
		t.Fatalf("heartbeat after close answered %v, want %v", r.Error, raft.ErrRaftShutdown)
	}
	if h.wrap(nil) != nil {
		t.Fatal("wrap(nil) must stay nil: the transport then sends heartbeats through its consumer")
	}
}
