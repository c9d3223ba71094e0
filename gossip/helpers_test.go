package gossip

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"
)

// Generous deadlines: the test machine has 2 busy cores and runs -race.
const (
	waitShort = 15 * time.Second
	waitLong  = 45 * time.Second
)

// testConfig returns fast loopback settings on 127.0.0.1:0.
func testConfig(t *testing.T, id string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.LAN = false
	cfg.BindAddr = "127.0.0.1:0"
	cfg.Meta = Meta{
		ID:       id,
		RaftAddr: "127.0.0.1:" + fmt.Sprint(7000+len(id)),
		HTTPAddr: "127.0.0.1:" + fmt.Sprint(8000+len(id)),
		Version:  MetaVersion,
	}
	cfg.ProbeInterval = 200 * time.Millisecond
	cfg.ProbeTimeout = 100 * time.Millisecond
	cfg.GossipInterval = 20 * time.Millisecond
	cfg.SuspicionMult = 4
	cfg.RetransmitMult = 4
	cfg.PushPullInterval = 2 * time.Second
	cfg.JoinRetryMin = 20 * time.Millisecond
	cfg.JoinRetryMax = 200 * time.Millisecond
	cfg.Logger = testLogger(t, id)
	return cfg
}

// startAgent creates and starts an agent that is closed at test end.
func startAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Meta.ID, err)
	}
	return start(t, a)
}

func start(t *testing.T, a *Agent) *Agent {
	t.Helper()
	if err := a.Start(); err != nil {
		t.Fatalf("Start(%s): %v", a.cfg.Meta.ID, err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func find(ms []Member, id string) (Member, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// sees reports nil when a lists every agent in want as alive with its
// current meta and gossip address.
func sees(a *Agent, want ...*Agent) error {
	ms := a.Members()
	for _, w := range want {
		loc := w.Local()
		m, ok := find(ms, loc.ID)
		switch {
		case !ok:
			return fmt.Errorf("%s does not know %s (members %v)", a.Local().ID, loc.ID, ms)
		case m.State != StateAlive:
			return fmt.Errorf("%s sees %s as %s", a.Local().ID, loc.ID, m.State)
		case m.Meta != loc.Meta:
			return fmt.Errorf("%s sees %s with meta %+v, want %+v", a.Local().ID, loc.ID, m.Meta, loc.Meta)
		case m.Addr != w.LocalAddr():
			return fmt.Errorf("%s sees %s at %s, want %s", a.Local().ID, loc.ID, m.Addr, w.LocalAddr())
		}
	}
	return nil
}

// stateOf waits until a sees member id in state s and returns when that
// happened.
func waitState(t *testing.T, a *Agent, id string, s State, timeout time.Duration) Member {
	t.Helper()
	var got Member
	waitFor(t, timeout, fmt.Sprintf("%s to see %s %s", a.Local().ID, id, s), func() error {
		m, ok := find(a.Members(), id)
		if !ok {
			return fmt.Errorf("%s unknown", id)
		}
		if m.State != s {
			return fmt.Errorf("state %s", m.State)
		}
		got = m
		return nil
	})
	return got
}

// collector records an agent's events until the test ends.
type collector struct {
	mu     sync.Mutex
	events []Event
}

func collect(t *testing.T, a *Agent) *collector {
	c := &collector{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case ev := <-a.Events():
				c.mu.Lock()
				c.events = append(c.events, ev)
				c.mu.Unlock()
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); wg.Wait() })
	return c
}

// waitEvent waits for an event matching match.
func (c *collector) waitEvent(t *testing.T, what string, match func(Event) bool) Event {
	t.Helper()
	var got Event
	waitFor(t, waitShort, what, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, ev := range c.events {
			if match(ev) {
				got = ev
				return nil
			}
		}
		return fmt.Errorf("not among %d events", len(c.events))
	})
	return got
}

// checkGoroutines fails the test if, after all other cleanups (including
// Close of every agent), the goroutine count does not return to where it
// was. Call it first in a test so its cleanup runs last.
func checkGoroutines(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(waitShort)
		for {
			n := runtime.NumGoroutine()
			if n <= base {
				return
			}
			if time.Now().After(deadline) {
				var buf bytes.Buffer
				_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
				t.Errorf("goroutine leak: %d running, %d at start\n%s", n, base, buf.String())
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// reservePort returns a 127.0.0.1 address that was free a moment ago.
func reservePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// testLogger sends logs to t.Log and goes quiet when the test ends, since
// memberlist goroutines may still log while they wind down.
func testLogger(t *testing.T, name string) *slog.Logger {
	h := &tlogHandler{t: t, state: &tlogState{}}
	t.Cleanup(func() {
		h.state.mu.Lock()
		h.state.done = true
		h.state.mu.Unlock()
	})
	return slog.New(h).With("node", name)
}

type tlogState struct {
	mu   sync.Mutex
	done bool
}

type tlogHandler struct {
	t     *testing.T
	state *tlogState
	attrs []slog.Attr
}

func (h *tlogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || testing.Verbose()
}

func (h *tlogHandler) Handle(_ context.Context, r slog.Record) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s", r.Time.Format("15:04:05.000"), r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s", a)
		return true
	})
	h.state.mu.Lock()
	defer h.state.mu.Unlock()
	if !h.state.done {
		h.t.Log(b.String())
	}
	return nil
}

func (h *tlogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &tlogHandler{t: h.t, state: h.state, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *tlogHandler) WithGroup(string) slog.Handler { return h }
