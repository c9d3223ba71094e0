package gossip

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// cluster3 starts A, B and C, joins B and C through A and waits until all
// three see each other.
func cluster3(t *testing.T) (a, b, c *Agent) {
	t.Helper()
	a = startAgent(t, testConfig(t, "node-a"))
	b = startAgent(t, testConfig(t, "node-b"))
	c = startAgent(t, testConfig(t, "node-c"))
	b.Join([]string{a.LocalAddr()})
	c.Join([]string{a.LocalAddr()})
	waitClosed(t, b.Joined(), waitShort, "B joined")
	waitClosed(t, c.Joined(), waitShort, "C joined")
	for _, x := range []*Agent{a, b, c} {
		waitFor(t, waitShort, x.Local().ID+" sees all three", func() error { return sees(x, a, b, c) })
	}
	return a, b, c
}

func TestAgent_JoinThree(t *testing.T) {
	checkGoroutines(t)
	a := startAgent(t, testConfig(t, "node-a"))
	events := collect(t, a)
	b := startAgent(t, testConfig(t, "node-b"))
	c := startAgent(t, testConfig(t, "node-c"))
	if !isClosed(a.Joined()) {
		t.Fatal("Joined of an agent that never called Join should be closed")
	}
	start := time.Now()
	b.Join([]string{a.LocalAddr()})
	c.Join([]string{"", a.LocalAddr(), b.LocalAddr()})
	waitClosed(t, b.Joined(), waitShort, "B joined")
	waitClosed(t, c.Joined(), waitShort, "C joined")
	for _, x := range []*Agent{a, b, c} {
		waitFor(t, waitShort, x.Local().ID+" sees all three", func() error { return sees(x, a, b, c) })
	}
	t.Logf("three agents converged in %s", time.Since(start))

	ms := b.Members()
	if len(ms) != 3 || ms[0].ID != "node-a" || ms[1].ID != "node-b" || ms[2].ID != "node-c" {
		t.Fatalf("Members not the three sorted by ID: %+v", ms)
	}
	if got, want := ms[2].RaftAddr, c.Local().RaftAddr; got != want || want == "" {
		t.Fatalf("B sees C's RaftAddr %q, want %q", got, want)
	}
	for _, x := range []*Agent{a, b, c} {
		ev := events.waitEvent(t, "A's join event for "+x.Local().ID, func(ev Event) bool {
			return ev.Kind == EventJoin && ev.Member.ID == x.Local().ID
		})
		if ev.Member.Meta != x.Local().Meta || ev.Member.State != StateAlive || ev.Member.Addr != x.LocalAddr() {
			t.Fatalf("join event %+v, want meta %+v at %s", ev.Member, x.Local().Meta, x.LocalAddr())
		}
	}
	if loc := a.Local(); loc.State != StateAlive || loc.Since.IsZero() || loc.Addr != a.LocalAddr() {
		t.Fatalf("A.Local() = %+v", loc)
	}
}

func TestAgent_UpdateMeta(t *testing.T) {
	checkGoroutines(t)
	a, b, c := cluster3(t)
	events := collect(t, b)

	if err := a.UpdateMeta(func(m *Meta) { m.ClusterID = "cluster-1" }); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	if got := a.Local().ClusterID; got != "cluster-1" {
		t.Fatalf("A.Local().ClusterID = %q", got)
	}
	for _, x := range []*Agent{b, c} {
		waitFor(t, waitShort, x.Local().ID+" sees A's cluster id", func() error { return sees(x, a) })
	}
	ev := events.waitEvent(t, "B's update event for A", func(ev Event) bool {
		return ev.Kind == EventUpdate && ev.Member.ID == "node-a" && ev.Member.ClusterID == "cluster-1"
	})
	if ev.Member.State != StateAlive || ev.Member.RaftAddr != a.Local().RaftAddr {
		t.Fatalf("update event member %+v", ev.Member)
	}

	if err := a.UpdateMeta(func(m *Meta) { m.ID = "other" }); err == nil {
		t.Fatal("UpdateMeta changing the ID succeeded")
	}
	if err := a.UpdateMeta(func(*Meta) {}); err != nil {
		t.Fatalf("no-op UpdateMeta: %v", err)
	}
}

func TestAgent_LeaveAndFail(t *testing.T) {
	checkGoroutines(t)
	a, b, c := cluster3(t)
	events := collect(t, a)

	if err := c.Leave(5 * time.Second); err != nil {
		t.Fatalf("C.Leave: %v", err)
	}
	for _, x := range []*Agent{a, b} {
		m := waitState(t, x, "node-c", StateLeft, waitShort)
		if !m.Leaving || m.RaftAddr != c.Local().RaftAddr {
			t.Fatalf("%s sees left C as %+v", x.Local().ID, m)
		}
	}
	ev := events.waitEvent(t, "A's leave event for C", func(ev Event) bool {
		return ev.Kind == EventLeave && ev.Member.ID == "node-c"
	})
	if ev.Member.State != StateLeft {
		t.Fatalf("leave event for C has state %s, want left", ev.Member.State)
	}
	if got := c.Local().State; got != StateLeft {
		t.Fatalf("C sees itself %s after Leave", got)
	}
	if err := c.Leave(time.Second); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	if err := c.UpdateMeta(func(m *Meta) { m.ClusterID = "x" }); !errors.Is(err, ErrLeft) {
		t.Fatalf("UpdateMeta after Leave = %v, want ErrLeft", err)
	}

	// B dies without a word.
	killed := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("B.Close: %v", err)
	}
	m := waitState(t, a, "node-b", StateDead, waitLong)
	t.Logf("failure detection: A saw B dead %s after Close", m.Since.Sub(killed).Round(time.Millisecond))
	ev = events.waitEvent(t, "A's leave event for B", func(ev Event) bool {
		return ev.Kind == EventLeave && ev.Member.ID == "node-b"
	})
	if ev.Member.State != StateDead {
		t.Fatalf("leave event for B has state %s, want dead", ev.Member.State)
	}
	if m, _ := find(a.Members(), "node-c"); m.State != StateLeft {
		t.Fatalf("C changed from left to %s", m.State)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := b.Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Leave after Close = %v, want ErrClosed", err)
	}
}

func TestAgent_LateSeed(t *testing.T) {
	checkGoroutines(t)
	seed := reservePort(t)
	c := startAgent(t, testConfig(t, "node-c"))
	c.Join([]string{seed})
	waitFor(t, waitShort, "C to fail joining twice", func() error {
		if n := c.joinFailures.Load(); n < 2 {
			return fmt.Errorf("%d failures", n)
		}
		return nil
	})
	if isClosed(c.Joined()) {
		t.Fatal("C joined while its seed was down")
	}

	cfg := testConfig(t, "node-a")
	cfg.BindAddr = seed
	a := startAgent(t, cfg)
	started := time.Now()
	waitClosed(t, c.Joined(), waitShort, "C joined after A started")
	t.Logf("C joined %s after A started (%d failed attempts before)", time.Since(started), c.joinFailures.Load())
	waitFor(t, waitShort, "A and C see each other", func() error {
		if err := sees(a, c); err != nil {
			return err
		}
		return sees(c, a)
	})
}

func TestAgent_MetaValidation(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig(t, "node-a")
	cfg.Meta.ClusterID = strings.Repeat("x", 600)
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "512") {
		t.Fatalf("New with oversized meta: err = %v, want a size error", err)
	}

	a := startAgent(t, testConfig(t, "node-a"))
	before := a.Local().Meta
	err := a.UpdateMeta(func(m *Meta) { m.ClusterID = strings.Repeat("y", 500) })
	if err == nil || !strings.Contains(err.Error(), "512") {
		t.Fatalf("oversized UpdateMeta: err = %v, want a size error", err)
	}
	if got := a.Local().Meta; got != before {
		t.Fatalf("meta changed by a rejected update: %+v", got)
	}
	if err := a.UpdateMeta(func(m *Meta) { m.RaftAddr = "no-port" }); err == nil {
		t.Fatal("UpdateMeta accepted a RaftAddr without a port")
	}
}

func TestAgent_EventsNeverBlock(t *testing.T) {
	checkGoroutines(t)
	// A's events channel holds 4 and nobody reads it.
	a, err := newAgent(testConfig(t, "node-a"), 4)
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	b := startAgent(t, testConfig(t, "node-b"))
	c := startAgent(t, testConfig(t, "node-c"))
	b.Join([]string{a.LocalAddr()})
	c.Join([]string{a.LocalAddr()})
	waitFor(t, waitShort, "A sees B and C", func() error { return sees(a, a, b, c) })

	const updates = 30
	for i := range updates {
		if err := b.UpdateMeta(func(m *Meta) { m.ClusterID = fmt.Sprint("c", i) }); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	waitFor(t, waitShort, "A to see B's last meta", func() error { return sees(a, b) })
	if a.DroppedEvents() == 0 {
		t.Fatalf("no events dropped after %d updates into a buffer of 4", updates)
	}

	// memberlist is still alive on A: a new node joins and is seen.
	d := startAgent(t, testConfig(t, "node-d"))
	d.Join([]string{a.LocalAddr()})
	waitClosed(t, d.Joined(), waitShort, "D joined")
	waitFor(t, waitShort, "everyone converged", func() error {
		for _, x := range []*Agent{a, b, c, d} {
			if err := sees(x, a, b, c, d); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("A dropped %d events", a.DroppedEvents())
}

func TestAgent_Encryption(t *testing.T) {
	checkGoroutines(t)
	key := []byte("0123456789abcdef")
	other := []byte("fedcba9876543210")
	withKey := func(id string, k []byte, label string) Config {
		cfg := testConfig(t, id)
		cfg.SecretKey = k
		cfg.Label = label
		return cfg
	}
	a := startAgent(t, withKey("node-a", key, "blue"))
	b := startAgent(t, withKey("node-b", key, "blue"))
	b.Join([]string{a.LocalAddr()})
	waitClosed(t, b.Joined(), waitShort, "B joined with the same key")
	waitFor(t, waitShort, "A and B see each other", func() error {
		if err := sees(a, a, b); err != nil {
			return err
		}
		return sees(b, a, b)
	})

	intruders := []*Agent{
		startAgent(t, withKey("wrong-key", other, "blue")),
		startAgent(t, withKey("no-key", nil, "blue")),
		startAgent(t, withKey("wrong-label", key, "green")),
	}
	for _, x := range intruders {
		x.Join([]string{a.LocalAddr(), b.LocalAddr()})
	}
	for _, x := range intruders {
		waitFor(t, waitShort, x.Local().ID+" to fail joining 3 times", func() error {
			if n := x.joinFailures.Load(); n < 3 {
				return fmt.Errorf("%d failures", n)
			}
			return nil
		})
		if isClosed(x.Joined()) {
			t.Fatalf("%s joined an encrypted cluster", x.Local().ID)
		}
		if len(x.Members()) != 1 {
			t.Fatalf("%s knows %+v", x.Local().ID, x.Members())
		}
	}
	if ms := a.Members(); len(ms) != 2 {
		t.Fatalf("A lets in an intruder: %+v", ms)
	}
}

func TestAgent_Lifecycle(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig(t, "node-a")
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.LocalAddr(); got != "" {
		t.Fatalf("LocalAddr before Start = %q", got)
	}
	if err := a.Leave(time.Second); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Leave before Start = %v, want ErrNotStarted", err)
	}
	// Meta changes before Start are advertised by Start.
	if err := a.UpdateMeta(func(m *Meta) { m.ClusterID = "early" }); err != nil {
		t.Fatal(err)
	}
	// Join before Start keeps retrying until Start.
	b := startAgent(t, testConfig(t, "node-b"))
	a.Join([]string{b.LocalAddr()})
	start(t, a)
	if err := a.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	waitClosed(t, a.Joined(), waitShort, "A joined B")
	waitFor(t, waitShort, "B sees A's early meta", func() error { return sees(b, a) })
	if got, _ := find(b.Members(), "node-a"); got.ClusterID != "early" {
		t.Fatalf("B sees A's cluster id %q", got.ClusterID)
	}

	// A join loop stuck on an unreachable seed ends with Close.
	c := startAgent(t, testConfig(t, "node-c"))
	c.Join([]string{reservePort(t)})
	waitFor(t, waitShort, "C to fail joining", func() error {
		if c.joinFailures.Load() == 0 {
			return errors.New("no failure yet")
		}
		return nil
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if isClosed(c.Joined()) {
		t.Fatal("Joined closed by Close")
	}
	if err := c.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v, want ErrClosed", err)
	}

	// Only seed is ourselves: nothing to join.
	d := startAgent(t, testConfig(t, "node-d"))
	d.Join([]string{d.LocalAddr()})
	waitClosed(t, d.Joined(), waitShort, "D joined (only itself as seed)")

	// Closing an agent that never started is fine.
	e, err := New(testConfig(t, "node-e"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

// rogueDelegate advertises meta that is not ours.
type rogueDelegate struct{ meta []byte }

func (d rogueDelegate) NodeMeta(int) []byte           { return d.meta }
func (rogueDelegate) NotifyMsg([]byte)                {}
func (rogueDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (rogueDelegate) LocalState(bool) []byte          { return nil }
func (rogueDelegate) MergeRemoteState([]byte, bool)   {}

func TestAgent_UnusableMeta(t *testing.T) {
	checkGoroutines(t)
	a := startAgent(t, testConfig(t, "node-a"))
	events := collect(t, a)
	for _, tt := range []struct{ name, meta string }{
		{"garbage", "not json"},
		{"imposter", `{"id":"node-z","raft":"127.0.0.1:1"}`},
	} {
		mc := memberlist.DefaultLocalConfig()
		mc.Name, mc.BindAddr, mc.BindPort = tt.name, "127.0.0.1", 0
		mc.Delegate = rogueDelegate{meta: []byte(tt.meta)}
		mc.Logger = newStdLogger(testLogger(t, tt.name))
		ml, err := memberlist.Create(mc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ml.Shutdown() })
		if _, err := ml.Join([]string{a.LocalAddr()}); err != nil {
			t.Fatal(err)
		}
		m := waitState(t, a, tt.name, StateAlive, waitShort)
		if m.Meta != (Meta{ID: tt.name}) || m.Addr != ml.LocalNode().Address() {
			t.Fatalf("member with unusable meta reported as %+v", m)
		}
		events.waitEvent(t, "join event for "+tt.name, func(ev Event) bool {
			return ev.Kind == EventJoin && ev.Member.ID == tt.name && ev.Member.RaftAddr == ""
		})
	}
	if _, ok := find(a.Members(), "node-z"); ok {
		t.Fatal("imposter listed under the ID in its meta")
	}
}
