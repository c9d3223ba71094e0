// Package testnet gives tests loopback ports that no other test of the same
// process is given: a port picked by listening on :0 and closing is free at
// that moment, but stays free only until someone binds it, and the nodes of
// one test cluster are usually given their ports before any of them binds
// one (CI saw one node's gossip port handed out as another's Raft port).
// Each test binary is its own process, so packages tested in parallel can
// still collide, rarely: the kernel hands out ephemeral ports in a cycle.
package testnet

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Port returns a loopback TCP port that was free a moment ago and that this
// process has not handed out before.
func Port(t testing.TB) int {
	t.Helper()
	for range 1000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testnet: listen 127.0.0.1:0: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			t.Fatalf("testnet: %v", err)
		}
		handedOut.Lock()
		fresh := !handedOut.ports[p]
		handedOut.ports[p] = true
		handedOut.Unlock()
		if fresh {
			return p
		}
	}
	t.Fatal("testnet: no fresh port in 1000 tries")
	return 0
}

// Addr returns "127.0.0.1:<Port>".
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(Port(t)))
}
