package hub

import (
	"testing"
)

// TestWriters_Reused: a connection's writes, one after another, are made by
// the writer that made the one before, not by a new goroutine each
// (writers.go). Each call's Completion is a write of its own: the client
// reads it before it sends the next call.
func TestWriters_Reused(t *testing.T) {
	h := newTestHub(t)
	a := h.connect(testHubName, "a")
	before := h.srv.writersStarted.Load()
	const calls = 100
	for range calls {
		a.callOK("JoinGroup", "g")
	}
	// A kick that comes before the last writer is back waiting starts
	// another, so a few more than one may start; one per write is what
	// the reuse removes.
	if n := h.srv.writersStarted.Load() - before; n > calls/4 {
		t.Fatalf("%d writers started for %d writes, one after another", n, calls)
	}
}
