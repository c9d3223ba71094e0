//go:build unix

package interop

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// balancer is a TCP round-robin load balancer with no affinity at all: every
// new connection goes to the next backend. A client's negotiate and its
// WebSocket therefore land on different nodes.
type balancer struct {
	ln       net.Listener
	backends []string
	next     atomic.Uint64
	perNode  []atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func startBalancer(t *testing.T, backends ...string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, backends: backends, perNode: make([]atomic.Int64, len(backends)), conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *balancer) URL() string { return "http://" + b.ln.Addr().String() }

func (b *balancer) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		i := int(b.next.Add(1)-1) % len(b.backends)
		b.perNode[i].Add(1)
		b.wg.Add(1)
		go b.pipe(c, b.backends[i])
	}
}

func (b *balancer) track(c net.Conn, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if on {
		b.conns[c] = struct{}{}
	} else {
		delete(b.conns, c)
	}
}

func (b *balancer) pipe(client net.Conn, backend string) {
	defer b.wg.Done()
	server, err := net.Dial("tcp", backend)
	if err != nil {
		client.Close()
		return
	}
	b.track(client, true)
	b.track(server, true)
	defer func() {
		b.track(client, false)
		b.track(server, false)
		client.Close()
		server.Close()
	}()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(server, client)
	go cp(client, server)
	<-done
	<-done
}

func (b *balancer) close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// TestOfficialJSClient_ClusterBehindBalancer runs the official client's
// WebSocket suites (JSON and MessagePack) against a three-node cluster
// through a balancer without sticky sessions: negotiates, WebSockets and
// REST calls are spread over the nodes connection by connection, so clients
// negotiate on one node and connect on another, and publishers and
// recipients sit on different nodes.
func TestOfficialJSClient_ClusterBehindBalancer(t *testing.T) {
	node := requireNodeClient(t)
	bin := buildServer(t)
	key := randomKey(t)
	nodes := make([]*server, 3)
	nodes[0] = startServerAt(t, bin, "node1", nodeAddrs(t), "-api-key", key)
	waitReady(t, nodes[0], readyTimeout)
	for i := 1; i < 3; i++ {
		nodes[i] = startServerAt(t, bin, fmt.Sprintf("node%d", i+1), nodeAddrs(t), "-join", nodes[0].Addrs.Gossip, "-api-key", key)
	}
	for _, s := range nodes[1:] {
		waitReady(t, s, readyTimeout)
	}
	lb := startBalancer(t, nodes[0].HTTPAddr, nodes[1].HTTPAddr, nodes[2].HTTPAddr)

	files := []string{"basic.test.mjs"}
	if _, err := os.Stat(filepath.Join("node_modules", "@microsoft", "signalr-protocol-msgpack", "package.json")); err == nil {
		files = append(files, "msgpack.test.mjs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeTestTimeout)
	defer cancel()
	out, err := runNode(ctx, node, ".", []string{"RAFTPLANE_URL=" + lb.URL(), "RAFTPLANE_API_KEY=" + key},
		append([]string{"--test"}, files...)...)
	if err != nil {
		t.Fatalf("node --test %v through the balancer: %v\n%s", files, err, out)
	}
	spread := make([]int64, len(nodes))
	for i := range spread {
		spread[i] = lb.perNode[i].Load()
		if spread[i] == 0 {
			t.Errorf("node%d got no connection through the balancer", i+1)
		}
	}
	t.Logf("connections per node through the balancer: %v\n%s", spread, out)
}
