package hub

import "time"

// Writer goroutines. A connection's messages are written by a drain
// goroutine that runs only while the connection has something to write
// (conn.go: kickLocked, and the keep-alive sweep when its ping workers are
// held up). Under fan-out every batch the dispatcher hands out
// touches most connections, and a new goroutine per connection per batch
// costs more than its write's bookkeeping: its stack starts small and is
// grown, by copying, on the way down to write(2), every time (about 5% of a
// node's CPU at 1,000 deliveries per connection per second, as much as all
// of Go's scheduling). So a writer that finished one connection stays, for
// writerIdle, to run the next connection's drain: kicks hand their
// connection to a waiting writer when there is one and start a new writer
// only when there is none. The handoff never blocks, so a kick under c.mu
// stays cheap; a connection is drained by at most one writer at a time as
// before (conn.writing).

// writerIdle is how long a writer with nothing to do waits for another
// connection before it ends (between one and two of these, as its timer is
// set once per period). Idle writers cost a grown stack each (a few KB); a
// node with no traffic keeps none after that.
const writerIdle = time.Second

// startDrain has c drained by a waiting writer, or by a new one. The
// caller has made itself c's writer (claimWriterLocked).
func (s *Server) startDrain(c *conn) {
	select {
	case s.writers <- c:
	default:
		s.writersStarted.Add(1)
		go s.writer(c)
	}
}

// writer drains c, then the connections handed to it, until it has waited
// writerIdle for one or the server stops. Its timer is set once per idle
// period, not per connection: when it fires, a writer that drained
// something since the last time sets it again.
func (s *Server) writer(c *conn) {
	c.drain()
	t := time.NewTimer(writerIdle)
	defer t.Stop()
	worked := false
	for {
		select {
		case c = <-s.writers:
			c.drain()
			worked = true
		case <-t.C:
			if !worked {
				return
			}
			worked = false
			t.Reset(writerIdle)
		case <-s.stop:
			return
		}
	}
}
