//go:build unix

package interop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestOfficialJSClient_ClusterReconnect runs cluster.test.mjs: the official client in Node on every
// transport x protocol pair it supports, against a three-node cluster of real processes. Each
// pair's client reaches the cluster through a failoverProxy (one node at a time, like a balancer
// with affinity), sends and receives across nodes, and reconnects on its own
// (withAutomaticReconnect) after its node is stopped gracefully and after it is killed. The JS
// side steers the proxy and stops and starts nodes through a small control endpoint served here.
func TestOfficialJSClient_ClusterReconnect(t *testing.T) {
	node := requireNodeClient(t)
	requireMsgpack(t)
	bin := buildServer(t)
	key := randomKey(t)
	nodes := startCluster(t, bin, 3, "-api-key", key)
	waitVoters(t, nodes)
	var backends, urls []string
	for _, s := range nodes {
		backends = append(backends, s.HTTPAddr)
		urls = append(urls, s.URL)
	}
	c := &clusterControl{t: t, bin: bin, key: key, nodes: nodes, proxy: startFailoverProxy(t, backends...),
		reqs: make(chan ctrlReq), done: make(chan struct{})}
	ctrl := c.listen()

	ctx, cancel := context.WithTimeout(context.Background(), nodeTestTimeout)
	defer cancel()
	start := time.Now()
	out, err := c.runNode(ctx, node, []string{
		"RAFTPLANE_NODES=" + strings.Join(urls, ","),
		"RAFTPLANE_PROXY=" + c.proxy.URL(),
		"RAFTPLANE_CONTROL=" + ctrl,
		"RAFTPLANE_API_KEY=" + key,
	}, "--test", "cluster.test.mjs")
	if err != nil {
		t.Fatalf("node --test cluster.test.mjs: %v\n%s", err, out)
	}
	t.Logf("node --test cluster.test.mjs (%v):\n%s", time.Since(start).Round(time.Millisecond), out)
}

// requireMsgpack skips (fails under CI=true) when @microsoft/signalr-protocol-msgpack is missing.
func requireMsgpack(t *testing.T) {
	t.Helper()
	if !hasNodePackage("@microsoft/signalr-protocol-msgpack") {
		skipOrFail(t, "interop/node_modules/@microsoft/signalr-protocol-msgpack missing: run `cd interop && npm ci`")
	}
}

// waitVoters waits until every node of nodes is an alive voter in every node's view, with one
// leader and every node caught up to the same last cursor.
func waitVoters(t *testing.T, nodes []*server) {
	t.Helper()
	if err := clusterSettled(t, nodes, formTimeout); err != nil {
		t.Fatal(err)
	}
}

func clusterSettled(t *testing.T, nodes []*server, timeout time.Duration) error {
	t.Helper()
	_, err := tryPoll(t, fmt.Sprintf("%d alive voters, one leader, one last cursor", len(nodes)), timeout, func() error {
		var last []string
		for _, s := range nodes {
			ms, err := getMembers(s)
			if err != nil {
				return err
			}
			if len(ms) != len(nodes) {
				return fmt.Errorf("%s sees %d members: %v", s.Name, len(ms), ms)
			}
			leaders := 0
			for _, m := range ms {
				if m.Suffrage != "voter" || m.GossipState != "alive" {
					return fmt.Errorf("%s sees %v", s.Name, ms)
				}
				if m.Leader {
					leaders++
				}
			}
			if leaders != 1 {
				return fmt.Errorf("%s sees %d leaders: %v", s.Name, leaders, ms)
			}
			st, err := getStatus(s)
			if err != nil {
				return err
			}
			last = append(last, st.Stream.LastCursor)
		}
		for _, c := range last {
			if c != last[0] {
				return fmt.Errorf("last cursors differ: %v", last)
			}
		}
		return nil
	}, nodes...)
	return err
}

// clusterControl serves the control endpoint cluster.test.mjs uses (all POST, answering 204, or 500
// with the error):
//
//	/route?node=i               new proxy connections go to node i (0-based, RAFTPLANE_NODES order)
//	/stop?node=i&signal=term    mark node i down in the proxy, SIGTERM it and wait for its exit
//	/stop?node=i&signal=kill    the same with SIGKILL (kill -9)
//	/start?node=i               restart node i on its data and addresses, wait until it is a voter
//	                            again and caught up, and mark it up in the proxy
//	/heal                       start every node that is not running
//
// The handlers pass each request to the test goroutine (runNode), which may fail the test.
type clusterControl struct {
	t        *testing.T
	bin, key string
	nodes    []*server
	proxy    *failoverProxy
	reqs     chan ctrlReq
	done     chan struct{} // closed when runNode returns
	restarts int
}

type ctrlReq struct {
	op, signal string
	node       int
	reply      chan error
}

// listen starts the control endpoint and returns its URL.
func (c *clusterControl) listen() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(c.serveHTTP)}
	go func() { _ = srv.Serve(ln) }()
	c.t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func (c *clusterControl) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	q := ctrlReq{op: strings.TrimPrefix(r.URL.Path, "/"), signal: r.URL.Query().Get("signal"), reply: make(chan error, 1)}
	if q.op != "heal" {
		i, err := strconv.Atoi(r.URL.Query().Get("node"))
		if err != nil || i < 0 || i >= len(c.nodes) {
			http.Error(w, "bad node", http.StatusBadRequest)
			return
		}
		q.node = i
	}
	select {
	case c.reqs <- q:
	case <-c.done:
		http.Error(w, "test over", http.StatusServiceUnavailable)
		return
	}
	var err error
	select {
	case err = <-q.reply:
	case <-c.done:
		err = errors.New("test over")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// runNode runs node with args and serves control requests until it exits.
func (c *clusterControl) runNode(ctx context.Context, node string, env []string, args ...string) ([]byte, error) {
	defer close(c.done)
	type result struct {
		out []byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		out, err := runNode(ctx, node, ".", env, args...)
		res <- result{out, err}
	}()
	for {
		select {
		case r := <-res:
			return r.out, r.err
		case q := <-c.reqs:
			q.reply <- c.handle(q)
		}
	}
}

func (c *clusterControl) handle(q ctrlReq) error {
	t := c.t
	s := c.nodes[q.node]
	start := time.Now()
	switch q.op {
	case "heal":
		for i, s := range c.nodes {
			if s.hasExited() {
				if err := c.handle(ctrlReq{op: "start", node: i}); err != nil {
					return err
				}
			}
		}
		return nil
	case "route":
		c.proxy.route(q.node)
		t.Logf("control: proxy routes new connections to %s", s.Name)
		return nil
	case "stop":
		if s.hasExited() {
			return fmt.Errorf("%s is not running", s.Name)
		}
		c.proxy.setDown(q.node, true)
		switch q.signal {
		case "term":
			stopGracefully(t, s)
		case "kill":
			s.Kill(t)
		default:
			return fmt.Errorf("signal %q: want term or kill", q.signal)
		}
		t.Logf("control: %s stopped (%s) in %v", s.Name, q.signal, time.Since(start).Round(time.Millisecond))
		return nil
	case "start":
		if !s.hasExited() {
			return fmt.Errorf("%s is running", s.Name)
		}
		var seed *server
		for _, o := range c.nodes {
			if !o.hasExited() {
				seed = o
				break
			}
		}
		if seed == nil {
			return errors.New("no node is running to join")
		}
		c.restarts++
		name := fmt.Sprintf("%s-r%d", strings.SplitN(s.Name, "-", 2)[0], c.restarts)
		r := startServerAt(t, c.bin, name, s.Addrs, "-join", seed.Addrs.Gossip, "-api-key", c.key)
		c.nodes[q.node] = r
		waitReady(t, r, readyTimeout)
		if err := clusterSettled(t, c.nodes, formTimeout); err != nil {
			return err
		}
		c.proxy.setDown(q.node, false)
		t.Logf("control: %s back in the cluster %v after the start", name, time.Since(start).Round(time.Millisecond))
		return nil
	}
	return fmt.Errorf("unknown operation %q", q.op)
}
