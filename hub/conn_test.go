package hub

import (
	"bytes"
	"github.com/raftplane/raftplane/fsm"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateTransport is a transport whose writes wait for release (closed up
// front for a transport that never blocks). It records what was written.
type gateTransport struct {
	entered chan struct{} // one token per write call that has started
	release chan struct{}

	mu     sync.Mutex
	writes [][]byte
	closes int
	closed chan struct{}
}

func newGateTransport(blocking bool) *gateTransport {
	g := &gateTransport{entered: make(chan struct{}, 1024), release: make(chan struct{}), closed: make(chan struct{})}
	if !blocking {
		close(g.release)
	}
	return g
}

func (g *gateTransport) write(p []byte) error {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
	g.mu.Lock()
	g.writes = append(g.writes, bytes.Clone(p))
	g.mu.Unlock()
	return nil
}

func (g *gateTransport) close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closes++
	if g.closes == 1 {
		close(g.closed)
	}
	return nil
}

func (g *gateTransport) written() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]byte(nil), g.writes...)
}

// waitChan waits for ch to be readable or closed.
func waitChan(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testWait):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// noBlock runs f and fails the test if it does not return promptly.
func noBlock(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(testWait):
		t.Fatalf("%s blocked", what)
	}
}

// newUnitConn builds a connection on an unstarted server, outside any HTTP
// handler, with its writer running.
func newUnitConn(t *testing.T, maxQueued int, tr transport, opts ...func(*Config)) *conn {
	t.Helper()
	cfg := testConfig(t)
	cfg.MaxQueuedMessages = maxQueued
	for _, o := range opts {
		o(&cfg)
	}
	m := newTestMachine(t)
	srv, err := New(cfg, newFakePublisher(t, m, true), m)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c := srv.newConn(nil, "conn-1", testHubName, "u", tr)
	c.startWriter()
	t.Cleanup(func() {
		c.cancel()
		<-c.writerEnded()
	})
	return c
}

func frameN(i int) []byte {
	return appendInvocation(nil, "t", []byte("["+strconv.Itoa(i)+"]"), testEpoch+":1:"+strconv.Itoa(i))
}

func TestConn_Enqueue(t *testing.T) {
	t.Parallel()

	t.Run("overflow closes with allowReconnect", func(t *testing.T) {
		const maxQ = 3
		tr := newGateTransport(true)
		c := newUnitConn(t, maxQ, tr)
		if !c.enqueue(frameN(0), fsm.Cursor{}) {
			t.Fatal("first enqueue refused")
		}
		waitChan(t, "the writer to start writing", tr.entered) // stuck in write now
		for i := 1; i <= maxQ; i++ {
			if !c.enqueue(frameN(i), fsm.Cursor{}) {
				t.Fatalf("enqueue %d of %d refused", i, maxQ)
			}
		}
		noBlock(t, "enqueue on a full queue", func() {
			if c.enqueue(frameN(maxQ+1), fsm.Cursor{}) {
				t.Error("enqueue past MaxQueuedMessages accepted")
			}
			for i := range 1000 {
				if c.enqueue(frameN(maxQ+2+i), fsm.Cursor{}) {
					t.Error("enqueue on a closing connection accepted")
					return
				}
			}
		})
		close(tr.release)
		waitChan(t, "the transport to close", tr.closed)
		waitChan(t, "the writer to end", c.writerEnded())

		w := tr.written()
		if len(w) != 2 {
			t.Fatalf("wrote %d transport messages %q, want the first frame then the Close", len(w), w)
		}
		if !bytes.Equal(w[0], frameN(0)) {
			t.Errorf("first write %q, want %q", w[0], frameN(0))
		}
		want := `{"type":7,"error":"Connection closed: too slow to receive, more than 3 messages queued.","allowReconnect":true}` + "\x1e"
		if string(w[1]) != want {
			t.Errorf("last write %q, want %q", w[1], want)
		}
		if c.ctx.Err() == nil {
			t.Error("connection context still live after the writer ended")
		}
	})

	t.Run("queued frames are flushed in order", func(t *testing.T) {
		tr := newGateTransport(true)
		c := newUnitConn(t, 100, tr)
		var want []byte
		for i := range 50 {
			f := frameN(i)
			want = append(want, f...)
			if !c.enqueue(f, fsm.Cursor{}) {
				t.Fatalf("enqueue %d refused", i)
			}
		}
		close(tr.release)
		waitFor(t, "every frame to be written", func() bool {
			return len(bytes.Join(tr.written(), nil)) >= len(want)
		})
		if got := bytes.Join(tr.written(), nil); !bytes.Equal(got, want) {
			t.Fatalf("wrote %q, want %q", got, want)
		}
		for _, w := range tr.written() {
			if len(w) == 0 || w[len(w)-1] != recordSeparator {
				t.Fatalf("transport message %q does not end on a record boundary", w)
			}
		}
	})

	t.Run("close with flush sends the queue then Close", func(t *testing.T) {
		tr := newGateTransport(true)
		c := newUnitConn(t, 100, tr)
		c.enqueue(frameN(1), fsm.Cursor{})
		waitChan(t, "the writer to start writing", tr.entered)
		c.enqueue(frameN(2), fsm.Cursor{})
		c.close(disconnect{reason: "bye", flush: true})
		if c.enqueue(frameN(3), fsm.Cursor{}) {
			t.Error("enqueue after close accepted")
		}
		close(tr.release)
		waitChan(t, "the transport to close", tr.closed)
		got := string(bytes.Join(tr.written(), nil))
		want := string(frameN(1)) + string(frameN(2)) + `{"type":7,"error":"bye"}` + "\x1e"
		if got != want {
			t.Fatalf("wrote %q, want %q", got, want)
		}
	})

	t.Run("close without flush drops the queue", func(t *testing.T) {
		tr := newGateTransport(true)
		c := newUnitConn(t, 100, tr)
		c.enqueue(frameN(1), fsm.Cursor{})
		waitChan(t, "the writer to start writing", tr.entered)
		c.enqueue(frameN(2), fsm.Cursor{})
		c.close(disconnect{allowReconnect: true})
		close(tr.release)
		waitChan(t, "the transport to close", tr.closed)
		got := string(bytes.Join(tr.written(), nil))
		want := string(frameN(1)) + `{"type":7,"allowReconnect":true}` + "\x1e"
		if got != want {
			t.Fatalf("wrote %q, want %q", got, want)
		}
	})
}

// An idle connection holds no writer goroutine: the writer exists while
// there is something to write, and the node's keep-alive sweep starts one
// when a Ping is due.
func TestConn_IdleHasNoWriter(t *testing.T) {
	t.Parallel()
	tr := newGateTransport(false)
	c := newUnitConn(t, 100, tr, func(cfg *Config) { cfg.KeepAliveInterval = 50 * time.Millisecond })
	s := c.srv // the sweep alone, without the rest of Start
	s.mu.Lock()
	s.conns[c.id] = c
	s.mu.Unlock()
	s.wg.Add(2)
	go s.everyTick(s.keepAliveEvery(), s.sweeper(s.keepAliveSweep))
	go s.pingWorker()
	t.Cleanup(func() {
		close(s.stop)
		s.wg.Wait()
	})
	writing := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.writing
	}
	c.enqueue(frameN(1), fsm.Cursor{})
	waitFor(t, "the frame to be written and the writer to exit", func() bool {
		return len(tr.written()) >= 1 && !writing()
	})
	ping := `{"type":6}` + "\x1e"
	waitFor(t, "two keep-alive pings", func() bool {
		n := 0
		for _, w := range tr.written() {
			if string(w) == ping {
				n++
			}
		}
		return n >= 2
	})
	waitFor(t, "the writer to exit after the pings", func() bool { return !writing() })
	if w := tr.written(); !bytes.Equal(w[0], frameN(1)) {
		t.Fatalf("first write %q, want the frame", w[0])
	}
	c.cancel()
	waitChan(t, "the transport to close once the reader is gone", tr.closed)
	waitChan(t, "the writer to end", c.writerEnded())
}

// The sweep hands due connections to the ping workers; a client that does
// not read holds up its worker, and the others' Pings go out all the same,
// by a writer of their own once no worker takes them.
func TestKeepAliveSweep_StuckWorker(t *testing.T) {
	t.Parallel()
	stuck, fine := newGateTransport(true), newGateTransport(false)
	c1 := newUnitConn(t, 100, stuck)
	s := c1.srv
	c2 := s.newConn(nil, "conn-2", testHubName, "u", fine)
	c2.startWriter()
	t.Cleanup(func() {
		c2.cancel()
		<-c2.writerEnded()
	})
	long := time.Now().Add(-time.Hour)
	for _, c := range []*conn{c1, c2} {
		c.mu.Lock()
		c.lastWrite = long
		c.mu.Unlock()
	}
	s.wg.Add(1)
	go s.pingWorker() // one worker: c1's write will hold it
	t.Cleanup(func() {
		close(stuck.release) // lets the worker go, then stop
		close(s.stop)
		s.wg.Wait()
	})
	s.keepAliveSweep([]*conn{c1})
	waitChan(t, "the worker to be stuck in c1's write", stuck.entered)
	s.keepAliveSweep([]*conn{c2}) // no worker takes it within pingHandoff
	ping := `{"type":6}` + "\x1e"
	waitFor(t, "c2's Ping", func() bool {
		w := fine.written()
		return len(w) == 1 && string(w[0]) == ping
	})
	if n := len(stuck.written()); n != 0 {
		t.Fatalf("c1's blocked write completed (%d writes)", n)
	}
}

// With WriteDelay, a busy connection's messages share a write; a quiet one
// is written at once.
func TestConn_WriteDelayCoalesces(t *testing.T) {
	t.Parallel()
	tr := newGateTransport(false)
	c := newUnitConn(t, 100, tr, func(cfg *Config) { cfg.WriteDelay = 200 * time.Millisecond })
	c.mu.Lock()
	c.lastWrite = time.Now().Add(-time.Second) // quiet for longer than the delay
	c.mu.Unlock()
	c.enqueue(frameN(0), fsm.Cursor{})
	waitFor(t, "the first frame, at once", func() bool { return len(tr.written()) == 1 })
	for i := 1; i <= 4; i++ {
		c.enqueue(frameN(i), fsm.Cursor{})
	}
	waitFor(t, "the next four frames", func() bool {
		return len(bytes.Join(tr.written(), nil)) == len(bytes.Join([][]byte{frameN(0), frameN(1), frameN(2), frameN(3), frameN(4)}, nil))
	})
	w := tr.written()
	if len(w) != 2 {
		t.Fatalf("%d writes %q; want the first frame alone, then the four that came within the delay in one write", len(w), w)
	}
	if want := bytes.Join([][]byte{frameN(1), frameN(2), frameN(3), frameN(4)}, nil); !bytes.Equal(w[1], want) {
		t.Fatalf("second write %q, want %q", w[1], want)
	}
}

func TestUserIndex(t *testing.T) {
	a, b, c := &conn{id: "a"}, &conn{id: "b"}, &conn{id: "c"}
	m := map[string][]*conn{}
	ids := func() string {
		var s []string
		for _, x := range m["u"] {
			s = append(s, x.id)
		}
		return strings.Join(s, ",")
	}
	for _, step := range []struct {
		add  bool
		c    *conn
		want string
	}{
		{true, a, "a"}, {true, b, "a,b"}, {true, a, "a,b"}, {true, c, "a,b,c"},
		{false, a, "c,b"}, {false, a, "c,b"}, {false, b, "c"}, {false, c, ""},
	} {
		if step.add {
			addUserConn(m, "u", step.c)
		} else {
			removeUserConn(m, "u", step.c)
		}
		if got := ids(); got != step.want {
			t.Fatalf("after %v %s: %q, want %q", step.add, step.c.id, got, step.want)
		}
	}
	if _, ok := m["u"]; ok {
		t.Fatal("a user with no connections is still in the index")
	}
}
