package hub

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// fakeLiveness is a Liveness a test switches: a node is alive while it is
// in the set.
type fakeLiveness struct {
	mu    sync.Mutex
	alive map[string]bool
}

func newFakeLiveness(alive ...string) *fakeLiveness {
	l := &fakeLiveness{alive: map[string]bool{}}
	for _, id := range alive {
		l.alive[id] = true
	}
	return l
}

func (l *fakeLiveness) Alive(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.alive[id]
}

func (l *fakeLiveness) set(id string, alive bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.alive[id] = alive
}

// leading is a Leadership that never changes.
type leading bool

func (l leading) IsLeader() bool { return bool(l) }

// openConns opens connections held by other nodes, straight in the log.
func openConns(t *testing.T, pub *fakePublisher, conns map[string]string) {
	t.Helper()
	for id, node := range conns {
		if _, err := pub.Publish(context.Background(), fsm.ConnOpen(testHubName, id, "u-"+id, node)); err != nil {
			t.Fatal(err)
		}
	}
}

// closeReasons returns the reason of every close in the log, by connection.
func closeReasons(pub *fakePublisher) map[string]string {
	out := map[string]string{}
	for _, c := range pub.commands(fsm.KindConnClose) {
		out[c.Conn] = c.Reason
	}
	return out
}

// TestReap_GoneNode walks reapGone through the life of a gone node on a
// clock of its own: a node is reaped only once it has not been alive for
// all of DisconnectTimeout, coming back restarts the count, and a node
// that is alive, or this node, is left alone.
func TestReap_GoneNode(t *testing.T) {
	t.Parallel()
	const grace = 30 * time.Second
	cfg := testConfig(t)
	cfg.DisconnectTimeout = grace
	live := newFakeLiveness("node-3")
	cfg.Liveness = live
	m := newTestMachine(t)
	pub := newFakePublisher(t, m, true)
	srv, err := New(cfg, pub, m) // not started: the test is the runner
	if err != nil {
		t.Fatal(err)
	}
	openConns(t, pub, map[string]string{"a1": "node-2", "a2": "node-2", "b1": "node-3", "own": cfg.NodeID})

	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	gone := map[string]time.Time{}
	steps := []struct {
		name   string
		alive2 bool
		at     time.Duration
		want   map[string]string // the closes in the log after the step
	}{
		{name: "first seen gone: counting starts", at: 0, want: map[string]string{}},
		{name: "gone for less than DisconnectTimeout", at: grace - time.Millisecond, want: map[string]string{}},
		{name: "back alive: counting stops", alive2: true, at: grace, want: map[string]string{}},
		{name: "gone again: counting restarts", at: grace + time.Second, want: map[string]string{}},
		{name: "still within the new grace", at: 2 * grace, want: map[string]string{}},
		{name: "gone for DisconnectTimeout: reaped", at: 2*grace + time.Second,
			want: map[string]string{"a1": "its node node-2 is gone", "a2": "its node node-2 is gone"}},
	}
	for _, st := range steps {
		live.set("node-2", st.alive2)
		srv.reapGone(gone, t0.Add(st.at))
		got := closeReasons(pub)
		if len(got) != len(st.want) {
			t.Fatalf("%s: closes %v, want %v", st.name, got, st.want)
		}
		for id, reason := range st.want {
			if got[id] != reason {
				t.Fatalf("%s: close of %s: %q, want %q", st.name, id, got[id], reason)
			}
		}
	}
	srv.reapGone(gone, t0.Add(3*grace))
	if _, ok := gone["node-2"]; ok {
		t.Error("a node with no connections left is still counted on the next pass")
	}
	for _, id := range []string{"b1", "own"} {
		if _, ok := m.Connection(testHubName, id); !ok {
			t.Errorf("connection %s closed: its node is alive", id)
		}
	}
	if got := srv.Stats().Disconnects[DisconnectReaped]; got != 2 {
		t.Errorf("reaped count = %d, want 2", got)
	}
}

// TestReap_LeaderOnly: only the leader reaps other nodes' connections; a
// follower forgets what it counted, so a new leadership counts afresh.
func TestReap_LeaderOnly(t *testing.T) {
	t.Parallel()
	const grace = 30 * time.Second
	cfg := testConfig(t)
	cfg.DisconnectTimeout = grace
	cfg.Liveness = newFakeLiveness()
	lead := &switchLeader{}
	cfg.Leadership = lead
	m := newTestMachine(t)
	pub := newFakePublisher(t, m, true)
	srv, err := New(cfg, pub, m)
	if err != nil {
		t.Fatal(err)
	}
	openConns(t, pub, map[string]string{"x1": "node-9"})
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	gone := map[string]time.Time{}

	lead.on.Store(true)
	srv.reapTick(gone, t0) // counting starts
	lead.on.Store(false)
	srv.reapTick(gone, t0.Add(2*grace))
	if len(gone) != 0 || len(closeReasons(pub)) != 0 {
		t.Fatalf("follower: counted %v, closed %v; want nothing", gone, closeReasons(pub))
	}
	lead.on.Store(true)
	srv.reapTick(gone, t0.Add(3*grace)) // a new leadership counts afresh
	if len(closeReasons(pub)) != 0 {
		t.Fatalf("closed %v at a new leadership's first look", closeReasons(pub))
	}
	srv.reapTick(gone, t0.Add(4*grace))
	if got := closeReasons(pub)["x1"]; got != "its node node-9 is gone" {
		t.Fatalf("close of x1: %q", got)
	}
}

// switchLeader is a Leadership a test switches.
type switchLeader struct{ on atomic.Bool }

func (l *switchLeader) IsLeader() bool { return l.on.Load() }

// TestReap_Runner: the running server reaps, on its own, the connections
// its previous run left and, as the leader, those of a gone node.
func TestReap_Runner(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.DisconnectTimeout = 50 * time.Millisecond
	cfg.Liveness = newFakeLiveness()
	cfg.Leadership = leading(true)
	m := newTestMachine(t)
	pub := newFakePublisher(t, m, true)
	openConns(t, pub, map[string]string{"gone-1": "node-9", "old-1": cfg.NodeID})
	startTestHub(t, cfg, m, pub)
	waitFor(t, "both connections to be reaped", func() bool {
		_, ok1 := m.Connection(testHubName, "gone-1")
		_, ok2 := m.Connection(testHubName, "old-1")
		return !ok1 && !ok2
	})
	want := map[string]string{"gone-1": "its node node-9 is gone", "old-1": "its node restarted"}
	for id, reason := range want {
		if got := closeReasons(pub)[id]; got != reason {
			t.Errorf("close of %s: %q, want %q", id, got, reason)
		}
	}
}
