package testnet

import (
	"net"
	"sync"
	"testing"
)

// TestPort_NeverTwice: concurrent pickers never get the same port, and
// every port can be bound.
func TestPort_NeverTwice(t *testing.T) {
	const n = 200
	got := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); got <- Port(t) }()
	}
	wg.Wait()
	close(got)
	seen := map[int]bool{}
	for p := range got {
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	l, err := net.Listen("tcp", Addr(t))
	if err != nil {
		t.Fatalf("a picked address cannot be bound: %v", err)
	}
	l.Close()
}
