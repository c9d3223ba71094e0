package hub

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/raftplane/raftplane/fsm"
)

// checkCursorsIncrease requires the cursors of every Invocation a client got
// to be strictly increasing, in arrival order.
func checkCursorsIncrease(t *testing.T, name string, c *wsClient) {
	t.Helper()
	var prev fsm.Cursor
	n := 0
	for _, m := range c.messages() {
		if m.Type != typeInvocation {
			continue
		}
		cur := mustCursor(t, m.Headers["cursor"])
		if n > 0 && !prev.Less(cur) {
			t.Errorf("%s: cursor %s after %s: not increasing", name, cur, prev)
		}
		prev = cur
		n++
	}
	if n == 0 {
		t.Errorf("%s received no invocations", name)
	}
}

func TestServer_HubMethods(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	alice := h.connect(testHubName, "alice")
	alice2 := h.connect(testHubName, "alice") // a second connection of the same user
	bob := h.connect(testHubName, "bob")
	carol := h.connect(testHubName, "carol")
	everyone := []*wsClient{alice, alice2, bob, carol}
	names := map[*wsClient]string{alice: "alice", alice2: "alice2", bob: "bob", carol: "carol"}

	for _, c := range everyone {
		if c.connID == "" {
			t.Fatal("connect left connID empty")
		}
		ci, ok := h.m.Connection(testHubName, c.connID)
		if !ok {
			t.Fatalf("%s: connection %s not in the registry", names[c], c.connID)
		}
		if want := strings.TrimSuffix(names[c], "2"); ci.User != want || ci.Node != h.cfg.NodeID {
			t.Errorf("%s: registry has %+v, want user %q on node %q", names[c], ci, want, h.cfg.NodeID)
		}
	}

	t.Run("JoinGroup", func(t *testing.T) {
		for _, c := range []*wsClient{alice, carol} {
			c.callOK("JoinGroup", "g1")
		}
		got := h.m.GroupConnections(testHubName, "g1")
		want := []string{alice.connID, carol.connID}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("group g1 = %v, want %v", got, want)
		}
	})

	tests := []struct {
		name     string
		from     *wsClient
		method   string
		args     []any
		target   string
		wantArgs string
		to       []*wsClient
	}{
		{name: "Broadcast reaches everyone including the sender", from: bob, method: "Broadcast",
			args: []any{"bcast", "hello", 1}, target: "bcast", wantArgs: `["hello",1]`, to: everyone},
		{name: "Broadcast without arguments", from: carol, method: "Broadcast",
			args: []any{"bare"}, target: "bare", wantArgs: `[]`, to: everyone},
		{name: "SendToOthers skips the sender", from: bob, method: "SendToOthers",
			args: []any{"others", map[string]int{"n": 2}}, target: "others", wantArgs: `[{"n":2}]`, to: []*wsClient{alice, alice2, carol}},
		{name: "SendToGroup", from: bob, method: "SendToGroup",
			args: []any{"g1", "grp", []int{1, 2}}, target: "grp", wantArgs: `[[1,2]]`, to: []*wsClient{alice, carol}},
		{name: "SendToUser reaches every connection of the user", from: carol, method: "SendToUser",
			args: []any{"alice", "usr", true, nil}, target: "usr", wantArgs: `[true,null]`, to: []*wsClient{alice, alice2}},
		{name: "SendToUser unknown user reaches nobody", from: carol, method: "SendToUser",
			args: []any{"nobody", "nobody-msg"}, target: "nobody-msg", wantArgs: `[]`, to: nil},
		{name: "SendToConnection", from: alice, method: "SendToConnection",
			args: []any{bob.connID, "direct", "psst"}, target: "direct", wantArgs: `["psst"]`, to: []*wsClient{bob}},
		{name: "method names are case-insensitive", from: bob, method: "sendtogroup",
			args: []any{"g1", "lower", "x"}, target: "lower", wantArgs: `["x"]`, to: []*wsClient{alice, carol}},
		{name: "upper-case method name", from: bob, method: "BROADCAST",
			args: []any{"upper"}, target: "upper", wantArgs: `[]`, to: everyone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := tt.from.callOK(tt.method, tt.args...)
			want := invocationRaw(tt.target, tt.wantArgs, cur)
			for _, c := range tt.to {
				got := c.waitInvocations(tt.target, 1)
				if got[0].Raw != want {
					t.Errorf("%s got %s, want %s", names[c], got[0].Raw, want)
				}
			}
			h.fence(testHubName, everyone...)
			for _, c := range everyone {
				n := len(c.invocations(tt.target))
				wantN := 0
				if slices.Contains(tt.to, c) {
					wantN = 1
				}
				if n != wantN {
					t.Errorf("%s received %d copies of %q, want %d", names[c], n, tt.target, wantN)
				}
			}
		})
	}

	t.Run("LeaveGroup", func(t *testing.T) {
		carol.callOK("LeaveGroup", "g1")
		if got := h.m.GroupConnections(testHubName, "g1"); !slices.Equal(got, []string{alice.connID}) {
			t.Fatalf("group g1 = %v, want [%s]", got, alice.connID)
		}
		bob.callOK("SendToGroup", "g1", "after-leave")
		alice.waitInvocations("after-leave", 1)
		h.fence(testHubName, everyone...)
		if n := len(carol.invocations("after-leave")); n != 0 {
			t.Fatalf("carol got %d group messages after leaving", n)
		}
		// Leaving a group one is not in is not an error.
		carol.callOK("LeaveGroup", "g1")
	})

	t.Run("fire-and-forget", func(t *testing.T) {
		bob.sendRaw(invocationRecord("", "Broadcast", "ff", 7))
		for _, c := range everyone {
			got := c.waitInvocations("ff", 1)
			mustCursor(t, got[0].Headers["cursor"])
		}
		// A later invocation's Completion comes after any the fire-and-forget
		// one could have produced.
		bob.callOK("JoinGroup", "sync")
		for _, m := range bob.messages() {
			if m.Type == typeCompletion && m.InvocationID == "" {
				t.Fatalf("fire-and-forget invocation got a completion: %s", m.Raw)
			}
		}
	})

	t.Run("completion result equals the delivered cursor", func(t *testing.T) {
		var curs []fsm.Cursor
		for i := range 5 {
			cur := alice.callOK("SendToUser", "bob", "seq", i)
			curs = append(curs, mustCursor(t, cur))
		}
		got := bob.waitInvocations("seq", 5)
		for i, m := range got {
			if c := mustCursor(t, m.Headers["cursor"]); c != curs[i] {
				t.Errorf("message %d: cursor %s, completion said %s", i, c, curs[i])
			}
			if i > 0 && !curs[i-1].Less(curs[i]) {
				t.Errorf("cursor %s not after %s", curs[i], curs[i-1])
			}
		}
	})

	t.Run("cursors strictly increase", func(t *testing.T) {
		for _, c := range everyone {
			checkCursorsIncrease(t, names[c], c)
			c.checkFraming()
		}
	})
}

func TestServer_InvocationErrors(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	c := h.connect(testHubName, "err")
	long := strings.Repeat("g", maxGroupLen+1)

	tests := []struct {
		name string
		id   string
		rec  string
		want string
	}{
		{name: "unknown method", id: "u1", rec: invocationRecord("u1", "NoSuchMethod", 1), want: "Unknown hub method 'NoSuchMethod'"},
		{name: "missing arguments", id: "a1", rec: invocationRecord("a1", "JoinGroup"), want: "takes 1 argument(s), got 0"},
		{name: "too many arguments", id: "a2", rec: invocationRecord("a2", "JoinGroup", "g", "h"), want: "takes 1 argument(s), got 2"},
		{name: "SendToGroup without target", id: "a3", rec: invocationRecord("a3", "SendToGroup", "g"), want: "takes at least 2"},
		{name: "non-string group", id: "g1", rec: invocationRecord("g1", "JoinGroup", 5), want: "must be a string"},
		{name: "null group", id: "g2", rec: invocationRecord("g2", "JoinGroup", nil), want: "argument 1 (group)"},
		{name: "object group", id: "g3", rec: invocationRecord("g3", "JoinGroup", map[string]int{"a": 1}), want: "must be a string"},
		{name: "empty group", id: "g4", rec: invocationRecord("g4", "JoinGroup", ""), want: "must not be empty"},
		{name: "group too long", id: "g5", rec: invocationRecord("g5", "JoinGroup", long), want: "longer than"},
		{name: "empty target", id: "t1", rec: invocationRecord("t1", "Broadcast", ""), want: "must not be empty"},
		{name: "StreamInvocation", id: "s1", rec: `{"type":4,"invocationId":"s1","target":"Broadcast","arguments":["x"]}` + "\x1e", want: "Broadcast"},
		{name: "invocation with streamIds", id: "s2",
			rec: `{"type":1,"invocationId":"s2","target":"Broadcast","arguments":["x"],"streamIds":["0"]}` + "\x1e", want: "does not accept streams"},
		{name: "SendToConnection to an unknown id", id: "c1", rec: invocationRecord("c1", "SendToConnection", "no-such-conn", "t"), want: "unknown connection"},
		{name: "malformed JSON with a findable invocationId", id: "m1",
			rec: `{"type":1,"invocationId":"m1","target":"Broadcast","arguments":[1,}` + "\x1e", want: "Invalid message"},
		{name: "arguments not an array", id: "m2",
			rec: `{"type":1,"invocationId":"m2","target":"Broadcast","arguments":"x"}` + "\x1e", want: "Invalid message"},
		{name: "missing target", id: "m3", rec: `{"type":1,"invocationId":"m3","arguments":[]}` + "\x1e", want: "Invalid message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.sendRaw(tt.rec)
			m := c.completion(tt.id)
			if m.Error == "" || !strings.Contains(m.Error, tt.want) {
				t.Fatalf("completion %s, want an error containing %q", m.Raw, tt.want)
			}
			if m.Result != nil {
				t.Errorf("completion %s has both error and result", m.Raw)
			}
			// The connection is still up and works.
			c.callOK("JoinGroup", "alive")
		})
	}

	ignored := []struct{ name, rec string }{
		{name: "malformed JSON without an invocationId", rec: `{"type":1,"target":"Broadcast","arguments":[` + "\x1e"},
		{name: "binary garbage", rec: "\xff\xfe\x00garbage\x1e"},
		{name: "empty record", rec: "\x1e"},
		{name: "unknown message type", rec: `{"type":99,"invocationId":"x99"}` + "\x1e"},
		{name: "ping", rec: `{"type":6}` + "\x1e"},
		{name: "fire-and-forget to an unknown method", rec: invocationRecord("", "Nope", 1)},
		{name: "fire-and-forget with bad arguments", rec: invocationRecord("", "JoinGroup", 1)},
		{name: "client completion", rec: `{"type":3,"invocationId":"7","result":1}` + "\x1e"},
		{name: "cancel invocation", rec: `{"type":5,"invocationId":"7"}` + "\x1e"},
	}
	for _, tt := range ignored {
		t.Run("ignored/"+tt.name, func(t *testing.T) {
			before := len(c.messages())
			c.sendRaw(tt.rec)
			id := c.invoke("JoinGroup", "alive")
			c.completion(id)
			for _, m := range c.messages()[before:] {
				if m.Type == typeCompletion && m.InvocationID != id {
					t.Errorf("unexpected completion %s", m.Raw)
				}
				if m.Type == typeClose {
					t.Errorf("connection closed: %s", m.Raw)
				}
			}
		})
	}

	t.Run("publisher failure", func(t *testing.T) {
		var mu sync.Mutex
		var seen []fsm.Kind
		h.pub.setHook(func(cmd fsm.Command) {
			mu.Lock()
			seen = append(seen, cmd.Kind)
			mu.Unlock()
		})
		defer h.pub.setHook(nil)
		h.pub.setFail(errors.New("no leader"))
		calls := h.pub.calls.Load()
		c.callErr("no leader", "Broadcast", "lost")
		c.callErr("unavailable", "JoinGroup", "g")
		if n := h.pub.calls.Load() - calls; n != 2 {
			t.Errorf("the publisher was called %d times, want 2", n)
		}
		mu.Lock()
		if !slices.Equal(seen, []fsm.Kind{fsm.KindPublish, fsm.KindGroupJoin}) {
			t.Errorf("publisher saw %v, want [publish group-join]", seen)
		}
		mu.Unlock()
		h.pub.setFail(nil)
		c.callOK("Broadcast", "after-failure")
		c.waitInvocations("after-failure", 1)
		h.fence(testHubName, c)
		if n := len(c.invocations("lost")); n != 0 {
			t.Errorf("a failed publish was delivered %d times", n)
		}
	})

	t.Run("closed by a client Close message", func(t *testing.T) {
		d := h.connect(testHubName, "leaver")
		d.sendRaw(`{"type":7}` + "\x1e")
		d.waitDone()
		waitFor(t, "the ConnClose of the leaver", func() bool {
			_, ok := h.m.Connection(testHubName, d.connID)
			return !ok
		})
	})

	c.checkFraming()
}

func TestServer_OversizedInvocation(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.MaxMessageSize = 1024 })
	c := h.connect(testHubName, "big")
	big := strings.Repeat("x", 5000)
	// The JS client writes invocationId after the arguments.
	rec := `{"type":1,"target":"Broadcast","arguments":["huge","` + big + `"],"invocationId":"big1"}` + "\x1e"

	t.Run("one frame", func(t *testing.T) {
		c.sendRaw(rec)
		m := c.completion("big1")
		if !strings.Contains(m.Error, "maximum message size of 1024") || !strings.Contains(m.Error, "bytes") {
			t.Fatalf("completion %s, want an error about the 1024-byte limit", m.Raw)
		}
		c.callOK("Broadcast", "small", 1)
		c.waitInvocations("small", 1)
	})

	t.Run("across frames", func(t *testing.T) {
		r := strings.Replace(rec, "big1", "big2", 1)
		for i := 0; i < len(r); i += 700 {
			c.sendRaw(r[i:min(i+700, len(r))])
		}
		if m := c.completion("big2"); !strings.Contains(m.Error, "1024") {
			t.Fatalf("completion %s, want an error about the limit", m.Raw)
		}
		c.callOK("Broadcast", "small2")
	})

	t.Run("without invocationId", func(t *testing.T) {
		before := len(c.messages())
		c.sendRaw(`{"type":1,"target":"Broadcast","arguments":["huge","` + big + `"]}` + "\x1e")
		id := c.invoke("Broadcast", "small3")
		c.completion(id)
		for _, m := range c.messages()[before:] {
			if m.Type == typeCompletion && m.InvocationID != id || m.Type == typeClose {
				t.Errorf("unexpected %s", m.Raw)
			}
		}
	})

	h.fence(testHubName, c)
	if n := len(c.invocations("huge")); n != 0 {
		t.Errorf("an oversized invocation was delivered %d times", n)
	}
}

// MaxParallelInvocations lets a connection's invocations run at once, up to
// the limit; at 1 (the default) they run one at a time.
func TestServer_ParallelInvocations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ limit, send, wantRunning int }{
		{1, 3, 1},
		{4, 6, 4},
	} {
		t.Run(fmt.Sprintf("limit %d", tc.limit), func(t *testing.T) {
			h := newTestHub(t, func(c *Config) { c.MaxParallelInvocations = tc.limit })
			c := h.connect(testHubName, "par")
			// release lets one held invocation finish; released counts the
			// releases, and startedAfter records, per invocation in the order
			// they started, how many releases came before its start.
			release := make(chan struct{})
			var running, most atomic.Int64
			var mu sync.Mutex
			released := 0
			var startedAfter []int
			h.pub.setHook(func(cmd fsm.Command) {
				if cmd.Kind != fsm.KindPublish {
					return
				}
				n := running.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				mu.Lock()
				startedAfter = append(startedAfter, released)
				mu.Unlock()
				<-release
				running.Add(-1)
			})
			ids := make([]string, tc.send)
			for i := range ids {
				ids[i] = c.invoke("Broadcast", "m", i)
			}
			waitFor(t, "the invocations to start", func() bool { return running.Load() == int64(tc.wantRunning) })
			// Release them one at a time: each release frees one slot, so
			// the k-th invocation past the limit starts only after k
			// releases. (An order, not a pause: a limit that did not hold
			// shows as an invocation that started before its release.)
			for range tc.send {
				mu.Lock()
				released++
				mu.Unlock()
				release <- struct{}{}
			}
			for _, id := range ids {
				if m := c.completion(id); m.Error != "" {
					t.Fatalf("invocation %s: %s", id, m.Error)
				}
			}
			mu.Lock()
			for i, after := range startedAfter {
				if want := i - tc.wantRunning + 1; after < want {
					t.Errorf("invocation %d started after %d releases, want at least %d (limit %d)", i, after, want, tc.limit)
				}
			}
			mu.Unlock()
			if got := most.Load(); got != int64(tc.wantRunning) {
				t.Fatalf("at most %d running at once, want %d", got, tc.wantRunning)
			}
			c.waitInvocations("m", tc.send)
		})
	}
}
