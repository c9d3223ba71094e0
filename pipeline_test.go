package raftplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/raftplane/raftplane/fsm"
)

// Ordered pipelining (hub/pipeline.go) over a real three-node cluster: a
// raw WebSocket client writes a burst of invocations without waiting for
// any Completion, as a fast publisher does, and the tests check what
// SignalR users rely on: the invocations apply in the order sent (a join
// before the send that follows it), every Completion comes in that order
// with a cursor that grows, and every receiver sees the messages once, in
// order, also across a leader change.

// rawConn is a JSON-protocol SignalR connection over a bare WebSocket,
// so a test controls exactly what is written and when.
type rawConn struct {
	t  *testing.T
	ws *websocket.Conn
	mu sync.Mutex // writes
}

// dialRaw connects to a hub on base (http://host:port) without negotiate
// (skipNegotiation) and completes the JSON handshake.
func dialRaw(t *testing.T, base, hub, user string) *rawConn {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/hubs/" + hub + "?user=" + user
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &rawConn{t: t, ws: ws}
	c.write([]byte(`{"protocol":"json","version":1}` + "\x1e"))
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, p, err := ws.ReadMessage()
	if err != nil || !bytes.HasPrefix(p, []byte("{}\x1e")) {
		t.Fatalf("handshake: %q, %v", p, err)
	}
	return c
}

func (c *rawConn) write(p []byte) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ws.WriteMessage(websocket.TextMessage, p); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// invocation is the record of an Invocation with id (none when id is "").
func invocation(id, target string, args ...any) []byte {
	m := map[string]any{"type": 1, "target": target, "arguments": args}
	if id != "" {
		m["invocationId"] = id
	}
	b, _ := json.Marshal(m)
	return append(b, 0x1e)
}

// rawMsg is a hub message as a test reads it.
type rawMsg struct {
	Type         int               `json:"type"`
	Target       string            `json:"target"`
	Arguments    []json.RawMessage `json:"arguments"`
	InvocationID string            `json:"invocationId"`
	Result       json.RawMessage   `json:"result"`
	Error        string            `json:"error"`
	Headers      map[string]string `json:"headers"`
}

// read returns the messages of the next WebSocket message, pings left out.
func (c *rawConn) read(timeout time.Duration) ([]rawMsg, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(timeout))
	_, p, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	var out []rawMsg
	for _, rec := range bytes.Split(p, []byte{0x1e}) {
		if len(rec) == 0 {
			continue
		}
		var m rawMsg
		if err := json.Unmarshal(rec, &m); err != nil {
			return nil, fmt.Errorf("record %q: %w", rec, err)
		}
		if m.Type != 6 {
			out = append(out, m)
		}
	}
	return out, nil
}

// collect reads until done says so, or fails the test after timeout
// without progress.
func (c *rawConn) collect(what string, done func(m rawMsg) bool) {
	c.t.Helper()
	for {
		ms, err := c.read(30 * time.Second)
		if err != nil {
			c.t.Fatalf("%s: %v", what, err)
		}
		for _, m := range ms {
			if done(m) {
				return
			}
		}
	}
}

// startThree starts a three-node cluster and waits until every node knows
// the log format that pipelining needs.
func startThree(t *testing.T, tweak func(*Config)) []*Node {
	t.Helper()
	cfg := testConfig(t)
	if tweak != nil {
		tweak(&cfg)
	}
	nodes := []*Node{startNode(t, cfg)}
	for range 2 {
		cfg := testConfig(t)
		if tweak != nil {
			tweak(&cfg)
		}
		cfg.Join = []string{nodes[0].GossipAddr()}
		nodes = append(nodes, startNode(t, cfg))
	}
	waitFor(t, 30*time.Second, "log format "+strconv.Itoa(fsm.FormatOrdered)+" on every node", func() bool {
		for _, n := range nodes {
			if n.machine.Format() < fsm.FormatOrdered {
				return false
			}
		}
		return true
	})
	return nodes
}

func httpBase(n *Node) string { return "http://" + n.HTTPAddr() }

// parseCursor reads a cursor's index and offset ("epoch:index:offset").
func parseCursor(t *testing.T, s string) (uint64, uint64) {
	t.Helper()
	p := strings.Split(s, ":")
	if len(p) != 3 {
		t.Fatalf("cursor %q", s)
	}
	i, err1 := strconv.ParseUint(p[1], 16, 64)
	o, err2 := strconv.ParseUint(p[2], 16, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("cursor %q", s)
	}
	return i, o
}

// TestPipeline_JoinThenSendInOrder: one connection on a follower writes
// JoinGroup and then, without waiting, a burst of SendToGroup to that
// group: it receives its own first message (the join applied first), every
// Completion arrives in the order sent with a growing cursor, and a member
// of the group on a third node receives the burst once, in order. Some of
// the burst shares log entries, which only happens when invocations are
// submitted before the earlier ones commit (one at a time, each would have
// an entry of its own).
func TestPipeline_JoinThenSendInOrder(t *testing.T) {
	nodes := startThree(t, nil)
	const n = 500
	rx := dialRaw(t, httpBase(nodes[2]), "chat", "rx")
	rx.write(invocation("j", "JoinGroup", "g"))
	rx.collect("receiver's join", func(m rawMsg) bool { return m.InvocationID == "j" })

	tx := dialRaw(t, httpBase(nodes[1]), "chat", "tx")
	var burst bytes.Buffer
	burst.Write(invocation("0", "JoinGroup", "g"))
	for i := 1; i <= n; i++ {
		burst.Write(invocation(strconv.Itoa(i), "SendToGroup", "g", "m", i))
	}
	tx.write(burst.Bytes())

	next, got := 0, 0 // the next Completion expected, the next message
	var lastIdx, lastOff uint64
	shared := 0
	tx.collect("sender", func(m rawMsg) bool {
		switch m.Type {
		case 3:
			if m.InvocationID != strconv.Itoa(next) {
				t.Fatalf("Completion %s, want %d: Completions out of order", m.InvocationID, next)
			}
			if m.Error != "" {
				t.Fatalf("invocation %s failed: %s", m.InvocationID, m.Error)
			}
			var cur string
			_ = json.Unmarshal(m.Result, &cur)
			idx, off := parseCursor(t, cur)
			if next > 0 && (idx < lastIdx || idx == lastIdx && off <= lastOff) {
				t.Fatalf("Completion %d: cursor %s does not follow %x:%x", next, cur, lastIdx, lastOff)
			}
			if next > 1 && idx == lastIdx {
				shared++
			}
			lastIdx, lastOff = idx, off
			next++
		case 1:
			got++
			if want := strconv.Itoa(got); string(m.Arguments[0]) != want {
				t.Fatalf("sender received %s, want %s (its join must apply before its sends)", m.Arguments[0], want)
			}
		}
		return next == n+1 && got == n
	})
	for i := 1; i <= n; {
		ms, err := rx.read(30 * time.Second)
		if err != nil {
			t.Fatalf("receiver after %d of %d: %v", i-1, n, err)
		}
		for _, m := range ms {
			if m.Type != 1 {
				continue
			}
			if string(m.Arguments[0]) != strconv.Itoa(i) {
				t.Fatalf("receiver got %s, want %d", m.Arguments[0], i)
			}
			i++
		}
	}
	if shared == 0 {
		t.Errorf("no two of %d invocations shared a log entry: they were not pipelined", n)
	}
}

// TestPipeline_ManyConnectionsInterleaved: four connections, two on each
// follower, write bursts to one group at the same time; a member receives
// every message once, and each sender's in the order it sent them.
func TestPipeline_ManyConnectionsInterleaved(t *testing.T) {
	nodes := startThree(t, nil)
	const senders, n = 4, 300
	rx := dialRaw(t, httpBase(nodes[0]), "chat", "rx")
	rx.write(invocation("j", "JoinGroup", "g"))
	rx.collect("receiver's join", func(m rawMsg) bool { return m.InvocationID == "j" })
	var txs []*rawConn
	for s := range senders {
		txs = append(txs, dialRaw(t, httpBase(nodes[1+s%2]), "chat", "tx"+strconv.Itoa(s)))
	}
	var wg sync.WaitGroup
	for s, tx := range txs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b bytes.Buffer
			for i := 1; i <= n; i++ {
				b.Write(invocation(strconv.Itoa(i), "SendToGroup", "g", "m", s, i))
				if i%50 == 0 { // several WebSocket messages, so the senders interleave
					tx.write(b.Bytes())
					b.Reset()
				}
			}
		}()
	}
	wg.Wait()
	next := make([]int, senders)
	total := 0
	for total < senders*n {
		ms, err := rx.read(30 * time.Second)
		if err != nil {
			t.Fatalf("receiver after %d of %d: %v (per sender %v)", total, senders*n, err, next)
		}
		for _, m := range ms {
			if m.Type != 1 {
				continue
			}
			var s, i int
			if json.Unmarshal(m.Arguments[0], &s) != nil || json.Unmarshal(m.Arguments[1], &i) != nil || s < 0 || s >= senders {
				t.Fatalf("message %v", m.Arguments)
			}
			if i != next[s]+1 {
				t.Fatalf("sender %d: received %d after %d", s, i, next[s])
			}
			next[s] = i
			total++
		}
	}
	for s, tx := range txs {
		done := 0
		tx.collect("sender "+strconv.Itoa(s), func(m rawMsg) bool {
			if m.Type == 3 {
				done++
				if m.InvocationID != strconv.Itoa(done) || m.Error != "" {
					t.Fatalf("sender %d: Completion %s (%q), want %d", s, m.InvocationID, m.Error, done)
				}
			}
			return done == n
		})
	}
}

// TestPipeline_LeaderChange: a connection on a follower keeps a burst in
// flight while the leader stops: a new leader takes over, forwards are
// retried and entries lost with the old leader are sent again. Every
// invocation completes, in order; the member of the group receives the
// messages of the successful ones exactly once and in order, and none of
// the failed ones.
func TestPipeline_LeaderChange(t *testing.T) {
	nodes := startThree(t, nil) // three voters by default (MaxVoters)
	waitFor(t, 30*time.Second, "three voters", func() bool { return nodes[0].raft.Stats().Voters == 3 })
	leader := -1
	for i, n := range nodes {
		if n.raft.IsLeader() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	others := []int{}
	for i := range nodes {
		if i != leader {
			others = append(others, i)
		}
	}
	const n = 3000
	rx := dialRaw(t, httpBase(nodes[others[1]]), "chat", "rx")
	rx.write(invocation("j", "JoinGroup", "g"))
	rx.collect("receiver's join", func(m rawMsg) bool { return m.InvocationID == "j" })
	tx := dialRaw(t, httpBase(nodes[others[0]]), "chat", "tx")

	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		b.Write(invocation(strconv.Itoa(i), "SendToGroup", "g", "m", i))
		if i%100 == 0 {
			tx.write(b.Bytes())
			b.Reset()
		}
		if i == n/3 {
			// The leader goes while a third of the burst is in flight.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			go func() {
				defer cancel()
				_ = nodes[leader].Close(ctx)
			}()
		}
	}
	ok := map[int]bool{}
	done := 0
	tx.collect("sender", func(m rawMsg) bool {
		if m.Type != 3 {
			return false
		}
		done++
		if m.InvocationID != strconv.Itoa(done) {
			t.Fatalf("Completion %s, want %d", m.InvocationID, done)
		}
		if m.Error == "" {
			ok[done] = true
		}
		return done == n
	})
	if len(ok) == 0 {
		t.Fatal("no invocation succeeded")
	}
	last := 0
	for received := 0; received < len(ok); {
		ms, err := rx.read(30 * time.Second)
		if err != nil {
			t.Fatalf("receiver after %d of %d: %v", received, len(ok), err)
		}
		for _, m := range ms {
			if m.Type != 1 {
				continue
			}
			var i int
			_ = json.Unmarshal(m.Arguments[0], &i)
			if i <= last || !ok[i] {
				t.Fatalf("received %d after %d (succeeded: %v)", i, last, ok[i])
			}
			last = i
			received++
		}
	}
	t.Logf("%d of %d invocations succeeded across the leader change; %d sent again out of order",
		len(ok), n, nodes[others[0]].srv.Stats().PipelineResent)
}
