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

// TestPort_BelowEphemeral: where the kernel's ephemeral range leaves room
// below it, ports come from there, so no outgoing connection can hold one.
func TestPort_BelowEphemeral(t *testing.T) {
	lo := ephemeralLow()
	if lo <= lowest+1000 {
		t.Skipf("ephemeral range starts at %d: no room below it", lo)
	}
	for range 100 {
		if p := Port(t); p < lowest || p >= lo {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, lo)
		}
	}
}
