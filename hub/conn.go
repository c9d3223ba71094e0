package hub

import (
	"net/http"

	"github.com/raftplane/raftplane/fsm"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// transport carries a connection's outgoing frames. Only the connection's
// writer goroutine calls write; close is called once, by the same goroutine.
// Reading is the transport handler's own business, so it is not here.
type transport interface {
	// write sends one transport message holding whole hub messages.
	write(p []byte) error
	// close ends the transport (a clean close where the transport has one).
	close() error
}

// maxCoalesce bounds how many queued bytes one transport message carries.
const maxCoalesce = 64 << 10

// conn is one client connection on this node.
type conn struct {
	srv   *Server
	id    string
	hub   string
	user  string
	proto protocol
	tr    transport

	ctx *connContext // ends when the connection ends (c.cancel)

	mu    sync.Mutex
	queue []outFrame
	// queuedBytes counts the bytes in queue, inflight those of the batch
	// the writer took and is writing: together they are what the
	// connection holds, bounded by MaxQueuedBytes.
	queuedBytes int
	inflight    int
	closing     bool
	endReason   endCause // stats.go: why the server ended it, if it said
	flush       bool     // on closing, send what is queued first
	closeMsg    []byte   // the hub Close message sent last, if any
	// the writer (see startWriter); all under mu
	writing    bool // someone owns the transport
	ended      bool // the transport is closed for good
	readerGone bool
	// closeOnCancel: the serving goroutine owns the transport and may be
	// blocked reading it; ending the connection closes it
	closeOnCancel bool
	holding       bool // a new stateful connection waits for its client's first message
	pingDue       bool
	ackDue        bool
	lastWrite     time.Time
	// handedAt is when the dispatcher handed the queued messages to the
	// writer (kickTouched), zero once the writer took them: the write
	// stage's start (Stats.WriteLatency).
	handedAt  time.Time
	keepAlive bool // under the keep-alive sweep: the writer has started
	ackTimer  *time.Timer
	holdTimer *time.Timer

	// noHeaders: the client cannot take hub message headers, so its
	// Invocations go without the cursor header (cursorHeader).
	noHeaders bool
	// claims are the client's (its JWT's, or what the hub's Authenticate
	// returned; nil in dev mode); expires is its token's exp (authz.go
	// closes the connection then; zero: never).
	claims  map[string]any
	expires time.Time
	// query is the client's query, for the upstream (upstream.go).
	query string

	handshaking atomic.Bool // until the handshake response is written
	goodbye     atomic.Bool // the client closed cleanly: no resume expected
	resume      *resumeReq  // set for a cursor resume
	// sr is set on a stateful-reconnect connection (stateful.go);
	// statefulOK says its token was negotiated with useStatefulReconnect.
	sr         *stateful
	statefulOK bool

	// openID is the id of the ConnOpen or ConnResume this transport
	// publishes: the dispatcher attaches it at that entry only. An earlier
	// transport of the same connection may have published one that is
	// applied late (it timed out during a partition, say); attaching at
	// that one would deliver twice what the replay also sends.
	openID     string
	attached   signal      // fired by the dispatcher when ConnOpen applies; under mu
	opened     atomic.Bool // ConnOpen committed: a ConnClose is owed
	removed    atomic.Bool // ConnClose applied: nothing is owed
	writerDone signal      // fired when the writer has ended the transport; under mu

	// parallel, when MaxParallelInvocations > 1 (and not a stateful
	// connection), holds a token per invocation running; invocations
	// counts them so the connection's end waits for them.
	parallel    chan struct{}
	invocations sync.WaitGroup
	// pipe is the connection's ordered pipeline (pipeline.go), made at its
	// first pipelined invocation; the handler (inbox.go) owns the field.
	pipe *pipeline
	// in carries the client's messages from the reader to the handler.
	in inbox

	groups  groupSet // owned by the dispatcher goroutine
	touched bool     // in Server.touched; owned by the dispatcher goroutine
}

func (s *Server) newConn(r *http.Request, id, hub, user string, tr transport) *conn {
	ident := identityOf(r)
	c := &conn{
		noHeaders: refusesHeaders(r),
		claims:    ident.claims,
		expires:   ident.expires,
		query:     s.clientQuery(r),
		srv:       s,
		// Copies: these may be substrings of the request line (the path's
		// hub, the query's user or id), which they would keep whole for the
		// connection's life (about 250 bytes).
		id:      strings.Clone(id),
		hub:     strings.Clone(hub),
		user:    strings.Clone(user),
		proto:   jsonProtocol{},
		tr:      tr,
		ctx:     &connContext{},
		writing: true, // the serving goroutine's until startWriter
		openID:  "open:" + newConnectionID(),
	}
	return c
}

// cancel ends the connection: c.ctx, then cancelled. Any goroutine may call
// it, any number of times.
func (c *conn) cancel() {
	c.ctx.cancel()
	c.cancelled()
}

// logger returns the connection's logger. It is made on demand: kept in
// every connection, its preformatted attributes would cost each one memory
// for its whole life, for messages that are rare.
func (c *conn) logger() *slog.Logger { return c.srv.log.With("conn", c.id, "hub", c.hub) }

// setProtocol sets the hub protocol the handshake chose (MessagePack: see
// msgpack.go). It is called before the connection is attached and before
// its writer starts; c.mu orders it with close during the handshake.
func (c *conn) setProtocol(p protocol) {
	c.mu.Lock()
	c.proto = p
	c.mu.Unlock()
}

// outFrame is one queued hub message and the cursor of the entry it comes
// from (stateful reconnect numbers them; zero for others).
type outFrame struct {
	b  []byte
	at fsm.Cursor
}

// enqueue queues an encoded hub message from the entry at at. It never
// blocks: a connection whose queue is full is closed with allowReconnect,
// so it can come back and catch up.
func (c *conn) enqueue(frame []byte, at fsm.Cursor) bool {
	return c.enqueueKick(frame, at, true)
}

// enqueueKick is enqueue; without kick the writer is not started, and the
// caller calls kick later (the dispatcher, once per batch of entries, so
// that what a batch brings a connection goes out as one write).
func (c *conn) enqueueKick(frame []byte, at fsm.Cursor, kick bool) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	held := c.queuedBytes + c.inflight
	overBytes := c.srv.cfg.MaxQueuedBytes > 0 && held > 0 && held+len(frame) > c.srv.cfg.MaxQueuedBytes
	if len(c.queue) >= c.srv.cfg.MaxQueuedMessages || overBytes {
		kind, limit, unit := limitQueuedMessages, c.srv.cfg.MaxQueuedMessages, "messages"
		if overBytes {
			kind, limit, unit = limitQueuedBytes, c.srv.cfg.MaxQueuedBytes, "bytes"
		}
		c.closeLocked(disconnect{reason: "Connection closed: too slow to receive, more than " +
			strconv.Itoa(limit) + " " + unit + " queued.", allowReconnect: true, cause: endSlow})
		c.mu.Unlock()
		c.srv.lim.refused[kind].Add(1) // limits.go
		// Logged outside the lock: the dispatcher is the caller.
		c.logger().Warn("closing slow connection", "limit", limitNames[kind], "value", limit)
		return false
	}
	defer c.mu.Unlock()
	if c.queue == nil {
		c.queue = takeQueue()
	}
	c.queue = append(c.queue, outFrame{frame, at})
	c.queuedBytes += len(frame)
	if kick {
		c.kickLocked()
	}
	return true
}

// isClosing reports whether the server has started closing the connection.
func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// disconnect is how the server ends a connection (centrifuge's
// Disconnect): the Close message's error and allowReconnect, whether what
// is already queued goes out first, and the cause the stats count it under
// (endNone: whatever was recorded before, if anything).
type disconnect struct {
	// reason is wire text: the client shows it, in ASP.NET Core's wording
	// (capitals, full stop).
	reason         string
	allowReconnect bool
	flush          bool
	cause          endCause
}

// close asks the writer to send d's Close message and end the transport,
// unless the connection is closing already.
func (c *conn) close(d disconnect) {
	c.mu.Lock()
	c.closeLocked(d)
	c.mu.Unlock()
}

// closeLocked is close with c.mu held.
func (c *conn) closeLocked(d disconnect) {
	if c.closing {
		return
	}
	c.markEndLocked(d.cause) // stats.go
	c.closing = true
	c.flush = d.flush
	if !d.flush {
		c.queue, c.queuedBytes = nil, 0
	}
	c.closeMsg = c.proto.appendClose(nil, d.reason, d.allowReconnect)
	c.kickLocked()
}

// dropAfterFlush ends the connection after what is queued, with no Close
// message and, on a WebSocket, no close frame (stateful reconnect).
func (c *conn) dropAfterFlush() {
	if t, ok := c.tr.(interface{ dropAbruptly() }); ok {
		t.dropAbruptly()
	}
	c.mu.Lock()
	if !c.closing {
		c.closing, c.flush, c.closeMsg = true, true, nil
	}
	c.kickLocked()
	c.mu.Unlock()
}

// The writer. At most one goroutine writes to a connection's transport at a
// time, and only while there is something to write: an idle connection has
// no writer goroutine (the node's keep-alive sweep and its acknowledgement
// timer start one when due). c.writing says that someone owns the transport: the serving
// goroutine until startWriter (handshake, replay), then a writer running
// drain (writers.go: started, or taken from those waiting, by kickLocked)
// while it runs. Whoever sets it owns the transport until it clears it.

// startWriter hands the transport over from the serving goroutine to the
// writer, puts the connection under the node's keep-alive sweep
// (keepAliveSweep) and arms its stateful-reconnect timers.
func (c *conn) startWriter() {
	c.mu.Lock()
	c.lastWrite = time.Now()
	c.keepAlive = true
	if c.sr != nil {
		c.ackTimer = time.AfterFunc(statefulAckInterval, c.ackTick)
		if c.resume == nil {
			select {
			case <-c.sr.spoke:
			default:
				// See stateful.spoke.
				c.holding = true
				c.holdTimer = time.AfterFunc(statefulHold, c.endHold)
			}
		}
	}
	c.writing = false
	c.kickLocked()
	c.mu.Unlock()
}

// cancelled runs on every cancel: the connection is over. Before the
// writer owns the transport (closeOnCancel armed) it closes the transport
// to unblock the handshake's read; after, it has the writer end the
// transport once it is done with what it is writing. (Called by cancel
// rather than registered with context.AfterFunc: a registration that lasts
// the connection's life would cost it memory for its whole life.)
func (c *conn) cancelled() {
	c.mu.Lock()
	closeNow := c.closeOnCancel
	c.closeOnCancel = false
	c.readerGone = true
	c.kickLocked()
	c.mu.Unlock()
	if closeNow {
		_ = c.tr.close()
	}
}

// armCloseOnCancel makes the connection's end close the transport until
// disarmCloseOnCancel; on an ended connection it closes it at once.
func (c *conn) armCloseOnCancel() {
	c.mu.Lock()
	ended := c.ctx.Err() != nil
	c.closeOnCancel = !ended
	c.mu.Unlock()
	if ended {
		_ = c.tr.close()
	}
}

// disarmCloseOnCancel reports whether it disarmed it before the connection
// ended (false: the transport is closed or closing).
func (c *conn) disarmCloseOnCancel() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok := c.closeOnCancel
	c.closeOnCancel = false
	return ok
}

// kickLocked has a writer drain c if there is work and no one owns the
// transport. c.mu is held.
func (c *conn) kickLocked() {
	if c.claimWriterLocked() {
		c.srv.startDrain(c) // writers.go
	}
}

// claimWriterLocked makes the caller the connection's writer if there is
// work and no one owns the transport: it must then run drain. c.mu is held.
func (c *conn) claimWriterLocked() bool {
	if c.writing || c.ended {
		return false
	}
	work := c.closing || c.readerGone || c.pingDue || c.ackDue || (len(c.queue) > 0 && !c.holding)
	if !work {
		return false
	}
	c.writing = true
	return true
}

// keepAliveSweep has a Ping sent on every local connection that has
// written nothing for KeepAliveInterval. One sweep for the node rather than
// a timer per connection, which would cost every idle connection about
// 200 bytes for its whole life. Start runs it four times per interval
// (keepAliveEvery), so a Ping goes out between one and 1.25 intervals after
// the last write (well within ClientTimeout, which Validate keeps above the
// interval).
//
// The Pings are written by pingWorkers goroutines that the sweep hands
// the connections to, not by a writer goroutine each: on a node of idle
// connections every one of them is due in the same sweep, and as many
// writers at once meant as many goroutines, each with its stack, for a
// moment; the runtime keeps every goroutine's descriptor for good and the
// stacks' memory until the scavenger returns it. A worker writes one
// connection at a time, so a client that does not read holds up its
// worker: when none takes a connection within pingHandoff, the rest of
// the sweep starts a writer per connection as before, and a few stuck
// clients cannot hold back everyone's Pings for more than that.
func (s *Server) keepAliveSweep(conns []*conn) {
	now := time.Now()
	var late *time.Timer
	direct := false
	for _, c := range conns {
		if !c.pingIfIdle(now, s.cfg.KeepAliveInterval) {
			continue
		}
		if direct {
			s.startDrain(c) // writers.go
			continue
		}
		select {
		case s.pings <- c:
			continue
		default:
		}
		// A worker is writing: wait for one, up to pingHandoff each time.
		if late == nil {
			late = time.NewTimer(pingHandoff)
			defer late.Stop()
		} else {
			late.Reset(pingHandoff) // since Go 1.23 no stale tick survives a Reset
		}
		select {
		case s.pings <- c:
		case <-late.C:
			direct = true
			s.startDrain(c)
		case <-s.stop:
			direct = true
			s.startDrain(c)
		}
	}
}

// pingWorkers is how many goroutines write the sweep's Pings, and
// pingHandoff how long a sweep waits for one of them before it starts a
// writer per connection for the rest.
const (
	pingWorkers = 8
	pingHandoff = 100 * time.Millisecond
)

// pingWorker writes the Pings (and whatever else is due) of the
// connections the sweep hands it, until the server stops. Start runs
// pingWorkers of them.
func (s *Server) pingWorker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case c := <-s.pings:
			c.drain()
		}
	}
}

// keepAliveEvery is how often keepAliveSweep runs.
func (s *Server) keepAliveEvery() time.Duration {
	return max(s.cfg.KeepAliveInterval/4, time.Millisecond)
}

// pingIfIdle marks a Ping due when nothing was written for ka, and
// reports whether the caller became the connection's writer (it must run
// drain); false when a writer is running already (it writes the Ping) or
// nothing is due.
func (c *conn) pingIfIdle(now time.Time, ka time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || !c.keepAlive || now.Sub(c.lastWrite) < ka {
		return false
	}
	c.pingDue = true
	return c.claimWriterLocked()
}

func (c *conn) ackTick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.ackDue = true
	c.kickLocked()
	c.ackTimer.Reset(statefulAckInterval)
}

// endHold lets a new stateful connection's messages go out.
func (c *conn) endHold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		c.holding = false
		c.kickLocked()
	}
}

// queues lends connections their send queues while they have messages
// queued: an idle connection holds none, a busy one does not grow a new
// one for every batch.
var queues = sync.Pool{New: func() any { q := make([]outFrame, 0, 16); return &q }}

// queueBoxes keeps the boxes queues hands its arrays out in, so that giving
// an array back allocates no new box: an idle connection's every
// keep-alive write otherwise left one behind.
var queueBoxes sync.Pool

// takeQueue takes an empty queue from queues.
func takeQueue() []outFrame {
	bp := queues.Get().(*[]outFrame)
	q := (*bp)[:0]
	*bp = nil
	queueBoxes.Put(bp)
	return q
}

// recycleQueue gives a drained queue back to queues.
func recycleQueue(q []outFrame) {
	if cap(q) == 0 || cap(q) > 1<<14 {
		return
	}
	clear(q[:cap(q)]) // the frames are shared with other connections: let them go
	bp, _ := queueBoxes.Get().(*[]outFrame)
	if bp == nil {
		bp = new([]outFrame)
	}
	*bp = q[:0]
	queues.Put(bp)
}

// writeBufs lends drain its coalescing buffers.
var writeBufs = sync.Pool{New: func() any { return new([]byte) }}

// drain writes what is due until nothing is, coalescing queued hub messages
// into transport messages of up to maxCoalesce bytes, then gives the
// transport back; or ends the transport when the connection is over.
func (c *conn) drain() {
	bp := writeBufs.Get().(*[]byte)
	defer func() {
		// A transport message passes maxCoalesce by at most one hub message,
		// so this keeps every buffer but those of rare giant messages.
		if cap(*bp) <= 4*maxCoalesce {
			writeBufs.Put(bp)
		}
	}()
	for {
		w, wait, step := c.takeDue()
		switch step {
		case stepEnd:
			c.end()
			return
		case stepIdle:
			return
		case stepWait:
			// Busy: let more messages join this write (Config.WriteDelay).
			time.Sleep(wait)
			continue
		}
		if !c.writeDue(w, bp) {
			return
		}
	}
}

// drainStep is what one round of drain does.
type drainStep uint8

const (
	stepWrite drainStep = iota // write what takeDue took
	stepWait                   // wait for more messages, then look again
	stepIdle                   // nothing is due: the transport was given back
	stepEnd                    // the reader is gone: end the connection
)

// dueWork is what one round of drain took from the connection.
type dueWork struct {
	q         []outFrame // the queued messages (none while held)
	closing   bool
	flush     bool   // on closing, write q first
	closeMsg  []byte // on closing, the Close message, if any
	ping, ack bool   // a keep-alive, a stateful ack is due
	handedAt  time.Time
}

// takeDue takes under c.mu what one round of drain writes, and says what
// the round does.
func (c *conn) takeDue() (dueWork, time.Duration, drainStep) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readerGone {
		return dueWork{}, 0, stepEnd
	}
	if d := c.srv.cfg.WriteDelay; d > 0 && len(c.queue) > 0 && !c.holding && !c.closing {
		if wait := d - time.Since(c.lastWrite); wait > 0 {
			return dueWork{}, wait, stepWait
		}
	}
	var w dueWork
	if !c.holding || c.closing {
		w.q, c.queue = c.queue, nil
		c.inflight, c.queuedBytes = c.queuedBytes, 0
		w.handedAt, c.handedAt = c.handedAt, time.Time{}
	}
	w.closing, w.flush, w.closeMsg = c.closing, c.flush, c.closeMsg
	w.ping, w.ack = c.pingDue, c.ackDue
	c.pingDue, c.ackDue = false, false
	if len(w.q) == 0 && !w.closing && !w.ping && !w.ack {
		c.writing = false
		return w, 0, stepIdle
	}
	return w, 0, stepWrite
}

// writeDue writes one round's work with the buffer *bp, and reports
// whether the connection goes on (false: it ended).
func (c *conn) writeDue(w dueWork, bp *[]byte) bool {
	q := w.q
	if w.closing && !w.flush {
		q = nil
	}
	buf := (*bp)[:0]
	wrote := false
	if w.ack {
		if buf = c.statefulAck(buf); len(buf) > 0 {
			if err := c.tr.write(buf); err != nil {
				c.end()
				return false
			}
			wrote = true
		}
	}
	if len(q) > 0 {
		var err error
		if buf, err = c.writeFrames(buf, q); err != nil {
			c.logger().Debug("write failed", "err", err)
			c.end()
			return false
		}
		wrote = true
	}
	c.srv.stats.wrote(c, w.q, w.closing && !w.flush) // stats.go
	recycleQueue(w.q)
	*bp = buf
	if w.closing {
		if w.closeMsg != nil {
			_ = c.tr.write(w.closeMsg)
		}
		c.end()
		return false
	}
	if w.ping && !wrote {
		if err := c.tr.write(c.proto.appendPing(buf[:0])); err != nil {
			c.end()
			return false
		}
		wrote = true
	}
	if wrote || len(w.q) > 0 {
		now := time.Now()
		if len(q) > 0 && !w.handedAt.IsZero() {
			c.srv.stats.writeLat.Observe(now.Sub(w.handedAt)) // stats.go
		}
		c.mu.Lock()
		if wrote {
			c.lastWrite = now
		}
		c.inflight = 0 // the batch is written
		c.mu.Unlock()
	}
	return true
}

// writeFrames writes the hub messages of q, coalesced into transport
// messages of up to maxCoalesce bytes (never splitting one: a larger
// message goes alone), built in buf, which it returns grown. Only the
// writer calls it.
func (c *conn) writeFrames(buf []byte, q []outFrame) ([]byte, error) {
	for len(q) > 0 {
		buf = buf[:0]
		for len(q) > 0 && (len(buf) == 0 || len(buf)+len(q[0].b) <= maxCoalesce) {
			buf = append(buf, q[0].b...)
			if c.sr != nil {
				c.sr.recordSent(q[0].at)
			}
			q = q[1:]
		}
		if err := c.tr.write(buf); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// end ends the transport and the connection; the writer owns the
// transport, and keeps it: no one writes to it again.
func (c *conn) end() {
	_ = c.tr.close()
	c.mu.Lock()
	c.ended = true
	c.queue, c.queuedBytes, c.inflight = nil, 0, 0
	for _, t := range []*time.Timer{c.ackTimer, c.holdTimer} {
		if t != nil {
			t.Stop()
		}
	}
	c.mu.Unlock()
	c.cancel()
	c.fire(&c.writerDone)
}

// wakeup wakes whoever waits, under a lock of its owner's: its channel
// is made by the first waiter and closed and dropped by wake, so that an
// owner nobody waits on keeps none (a channel is 96 bytes, and a
// connection has several such waits for its whole life: its inbox, its
// pipeline, its signals).
type wakeup struct{ ch chan struct{} }

// chanLocked returns the channel the next wake closes.
func (w *wakeup) chanLocked() <-chan struct{} {
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// wakeLocked wakes every waiter since the last wake.
func (w *wakeup) wakeLocked() {
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// signal is a one-time event (attached, writerDone) under a lock of its
// owner's: a wakeup that stays woken.
type signal struct {
	w     wakeup
	fired bool
}

// waitLocked returns a channel closed once the signal has fired.
func (s *signal) waitLocked() <-chan struct{} {
	if s.fired {
		return closedChan
	}
	return s.w.chanLocked()
}

// fireLocked fires the signal; only the first call does anything.
func (s *signal) fireLocked() {
	s.fired = true
	s.w.wakeLocked()
}

// fire fires one of c's signals.
func (c *conn) fire(s *signal) {
	c.mu.Lock()
	s.fireLocked()
	c.mu.Unlock()
}

// wait returns a channel closed once one of c's signals has fired.
func (c *conn) wait(s *signal) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return s.waitLocked()
}

// writerEnded returns a channel closed once the writer has ended the
// transport.
func (c *conn) writerEnded() <-chan struct{} { return c.wait(&c.writerDone) }
