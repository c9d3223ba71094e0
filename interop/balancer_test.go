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

// relay copies TCP connections to backends and tracks them, so that they can all be closed at the
// end of the test. balancer and failoverProxy pick the backend.
type relay struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newRelay(t *testing.T) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &relay{ln: ln, conns: map[net.Conn]struct{}{}}
}

func (r *relay) URL() string { return "http://" + r.ln.Addr().String() }

// serve accepts connections and pipes each to the backend dial picks; a connection dial cannot
// place is closed.
func (r *relay) serve(dial func() (net.Conn, error)) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := r.ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go r.pipe(c, dial)
		}
	}()
}

func (r *relay) track(c net.Conn, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.conns[c] = struct{}{}
	} else {
		delete(r.conns, c)
	}
}

func (r *relay) pipe(client net.Conn, dial func() (net.Conn, error)) {
	defer r.wg.Done()
	server, err := dial()
	if err != nil {
		client.Close()
		return
	}
	r.track(client, true)
	r.track(server, true)
	defer func() {
		r.track(client, false)
		r.track(server, false)
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

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// balancer is a TCP round-robin load balancer with no affinity at all: every
// new connection goes to the next backend. A client's negotiate and its
// WebSocket therefore land on different nodes.
type balancer struct {
	*relay
	backends []string
	next     atomic.Uint64
	perNode  []atomic.Int64
}

func startBalancer(t *testing.T, backends ...string) *balancer {
	t.Helper()
	b := &balancer{relay: newRelay(t), backends: backends, perNode: make([]atomic.Int64, len(backends))}
	b.serve(func() (net.Conn, error) {
		i := int(b.next.Add(1)-1) % len(b.backends)
		b.perNode[i].Add(1)
		return net.Dial("tcp", b.backends[i])
	})
	t.Cleanup(b.close)
	return b
}

// failoverProxy sends every new connection to one backend, the current one: a client behind it
// has all its requests (negotiate, polls, sends, the event stream, the WebSocket) on one node, as
// behind a balancer with affinity. route picks the current backend; a backend marked down, or
// one that refuses the connection, is skipped for the next one in order, which becomes current.
// Connections already open stay where they are.
type failoverProxy struct {
	*relay
	backends []string
	mu       sync.Mutex
	cur      int
	down     []bool
}

func startFailoverProxy(t *testing.T, backends ...string) *failoverProxy {
	t.Helper()
	p := &failoverProxy{relay: newRelay(t), backends: backends, down: make([]bool, len(backends))}
	p.serve(p.dial)
	t.Cleanup(p.close)
	return p
}

func (p *failoverProxy) dial() (net.Conn, error) {
	p.mu.Lock()
	start := p.cur
	p.mu.Unlock()
	var last error
	for k := range len(p.backends) {
		i := (start + k) % len(p.backends)
		p.mu.Lock()
		down := p.down[i]
		p.mu.Unlock()
		if down {
			continue
		}
		c, err := net.Dial("tcp", p.backends[i])
		if err != nil {
			last = err
			continue
		}
		p.mu.Lock()
		if p.cur == start {
			p.cur = i
		}
		p.mu.Unlock()
		return c, nil
	}
	if last == nil {
		last = fmt.Errorf("every backend is down")
	}
	return nil, last
}

// route makes backend i current and marks it up.
func (p *failoverProxy) route(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur, p.down[i] = i, false
}

// setDown marks backend i down (or up again); new connections skip it while it is down.
func (p *failoverProxy) setDown(i int, down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down[i] = down
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
	nodes := startCluster(t, bin, 3, "-api-key", key)
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
