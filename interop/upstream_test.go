//go:build unix

package interop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftplane/raftplane/internal/testproc"
)

// The upstream example (examples/upstream-node, a Node process on node:http)
// behind three real raftplane nodes, with the official JS client: run by
// upstream.test.mjs, which asks this test (the control endpoint) to kill,
// stop and restart nodes and the upstream.

const (
	upstreamHub     = "app"
	upstreamTimeout = 3 * time.Second // -upstream-timeout: the Slow test waits this long once
	upstreamTestMax = 6 * time.Minute // the whole node --test run: three faults, restarts, a reap
)

// upstreamProc is the example upstream, a node process in its own process
// group, on a fixed address so that it can be stopped and started again
// where the raftplane nodes' -upstream points.
type upstreamProc struct {
	t         *testing.T
	node, dir string
	addr      string
	env       []string
	runs      int
	cmd       *exec.Cmd
	exited    chan struct{}
}

// startUpstream starts the example on addr and waits until it answers.
func startUpstream(t *testing.T, node, addr string, env ...string) *upstreamProc {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "examples", "upstream-node"))
	if err != nil {
		t.Fatal(err)
	}
	u := &upstreamProc{t: t, node: node, dir: dir, addr: addr, env: env}
	if err := u.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.stop(); err != nil {
			t.Error(err)
		}
	})
	return u
}

// running reports whether the process is up (started and not exited).
func (u *upstreamProc) running() bool {
	if u.cmd == nil {
		return false
	}
	select {
	case <-u.exited:
		return false
	default:
		return true
	}
}

// start runs the example and waits for GET /healthz.
func (u *upstreamProc) start() error {
	if u.running() {
		return errors.New("the upstream is running")
	}
	host, port, err := net.SplitHostPort(u.addr)
	if err != nil {
		return err
	}
	u.runs++
	cmd := exec.Command(u.node, "server.mjs")
	cmd.Dir = u.dir
	cmd.Env = append(append(os.Environ(), u.env...), "UPSTREAM_HOST="+host, "UPSTREAM_PORT="+port)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := testproc.NewLineLog(u.t, fmt.Sprintf("upstream#%d", u.runs))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the upstream example: %w", err)
	}
	u.cmd, u.exited = cmd, make(chan struct{})
	exited := u.exited
	go func() { // owned by the process: ends when it exits (stop waits for it)
		_ = cmd.Wait()
		out.Flush()
		close(exited)
	}()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Get("http://" + u.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !u.running() {
			return fmt.Errorf("the upstream example exited at start: %v", cmd.ProcessState)
		}
		if time.Now().After(deadline) {
			_ = u.stop()
			return fmt.Errorf("the upstream example did not answer GET /healthz within %v (last: %v)", readyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM to the process group and waits; SIGKILL after stopTimeout.
func (u *upstreamProc) stop() error {
	if !u.running() {
		return nil
	}
	pgid := u.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-u.exited:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-u.exited
		return fmt.Errorf("the upstream example did not exit within %v of SIGTERM; killed", stopTimeout)
	}
	if !u.cmd.ProcessState.Success() {
		return fmt.Errorf("the upstream example exited with %v after SIGTERM", u.cmd.ProcessState)
	}
	return nil
}

// upstreamControl serves the control endpoint upstream.test.mjs uses (POST,
// answering 200 with a text or 500 with the error):
//
//	/holder?conn=ID   the index (in RAFTPLANE_NODES) of the node holding the connection
//	/kill?conn=ID     kill -9 that node; answers its index
//	/term?conn=ID     stop that node gracefully (SIGTERM); answers its index
//	/restart?node=i   start node i again on its data and addresses, and wait until the
//	                  cluster is whole and caught up
//	/upstream/stop    stop the upstream example (SIGTERM)
//	/upstream/start   start it again on the same address
//
// Each request is handled on the test goroutine (run), which may fail the test.
type upstreamControl struct {
	t     *testing.T
	bin   string
	args  []string // every node's flags
	nodes []*server
	ids   []string // node ids, by index; kept across restarts (<data>/node-id)
	up    *upstreamProc
	reqs  chan upCtrlReq
	done  chan struct{} // closed when run returns
	n     int           // restarts
}

type upCtrlReq struct {
	op, conn string
	node     int
	reply    chan upCtrlReply
}

type upCtrlReply struct {
	text string
	err  error
}

func (c *upstreamControl) listen() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(c.serveHTTP)}
	go func() { _ = srv.Serve(ln) }() // ends with srv.Close at cleanup
	c.t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func (c *upstreamControl) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	q := upCtrlReq{op: strings.TrimPrefix(r.URL.Path, "/"), conn: r.URL.Query().Get("conn"), node: -1, reply: make(chan upCtrlReply, 1)}
	if v := r.URL.Query().Get("node"); v != "" {
		i, err := strconv.Atoi(v)
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
	var rep upCtrlReply
	select {
	case rep = <-q.reply:
	case <-c.done:
		rep.err = errors.New("test over")
	}
	if rep.err != nil {
		http.Error(w, rep.err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprint(w, rep.text)
}

// run runs node --test with env and serves control requests until it exits.
func (c *upstreamControl) run(ctx context.Context, node string, env []string, args ...string) ([]byte, error) {
	defer close(c.done)
	type result struct {
		out []byte
		err error
	}
	res := make(chan result, 1)
	go func() { // ends when node exits, or ctx kills it
		out, err := runNode(ctx, node, ".", env, args...)
		res <- result{out, err}
	}()
	for {
		select {
		case r := <-res:
			return r.out, r.err
		case q := <-c.reqs:
			text, err := c.handle(q)
			q.reply <- upCtrlReply{text, err}
		}
	}
}

// holder finds the node the log says holds conn (a follower may not have
// applied the connection's open yet: retried for a while).
func (c *upstreamControl) holder(conn string) (int, error) {
	var last error
	deadline := time.Now().Add(commitTimeout)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n.hasExited() {
				continue
			}
			var ci struct {
				Node string `json:"node"`
			}
			if err := getJSON(n, "/api/v1/hubs/"+upstreamHub+"/connections/"+conn, &ci); err != nil {
				last = err
				continue
			}
			if i := slices.Index(c.ids, ci.Node); i >= 0 {
				return i, nil
			}
			return -1, fmt.Errorf("connection %s is on %q, not one of %v", conn, ci.Node, c.ids)
		}
		time.Sleep(pollInterval)
	}
	return -1, fmt.Errorf("no node knows connection %s: %v", conn, last)
}

func (c *upstreamControl) handle(q upCtrlReq) (string, error) {
	t := c.t
	switch q.op {
	case "holder", "kill", "term":
		i, err := c.holder(q.conn)
		if err != nil {
			return "", err
		}
		s := c.nodes[i]
		switch q.op {
		case "kill":
			s.Kill(t)
			t.Logf("control: %s (holding %s) killed with SIGKILL", s.Name, q.conn)
		case "term":
			stopGracefully(t, s)
			t.Logf("control: %s (holding %s) stopped with SIGTERM", s.Name, q.conn)
		}
		return strconv.Itoa(i), nil
	case "restart":
		if q.node < 0 || !c.nodes[q.node].hasExited() {
			return "", fmt.Errorf("node %d is not a stopped node", q.node)
		}
		var seed *server
		for _, o := range c.nodes {
			if !o.hasExited() {
				seed = o
				break
			}
		}
		if seed == nil {
			return "", errors.New("no node is running to join")
		}
		c.n++
		old := c.nodes[q.node]
		name := fmt.Sprintf("%s-r%d", strings.SplitN(old.Name, "-", 2)[0], c.n)
		start := time.Now()
		r := startServerAt(t, c.bin, name, old.Addrs, append(slices.Clone(c.args), "-join", seed.Addrs.Gossip)...)
		c.nodes[q.node] = r
		waitReady(t, r, readyTimeout)
		if err := clusterSettled(t, c.nodes, formTimeout); err != nil {
			return "", err
		}
		t.Logf("control: %s back in the cluster %v after its start", name, time.Since(start).Round(time.Millisecond))
		return "ok", nil
	case "upstream/stop":
		return "ok", c.up.stop()
	case "upstream/start":
		return "ok", c.up.start()
	}
	return "", fmt.Errorf("unknown operation %q", q.op)
}

// TestOfficialJSClient_Upstream: three raftplane nodes whose -upstream is the
// Node example (examples/upstream-node), and the official JS client:
//   - upstream methods from JSON and MessagePack clients on every node: results, error Completions,
//     an unknown method; Broadcast2 sends through the REST API and every client on every node gets
//     the sends in one order;
//   - X-ASRS-Signature verifies, and the example refuses a forged or missing one;
//   - a connection the upstream refuses fails start() with the upstream's text;
//   - connected and disconnected exactly once per connection (by connection id, in the
//     upstream's record, repeats dropped by event id) across a stateful reconnect after kill -9 of
//     the connection's node (behind a balancer that skips a dead node), a graceful stop (SIGTERM)
//     of its node, and a node killed for good (the leader reaps its connection after
//     -disconnect-timeout);
//   - a slow upstream gives its caller a timeout error while another connection's built-in
//     invocation on the same node completes first; an upstream that is down gives a clear error
//     and refuses new connections, and the disconnected event of a connection closed meanwhile is
//     delivered once it is back.
func TestOfficialJSClient_Upstream(t *testing.T) {
	node := requireNodeClient(t)
	requireMsgpack(t)
	bin := buildServer(t)
	key := randomKey(t)

	// Every address up front: the upstream calls the nodes' REST API (Broadcast2) and the nodes
	// call the upstream. The upstream's port comes from the same picker as the nodes'.
	as := []addrs{nodeAddrs(t), nodeAddrs(t), nodeAddrs(t)}
	upAddr := nodeAddrs(t).HTTP
	var urls, backends []string
	for _, a := range as {
		urls = append(urls, "http://"+a.HTTP)
		backends = append(backends, a.HTTP)
	}
	up := startUpstream(t, node, upAddr, "RAFTPLANE_API_KEY="+key, "RAFTPLANE_URL="+strings.Join(urls, ","))
	args := []string{
		"-api-key", key,
		"-upstream", "http://" + upAddr + "/api/{hub}/{category}/{event}",
		"-upstream-timeout", upstreamTimeout.String(),
		// Short, so that the connection of a node killed for good is reaped soon; long enough
		// for a stateful client to reconnect elsewhere after a kill.
		"-disconnect-timeout", "5s",
	}
	nodes := make([]*server, len(as))
	nodes[0] = startServerAt(t, bin, "node1", as[0], args...)
	waitReady(t, nodes[0], readyTimeout)
	for i := 1; i < len(as); i++ {
		nodes[i] = startServerAt(t, bin, fmt.Sprintf("node%d", i+1), as[i], append(slices.Clone(args), "-join", as[0].Gossip)...)
	}
	for _, s := range nodes[1:] {
		waitReady(t, s, readyTimeout)
	}
	waitVoters(t, nodes)
	var ids []string
	for _, s := range nodes {
		st, err := getStatus(s)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, st.Node.NodeID)
	}
	lb := startSkippingBalancer(t, backends...)
	c := &upstreamControl{t: t, bin: bin, args: args, nodes: nodes, ids: ids, up: up,
		reqs: make(chan upCtrlReq), done: make(chan struct{})}
	ctrl := c.listen()

	ctx, cancel := context.WithTimeout(context.Background(), upstreamTestMax)
	defer cancel()
	start := time.Now()
	out, err := c.run(ctx, node, []string{
		"RAFTPLANE_URL=" + lb.URL(),
		"RAFTPLANE_NODES=" + strings.Join(urls, ","),
		"RAFTPLANE_CONTROL=" + ctrl,
		"RAFTPLANE_API_KEY=" + key,
		"RAFTPLANE_HUB=" + upstreamHub,
		"UPSTREAM_URL=http://" + upAddr,
		"UPSTREAM_TIMEOUT=" + upstreamTimeout.String(),
	}, "--test", "upstream.test.mjs")
	if err != nil {
		t.Fatalf("node --test upstream.test.mjs: %v\n%s", err, out)
	}
	t.Logf("node --test upstream.test.mjs (%v):\n%s", time.Since(start).Round(time.Millisecond), out)
}
