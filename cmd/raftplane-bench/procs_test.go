package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestStartCluster_PortTaken: a node whose Raft port someone else bound
// between the pick and the node's bind is started again on fresh ports, and
// the cluster forms.
func TestStartCluster_PortTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real server processes; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := testBin(ctx, t)
	var logw bytes.Buffer
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	calls := 0
	pickAddrs = func(n int) ([]string, error) {
		calls++
		addrs, err := freeAddrs(n)
		if calls == 2 && err == nil { // the second node's first try
			addrs[1] = taken.Addr().String()
		}
		return addrs, err
	}
	t.Cleanup(func() { pickAddrs = freeAddrs })

	e, err := startCluster(ctx, bin, 3, nil, false, &logw)
	if err != nil {
		t.Fatalf("startCluster: %v\n%s", err, logw.String())
	}
	defer e.stop()
	if calls != 4 {
		t.Errorf("ports picked %d times, want 4 (n1, n2, n3, n2 again)", calls)
	}
	if !strings.Contains(logw.String(), "n2: a port was taken") {
		t.Errorf("the retry is not logged:\n%s", logw.String())
	}
	if got := e.nodes[1].raftAddr; got == taken.Addr().String() {
		t.Errorf("n2 runs on the taken port %s", got)
	}
}
