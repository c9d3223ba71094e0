package hub

import (
	"context"

	"github.com/raftplane/raftplane/fsm"
	"log/slog"
	"strconv"
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
	log   *slog.Logger

	ctx    context.Context // ends when the connection ends
	cancel context.CancelFunc

	mu       sync.Mutex
	queue    []outFrame
	closing  bool
	flush    bool   // on closing, send what is queued first
	closeMsg []byte // the hub Close message sent last, if any
	wake     chan struct{}

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
	attached   chan struct{} // closed by the dispatcher when ConnOpen applies
	opened     atomic.Bool   // ConnOpen committed: a ConnClose is owed
	removed    atomic.Bool   // ConnClose applied: nothing is owed
	writerDone chan struct{}

	groups map[string]struct{} // owned by the dispatcher goroutine
}

func (s *Server) newConn(id, hub, user string, tr transport) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		srv:        s,
		id:         id,
		hub:        hub,
		user:       user,
		proto:      jsonProtocol{},
		tr:         tr,
		log:        s.log.With("conn", id, "hub", hub),
		ctx:        ctx,
		cancel:     cancel,
		wake:       make(chan struct{}, 1),
		openID:     "open:" + newConnectionID(),
		attached:   make(chan struct{}),
		writerDone: make(chan struct{}),
	}
}

// setProtocol sets the hub protocol the handshake chose (MessagePack: see
// msgpack.go). It is called before the connection is attached and before
// its writer starts; c.mu orders it with closeWith during the handshake.
func (c *conn) setProtocol(p protocol) {
	c.mu.Lock()
	c.proto = p
	c.mu.Unlock()
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
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
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	if len(c.queue) >= c.srv.cfg.MaxQueuedMessages {
		c.closing = true
		c.queue = nil
		c.closeMsg = c.proto.appendClose(nil, "Connection closed: too slow to receive, more than "+
			strconv.Itoa(c.srv.cfg.MaxQueuedMessages)+" messages queued.", true)
		c.mu.Unlock()
		c.log.Warn("closing slow connection", "queued", c.srv.cfg.MaxQueuedMessages)
		c.signal()
		return false
	}
	c.queue = append(c.queue, outFrame{frame, at})
	c.mu.Unlock()
	c.signal()
	return true
}

// isClosing reports whether the server has started closing the connection.
func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// closeWith asks the writer to send a Close message and end the transport.
// With flush, what is already queued goes out first.
func (c *conn) closeWith(errMsg string, allowReconnect, flush bool) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.flush = flush
	if !flush {
		c.queue = nil
	}
	c.closeMsg = c.proto.appendClose(nil, errMsg, allowReconnect)
	c.mu.Unlock()
	c.signal()
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
	c.mu.Unlock()
	c.signal()
}

// writeLoop owns every write to the transport after the handshake. It
// coalesces queued hub messages into transport messages, sends keep-alive
// pings, and ends the transport when the connection closes.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	defer c.cancel()
	ka := c.srv.cfg.KeepAliveInterval
	timer := time.NewTimer(ka)
	defer timer.Stop()
	var ackC <-chan time.Time
	if c.sr != nil {
		t := time.NewTicker(statefulAckInterval)
		defer t.Stop()
		ackC = t.C
		if c.resume == nil {
			// See stateful.spoke.
			select {
			case <-c.sr.spoke:
			case <-time.After(statefulHold):
			case <-c.ctx.Done():
			}
		}
	}
	var buf []byte
	for {
		ping := false
		select {
		case <-c.wake:
		case <-timer.C:
			ping = true
		case <-ackC:
			if buf = c.statefulAck(buf[:0]); len(buf) > 0 {
				if err := c.tr.write(buf); err != nil {
					_ = c.tr.close()
					return
				}
			}
			continue
		case <-c.ctx.Done():
			// The reader is gone: the transport is dead or the client left.
			_ = c.tr.close()
			return
		}
		c.mu.Lock()
		q := c.queue
		c.queue = nil
		closing, flush, closeMsg := c.closing, c.flush, c.closeMsg
		c.mu.Unlock()
		if closing && !flush {
			q = nil
		}
		wrote := false
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
				c.log.Debug("write failed", "err", err)
				_ = c.tr.close()
				return
			}
			wrote = true
		}
		if closing {
			if closeMsg != nil {
				_ = c.tr.write(closeMsg)
			}
			_ = c.tr.close()
			return
		}
		if ping && !wrote {
			if err := c.tr.write(c.proto.appendPing(buf[:0])); err != nil {
				_ = c.tr.close()
				return
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(ka)
	}
}
