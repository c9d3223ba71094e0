package hub

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/raftplane/raftplane/fsm"
)

func TestStateful_Negotiate(t *testing.T) {
	h := newTestHub(t)
	if n := h.negotiateOK("chat", "negotiateVersion=1", nil); n.UseStatefulReconnect {
		t.Error("useStatefulReconnect granted without being asked for")
	}
	if n := h.negotiateOK("chat", "negotiateVersion=1&useStatefulReconnect=true", nil); !n.UseStatefulReconnect {
		t.Error("useStatefulReconnect not granted")
	}
	off := newTestHub(t, func(c *Config) { c.DisableStatefulReconnect = true })
	if n := off.negotiateOK("chat", "negotiateVersion=1&useStatefulReconnect=true", nil); n.UseStatefulReconnect {
		t.Error("useStatefulReconnect granted while disabled")
	}
}

// statefulClient numbers what it receives as the official clients do: it
// counts trackable messages, drops those at or below what it has, and
// resets its count to the server's Sequence after a reconnect.
type statefulClient struct {
	*wsClient
	read     int       // records of wsClient consumed
	received uint64    // trackable messages received (the client's count)
	got      []wireMsg // trackable messages kept, in order
	sequence []int64   // Sequence messages seen
	acks     []int64   // Ack messages seen
}

func (sc *statefulClient) pump() {
	msgs := sc.messages()
	var next uint64 // the number of the next trackable message, after a Sequence
	for _, m := range msgs[sc.read:] {
		switch {
		case m.Type == typeSequence:
			sc.sequence = append(sc.sequence, m.SequenceID)
			next = uint64(m.SequenceID)
		case m.Type == typeAck:
			sc.acks = append(sc.acks, m.SequenceID)
		case m.Type >= typeInvocation && m.Type <= typeCancelInvocation:
			if next == 0 {
				next = sc.received + 1
			}
			if next > sc.received {
				sc.received = next
				sc.got = append(sc.got, m)
			}
			next++
		}
	}
	sc.read = len(msgs)
}

// heldFrames is how many frames the server holds on connection id while
// it waits for the client's first message; -1 when it holds none back.
func heldFrames(h *testHub, id string) int {
	h.srv.mu.Lock()
	c := h.srv.conns[id]
	h.srv.mu.Unlock()
	if c == nil {
		return -1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.holding {
		return -1
	}
	return len(c.queue)
}

// withoutFences drops the messages of testHub.fence.
func withoutFences(msgs []wireMsg) []wireMsg {
	out := msgs[:0:0]
	for _, m := range msgs {
		if !strings.HasPrefix(m.Target, "__fence") {
			out = append(out, m)
		}
	}
	return out
}

func (sc *statefulClient) waitGot(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitFor(t, what, func() bool { sc.pump(); return cond() })
}

// TestStateful_Reconnect: a stateful connection acknowledges, drops without a
// goodbye, and comes back with its token: the server answers the client's
// Sequence with its own, replays from its last checkpoint, applies the
// client's resent invocation once, and goes on live. The client, dropping
// what it already has by number, ends up with every message once, in order.
func TestStateful_Reconnect(t *testing.T) {
	h := newTestHub(t)
	n := h.negotiateOK("chat", "negotiateVersion=1&useStatefulReconnect=true&user=alice", nil)
	tok := *n.ConnectionToken
	ws, _, err := h.dial("chat", url.Values{"id": {tok}}.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := &statefulClient{wsClient: ws}
	sc.connID = n.ConnectionID
	sc.sendRaw(`{"protocol":"json","version":2}` + "\x1e")
	if got := sc.first(); got.Raw != "{}" {
		t.Fatalf("handshake response %s", got.Raw)
	}
	sc.read = 1
	send := func(k int) {
		t.Helper()
		if st, _, b := h.do("POST", "/api/v1/hubs/chat", `{"target":"m","arguments":[`+itoa(k)+`]}`, nil); st != 200 {
			t.Fatalf("REST send: %d %s", st, b)
		}
	}
	// Messages wait for the client's first message (the JS client's buffer
	// does not exist before it).
	send(1)
	// Synchronise on the server holding it: the dispatcher has queued it on
	// the connection, and the writer keeps it back.
	waitFor(t, "the message held on the connection", func() bool { return heldFrames(h, n.ConnectionID) == 1 })
	if sc.pump(); len(sc.got) != 0 {
		t.Fatalf("a message reached the client before it spoke: %v", sc.got)
	}
	sc.sendRaw(`{"type":6}` + "\x1e")
	sc.waitGot(t, "the first message", func() bool { return len(sc.got) == 1 })

	sc.sendRaw(invocationRecord("a", "JoinGroup", "room"))                      // client seq 1
	sc.sendRaw(invocationRecord("b", "SendToGroup", "room", "m", 2))            // client seq 2
	sc.waitGot(t, "the join and send", func() bool { return len(sc.got) == 4 }) // completion a, m 2, completion b
	if sc.got[1].InvocationID != "a" || sc.got[2].Target != "m" || sc.got[3].InvocationID != "b" {
		t.Fatalf("got %v", sc.got)
	}
	sc.waitGot(t, "the server's ack of both", func() bool { return len(sc.acks) > 0 && sc.acks[len(sc.acks)-1] == 2 })
	sc.sendRaw(`{"type":8,"sequenceId":4}` + "\x1e")
	waitFor(t, "the checkpoint in the log", func() bool {
		ci, _ := h.m.Connection("chat", n.ConnectionID)
		return ci.AckSeq == 4
	})
	send(3)
	send(4)
	sc.waitGot(t, "3 and 4", func() bool { return len(sc.got) == 6 })
	// An invocation, then the socket drops before its answer is known.
	sc.sendRaw(invocationRecord("c", "SendToGroup", "room", "m", 5)) // client seq 3
	_ = sc.ws.UnderlyingConn().Close()
	<-sc.done
	send(6)
	send(7)

	again, _, err := h.dial("chat", url.Values{"id": {tok}}.Encode(), nil)
	if err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	sc.wsClient, sc.read = again, 0
	sc.sendRaw(`{"type":9,"sequenceId":3}` + "\x1e")                 // resend from our seq 3
	sc.sendRaw(invocationRecord("c", "SendToGroup", "room", "m", 5)) // client seq 3 again
	sc.waitGot(t, "the replay and live messages", func() bool { return len(sc.got) == 10 })
	// A fence published after everything above: once it arrives, any
	// duplicate or extra Sequence would have arrived before it.
	h.fence("chat", sc.wsClient)
	sc.pump()
	sc.got = withoutFences(sc.got)
	if len(sc.sequence) != 1 || sc.sequence[0] != 5 {
		t.Errorf("server Sequence %v, want [5] (the first message after the checkpoint at 4)", sc.sequence)
	}
	// Every message once, in log order (5 may come after 6: the resent
	// invocation can reach the log after the REST send).
	seen := map[int]int{}
	completions := map[string]int{}
	var last fsm.Cursor
	for _, m := range sc.got {
		if m.Type == typeCompletion {
			completions[m.InvocationID]++
			continue
		}
		var k int
		_ = json.Unmarshal(m.Arguments[0], &k)
		seen[k]++
		c := mustCursor(t, m.Headers["cursor"])
		if !last.Less(c) {
			t.Errorf("message %d at %s after %s: not in log order", k, c, last)
		}
		last = c
	}
	for k := 1; k <= 7; k++ {
		if seen[k] != 1 {
			t.Errorf("message %d received %d times", k, seen[k])
		}
	}
	if len(seen) != 7 || completions["a"] != 1 || completions["b"] != 1 || completions["c"] != 1 {
		t.Fatalf("messages %v, completions %v (want one each): %v", seen, completions, sc.got)
	}
	if pubs := h.pub.commands(fsm.KindPublish); countOrigin(pubs, 3) != 1 {
		t.Errorf("client message 3 applied %d times", countOrigin(pubs, 3))
	}
	// Live again.
	sc.sendRaw(invocationRecord("d", "SendToGroup", "room", "m", 8)) // client seq 4
	sc.waitGot(t, "a live message", func() bool { return len(sc.got) == 12 })
}

func countOrigin(cmds []fsm.Command, seq uint64) int {
	n := 0
	for _, c := range cmds {
		if c.Origin.Seq == seq {
			n++
		}
	}
	return n
}

func itoa(k int) string { b, _ := json.Marshal(k); return string(b) }
