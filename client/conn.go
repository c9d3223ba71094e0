package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Message is a server invocation delivered to this connection: raftplane's
// way of handing over a message sent to all, a group, a user or this
// connection.
type Message struct {
	// Target is the client method the sender named.
	Target string
	// Arguments are the raw JSON arguments, one per element.
	Arguments []json.RawMessage
	// Cursor is the message's position in the stream ("cursor" header),
	// "" if the server sent none. See ParseCursor.
	Cursor string
}

// completion is what a pending Invoke receives.
type completion struct {
	result json.RawMessage
	errMsg *string // the Completion's error, if it had one
	err    error   // the connection ended first
}

// Conn is one SignalR connection. Its methods are safe for concurrent use.
type Conn struct {
	cfg  Config
	id   string
	ws   *websocket.Conn
	msgs chan Message

	quit       chan struct{} // closed by Close: stop reading and writing
	readerDone chan struct{} // closed when the reader has returned and the socket is closed
	done       chan struct{} // closed when every goroutine has returned

	// wsem is a one-slot semaphore that serialises writes; closeSent is
	// guarded by it.
	wsem      chan struct{}
	closeSent bool
	lastWrite atomic.Int64 // UnixNano of the last write

	mu         sync.Mutex
	pending    map[string]chan completion // nil once the connection ended
	nextID     uint64
	cause      error // why it ended; the first reason wins
	userClosed bool  // Close was called before any other reason

	closeOnce sync.Once
	closeErr  error
}

// start runs a handshaken connection. rest holds the hub messages that came
// with the handshake answer.
func start(cfg Config, id string, ws *websocket.Conn, rest []byte) *Conn {
	c := &Conn{
		cfg:        cfg,
		id:         id,
		ws:         ws,
		msgs:       make(chan Message, cfg.MessageBuffer),
		quit:       make(chan struct{}),
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
		wsem:       make(chan struct{}, 1),
		pending:    map[string]chan completion{},
	}
	c.lastWrite.Store(time.Now().UnixNano())
	kaDone := make(chan struct{})
	if cfg.KeepAliveInterval > 0 {
		go c.keepAlive(kaDone)
	} else {
		close(kaDone)
	}
	go c.run(rest, kaDone)
	return c
}

// ID returns the connectionId the server assigned: the id other clients and
// the REST API use to address this connection.
func (c *Conn) ID() string { return c.id }

// Messages returns the server invocations for this connection, in arrival
// order. The channel is closed when the connection ends. See the package
// documentation on backpressure.
func (c *Conn) Messages() <-chan Message { return c.msgs }

// Done returns a channel closed when the connection has ended and all its
// goroutines have returned.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err reports why the connection ended: a *CloseError when the server sent a
// Close message, the transport or timeout error, or nil if it is still up or
// ended because Close was called.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

// endErr is what calls on an ended connection return.
func (c *Conn) endErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return ErrClosed
}

// setCause records why the connection ends, unless a reason (or Close) came
// first.
func (c *Conn) setCause(err error) {
	c.mu.Lock()
	if c.cause == nil && !c.userClosed && err != nil {
		c.cause = err
	}
	c.mu.Unlock()
}

// fail ends the connection because of err: the socket is closed, which makes
// the reader return.
func (c *Conn) fail(err error) {
	c.setCause(err)
	_ = c.ws.Close()
}

// Invoke calls a hub method and waits for its Completion. It returns the
// raw result (nil for a void method), an *InvocationError when the server
// answered with an error, the connection's error (ErrClosed after Close)
// when the connection ended first, or ctx.Err().
func (c *Conn) Invoke(ctx context.Context, method string, args ...any) (json.RawMessage, error) {
	c.mu.Lock()
	if c.pending == nil || c.userClosed {
		c.mu.Unlock()
		return nil, c.endErr()
	}
	id := strconv.FormatUint(c.nextID, 10)
	c.nextID++
	c.mu.Unlock()
	rec, err := encodeInvocation(id, method, args)
	if err != nil {
		return nil, err
	}
	ch := make(chan completion, 1)
	c.mu.Lock()
	if c.pending == nil {
		c.mu.Unlock()
		return nil, c.endErr()
	}
	c.pending[id] = ch
	c.mu.Unlock()

	if err := c.write(ctx, rec); err != nil {
		c.forget(id)
		return nil, err
	}
	select {
	case r := <-ch:
		switch {
		case r.err != nil:
			return nil, r.err
		case r.errMsg != nil:
			return nil, &InvocationError{Method: method, Message: *r.errMsg}
		}
		return r.result, nil
	case <-ctx.Done():
		c.forget(id)
		return nil, ctx.Err()
	}
}

func (c *Conn) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// InvokeCursor invokes a method whose result is a string, as raftplane's
// built-in methods return the cursor of the command they committed.
func (c *Conn) InvokeCursor(ctx context.Context, method string, args ...any) (string, error) {
	res, err := c.Invoke(ctx, method, args...)
	if err != nil {
		return "", err
	}
	var s string
	if len(res) == 0 || json.Unmarshal(res, &s) != nil {
		return "", fmt.Errorf("client: %s: result %s is not a string", method, abbreviate(res))
	}
	return s, nil
}

// Send invokes a hub method without waiting: the Invocation has no
// invocation id, so the server sends no Completion and reports no error.
// It returns once the message is written.
func (c *Conn) Send(ctx context.Context, method string, args ...any) error {
	rec, err := encodeInvocation("", method, args)
	if err != nil {
		return err
	}
	return c.write(ctx, rec)
}

// write sends one transport message. ctx bounds the wait for the write slot;
// the write itself is bounded by writeTimeout, and a failed write ends the
// connection.
func (c *Conn) write(ctx context.Context, rec []byte) error {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.readerDone:
		return c.endErr()
	case <-c.quit:
		return ErrClosed
	}
	defer func() { <-c.wsem }()
	if c.closeSent {
		return ErrClosed
	}
	select {
	case <-c.readerDone:
		return c.endErr()
	default:
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.ws.WriteMessage(websocket.TextMessage, rec); err != nil {
		err = fmt.Errorf("client: write: %w", err)
		c.fail(err)
		return c.endErr()
	}
	c.lastWrite.Store(time.Now().UnixNano())
	return nil
}

// Close ends the connection: it sends a Close message and a WebSocket close
// frame, waits briefly for the server's answer, closes the socket and waits
// for the connection's goroutines. Pending Invokes fail with ErrClosed and
// Err stays nil, unless the connection had already ended for another reason.
// Close returns an error only if sending the Close message failed; it is
// idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.cause == nil {
			c.userClosed = true
		}
		c.mu.Unlock()
		c.closeErr = c.sendClose()
		close(c.quit)
		t := time.NewTimer(closeGrace)
		select {
		case <-c.readerDone:
		case <-t.C:
		}
		t.Stop()
		_ = c.ws.Close()
		<-c.done
	})
	return c.closeErr
}

// sendClose writes the Close message and the close frame, if the
// connection is still up.
func (c *Conn) sendClose() error {
	t := time.NewTimer(writeTimeout)
	defer t.Stop()
	select {
	case c.wsem <- struct{}{}:
	case <-c.readerDone:
		return nil
	case <-t.C:
		return errors.New("client: close: timed out waiting for a write in progress")
	}
	defer func() { <-c.wsem }()
	select {
	case <-c.readerDone:
		return nil
	default:
	}
	c.closeSent = true
	_ = c.ws.SetWriteDeadline(time.Now().Add(closeGrace))
	err := c.ws.WriteMessage(websocket.TextMessage, closeRecord)
	if err == nil {
		err = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	}
	if err != nil {
		select {
		case <-c.readerDone: // it ended meanwhile; nothing was lost
			return nil
		default:
		}
		return fmt.Errorf("client: close: %w", err)
	}
	return nil
}

// keepAlive sends a Ping whenever nothing was written for KeepAliveInterval.
func (c *Conn) keepAlive(done chan<- struct{}) {
	defer close(done)
	iv := c.cfg.KeepAliveInterval
	t := time.NewTimer(iv)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.readerDone:
			return
		case <-c.quit:
			return
		}
		idle := time.Since(time.Unix(0, c.lastWrite.Load()))
		if idle >= iv {
			if err := c.write(context.Background(), pingRecord); err != nil {
				return
			}
			idle = 0
		}
		t.Reset(iv - idle)
	}
}

// errQuit makes the reader return because Close was called.
var errQuit = errors.New("client: closing")

// run is the reader goroutine. When reading ends it records why, closes the
// socket, fails the pending Invokes, closes Messages, waits for the
// keep-alive goroutine and closes done.
func (c *Conn) run(rest []byte, kaDone <-chan struct{}) {
	err := c.readLoop(rest)
	if errors.Is(err, errQuit) {
		err = nil
	}
	c.setCause(err)
	_ = c.ws.Close()
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	close(c.readerDone)
	failure := c.endErr()
	for _, ch := range pending {
		ch <- completion{err: failure}
	}
	close(c.msgs)
	<-kaDone
	close(c.done)
}

// readLoop reads transport messages until the connection ends and returns
// why.
func (c *Conn) readLoop(rest []byte) error {
	if len(rest) > 0 {
		if err := c.handleData(rest); err != nil {
			return err
		}
	}
	for {
		if c.cfg.ServerTimeout > 0 {
			_ = c.ws.SetReadDeadline(time.Now().Add(c.cfg.ServerTimeout))
		}
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return c.readError(err)
		}
		if err := c.handleData(data); err != nil {
			var ce *CloseError
			if errors.As(err, &ce) {
				c.drainAfterClose()
			}
			return err
		}
	}
}

// drainAfterClose reads (and ignores) what follows a server Close message
// until the server closes the socket, so the WebSocket close handshake
// completes, for at most closeGrace.
func (c *Conn) drainAfterClose() {
	_ = c.ws.SetReadDeadline(time.Now().Add(closeGrace))
	for {
		select {
		case <-c.quit:
			return
		default:
		}
		if _, _, err := c.ws.ReadMessage(); err != nil {
			return
		}
	}
}

func (c *Conn) readError(err error) error {
	select {
	case <-c.quit:
		return errQuit
	default:
	}
	var ne net.Error
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("client: server timeout: nothing received for %s: %w", c.cfg.ServerTimeout, err)
	case errors.As(err, &ce):
		return fmt.Errorf("client: the server closed the WebSocket without a Close message: %w", err)
	}
	return fmt.Errorf("client: read: %w", err)
}

// handleData processes one transport message: whole hub messages, in order.
// A server Close message is returned as a *CloseError.
func (c *Conn) handleData(data []byte) error {
	return splitRecords(data, func(rec []byte) error {
		var m inMessage
		if err := json.Unmarshal(rec, &m); err != nil {
			return fmt.Errorf("client: malformed hub message from server %s: %w", abbreviate(rec), err)
		}
		switch m.Type {
		case typeInvocation:
			return c.deliver(m)
		case typeCompletion:
			if m.InvocationID == nil {
				return fmt.Errorf("client: Completion without invocationId from server: %s", abbreviate(rec))
			}
			c.complete(*m.InvocationID, m)
		case typeClose:
			ce := &CloseError{AllowReconnect: m.AllowReconnect}
			if m.Error != nil {
				ce.Message = *m.Error
			}
			return ce
		case typePing:
			// The read deadline was already extended.
		default:
			// StreamItem, Ack, Sequence and types from later protocol
			// versions: nothing here uses them.
		}
		return nil
	})
}

// deliver hands a server invocation to the consumer, waiting while the
// channel is full (backpressure) unless Close is called.
func (c *Conn) deliver(m inMessage) error {
	msg := Message{Target: m.Target, Arguments: m.Arguments, Cursor: m.Headers["cursor"]}
	select {
	case c.msgs <- msg:
	case <-c.quit:
		return errQuit
	}
	if m.InvocationID != nil {
		// The server wants a client result; this client registers no
		// handlers, so it answers as the official clients do without one.
		if err := c.write(context.Background(), encodeCompletionError(*m.InvocationID, "Client didn't provide a result.")); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) complete(id string, m inMessage) {
	c.mu.Lock()
	ch := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ch != nil { // nil: the caller gave up (ctx) or the id is not ours
		ch <- completion{result: m.Result, errMsg: m.Error}
	}
}
