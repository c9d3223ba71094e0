package fsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/raft"
)

// t0 is the command time the test appliers start at. It is far from the wall
// clock on purpose: the machine must never read the clock.
var t0 = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).UnixNano()

// testConfig returns the default limits with the log going to the test.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	return cfg
}

func newTestMachine(t testing.TB, cfg Config) *Machine {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// applier feeds a machine log entries at increasing indexes, as raft would.
type applier struct {
	t     testing.TB
	m     *Machine
	index uint64
	now   int64 // stamped on commands whose Time is zero
}

func newApplier(t testing.TB, cfg Config) *applier {
	t.Helper()
	return &applier{t: t, m: newTestMachine(t, cfg), now: t0}
}

// entry builds the next command entry without applying it.
func (a *applier) entry(cmds ...Command) *raft.Log {
	a.index++
	for i := range cmds {
		if cmds[i].Time == 0 {
			cmds[i].Time = a.now
		}
	}
	return &raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: EncodeBatch(cmds)}
}

// gapEntry builds the next configuration entry without applying it.
func (a *applier) gapEntry() *raft.Log {
	a.index++
	return &raft.Log{Index: a.index, Term: 1, Type: raft.LogConfiguration, Data: []byte("config")}
}

// apply applies cmds as one entry and returns its results.
func (a *applier) apply(cmds ...Command) []Result {
	a.t.Helper()
	l := a.entry(cmds...)
	out := a.m.Apply(l)
	res, ok := out.([]Result)
	if !ok {
		a.t.Fatalf("Apply(entry %d) returned %T, want []Result", l.Index, out)
	}
	if len(res) != len(cmds) {
		a.t.Fatalf("Apply(entry %d) returned %d results for %d commands", l.Index, len(res), len(cmds))
	}
	return res
}

// apply1 applies one command as one entry and returns its result.
func (a *applier) apply1(c Command) Result { return a.apply(c)[0] }

// gap applies n configuration entries, leaving a hole in command indexes.
func (a *applier) gap(n int) {
	a.t.Helper()
	for range n {
		if out := a.m.Apply(a.gapEntry()); out != nil {
			a.t.Fatalf("Apply(configuration) = %v, want nil", out)
		}
	}
}

func open(hub, conn, user string) Command {
	return Command{Kind: KindConnOpen, Hub: hub, Conn: conn, User: user, Node: "node-a"}
}
func closeConn(hub, conn string) Command {
	return Command{Kind: KindConnClose, Hub: hub, Conn: conn, Reason: "bye"}
}
func join(hub, conn, group string) Command {
	return Command{Kind: KindGroupJoin, Hub: hub, Conn: conn, Group: group}
}
func leave(hub, conn, group string) Command {
	return Command{Kind: KindGroupLeave, Hub: hub, Conn: conn, Group: group}
}
func publish(hub string, aud Audience, key, args string) Command {
	return Command{Kind: KindPublish, Hub: hub, Audience: aud, Key: key, Target: "recv", Args: []byte(args)}
}
func withID(c Command, id string) Command { c.ID = id; return c }
func at(c Command, tm int64) Command      { c.Time = tm; return c }

func mustSince(t testing.TB, m *Machine, after Cursor, max int) []Entry {
	t.Helper()
	es, err := m.Since(after, max)
	if err != nil {
		t.Fatalf("Since(%v, %d): %v", after, max, err)
	}
	return es
}

func cursorsOf(es []Entry) []Cursor {
	var out []Cursor
	for _, e := range es {
		out = append(out, e.Cursor)
	}
	return out
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		ok     bool
	}{
		{name: "default", modify: func(*Config) {}, ok: true},
		{name: "minimums", modify: func(c *Config) { c.CacheMaxEntries, c.CacheMaxBytes, c.CacheMaxAge = 1, 1024, time.Second }, ok: true},
		{name: "zero entries", modify: func(c *Config) { c.CacheMaxEntries = 0 }},
		{name: "negative entries", modify: func(c *Config) { c.CacheMaxEntries = -1 }},
		{name: "small bytes", modify: func(c *Config) { c.CacheMaxBytes = 1023 }},
		{name: "short age", modify: func(c *Config) { c.CacheMaxAge = time.Second - 1 }},
		{name: "zero config", modify: func(c *Config) { *c = Config{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.modify(&cfg)
			err := cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			m, err := New(cfg)
			if (err == nil) != tt.ok || (m != nil) != tt.ok {
				t.Fatalf("New() = %v, %v, want ok=%v", m, err, tt.ok)
			}
		})
	}
}

func TestMachine_ApplyClusterInit(t *testing.T) {
	a := newApplier(t, testConfig(t))
	if got := a.m.Epoch(); got != "" {
		t.Fatalf("Epoch() before init = %q, want empty", got)
	}
	r1 := a.apply1(Command{Kind: KindClusterInit, ClusterID: "first"})
	r2 := a.apply1(Command{Kind: KindClusterInit, ClusterID: "second"})
	if r1.Err != nil || r2.Err != nil {
		t.Fatalf("init errors: %v, %v", r1.Err, r2.Err)
	}
	if got := a.m.Epoch(); got != "first" {
		t.Fatalf("Epoch() = %q, want %q (second init must be ignored)", got, "first")
	}
	if got := a.m.Position().Epoch; got != "first" {
		t.Fatalf("Position().Epoch = %q, want %q", got, "first")
	}
	es := mustSince(t, a.m, Cursor{}, 0)
	if len(es) != 2 || es[1].ClusterID != "second" {
		t.Fatalf("both inits must stay in the stream, got %+v", es)
	}
}

func TestMachine_ApplyRegistry(t *testing.T) {
	a := newApplier(t, testConfig(t))
	const h = "chat"

	for _, c := range []Command{
		open(h, "c1", "alice"),
		open(h, "c2", "alice"),
		open(h, "c3", "bob"),
		open(h, "c4", ""),
		open("other", "c1", "carol"), // same id, another hub
		join(h, "c1", "g1"),
		join(h, "c2", "g1"),
		join(h, "c1", "g2"),
		join(h, "c1", "g2"), // joining twice is harmless
		join(h, "c4", "g2"),
		leave(h, "c2", "g1"),
		leave(h, "c2", "never-joined"), // harmless
	} {
		if r := a.apply1(c); r.Err != nil {
			t.Fatalf("%s %s: %v", c.Kind, c.Conn, r.Err)
		}
	}

	tests := []struct {
		name string
		got  any
		want any
	}{
		{"group g1", a.m.GroupConnections(h, "g1"), []string{"c1"}},
		{"group g2", a.m.GroupConnections(h, "g2"), []string{"c1", "c4"}},
		{"empty group", a.m.GroupConnections(h, "nope"), []string(nil)},
		{"group in unknown hub", a.m.GroupConnections("nope", "g1"), []string(nil)},
		{"user alice", a.m.UserConnections(h, "alice"), []string{"c1", "c2"}},
		{"user bob", a.m.UserConnections(h, "bob"), []string{"c3"}},
		{"anonymous user not indexed", a.m.UserConnections(h, ""), []string(nil)},
		{"user other hub", a.m.UserConnections("other", "carol"), []string{"c1"}},
		{"user in unknown hub", a.m.UserConnections("nope", "alice"), []string(nil)},
		{"count", a.m.ConnectionCount(), 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Fatalf("got %v, want %v", tt.got, tt.want)
			}
		})
	}

	t.Run("connection", func(t *testing.T) {
		ci, ok := a.m.Connection(h, "c1")
		want := ConnInfo{ID: "c1", Hub: h, User: "alice", Node: "node-a", Opened: Cursor{Index: 1}, Groups: []string{"g1", "g2"}}
		if !ok || !reflect.DeepEqual(ci, want) {
			t.Fatalf("Connection(c1) = %+v, %v; want %+v", ci, ok, want)
		}
		ci, ok = a.m.Connection(h, "c2")
		if !ok || ci.Groups != nil || ci.Opened != (Cursor{Index: 2}) {
			t.Fatalf("Connection(c2) = %+v, %v; want no groups, opened at 2:0", ci, ok)
		}
		if _, ok := a.m.Connection(h, "missing"); ok {
			t.Fatal("Connection(missing) found")
		}
		if _, ok := a.m.Connection("missing", "c1"); ok {
			t.Fatal("Connection in missing hub found")
		}
	})

	t.Run("close removes from groups and user", func(t *testing.T) {
		if r := a.apply1(closeConn(h, "c1")); r.Err != nil {
			t.Fatal(r.Err)
		}
		if _, ok := a.m.Connection(h, "c1"); ok {
			t.Fatal("c1 still registered after close")
		}
		if got := a.m.GroupConnections(h, "g1"); got != nil {
			t.Fatalf("g1 = %v, want empty", got)
		}
		if got, want := a.m.GroupConnections(h, "g2"), []string{"c4"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("g2 = %v, want %v", got, want)
		}
		if got, want := a.m.UserConnections(h, "alice"), []string{"c2"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("alice = %v, want %v", got, want)
		}
		if _, ok := a.m.Connection("other", "c1"); !ok {
			t.Fatal("closing chat/c1 closed other/c1")
		}
		if got := a.m.ConnectionCount(); got != 4 {
			t.Fatalf("ConnectionCount() = %d, want 4", got)
		}
	})

	t.Run("close last connection of a hub", func(t *testing.T) {
		for _, c := range []string{"c2", "c3", "c4"} {
			if r := a.apply1(closeConn(h, c)); r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		if got := a.m.ConnectionCount(); got != 1 {
			t.Fatalf("ConnectionCount() = %d, want 1", got)
		}
		if got := a.m.GroupConnections(h, "g2"); got != nil {
			t.Fatalf("g2 = %v, want empty", got)
		}
		// The hub can be used again.
		if r := a.apply1(open(h, "c1", "alice")); r.Err != nil {
			t.Fatal(r.Err)
		}
		if got, want := a.m.UserConnections(h, "alice"), []string{"c1"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("alice = %v, want %v", got, want)
		}
	})
}

func TestMachine_ApplyErrors(t *testing.T) {
	const h = "chat"
	tests := []struct {
		name  string
		setup []Command
		cmd   Command
		want  error
	}{
		{name: "open twice", setup: []Command{open(h, "c1", "alice")}, cmd: open(h, "c1", "bob"), want: ErrConnectionExists},
		{name: "join unknown conn", cmd: join(h, "c1", "g"), want: ErrUnknownConnection},
		{name: "join conn of other hub", setup: []Command{open("other", "c1", "")}, cmd: join(h, "c1", "g"), want: ErrUnknownConnection},
		{name: "leave unknown conn", setup: []Command{open(h, "c2", "")}, cmd: leave(h, "c1", "g"), want: ErrUnknownConnection},
		{name: "close unknown conn", setup: []Command{open(h, "c2", "")}, cmd: closeConn(h, "c1"), want: ErrUnknownConnection},
		{name: "close in unknown hub", cmd: closeConn(h, "c1"), want: ErrUnknownConnection},
		{name: "close twice", setup: []Command{open(h, "c1", ""), open(h, "c2", ""), closeConn(h, "c1")}, cmd: closeConn(h, "c1"), want: ErrUnknownConnection},
		{name: "publish to unknown connection", cmd: publish(h, AudienceConnection, "c1", "[]"), want: ErrUnknownConnection},
		{name: "publish to closed connection", setup: []Command{open(h, "c1", ""), open(h, "c2", ""), closeConn(h, "c1")}, cmd: publish(h, AudienceConnection, "c1", "[]"), want: ErrUnknownConnection},
		{name: "publish to known connection", setup: []Command{open(h, "c1", "")}, cmd: publish(h, AudienceConnection, "c1", "[]")},
		{name: "publish to empty group", cmd: publish(h, AudienceGroup, "g", "[]")},
		{name: "publish to unknown user", cmd: publish(h, AudienceUser, "nobody", "[]")},
		{name: "publish to all", cmd: publish(h, AudienceAll, "", "[]")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApplier(t, testConfig(t))
			for _, c := range tt.setup {
				if r := a.apply1(c); r.Err != nil {
					t.Fatalf("setup %s: %v", c.Kind, r.Err)
				}
			}
			before := registrySnapshot(a.m, h, "other")
			r := a.apply1(tt.cmd)
			if r.Err != tt.want {
				t.Fatalf("Result.Err = %v, want %v", r.Err, tt.want)
			}
			if r.Duplicate {
				t.Fatal("Result.Duplicate set")
			}
			es := mustSince(t, a.m, Cursor{Index: a.index - 1, Offset: ^uint32(0)}, 0)
			if len(es) != 1 || es[0].Cursor != r.Cursor || es[0].Err != tt.want {
				t.Fatalf("cached entry = %+v, want one entry at %v with Err %v", es, r.Cursor, tt.want)
			}
			if tt.want != nil {
				if after := registrySnapshot(a.m, h, "other"); !reflect.DeepEqual(before, after) {
					t.Fatalf("failed command changed the registry:\nbefore %+v\nafter  %+v", before, after)
				}
			}
		})
	}
}

// registrySnapshot reads everything the registry exposes for a few hubs and
// ids, for comparing states.
func registrySnapshot(m *Machine, hubs ...string) map[string]any {
	out := map[string]any{"count": m.ConnectionCount()}
	ids := []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"}
	names := []string{"g0", "g1", "g2", "g3", "u0", "u1", "u2", "alice", "bob"}
	for _, h := range hubs {
		for _, id := range ids {
			if ci, ok := m.Connection(h, id); ok {
				out["conn/"+h+"/"+id] = ci
			}
		}
		for _, n := range names {
			if g := m.GroupConnections(h, n); g != nil {
				out["group/"+h+"/"+n] = g
			}
			if u := m.UserConnections(h, n); u != nil {
				out["user/"+h+"/"+n] = u
			}
		}
	}
	return out
}

func TestMachine_ApplyResultCursors(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.gap(2) // entries 1 and 2 are configuration
	res := a.apply(
		open("h", "c1", ""),
		publish("h", AudienceAll, "", "[1]"),
		join("h", "nope", "g"),
		publish("h", AudienceAll, "", "[2]"),
	)
	want := []Result{
		{Cursor: Cursor{Index: 3, Offset: 0}},
		{Cursor: Cursor{Index: 3, Offset: 1}},
		{Cursor: Cursor{Index: 3, Offset: 2}, Err: ErrUnknownConnection},
		{Cursor: Cursor{Index: 3, Offset: 3}},
	}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("results = %+v, want %+v", res, want)
	}
	a.gap(1)
	if r := a.apply1(publish("h", AudienceAll, "", "[3]")); r.Cursor != (Cursor{Index: 5}) {
		t.Fatalf("cursor after gap = %v, want 5:0", r.Cursor)
	}
	a.gap(1)
	p := a.m.Position()
	wantPos := Position{Applied: 6, First: Cursor{3, 0}, Last: Cursor{5, 0}, Entries: 5, Bytes: p.Bytes, Digest: p.Digest}
	if p != wantPos {
		t.Fatalf("Position() = %+v, want %+v", p, wantPos)
	}
	if p.Bytes <= 0 {
		t.Fatalf("Position().Bytes = %d, want > 0", p.Bytes)
	}
}

func TestMachine_ApplyEmptyBatch(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(publish("h", AudienceAll, "", "[]"))
	if res := a.apply(); len(res) != 0 {
		t.Fatalf("results = %v, want none", res)
	}
	p := a.m.Position()
	if p.Applied != 2 || p.Last != (Cursor{Index: 1}) || p.Entries != 1 {
		t.Fatalf("Position() = %+v", p)
	}
}

func TestMachine_ApplyIgnorable(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(publish("h", AudienceAll, "", "[1]"))
	res := a.apply(
		Command{Kind: 200, ID: "future", Hub: "h"},
		publish("h", AudienceAll, "", "[2]"),
		Command{Kind: KindIgnorable, ID: "future2"},
	)
	want := []Result{{Cursor: Cursor{2, 0}}, {Cursor: Cursor{2, 1}}, {Cursor: Cursor{2, 2}}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("results = %+v, want %+v", res, want)
	}
	if got, want := cursorsOf(mustSince(t, a.m, Cursor{}, 0)), []Cursor{{1, 0}, {2, 1}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("cached cursors = %v, want %v (ignorable commands are not cached)", got, want)
	}
	if got := a.m.Position().Last; got != (Cursor{2, 1}) {
		t.Fatalf("Last = %v, want 2:1", got)
	}
	// An ignorable command's ID is not remembered.
	if r := a.apply1(withID(publish("h", AudienceAll, "", "[]"), "future")); r.Duplicate {
		t.Fatal("ID of an ignorable command was deduplicated")
	}
}

func TestMachine_Since(t *testing.T) {
	a := newApplier(t, testConfig(t))
	var all []Cursor
	for i := range 10 {
		if i%3 == 1 {
			a.gap(2)
		}
		n := 1 + i%3
		cmds := make([]Command, n)
		for j := range cmds {
			cmds[j] = publish("h", AudienceAll, "", fmt.Sprintf("[%d,%d]", i, j))
		}
		for _, r := range a.apply(cmds...) {
			all = append(all, r.Cursor)
		}
	}
	last := all[len(all)-1]
	tests := []struct {
		name  string
		after Cursor
		max   int
		want  []Cursor
	}{
		{name: "from zero", after: Cursor{}, want: all},
		{name: "from zero max 3", after: Cursor{}, max: 3, want: all[:3]},
		{name: "max 1", after: all[4], max: 1, want: all[5:6]},
		{name: "negative max is unlimited", after: all[4], max: -1, want: all[5:]},
		{name: "max larger than available", after: all[15], max: 100, want: all[16:]},
		{name: "strictly after", after: all[5], want: all[6:]},
		{name: "mid-entry offset", after: all[2], max: 2, want: all[3:5]},
		{name: "cursor in a gap", after: Cursor{Index: 2}, want: all[1:]}, // entries 2 and 3 are configuration
		{name: "offset past end of entry", after: Cursor{Index: all[0].Index, Offset: 99}, want: all[1:]},
		{name: "at last", after: last, want: nil},
		{name: "in the future", after: Cursor{Index: last.Index + 100}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := mustSince(t, a.m, tt.after, tt.max)
			if got := cursorsOf(es); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Since(%v, %d) = %v, want %v", tt.after, tt.max, got, tt.want)
			}
		})
	}

	t.Run("entries carry commands", func(t *testing.T) {
		es := mustSince(t, a.m, Cursor{}, 2)
		if string(es[0].Args) != "[0,0]" || string(es[1].Args) != "[1,0]" || es[1].Kind != KindPublish || es[1].Time != t0 {
			t.Fatalf("entries = %+v", es)
		}
	})
	t.Run("result is a copy", func(t *testing.T) {
		es := mustSince(t, a.m, Cursor{}, 1)
		es[0].Cursor = Cursor{Index: 999}
		es[0].Target = "mutated"
		if again := mustSince(t, a.m, Cursor{}, 1); again[0].Cursor != all[0] || again[0].Target != "recv" {
			t.Fatalf("mutating Since output changed the cache: %+v", again[0])
		}
	})
}

// waitResult runs Wait in a goroutine.
func waitAsync(ctx context.Context, m *Machine, c Cursor) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- m.Wait(ctx, c) }()
	return ch
}

// recvErr returns what ch delivers, failing the test if nothing arrives
// within a generous deadline (a hang guard, not a sleep).
func recvErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return")
		return nil
	}
}

func TestMachine_Wait(t *testing.T) {
	t.Run("already applied", func(t *testing.T) {
		a := newApplier(t, testConfig(t))
		a.apply(publish("h", AudienceAll, "", "[]"), publish("h", AudienceAll, "", "[]"))
		for _, c := range []Cursor{{}, {1, 0}, {1, 1}, {0, 5}} {
			if err := a.m.Wait(context.Background(), c); err != nil {
				t.Fatalf("Wait(%v) = %v", c, err)
			}
		}
	})
	t.Run("returns once applied", func(t *testing.T) {
		a := newApplier(t, testConfig(t))
		a.apply1(publish("h", AudienceAll, "", "[]"))
		target := Cursor{Index: 3, Offset: 1}
		ch := waitAsync(context.Background(), a.m, target)
		a.gap(1) // entry 2: wakes the waiter, not enough
		select {
		case err := <-ch:
			t.Fatalf("Wait returned %v before its cursor was applied", err)
		default:
		}
		a.apply(publish("h", AudienceAll, "", "[]"), publish("h", AudienceAll, "", "[]"))
		if err := recvErr(t, ch); err != nil {
			t.Fatalf("Wait = %v", err)
		}
	})
	t.Run("later cursor satisfies", func(t *testing.T) {
		a := newApplier(t, testConfig(t))
		ch := waitAsync(context.Background(), a.m, Cursor{Index: 1, Offset: 5})
		a.apply1(publish("h", AudienceAll, "", "[]"))
		a.apply1(publish("h", AudienceAll, "", "[]"))
		if err := recvErr(t, ch); err != nil {
			t.Fatalf("Wait = %v", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		m := newTestMachine(t, testConfig(t))
		ctx, cancel := context.WithCancel(context.Background())
		ch := waitAsync(ctx, m, Cursor{Index: 1})
		cancel()
		if err := recvErr(t, ch); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait = %v, want context.Canceled", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		m := newTestMachine(t, testConfig(t))
		ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
		defer cancel()
		if err := m.Wait(ctx, Cursor{Index: 1}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("entry with only ignorable commands", func(t *testing.T) {
		a := newApplier(t, testConfig(t))
		a.apply1(publish("h", AudienceAll, "", "[]"))
		r := a.apply1(Command{Kind: 200})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch := waitAsync(ctx, a.m, r.Cursor)
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("Wait(%v) = %v", r.Cursor, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Wait(%v) blocks although entry %d has been applied", r.Cursor, r.Cursor.Index)
		}
	})
}

func TestMachine_Changed(t *testing.T) {
	a := newApplier(t, testConfig(t))
	isClosed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	ch := a.m.Changed()
	if isClosed(ch) {
		t.Fatal("Changed() closed before any apply")
	}
	if a.m.Changed() != ch {
		t.Fatal("Changed() returned a new channel without an apply")
	}
	a.apply1(publish("h", AudienceAll, "", "[]"))
	if !isClosed(ch) {
		t.Fatal("Changed() channel not closed by an apply")
	}
	ch2 := a.m.Changed()
	if isClosed(ch2) {
		t.Fatal("new Changed() channel already closed")
	}
	a.gap(1)
	if !isClosed(ch2) {
		t.Fatal("Changed() channel not closed by a configuration entry")
	}
	ch3 := a.m.Changed()
	a.m.ApplyBatch([]*raft.Log{a.entry(publish("h", AudienceAll, "", "[]")), a.gapEntry()})
	if !isClosed(ch3) {
		t.Fatal("Changed() channel not closed by ApplyBatch")
	}
}

func TestMachine_Dedup(t *testing.T) {
	t.Run("same batch", func(t *testing.T) {
		a := newApplier(t, testConfig(t))
		res := a.apply(
			withID(open("h", "c1", "alice"), "x"),
			withID(open("h", "c1", "alice"), "x"),
		)
		want := []Result{{Cursor: Cursor{1, 0}}, {Cursor: Cursor{1, 0}, Duplicate: true}}
		if !reflect.DeepEqual(res, want) {
			t.Fatalf("results = %+v, want %+v", res, want)
		}
		if p := a.m.Position(); p.Entries != 1 || p.Last != (Cursor{1, 0}) {
			t.Fatalf("Position() = %+v, want one entry, Last 1:0", p)
		}
	})
	t.Run("later entry", func(t *testing.T) {
		a := newApplier(t, testConfig(t))
		first := a.apply1(withID(publish("h", AudienceAll, "", "[1]"), "p1"))
		a.gap(1)
		a.apply1(withID(join("h", "c1", "g"), "j1")) // fails, but its ID counts
		before := a.m.Position()
		dup := a.apply1(withID(publish("h", AudienceAll, "", "[other args]"), "p1"))
		if !dup.Duplicate || dup.Cursor != first.Cursor || dup.Err != nil {
			t.Fatalf("duplicate result = %+v, want Duplicate at %v", dup, first.Cursor)
		}
		dupFailed := a.apply1(withID(join("h", "c1", "g"), "j1"))
		if !dupFailed.Duplicate || dupFailed.Cursor != (Cursor{3, 0}) || dupFailed.Err != nil {
			t.Fatalf("duplicate of failed command = %+v, want Duplicate at 3:0", dupFailed)
		}
		after := a.m.Position()
		before.Applied = after.Applied
		if after != before {
			t.Fatalf("duplicates changed the stream:\nbefore %+v\nafter  %+v", before, after)
		}
	})
	t.Run("duplicate does not change state", func(t *testing.T) {
		a := newApplier(t, testConfig(t))
		a.apply1(withID(open("h", "c1", "alice"), "o1"))
		a.apply1(withID(closeConn("h", "c0"), "close")) // ErrUnknownConnection
		a.apply1(withID(open("h", "c0", ""), "o0"))
		if r := a.apply1(withID(closeConn("h", "c0"), "close")); !r.Duplicate {
			t.Fatalf("result = %+v, want duplicate", r)
		}
		if _, ok := a.m.Connection("h", "c0"); !ok {
			t.Fatal("a duplicate close closed the connection")
		}
		if r := a.apply1(withID(open("h", "c1", "bob"), "o1")); !r.Duplicate || r.Err != nil {
			t.Fatalf("result = %+v, want duplicate without error", r)
		}
		if ci, _ := a.m.Connection("h", "c1"); ci.User != "alice" {
			t.Fatalf("c1 user = %q, want alice", ci.User)
		}
	})
	t.Run("empty id is never deduplicated", func(t *testing.T) {
		a := newApplier(t, testConfig(t))
		res := a.apply(publish("h", AudienceAll, "", "[]"), publish("h", AudienceAll, "", "[]"))
		if res[0].Duplicate || res[1].Duplicate || a.m.Position().Entries != 2 {
			t.Fatalf("results = %+v", res)
		}
	})
	t.Run("window", func(t *testing.T) {
		w := DedupWindow.Nanoseconds()
		a := newApplier(t, testConfig(t))
		first := a.apply1(at(withID(publish("h", AudienceAll, "", "[]"), "x"), t0))
		// Exactly at the window edge the ID is still remembered.
		a.apply1(at(publish("h", AudienceAll, "", "[]"), t0+w))
		if r := a.apply1(at(withID(publish("h", AudienceAll, "", "[]"), "x"), t0+w)); !r.Duplicate || r.Cursor != first.Cursor {
			t.Fatalf("at the window edge: %+v, want duplicate of %v", r, first.Cursor)
		}
		// One nanosecond later it is forgotten.
		a.apply1(at(publish("h", AudienceAll, "", "[]"), t0+w+1))
		r := a.apply1(at(withID(publish("h", AudienceAll, "", "[]"), "x"), t0+w+1))
		if r.Duplicate || r.Cursor != (Cursor{Index: a.index}) {
			t.Fatalf("after the window: %+v, want applied at %d:0", r, a.index)
		}
		// And remembered again from its new cursor.
		if r2 := a.apply1(at(withID(publish("h", AudienceAll, "", "[]"), "x"), t0+w+2)); !r2.Duplicate || r2.Cursor != r.Cursor {
			t.Fatalf("second copy: %+v, want duplicate of %v", r2, r.Cursor)
		}
	})
	t.Run("old duplicate stamp does not age the window", func(t *testing.T) {
		// A retried command carries its original stamp; the newest stamp
		// decides, not the retry's.
		a := newApplier(t, testConfig(t))
		a.apply1(at(withID(publish("h", AudienceAll, "", "[]"), "x"), t0))
		a.apply1(at(publish("h", AudienceAll, "", "[]"), t0+int64(DedupWindow/2)))
		if r := a.apply1(at(withID(publish("h", AudienceAll, "", "[]"), "x"), t0-int64(time.Hour))); !r.Duplicate {
			t.Fatalf("result = %+v, want duplicate", r)
		}
	})
}

// TestMachine_ApplyBatchDedupWindow checks that forgetting IDs does not
// depend on how raft groups entries into ApplyBatch calls: the grouping
// differs between nodes, the outcome must not.
func TestMachine_ApplyBatchDedupWindow(t *testing.T) {
	w := DedupWindow.Nanoseconds()
	build := func(a *applier) []*raft.Log {
		return []*raft.Log{
			a.entry(at(withID(publish("h", AudienceAll, "", "[1]"), "x"), t0)),
			a.entry(at(withID(publish("h", AudienceAll, "", "[2]"), "y"), t0+w+1)), // x leaves the window
			a.entry(at(withID(publish("h", AudienceAll, "", "[3]"), "x"), t0+w+1)), // so this is new
		}
	}
	one := newApplier(t, testConfig(t))
	var resOne []interface{}
	for _, l := range build(one) {
		resOne = append(resOne, one.m.Apply(l))
	}
	batch := newApplier(t, testConfig(t))
	resBatch := batch.m.ApplyBatch(build(batch))
	if !reflect.DeepEqual(resOne, resBatch) {
		t.Fatalf("one by one: %+v\nin one batch: %+v", resOne, resBatch)
	}
	if r := resOne[2].([]Result)[0]; r.Duplicate {
		t.Fatalf("x after the window = %+v, want applied", r)
	}
}

func TestMachine_Eviction(t *testing.T) {
	pub := func(i int) Command { return publish("h", AudienceAll, "", fmt.Sprintf("[%04d]", i)) }
	pubSize := int64((&Entry{Command: pub(0)}).size())

	tests := []struct {
		name string
		cfg  func(*Config)
		// step returns the commands of entry i (entries with no
		// commands are configuration gaps).
		step      func(a *applier, i int) []Command
		entries   int
		wantFirst Cursor
		wantFloor Cursor
		wantCount int
	}{
		{
			name:      "max entries",
			cfg:       func(c *Config) { c.CacheMaxEntries = 5 },
			step:      func(a *applier, i int) []Command { return []Command{pub(i)} },
			entries:   12,
			wantFirst: Cursor{8, 0}, wantFloor: Cursor{7, 0}, wantCount: 5,
		},
		{
			name: "max entries with batches and gaps",
			cfg:  func(c *Config) { c.CacheMaxEntries = 4 },
			step: func(a *applier, i int) []Command {
				if i%2 == 0 {
					return nil
				}
				return []Command{pub(i), pub(i), pub(i)}
			},
			entries: 8, // commands at 1,3,5,7 ×3
			// 12 commands, keep the last 4: 5:2, 7:0, 7:1, 7:2.
			wantFirst: Cursor{5, 2}, wantFloor: Cursor{5, 1}, wantCount: 4,
		},
		{
			name: "max bytes",
			cfg: func(c *Config) {
				c.CacheMaxBytes = 1024
			},
			step:    func(a *applier, i int) []Command { return []Command{pub(i)} },
			entries: 30,
			wantCount: func() int {
				return int(1024 / pubSize)
			}(),
			wantFirst: Cursor{Index: uint64(30 - 1024/pubSize + 1)},
			wantFloor: Cursor{Index: uint64(30 - 1024/pubSize)},
		},
		{
			name: "max age against newest stamp",
			cfg:  func(c *Config) { c.CacheMaxAge = 10 * time.Second },
			step: func(a *applier, i int) []Command {
				a.now = t0 + int64(i)*int64(time.Second)
				return []Command{pub(i)}
			},
			entries: 30, // newest stamp t0+29s: stamps older than t0+19s go
			// entry i has stamp t0+(i-1)s; kept while 29-(i-1) <= 10, i >= 20.
			wantFirst: Cursor{20, 0}, wantFloor: Cursor{19, 0}, wantCount: 11,
		},
		{
			name: "max age is not the wall clock",
			cfg:  func(c *Config) { c.CacheMaxAge = time.Second },
			step: func(a *applier, i int) []Command {
				a.now = 1 // 1970: far older than any wall-clock window
				return []Command{pub(i)}
			},
			entries:   10,
			wantFirst: Cursor{1, 0}, wantFloor: Cursor{}, wantCount: 10,
		},
		{
			name: "one big jump in time evicts all but the newest",
			cfg:  func(c *Config) { c.CacheMaxAge = time.Minute },
			step: func(a *applier, i int) []Command {
				if i == 10 {
					a.now = t0 + int64(time.Hour)
				}
				return []Command{pub(i)}
			},
			entries:   10,
			wantFirst: Cursor{10, 0}, wantFloor: Cursor{9, 0}, wantCount: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.cfg(&cfg)
			a := newApplier(t, cfg)
			var last Cursor
			for i := 1; i <= tt.entries; i++ {
				cmds := tt.step(a, i)
				if len(cmds) == 0 {
					a.gap(1)
					continue
				}
				res := a.apply(cmds...)
				last = res[len(res)-1].Cursor
			}
			p := a.m.Position()
			if p.First != tt.wantFirst || p.Floor != tt.wantFloor || p.Entries != tt.wantCount || p.Last != last {
				t.Fatalf("Position() = %+v\nwant First %v Floor %v Entries %d Last %v",
					p, tt.wantFirst, tt.wantFloor, tt.wantCount, last)
			}
			if p.Entries > cfg.CacheMaxEntries || p.Bytes > cfg.CacheMaxBytes {
				t.Fatalf("cache over its limits: %+v", p)
			}

			es := mustSince(t, a.m, p.Floor, 0)
			if len(es) != p.Entries || es[0].Cursor != p.First || es[len(es)-1].Cursor != p.Last {
				t.Fatalf("Since(Floor) = %v, want %d entries %v..%v", cursorsOf(es), p.Entries, p.First, p.Last)
			}
			var bytes int64
			for i := range es {
				bytes += int64(es[i].size())
			}
			if bytes != p.Bytes {
				t.Fatalf("Position().Bytes = %d, cached entries sum to %d", p.Bytes, bytes)
			}

			if p.Floor.IsZero() {
				return
			}
			for _, old := range []Cursor{{}, {Index: p.Floor.Index - 1, Offset: 7}, {Index: p.Floor.Index}} {
				if old == p.Floor || !old.Less(p.Floor) {
					continue
				}
				_, err := a.m.Since(old, 10)
				if !errors.Is(err, ErrCursorTooOld) {
					t.Fatalf("Since(%v) with Floor %v = %v, want ErrCursorTooOld", old, p.Floor, err)
				}
			}
			if p.Floor.Offset > 0 {
				_, err := a.m.Since(Cursor{Index: p.Floor.Index, Offset: p.Floor.Offset - 1}, 1)
				if !errors.Is(err, ErrCursorTooOld) {
					t.Fatalf("Since(one before Floor) = %v, want ErrCursorTooOld", err)
				}
			}
		})
	}
}

func TestMachine_EvictionForgetsDedupSeparately(t *testing.T) {
	// Eviction from the cache does not forget IDs: dedup is by command time.
	cfg := testConfig(t)
	cfg.CacheMaxEntries = 1
	a := newApplier(t, cfg)
	first := a.apply1(withID(publish("h", AudienceAll, "", "[]"), "x"))
	a.apply1(publish("h", AudienceAll, "", "[]"))
	a.apply1(publish("h", AudienceAll, "", "[]"))
	if p := a.m.Position(); p.First != (Cursor{3, 0}) {
		t.Fatalf("Position() = %+v", p)
	}
	if r := a.apply1(withID(publish("h", AudienceAll, "", "[]"), "x")); !r.Duplicate || r.Cursor != first.Cursor {
		t.Fatalf("result = %+v, want duplicate of evicted %v", r, first.Cursor)
	}
}

// scenario builds a pseudo-random log with every kind of command, duplicate
// IDs, time jumps past the dedup window and cache age, and gaps.
func scenario(a *applier, seed uint64, n int) []*raft.Log {
	rng := rand.New(rand.NewPCG(seed, 1))
	hubs := []string{"h0", "h1"}
	pick := func(prefix string, k int) string { return fmt.Sprintf("%s%d", prefix, rng.IntN(k)) }
	var logs []*raft.Log
	for i := 0; i < n; i++ {
		if rng.IntN(5) == 0 {
			logs = append(logs, a.gapEntry())
			continue
		}
		cmds := make([]Command, 1+rng.IntN(4))
		for j := range cmds {
			h := hubs[rng.IntN(len(hubs))]
			var c Command
			switch rng.IntN(7) {
			case 0:
				c = open(h, pick("c", 8), pick("u", 3))
			case 1:
				c = closeConn(h, pick("c", 8))
			case 2:
				c = join(h, pick("c", 8), pick("g", 4))
			case 3:
				c = leave(h, pick("c", 8), pick("g", 4))
			case 4:
				c = publish(h, AudienceConnection, pick("c", 8), "[]")
			case 5:
				c = publish(h, Audience(1+rng.IntN(3)), pick("g", 4), `["payload"]`)
			case 6:
				if rng.IntN(10) == 0 {
					c = Command{Kind: KindClusterInit, ClusterID: pick("cluster-", 3)}
				} else {
					c = Command{Kind: Kind(128 + rng.IntN(128)), Hub: h}
				}
			}
			if rng.IntN(2) == 0 {
				c.ID = pick("id", 40)
			}
			// Mostly small steps, sometimes a jump past the window; stamps
			// are not monotonic across submitters.
			switch rng.IntN(20) {
			case 0:
				a.now += int64(DedupWindow) + int64(rng.IntN(int(time.Minute)))
			case 1:
				c.Time = a.now - int64(rng.IntN(int(time.Hour)))
			default:
				a.now += int64(rng.IntN(int(5 * time.Second)))
			}
			cmds[j] = c
		}
		logs = append(logs, a.entry(cmds...))
	}
	return logs
}

// machineView is everything a Machine exposes, for comparing two machines.
type machineView struct {
	Pos      Position
	Entries  []Entry
	Registry map[string]any
}

func viewOf(t testing.TB, m *Machine) machineView {
	t.Helper()
	p := m.Position()
	return machineView{Pos: p, Entries: mustSince(t, m, p.Floor, 0), Registry: registrySnapshot(m, "h0", "h1")}
}

func TestMachine_ApplyBatch(t *testing.T) {
	tests := []struct {
		name string
		seed uint64
		cfg  func(*Config)
	}{
		{name: "default limits", seed: 1, cfg: func(*Config) {}},
		{name: "small entry limit", seed: 2, cfg: func(c *Config) { c.CacheMaxEntries = 20 }},
		{name: "small byte limit", seed: 3, cfg: func(c *Config) { c.CacheMaxBytes = 2048 }},
		{name: "short age", seed: 4, cfg: func(c *Config) { c.CacheMaxAge = 30 * time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.cfg(&cfg)

			gen := newApplier(t, cfg)
			logs := scenario(gen, tt.seed, 400)

			one := newTestMachine(t, cfg)
			var resOne []interface{}
			for _, l := range logs {
				resOne = append(resOne, one.Apply(l))
			}

			all := newTestMachine(t, cfg)
			resAll := all.ApplyBatch(logs)

			chunked := newTestMachine(t, cfg)
			var resChunked []interface{}
			rng := rand.New(rand.NewPCG(tt.seed, 2))
			for rest := logs; len(rest) > 0; {
				k := min(1+rng.IntN(64), len(rest))
				resChunked = append(resChunked, chunked.ApplyBatch(rest[:k])...)
				rest = rest[k:]
			}

			if !reflect.DeepEqual(resOne, resAll) {
				t.Fatal("ApplyBatch(all) results differ from Apply one by one")
			}
			if !reflect.DeepEqual(resOne, resChunked) {
				t.Fatal("ApplyBatch(chunks) results differ from Apply one by one")
			}
			vOne, vAll, vChunked := viewOf(t, one), viewOf(t, all), viewOf(t, chunked)
			if !reflect.DeepEqual(vOne, vAll) {
				t.Fatalf("ApplyBatch(all) state differs:\none by one %+v\nbatch      %+v", vOne.Pos, vAll.Pos)
			}
			if !reflect.DeepEqual(vOne, vChunked) {
				t.Fatalf("ApplyBatch(chunks) state differs:\none by one %+v\nchunked    %+v", vOne.Pos, vChunked.Pos)
			}
			if vOne.Pos.Applied != uint64(len(logs)) || len(vOne.Entries) == 0 {
				t.Fatalf("scenario too thin: %+v", vOne.Pos)
			}
		})
	}
}

// TestMachine_EvictionCost checks that a full cache is not copied on every
// eviction: applying to a full cache must cost memory in proportion to what
// is applied, not to the cache size.
func TestMachine_EvictionCost(t *testing.T) {
	const size, applies = 10_000, 1_000
	cfg := testConfig(t)
	cfg.CacheMaxEntries = size
	a := newApplier(t, cfg)
	var logs []*raft.Log
	for range size {
		logs = append(logs, a.entry(publish("h", AudienceAll, "", "[]")))
	}
	a.m.ApplyBatch(logs)
	data := EncodeBatch([]Command{at(publish("h", AudienceAll, "", "[]"), t0)})

	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	for range applies {
		a.index++
		a.m.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: data})
	}
	runtime.ReadMemStats(&ms1)
	if p := a.m.Position(); p.Entries != size || p.Floor != (Cursor{Index: applies}) {
		t.Fatalf("Position() = %+v, want a full cache with Floor %d:0", p, applies)
	}
	// Copying the cache on every eviction costs ~size*applies*sizeof(Entry)
	// (gigabytes); amortised growth costs a few cache arrays.
	entryBytes := uint64(unsafe.Sizeof(Entry{}))
	if alloc, limit := ms1.TotalAlloc-ms0.TotalAlloc, 8*size*entryBytes; alloc > limit {
		t.Fatalf("%d applies to a full cache of %d allocated %d bytes, want at most %d", applies, size, alloc, limit)
	}
}

func TestMachine_ConnectionsOn(t *testing.T) {
	a := newApplier(t, DefaultConfig())
	a.apply(
		Command{Kind: KindConnOpen, Hub: "b", Conn: "c2", User: "u", Node: "n1"},
		Command{Kind: KindConnOpen, Hub: "a", Conn: "c3", Node: "n1"},
		Command{Kind: KindConnOpen, Hub: "a", Conn: "c1", Node: "n2"},
		Command{Kind: KindConnOpen, Hub: "a", Conn: "c0", Node: "n1"},
	)
	a.apply(Command{Kind: KindConnClose, Hub: "a", Conn: "c3"})
	got := a.m.ConnectionsOn("n1")
	var ids []string
	for _, ci := range got {
		ids = append(ids, ci.Hub+"/"+ci.ID)
	}
	if want := []string{"a/c0", "b/c2"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("ConnectionsOn(n1) = %v, want %v", ids, want)
	}
	if got := a.m.ConnectionsOn("n3"); len(got) != 0 {
		t.Fatalf("ConnectionsOn(n3) = %v, want none", got)
	}
}

func TestMachine_ConnectionNodes(t *testing.T) {
	a := newApplier(t, DefaultConfig())
	a.apply(
		Command{Kind: KindConnOpen, Hub: "a", Conn: "c1", Node: "n1"},
		Command{Kind: KindConnOpen, Hub: "b", Conn: "c2", Node: "n1"},
		Command{Kind: KindConnOpen, Hub: "a", Conn: "c3", Node: "n2"},
	)
	if got, want := a.m.ConnectionNodes(), map[string]int{"n1": 2, "n2": 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ConnectionNodes() = %v, want %v", got, want)
	}
	a.apply(Command{Kind: KindConnClose, Hub: "a", Conn: "c3"})
	if got, want := a.m.ConnectionNodes(), map[string]int{"n1": 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after close: %v, want %v", got, want)
	}
}
