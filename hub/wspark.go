package hub

import (
	"errors"
	"os"
	"sync/atomic"
	"time"
)

// An idle WebSocket keeps no goroutine. Its reader, having found nothing to
// read for Config.ReaderParkAfter (a busy connection's reader stays) and
// nothing buffered (wsidle.go: by gorilla or by us) nor in the socket,
// parks: it arms the
// socket in the server's poller (an epoll set of its own, wspark_linux.go)
// and ends. When the socket becomes readable, or its read deadline passes,
// or the transport is closed, the poller or the closer starts a new
// reader, which goes on where the old one stopped.
//
// Why: a goroutine parked in a read keeps a stack of at least 2 KB, the
// smallest the runtime makes, and the collector counts stacks in its goal,
// so each idle connection cost about 4 KB of a node's memory for its
// stack alone, a third of the whole. A parked connection keeps a parking
// (below) and a place in the poller's map.
//
// The read deadline (ClientTimeout) still holds: the poller wakes a reader
// whose deadline has passed, and the new reader's read fails with the
// deadline error the old one would have seen, so the client is told why
// as before (readEnded). A transport closed while its reader is parked
// (the writer's end, Server.Close, a stateful drop) wakes the reader
// itself (wsTransport.close), which reads the closed socket, fails, and
// ends the connection as a reader always has.

// parkTick is how often the poller looks for parked readers whose read
// deadline has passed: a tenth of the client timeout, at most a second, so
// that a silent client is timed out at most that late.
func parkTick(clientTimeout time.Duration) time.Duration {
	return max(min(clientTimeout/10, time.Second), time.Millisecond)
}

// Parking states.
const (
	parkRunning int32 = iota // a reader goroutine runs (or is being started)
	parkParked               // armed in the poller; no goroutine
)

// parking is a WebSocket reader's registration with the poller, made with
// the reader where it can park (claimUpgradeAs) and never replaced, so the
// transport's close can reach it from another goroutine.
type parking struct {
	state    atomic.Int32
	deadline atomic.Int64 // the read deadline (Unix nanoseconds) while parked
	id       uint32       // the poller's key for it
	fd       int          // the socket, while registered
	added    bool         // the socket is in the epoll set (poller.mu)
	released bool         // the transport closed: never armed again (poller.mu)
	p        *poller
	c        *conn
	r        *wsReader
	lastWait int64 // when the reader last waited (Unix nanoseconds); the reader's own
}

// wake takes pk from parked to running and starts its reader; it reports
// whether it did (another waker, or the reader itself, may have won).
func (s *Server) wake(pk *parking) bool {
	if !pk.state.CompareAndSwap(parkParked, parkRunning) {
		return false
	}
	go s.readWebSocketFrom(pk.c, pk.r, true)
	return true
}

// awaitReadable sets reader r's read deadline (ClientTimeout from now),
// waits until it has something to read, and parks it (parked: the caller
// ends, and a new reader continues) when nothing comes. A reader whose last message came
// less than ReaderParkAfter after the one before first waits that long in
// its socket: a busy connection's reader thus stays, and does not go
// through the poller for every message. One whose messages come further
// apart (an idle connection's keep-alive Pings) parks at once: it does not
// wait in the socket, whose timeout would cost a timer and an error value
// each time.
func (s *Server) awaitReadable(c *conn, r *wsReader) (parked bool, err error) {
	now := time.Now()
	deadline := now.Add(s.cfg.ClientTimeout)
	if r.park == nil || r.idle.buffered() {
		_ = r.ws.SetReadDeadline(deadline)
		return false, r.idle.wait() // at once when buffered
	}
	gap := now.UnixNano() - r.park.lastWait
	r.park.lastWait = now.UnixNano()
	linger := s.cfg.ReaderParkAfter
	if busy := linger > 0 && gap < int64(linger); busy && now.Add(linger).Before(deadline) {
		// Each deadline set once: the linger's, then the read's.
		_ = r.ws.SetReadDeadline(now.Add(linger))
		err := r.idle.wait()
		_ = r.ws.SetReadDeadline(deadline)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return false, err // readable, or the socket failed
		}
	} else {
		_ = r.ws.SetReadDeadline(deadline)
		if busy {
			return false, r.idle.wait() // the read deadline comes first
		}
	}
	if r.idle.readableNow() {
		return false, nil
	}
	r.park.c = c // read by wake only after arm's parked state, which follows
	if r.park.p.arm(r.park, r.idle, deadline) {
		return true, nil
	}
	return false, r.idle.wait()
}

// unpark is the transport's close telling the reader: a parked reader is
// started (it reads the closed socket and ends the connection), and the
// socket leaves the poller before it is closed, so that its number, reused
// by a new socket, cannot reach this connection.
func (r *wsReader) unpark() {
	if r == nil || r.park == nil {
		return
	}
	r.park.p.release(r.park)
	r.srv.wake(r.park)
}
