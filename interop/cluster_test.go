//go:build unix

package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftplane/raftplane/client"
)

// Real-process cluster tests: three raftplane processes on loopback, Go clients on each, a kill -9
// of the leader and its restart. Every wait is a poll with a deadline.

const (
	clusterHub    = "chat"
	clusterGroup  = "room"
	formTimeout   = 45 * time.Second // a cluster forms, a node joins or catches up
	commitTimeout = 30 * time.Second // a publish is retried (on 503) for this long
	deliverWithin = 15 * time.Second // a committed message reaches every client
	failoverBound = 10 * time.Second // loose: the figure is reported, not tuned here
	pollInterval  = 50 * time.Millisecond
	latencyRounds = 200
)

// apiHTTP outlives the server's publish timeout (10s), so a publish gets the server's answer
// (200, 503 or 504) rather than a client-side timeout that leaves its outcome unknown.
var apiHTTP = &http.Client{Timeout: 20 * time.Second}

// apiCall sends one REST request with the node's API key.
func apiCall(ctx context.Context, s *server, method, path string, body any) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+s.APIKey)
	}
	resp, err := apiHTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// getJSON GETs path (3s at most) and decodes a 200 answer into out.
func getJSON(s *server, path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	code, _, body, err := apiCall(ctx, s, http.MethodGet, path, nil)
	if err != nil {
		return fmt.Errorf("%s: GET %s: %w", s.Name, path, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s: GET %s: %d %s", s.Name, path, code, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s: GET %s: %w in %s", s.Name, path, err, body)
	}
	return nil
}

// nodeStatus is the part of GET /api/v1/status the tests read.
type nodeStatus struct {
	Node struct {
		NodeID   string `json:"node_id"`
		State    string `json:"state"`
		LeaderID string `json:"leader_id"`
		Term     uint64 `json:"term"`
	} `json:"node"`
	Stream struct {
		Epoch      string `json:"epoch"`
		LastCursor string `json:"last_cursor"`
		Applied    uint64 `json:"applied_index"`
	} `json:"stream"`
}

func getStatus(s *server) (nodeStatus, error) {
	var st nodeStatus
	err := getJSON(s, "/api/v1/status", &st)
	return st, err
}

// member is one entry of GET /api/v1/cluster.
type member struct {
	ID          string `json:"id"`
	RaftAddr    string `json:"raft_addr"`
	HTTPAddr    string `json:"http_addr"`
	GossipAddr  string `json:"gossip_addr"`
	GossipState string `json:"gossip_state"`
	Suffrage    string `json:"suffrage"`
	Leader      bool   `json:"leader"`
	ClusterID   string `json:"cluster_id"`
	Applied     uint64 `json:"applied_index"`
}

func getMembers(s *server) ([]member, error) {
	var out struct {
		Members []member `json:"members"`
	}
	err := getJSON(s, "/api/v1/cluster", &out)
	return out.Members, err
}

func (m member) String() string {
	return fmt.Sprintf("%s(http=%s %s %s leader=%v applied=%d)", m.ID, m.HTTPAddr, m.Suffrage, m.GossipState, m.Leader, m.Applied)
}

// exitedUnexpectedly reports whether s exited without the test stopping or killing it.
func exitedUnexpectedly(s *server) bool { return s.proc.Crashed() }

// poll calls check every pollInterval until it returns nil and returns how long that took. It fails
// the test with check's last error after timeout, or at once when one of watch exits by itself.
func poll(t *testing.T, what string, timeout time.Duration, check func() error, watch ...*server) time.Duration {
	t.Helper()
	took, err := tryPoll(t, what, timeout, check, watch...)
	if err != nil {
		t.Fatal(err)
	}
	return took
}

// tryPoll is poll returning the failure instead of ending the test.
func tryPoll(t *testing.T, what string, timeout time.Duration, check func() error, watch ...*server) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := check()
		if err == nil {
			t.Logf("%s: after %v", what, time.Since(start).Round(time.Millisecond))
			return time.Since(start), nil
		}
		for _, s := range watch {
			if exitedUnexpectedly(s) {
				return time.Since(start), fmt.Errorf("%s: %s exited: %v (last check: %v)", what, s.Name, s.exitErr(), err)
			}
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// waitListening waits until addr accepts TCP connections.
func waitListening(t *testing.T, s *server, addr string, timeout time.Duration) {
	t.Helper()
	poll(t, fmt.Sprintf("%s listens on %s", s.Name, addr), timeout, func() error {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	}, s)
}

// stopGracefully sends SIGTERM and checks that the node exits 0 within the stop timeout (Stop
// reports a SIGKILL after stopTimeout as an error).
func stopGracefully(t *testing.T, s *server) {
	t.Helper()
	start := time.Now()
	s.Stop(t)
	took := time.Since(start)
	if err := s.exitErr(); err != nil {
		t.Errorf("%s: graceful stop: exit %v after %v, want status 0", s.Name, err, took.Round(time.Millisecond))
	}
	if took > stopTimeout {
		t.Errorf("%s: graceful stop took %v, more than %v", s.Name, took.Round(time.Millisecond), stopTimeout)
	}
}

// sentMsg is a message the test published, with the cursor the cluster returned for it.
type sentMsg struct {
	Target string
	Arg    int64 // unique per publish attempt: identifies the message
	Cursor string
	Group  bool   // sent to clusterGroup (else to everyone)
	Via    string // e.g. "rest@node2", "invoke@u1@node1"
}

// run holds what a cluster test has published, in commit order (publishes are sequential).
type run struct {
	key   string // the API key of every node
	epoch string

	mu    sync.Mutex
	seq   int64
	sent  []sentMsg
	maybe map[int64]string // attempts that failed: the cluster may still have applied them
}

func newRun(key string) *run { return &run{key: key, maybe: map[int64]string{}} }

func (r *run) nextArg() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	return r.seq
}

func (r *run) record(m sentMsg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, m)
}

func (r *run) failed(arg int64, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maybe[arg] = why
}

func (r *run) sentCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sent)
}

func (r *run) sentSince(i int) []sentMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent[i:])
}

func (r *run) isMaybe(arg int64) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	why, ok := r.maybe[arg]
	return why, ok
}

// restOnce makes one REST publish on s: to the group or to everyone.
func (r *run) restOnce(s *server, group bool, target string) (sentMsg, int, http.Header, error) {
	arg := r.nextArg()
	path := "/api/v1/hubs/" + clusterHub
	if group {
		path += "/groups/" + clusterGroup
	}
	code, hdr, body, err := apiCall(context.Background(), s, http.MethodPost, path,
		map[string]any{"target": target, "arguments": []any{arg}})
	if err == nil && code == http.StatusOK {
		var res struct {
			Cursor string `json:"cursor"`
		}
		if err := json.Unmarshal(body, &res); err != nil || res.Cursor == "" {
			r.failed(arg, "unreadable 200 answer")
			return sentMsg{}, code, hdr, fmt.Errorf("%s: POST %s: 200 without a cursor: %s", s.Name, path, body)
		}
		m := sentMsg{Target: target, Arg: arg, Cursor: res.Cursor, Group: group, Via: "rest@" + s.Name}
		r.record(m)
		return m, code, hdr, nil
	}
	if err == nil {
		err = fmt.Errorf("%s: POST %s: %d %s", s.Name, path, code, bytes.TrimSpace(body))
	} else {
		err = fmt.Errorf("%s: POST %s: %w", s.Name, path, err)
	}
	r.failed(arg, err.Error())
	return sentMsg{}, code, hdr, err
}

// rest publishes on s, retrying (with a new argument) while the node answers 503, for up to
// commitTimeout.
func (r *run) rest(t *testing.T, s *server, group bool, target string) sentMsg {
	t.Helper()
	deadline := time.Now().Add(commitTimeout)
	for {
		m, code, _, err := r.restOnce(s, group, target)
		if err == nil {
			return m
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("publish: %v", err)
		}
		t.Logf("publish: %v; retrying", err)
		time.Sleep(pollInterval)
	}
}

// received is a message a client got, with its arrival time.
type received struct {
	client.Message
	At time.Time
}

// collector is a client connection that records every message it receives.
type collector struct {
	name  string // user@node
	srv   *server
	conn  *client.Conn
	start int // index in run.sent of the first message it must receive

	mu    sync.Mutex
	msgs  []received
	wake  chan struct{} // closed and replaced on every message and when the connection ends
	ended bool
	done  chan struct{} // closed when the reader has returned
}

// connect dials s's hub as user, joins clusterGroup and starts recording; from then on the client
// must receive every message the test publishes.
func (r *run) connect(t *testing.T, s *server, user string) *collector {
	t.Helper()
	hubURL := s.URL + "/hubs/" + clusterHub + "?user=" + url.QueryEscape(user)
	var conn *client.Conn
	deadline := time.Now().Add(formTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		c, err := client.Dial(ctx, client.Config{URL: hubURL})
		cancel()
		if err == nil {
			conn = c
			break
		}
		var he *client.HTTPError
		if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", hubURL, err)
		}
		time.Sleep(pollInterval)
	}
	c := &collector{name: user + "@" + s.Name, srv: s, conn: conn, wake: make(chan struct{}), done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() {
		c.conn.Close()
		<-c.done
	})
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := conn.InvokeCursor(ctx, "JoinGroup", clusterGroup)
		cancel()
		if err == nil {
			break
		}
		if conn.Err() != nil || attempt == 5 {
			t.Fatalf("%s: JoinGroup: %v", c.name, err)
		}
		t.Logf("%s: JoinGroup: %v; retrying", c.name, err)
	}
	c.start = r.sentCount()
	return c
}

func (c *collector) read() {
	defer close(c.done)
	for m := range c.conn.Messages() {
		now := time.Now()
		c.mu.Lock()
		c.msgs = append(c.msgs, received{Message: m, At: now})
		close(c.wake)
		c.wake = make(chan struct{})
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.ended = true
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
}

// waitFor waits until cond holds on the messages so far. It returns an error when the connection
// ends or timeout passes first.
func (c *collector) waitFor(timeout time.Duration, cond func([]received) bool) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		ok, ended, wake := cond(c.msgs), c.ended, c.wake
		n := len(c.msgs)
		c.mu.Unlock()
		if ok {
			return nil
		}
		if ended {
			return fmt.Errorf("%s: connection ended after %d messages: %v", c.name, n, c.conn.Err())
		}
		select {
		case <-wake:
		case <-timer.C:
			return fmt.Errorf("%s: not within %v (%d messages so far)", c.name, timeout, n)
		}
	}
}

// arrival waits for the message with cursor and returns when it arrived.
func (c *collector) arrival(cursor string, timeout time.Duration) (time.Time, error) {
	var at time.Time
	err := c.waitFor(timeout, func(ms []received) bool {
		for i := len(ms) - 1; i >= 0; i-- {
			if ms[i].Cursor == cursor {
				at = ms[i].At
				return true
			}
		}
		return false
	})
	return at, err
}

func (c *collector) snapshot() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

func argOf(m client.Message) (int64, bool) {
	if len(m.Arguments) != 1 {
		return 0, false
	}
	var v int64
	if json.Unmarshal(m.Arguments[0], &v) != nil {
		return 0, false
	}
	return v, true
}

// withoutMaybe drops the messages of publish attempts that failed (logging them: the cluster
// applied a publish whose caller was told it failed).
func (r *run) withoutMaybe(t *testing.T, who string, ms []received) []received {
	t.Helper()
	out := ms[:0:0]
	for _, m := range ms {
		if arg, ok := argOf(m.Message); ok {
			if why, maybe := r.isMaybe(arg); maybe {
				t.Logf("NOTE %s received %s(%d) at %s, a publish whose caller got an error: %s", who, m.Target, arg, m.Cursor, why)
				continue
			}
		}
		out = append(out, m)
	}
	return out
}

// checkDelivery checks that c received exactly the messages published since it joined (up to
// upto, or everything when upto < 0), in commit order, with the publishers' cursors, in strictly
// increasing order within the run's epoch.
func (r *run) checkDelivery(t *testing.T, c *collector, upto int) {
	t.Helper()
	want := r.sentSince(c.start)
	if upto >= 0 {
		want = want[:upto-c.start]
	}
	var got []received
	err := c.waitFor(deliverWithin, func(ms []received) bool {
		got = r.withoutMaybe(t, c.name, ms)
		return len(got) >= len(want)
	})
	if err != nil {
		t.Errorf("%s: want %d messages: %v", c.name, len(want), err)
	}
	var lastIdx uint64
	var lastOff uint32
	for i, m := range got {
		epoch, idx, off, err := client.ParseCursor(m.Cursor)
		if err != nil {
			t.Errorf("%s: message %d: %v", c.name, i, err)
			continue
		}
		if epoch != r.epoch {
			t.Errorf("%s: message %d cursor %s: epoch %q, want %q", c.name, i, m.Cursor, epoch, r.epoch)
		}
		if i > 0 && (idx < lastIdx || idx == lastIdx && off <= lastOff) {
			t.Errorf("%s: message %d cursor %s does not follow the previous one's (%d:%d)", c.name, i, m.Cursor, lastIdx, lastOff)
		}
		lastIdx, lastOff = idx, off
	}
	bad := 0
	for i := range max(len(got), len(want)) {
		if bad > 5 {
			break // the first differences tell the story
		}
		bad++
		switch {
		case i >= len(got):
			t.Errorf("%s: missing message %d: %+v", c.name, i, want[i])
		case i >= len(want):
			arg, _ := argOf(got[i].Message)
			t.Errorf("%s: unexpected message %d: %s(%d) at %s", c.name, i, got[i].Target, arg, got[i].Cursor)
		default:
			arg, _ := argOf(got[i].Message)
			if got[i].Target != want[i].Target || arg != want[i].Arg || got[i].Cursor != want[i].Cursor {
				t.Errorf("%s: message %d is %s(%d) at %s, want %s(%d) at %s (via %s)", c.name, i,
					got[i].Target, arg, got[i].Cursor, want[i].Target, want[i].Arg, want[i].Cursor, want[i].Via)
			} else {
				bad--
			}
		}
	}
}

// invoke publishes SendToGroup(clusterGroup, target, arg) from c, retrying (with a new argument)
// while the server reports an error, for up to commitTimeout.
func (r *run) invoke(t *testing.T, c *collector, target string) sentMsg {
	t.Helper()
	deadline := time.Now().Add(commitTimeout)
	for {
		arg := r.nextArg()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cur, err := c.conn.InvokeCursor(ctx, "SendToGroup", clusterGroup, target, arg)
		cancel()
		if err == nil {
			m := sentMsg{Target: target, Arg: arg, Cursor: cur, Group: true, Via: "invoke@" + c.name}
			r.record(m)
			return m
		}
		r.failed(arg, fmt.Sprintf("invoke@%s: %v", c.name, err))
		var ie *client.InvocationError
		if !errors.As(err, &ie) || time.Now().After(deadline) {
			t.Fatalf("%s: SendToGroup: %v", c.name, err)
		}
		t.Logf("%s: SendToGroup: %v; retrying", c.name, err)
		time.Sleep(pollInterval)
	}
}

// checkCursorsIncrease checks that the cursors the cluster returned grow strictly, in send order.
func (r *run) checkCursorsIncrease(t *testing.T) {
	t.Helper()
	var lastIdx uint64
	var lastOff uint32
	for i, m := range r.sentSince(0) {
		epoch, idx, off, err := client.ParseCursor(m.Cursor)
		if err != nil || epoch != r.epoch {
			t.Errorf("sent %d (%s): cursor %q: epoch %q, err %v", i, m.Via, m.Cursor, epoch, err)
			continue
		}
		if i > 0 && (idx < lastIdx || idx == lastIdx && off <= lastOff) {
			t.Errorf("sent %d (%s): cursor %s not after the previous one (%d:%d)", i, m.Via, m.Cursor, lastIdx, lastOff)
		}
		lastIdx, lastOff = idx, off
	}
}

func cursorIndex(c string) uint64 {
	_, idx, _, _ := client.ParseCursor(c)
	return idx
}

// TestCluster_ThreeProcesses runs a three-node cluster of real processes: delivery order across
// nodes, kill -9 of the leader and failover, restart and catch-up, cross-node latency, graceful
// stop.
func TestCluster_ThreeProcesses(t *testing.T) {
	bin := buildServer(t)
	key := randomKey(t)
	r := newRun(key)

	// 1. Three nodes: node1 bootstraps, node2 and node3 join through its gossip address.
	nodes := make([]*server, 3)
	nodes[0] = startServerAt(t, bin, "node1", nodeAddrs(t), "-api-key", key)
	waitReady(t, nodes[0], readyTimeout)
	for i := 1; i < 3; i++ {
		nodes[i] = startServerAt(t, bin, fmt.Sprintf("node%d", i+1), nodeAddrs(t),
			"-join", nodes[0].Addrs.Gossip, "-api-key", key)
	}
	for _, s := range nodes[1:] {
		waitReady(t, s, readyTimeout)
	}
	ids := make([]string, 3) // node ids, by position in nodes
	poll(t, "3 voters, one leader, one epoch", formTimeout, func() error {
		ms, err := getMembers(nodes[0])
		if err != nil {
			return err
		}
		if len(ms) != 3 {
			return fmt.Errorf("node1 sees %d members: %v", len(ms), ms)
		}
		leaders := 0
		for _, m := range ms {
			if m.Suffrage != "voter" || m.GossipState != "alive" {
				return fmt.Errorf("not all alive voters: %v", ms)
			}
			if m.Leader {
				leaders++
			}
			for i, s := range nodes {
				if m.HTTPAddr == s.HTTPAddr {
					ids[i] = m.ID
				}
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d leaders: %v", leaders, ms)
		}
		epoch, leader := "", ""
		for i, s := range nodes {
			st, err := getStatus(s)
			if err != nil {
				return err
			}
			if ids[i] == "" || st.Node.NodeID != ids[i] {
				return fmt.Errorf("%s: node id %q, cluster says %q", s.Name, st.Node.NodeID, ids[i])
			}
			if st.Stream.Epoch == "" || st.Node.LeaderID == "" {
				return fmt.Errorf("%s: epoch %q, leader %q", s.Name, st.Stream.Epoch, st.Node.LeaderID)
			}
			if i == 0 {
				epoch, leader = st.Stream.Epoch, st.Node.LeaderID
			} else if st.Stream.Epoch != epoch || st.Node.LeaderID != leader {
				return fmt.Errorf("%s: epoch %s, leader %s; node1: epoch %s, leader %s", s.Name, st.Stream.Epoch, st.Node.LeaderID, epoch, leader)
			}
		}
		r.epoch = epoch
		return nil
	}, nodes...)
	t.Logf("cluster %s: ids %v", r.epoch, ids)

	// 2. A client per node, all in the group; invokes on node1 interleaved with REST broadcasts on
	// node2; every client gets every message in the same order with the publishers' cursors.
	clients := make([]*collector, 3) // the current client of each node
	for i, s := range nodes {
		clients[i] = r.connect(t, s, fmt.Sprintf("u%d", i+1))
	}
	for range 4 {
		r.invoke(t, clients[0], "say")
		r.rest(t, nodes[1], false, "news")
	}
	r.checkCursorsIncrease(t)
	for _, c := range clients {
		r.checkDelivery(t, c, -1)
	}
	if t.Failed() {
		t.FailNow()
	}

	// 3. kill -9 the leader; time the first commit on a survivor.
	leaderIdx := -1
	poll(t, "a settled leader", formTimeout, func() error {
		ms, err := getMembers(nodes[0])
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Leader {
				for i := range nodes {
					if ids[i] == m.ID {
						st, err := getStatus(nodes[i])
						if err != nil {
							return err
						}
						if st.Node.State != "Leader" {
							return fmt.Errorf("%s is the leader in node1's view but its state is %s", nodes[i].Name, st.Node.State)
						}
						leaderIdx = i
						return nil
					}
				}
			}
		}
		return fmt.Errorf("no leader: %v", ms)
	}, nodes...)
	leader, oldClient := nodes[leaderIdx], clients[leaderIdx]
	var survivors []int
	for i := range nodes {
		if i != leaderIdx {
			survivors = append(survivors, i)
		}
	}
	sa, sb := nodes[survivors[0]], nodes[survivors[1]]
	killIdx := r.sentCount()
	oldMsgs := oldClient.snapshot()
	lastSeen := oldMsgs[len(oldMsgs)-1].Cursor
	t.Logf("killing the leader %s (%s); its client last saw %s", leader.Name, ids[leaderIdx], lastSeen)
	killedAt := time.Now()
	leader.Kill(t)
	attempts, unavailable := 0, 0
	var failover time.Duration
	for {
		attempts++
		_, code, hdr, err := r.restOnce(sa, true, "say")
		if err == nil {
			failover = time.Since(killedAt)
			break
		}
		switch {
		case code == http.StatusServiceUnavailable && hdr.Get("Retry-After") != "":
			unavailable++
		case code == http.StatusServiceUnavailable:
			t.Errorf("503 without Retry-After during failover: %v", err)
		default:
			t.Errorf("unexpected answer during failover (want 200, or 503 with Retry-After): %v", err)
		}
		if time.Since(killedAt) > commitTimeout {
			t.Fatalf("no commit on %s within %v of killing the leader: %v", sa.Name, commitTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("failover: kill -9 leader -> first commit: %v (on %s; %d attempts, %d answered 503)",
		failover.Round(time.Millisecond), sa.Name, attempts, unavailable)
	if failover > failoverBound {
		t.Errorf("failover took %v, want under %v", failover.Round(time.Millisecond), failoverBound)
	}
	select {
	case <-oldClient.done:
	case <-time.After(deliverWithin):
		t.Errorf("%s: connection still up %v after its node was killed", oldClient.name, deliverWithin)
	}
	t.Logf("%s ended: %v", oldClient.name, oldClient.conn.Err())
	r.checkDelivery(t, oldClient, killIdx)

	// Publishing goes on from both survivors.
	for range 3 {
		r.rest(t, sb, true, "say")
		r.invoke(t, clients[survivors[0]], "say")
		r.rest(t, sa, true, "say")
		r.invoke(t, clients[survivors[1]], "say")
	}
	r.checkCursorsIncrease(t)
	for _, i := range survivors {
		r.checkDelivery(t, clients[i], -1)
	}
	if t.Failed() {
		t.FailNow()
	}
	downGroup := r.sentSince(killIdx) // all group messages: published while the node was down
	restartIdx := r.sentCount()

	// 4. Restart the killed node on its data, with the same addresses.
	restarted := startServerAt(t, bin, leader.Name+"-restarted", leader.Addrs,
		"-join", sa.Addrs.Gossip, "-api-key", key)
	nodes[leaderIdx] = restarted
	waitReady(t, restarted, readyTimeout)
	poll(t, restarted.Name+" back as a member", formTimeout, func() error {
		for _, s := range []*server{sa, sb} {
			ms, err := getMembers(s)
			if err != nil {
				return err
			}
			found := false
			for _, m := range ms {
				if m.ID == ids[leaderIdx] {
					found = m.GossipState == "alive" && m.Suffrage == "voter"
					if !found {
						return fmt.Errorf("%s sees %v", s.Name, m)
					}
				}
			}
			if !found || len(ms) != 3 {
				return fmt.Errorf("%s sees %v", s.Name, ms)
			}
		}
		st, err := getStatus(restarted)
		if err != nil {
			return err
		}
		if st.Stream.Epoch != r.epoch || st.Node.NodeID != ids[leaderIdx] {
			return fmt.Errorf("%s: node %s, epoch %q", restarted.Name, st.Node.NodeID, st.Stream.Epoch)
		}
		return nil
	}, nodes...)
	probe := r.rest(t, sb, false, "news")
	poll(t, restarted.Name+" caught up", formTimeout, func() error {
		var last []string
		for _, s := range nodes {
			st, err := getStatus(s)
			if err != nil {
				return err
			}
			last = append(last, st.Stream.LastCursor)
		}
		for _, c := range last {
			if c != last[0] || cursorIndex(c) < cursorIndex(probe.Cursor) {
				return fmt.Errorf("last cursors %v (the probe is at %s)", last, probe.Cursor)
			}
		}
		return nil
	}, nodes...)
	clients[leaderIdx] = r.connect(t, restarted, fmt.Sprintf("u%db", leaderIdx+1))
	r.rest(t, sa, false, "news")
	for i := range clients {
		r.checkDelivery(t, clients[i], -1)
	}

	// The group's history on the restarted node, after the last cursor its old client saw: exactly
	// the group messages published while it was down.
	code, _, body, err := apiCall(context.Background(), restarted, http.MethodGet,
		"/api/v1/hubs/"+clusterHub+"/groups/"+clusterGroup+"/messages?after="+url.QueryEscape(lastSeen), nil)
	switch {
	case err != nil:
		t.Errorf("group history: %v", err)
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		t.Logf("group history: GET .../groups/%s/messages answers %d: not offered by this server; sub-check skipped", clusterGroup, code)
	case code != http.StatusOK:
		t.Errorf("group history after %s: %d %s", lastSeen, code, bytes.TrimSpace(body))
	default:
		var hist struct {
			Messages []struct {
				Cursor    string            `json:"cursor"`
				Target    string            `json:"target"`
				Arguments []json.RawMessage `json:"arguments"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(body, &hist); err != nil {
			t.Fatalf("group history: %v in %s", err, body)
		}
		var got []received
		for _, m := range hist.Messages {
			got = append(got, received{Message: client.Message{Target: m.Target, Arguments: m.Arguments, Cursor: m.Cursor}})
		}
		got = r.withoutMaybe(t, "group history", got)
		var want []sentMsg
		for _, m := range downGroup {
			if m.Group {
				want = append(want, m)
			}
		}
		for _, m := range r.sentSince(restartIdx) {
			if m.Group {
				t.Fatalf("test bug: group message %+v sent after the restart", m)
			}
		}
		ok := len(got) == len(want)
		for i := 0; ok && i < len(got); i++ {
			arg, _ := argOf(got[i].Message)
			ok = got[i].Cursor == want[i].Cursor && got[i].Target == want[i].Target && arg == want[i].Arg
		}
		if !ok {
			t.Errorf("group history after %s on %s: got %d messages %s, want the %d published while it was down: %+v",
				lastSeen, restarted.Name, len(got), body, len(want), want)
		} else {
			t.Logf("group history on %s after %s: the %d messages published while it was down", restarted.Name, lastSeen, len(want))
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// 5. Cross-node latency: invoke on node1, delivery on node3.
	from, to := clients[0], clients[2]
	lat := make([]time.Duration, 0, latencyRounds)
	for range latencyRounds {
		start := time.Now()
		m := r.invoke(t, from, "say")
		at, err := to.arrival(m.Cursor, deliverWithin)
		if err != nil {
			t.Fatalf("latency: %s never got %s: %v", to.name, m.Cursor, err)
		}
		lat = append(lat, at.Sub(start))
	}
	slices.Sort(lat)
	pct := func(p int) time.Duration { return lat[(len(lat)*p+99)/100-1] }
	t.Logf("cross-node latency %s -> %s (SendToGroup invoke to delivery, %d messages, one at a time): p50 %v, p99 %v, max %v",
		from.name, to.name, len(lat), pct(50).Round(time.Microsecond), pct(99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	r.checkCursorsIncrease(t)
	for i := range clients {
		r.checkDelivery(t, clients[i], -1)
	}

	// 6. Graceful stop: followers first, the leader last.
	for _, c := range clients {
		c.conn.Close()
	}
	ms, err := getMembers(nodes[0])
	if err != nil {
		t.Errorf("before stopping: %v", err)
	}
	order := slices.Clone(nodes)
	slices.SortStableFunc(order, func(a, b *server) int {
		isLeader := func(s *server) int {
			for _, m := range ms {
				if m.Leader && m.HTTPAddr == s.HTTPAddr {
					return 1
				}
			}
			return 0
		}
		return isLeader(a) - isLeader(b)
	})
	for _, s := range order {
		stopGracefully(t, s)
	}
}

// TestCluster_WrongClusterRefused restarts a node of one cluster with -join pointing at a node of
// another: it must refuse to start.
func TestCluster_WrongClusterRefused(t *testing.T) {
	bin := buildServer(t)
	aAddrs := nodeAddrs(t)
	a := startServerAt(t, bin, "A", aAddrs)
	waitReady(t, a, readyTimeout)
	var aEpoch string
	poll(t, "A has a cluster id", formTimeout, func() error {
		st, err := getStatus(a)
		aEpoch = st.Stream.Epoch
		if err == nil && aEpoch == "" {
			err = errors.New("no epoch yet")
		}
		return err
	}, a)
	stopGracefully(t, a)

	b := startServerAt(t, bin, "B", nodeAddrs(t))
	waitReady(t, b, readyTimeout)
	var bEpoch string
	poll(t, "B has a cluster id", formTimeout, func() error {
		st, err := getStatus(b)
		bEpoch = st.Stream.Epoch
		if err == nil && bEpoch == "" {
			err = errors.New("no epoch yet")
		}
		return err
	}, b)
	if aEpoch == bEpoch {
		t.Fatalf("A and B have the same cluster id %s", aEpoch)
	}

	out, took, err := runServerToExit(t, bin, "A-again", aAddrs, 20*time.Second, "-join", b.Addrs.Gossip)
	t.Logf("A (cluster %s) with -join B (cluster %s): exited after %v: %v", aEpoch, bEpoch, took.Round(time.Millisecond), err)
	var ee interface{ ExitCode() int }
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("A: exit %v, want a non-zero status", err)
	}
	if !strings.Contains(out, "belongs to another cluster") {
		t.Errorf("A: output does not say %q", "belongs to another cluster")
	}

	// The refused node must not have entered B's Raft configuration...
	if _, err := tryPoll(t, "A not in B's raft configuration", 5*time.Second, func() error {
		ms, err := getMembers(b)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Suffrage != "none" && m.HTTPAddr == aAddrs.HTTP {
				return fmt.Errorf("B's raft configuration holds A: %v", ms)
			}
		}
		return nil
	}, b); err != nil {
		t.Error(err)
	}
	stopGracefully(t, b)

	// ...and A's data must be intact: alone again, A is its own cluster, ready, same cluster id.
	a = startServerAt(t, bin, "A-alone", aAddrs)
	if _, err := tryPoll(t, "A ready alone with its own cluster id", readyTimeout, func() error {
		st, err := getStatus(a)
		if err != nil {
			return err
		}
		if st.Stream.Epoch != aEpoch || st.Node.State != "Leader" {
			return fmt.Errorf("A: epoch %q (want %s), state %s", st.Stream.Epoch, aEpoch, st.Node.State)
		}
		return nil
	}, a); err != nil {
		t.Errorf("the refused join damaged A's data? %v", err)
	}
	stopGracefully(t, a)
}

// TestCluster_LateSeed starts node2 with -join pointing at a gossip address where nothing runs
// yet, then starts node1 there: node2 must join it.
func TestCluster_LateSeed(t *testing.T) {
	bin := buildServer(t)
	key := randomKey(t)
	a1, a2 := nodeAddrs(t), nodeAddrs(t)
	node2 := startServerAt(t, bin, "node2", a2, "-join", a1.Gossip, "-api-key", key)
	// node2's gossip is up (its first join attempt follows at once) before node1 exists.
	waitListening(t, node2, a2.Gossip, readyTimeout)
	if c, err := net.DialTimeout("tcp", a1.Gossip, 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("something already listens on the seed address %s", a1.Gossip)
	}
	node1 := startServerAt(t, bin, "node1", a1, "-api-key", key)
	waitReady(t, node1, readyTimeout)
	// node2 serves HTTP once it has the cluster id, or after its 30s readiness wait, unready.
	code := waitServing(t, node2, formTimeout)
	t.Logf("node2: /healthz %d", code)
	poll(t, "node2 joined node1's cluster", formTimeout, func() error {
		ms, err := getMembers(node1)
		if err != nil {
			return err
		}
		st1, err := getStatus(node1)
		if err != nil {
			return err
		}
		st2, err := getStatus(node2)
		if err != nil {
			return err
		}
		var in bool
		for _, m := range ms {
			if m.ID == st2.Node.NodeID && m.HTTPAddr == node2.HTTPAddr && m.GossipState == "alive" &&
				(m.Suffrage == "voter" || m.Suffrage == "nonvoter") {
				in = true
			}
		}
		if !in || len(ms) != 2 {
			return fmt.Errorf("node1 sees %v; node2 is %s", ms, st2.Node.NodeID)
		}
		if st1.Stream.Epoch == "" || st2.Stream.Epoch != st1.Stream.Epoch {
			return fmt.Errorf("epochs: node1 %q, node2 %q", st1.Stream.Epoch, st2.Stream.Epoch)
		}
		return nil
	}, node1, node2)
	poll(t, "node2 healthy", formTimeout, func() error {
		resp, err := http.Get(node2.URL + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}, node1, node2)
	r := newRun(key)
	m := r.rest(t, node2, false, "news")
	t.Logf("node2 publishes: %s", m.Cursor)
	stopGracefully(t, node2)
	stopGracefully(t, node1)
}
