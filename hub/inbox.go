package hub

import "sync"

// inbox hands a connection's incoming bytes from its reader to a handler
// goroutine that exists only while there is something to handle, as the
// writer exists only while something is due.
//
// Why: an idle connection is a goroutine parked in its read, and the
// runtime keeps that goroutine's stack at the largest size it ever needed
// (it halves a stack only at a collection, and only when under a quarter
// of it is in use, which a goroutine parked in a read never is once it has
// 4 KB). Splitting and handling a message (parse, authorize, submit to the
// log, answer) takes a stack to 8 KB; reading one fits in the 2 KB a
// goroutine starts with. So the reader only reads, on a goroutine started
// after the handshake (serveWebSocket), and the splitting and handling run
// here: an idle connection holds a 2 KB stack instead of 8 KB.
//
// Order is kept: one handler at a time takes the queue in the order the
// reader filled it. The reader may read ahead of the handler by at most
// MaxMessageSize bytes; past that it waits, so that a connection whose
// handling blocks (a full pipeline, a slow upstream) stops reading, as it
// did when it handled on its own goroutine.
type inbox struct {
	mu sync.Mutex
	// wake wakes the waits (waitLocked) when the handler takes the queue
	// or stops: a channel only while someone waits, rather than a
	// sync.Cond kept for the connection's life.
	wake wakeup
	// q is what the reader queued for the handler: lent from inboxQueues
	// while the connection has something to handle, nil when idle.
	q       *inboxQueue
	bytes   int
	running bool // a handler goroutine is running

	// split turns the chunks into records; set before the first chunk, then
	// used by the handler only (one at a time, in order). The handler gives
	// it back to the server's pool for the protocol when it ends with the
	// splitter resting (no record half read: any resting splitter splits
	// what follows alike) and takes one at the next chunk: an idle
	// connection holds no splitter (the JSON one is 400 bytes, and keeps
	// the buffer of the last record that came in pieces).
	split splitter
	// broken: the stream could not be resynchronised (badFraming): what
	// follows is dropped.
	broken bool
}

// inboxItem is a chunk of the client's bytes or, for what came in the
// handshake's frame, a record already split.
type inboxItem struct {
	p      []byte
	record bool
	info   recordInfo
}

// inboxQueue is a queue array, boxed so that lending it from inboxQueues
// and giving it back allocates nothing.
type inboxQueue struct{ items []inboxItem }

// inboxQueues lends the inboxes their queues: an idle connection keeps
// none, and one that wakes for a keep-alive Ping now and then takes one
// back from here instead of making a new one each time, which left a
// connection's every incoming message as garbage and, with the collector
// idle too, grew an idle node's memory.
var inboxQueues = sync.Pool{New: func() any { return new(inboxQueue) }}

// putQueue gives q back to inboxQueues, empty; a queue grown past a burst's
// size goes to the collector instead.
func putQueue(q *inboxQueue) {
	if cap(q.items) > 256 {
		return
	}
	clear(q.items) // the chunks are the handler's to let go
	q.items = q.items[:0]
	inboxQueues.Put(q)
}

// receive queues a copy of chunk p (the transport reuses its buffer) for the
// handler.
func (c *conn) receive(p []byte) {
	c.put(inboxItem{p: append([]byte(nil), p...)})
}

// put queues it and starts the handler when none is running. It waits
// while MaxMessageSize bytes are already queued.
func (c *conn) put(it inboxItem) {
	in := &c.in
	in.mu.Lock()
	for in.bytes > 0 && in.bytes+len(it.p) > c.srv.cfg.MaxMessageSize && c.ctx.Err() == nil {
		in.waitLocked()
	}
	if in.q == nil {
		in.q = inboxQueues.Get().(*inboxQueue)
	}
	in.q.items = append(in.q.items, it)
	in.bytes += len(it.p)
	if !in.running {
		in.running = true
		go c.handleInbox()
	}
	in.mu.Unlock()
}

// handleInbox splits and handles what is queued, in order, until the queue
// is empty, then ends. It is the only caller of handleRecord while it runs.
func (c *conn) handleInbox() {
	in := &c.in
	var batch *inboxQueue // the queue the handler works through
	for {
		in.mu.Lock()
		if in.q == nil || len(in.q.items) == 0 {
			in.running = false
			if in.q != nil {
				putQueue(in.q) // an idle connection keeps no queue
				in.q = nil
			}
			if in.split != nil && in.split.resting() {
				c.srv.splitters(c.proto).Put(in.split)
				in.split = nil
			}
			in.wake.wakeLocked()
			in.mu.Unlock()
			if batch != nil {
				putQueue(batch)
			}
			return
		}
		// The handled queue goes back to the reader; nil makes put take
		// one from the pool.
		batch, in.q = in.q, batch
		in.bytes = 0
		in.wake.wakeLocked()
		in.mu.Unlock()
		for i := range batch.items {
			c.handleItem(batch.items[i])
			batch.items[i] = inboxItem{}
		}
		batch.items = batch.items[:0]
	}
}

// handleItem handles one queued item.
func (c *conn) handleItem(it inboxItem) {
	in := &c.in
	switch {
	case in.broken:
	case it.record:
		c.handleRecord(it.p, it.info)
	default:
		if in.split == nil {
			in.split = c.srv.splitters(c.proto).Get().(splitter)
		}
		in.split.feed(it.p, c.handleRecord)
		if err := splitErr(in.split); err != nil {
			in.broken = true
			c.srv.badFraming(c, err)
		}
	}
}

// awaitInbox waits until everything queued has been handled: the reader's
// last step before the connection ends, so that what the client sent
// before it went away is handled as it was read (an ended connection's
// handleRecord returns at once).
func (c *conn) awaitInbox() {
	in := &c.in
	in.mu.Lock()
	for in.running {
		in.waitLocked()
	}
	in.mu.Unlock()
}

// waitLocked waits, with in.mu held, until the handler takes the queue or
// stops (in.wake); the caller checks again what it waits for.
func (in *inbox) waitLocked() {
	wake := in.wake.chanLocked()
	in.mu.Unlock()
	<-wake
	in.mu.Lock()
}
