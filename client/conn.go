package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/raftplane/raftplane/signalr"
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
	err    error   // the transport or the connection ended first
}

// Stats counts what happened to a connection's transports. See Stats.
type Stats struct {
	// Drops is how many times the transport dropped and a resume started.
	Drops int
	// Resumes is how many resumes succeeded (EventResumed).
	Resumes int
	// Resets is how many resets happened (EventReset): refused resumes, and
	// fresh connections made because there was nothing to resume from.
	Resets int
	// Replayed is the sum of Event.Replayed over the resumes.
	Replayed int
	// Duplicates is how many messages were dropped because their cursor
	// did not come after the last message delivered (a safety net: the
	// server is not expected to send any).
	Duplicates int
}

// position is the last message delivered on Messages().
type position struct {
	cursor string
	epoch  string
	index  uint64
	offset uint32
	ok     bool
}

// after reports whether the cursor (epoch, index, offset) comes after p, or
// is not comparable with it (another epoch, or nothing delivered yet).
func (p position) after(epoch string, index uint64, offset uint32) bool {
	if !p.ok || epoch != p.epoch {
		return true
	}
	if index != p.index {
		return index > p.index
	}
	return offset > p.offset
}

// Conn is one SignalR connection. Its methods are safe for concurrent use.
//
// A Conn runs over one transport (a WebSocket) at a time. Without
// Config.Resume it ends with its transport; with it, a dropped transport is
// replaced by a resumed one, and the Conn (its id, its groups, Messages())
// carries on.
type Conn struct {
	cfg    Config
	urls   []*url.URL
	header http.Header // User-Agent and Config.Header; Authorization is added per attempt
	msgs   chan Message

	ctx    context.Context // ended by Close: aborts resume attempts
	cancel context.CancelFunc
	quit   chan struct{} // closed by Close: stop reading and writing
	done   chan struct{} // closed when every goroutine has returned

	mu          sync.Mutex
	id          string
	token       string
	link        *link         // the transport in use; nil while resuming and once ended
	linkCh      chan struct{} // closed and replaced when link is set; closed when the connection ends
	ended       bool
	cause       error // why it ended; the first reason wins
	userClosed  bool  // Close was called before any other reason
	closing     bool  // Close was called
	nextID      uint64
	last        position // the last message delivered
	firstResult string   // the position just before the first Invoke result that was a cursor
	sentAny     bool     // an Invoke or Send was (about to be) written
	stats       Stats

	inEvent   atomic.Bool // OnEvent is running
	closeOnce sync.Once
	closeErr  error
}

// link is one transport of a Conn: a handshaken WebSocket with its reader
// and keep-alive goroutines.
type link struct {
	c       *Conn
	ws      *websocket.Conn
	urlIdx  int        // index in c.urls
	run     *resumeRun // the resume that made it; nil for Dial's and a new connection's
	started time.Time  // when it was installed

	pendingRest []byte // hub messages that came with the handshake, until begin

	// wsem is a one-slot semaphore that serialises writes; closeSent is
	// guarded by it.
	wsem      chan struct{}
	closeSent bool
	lastWrite atomic.Int64 // UnixNano of the last write

	pending map[string]chan completion // guarded by c.mu; nil once the reader returned
	orphans map[string]chan completion // guarded by c.mu; what was pending when it ended
	err     error                      // guarded by c.mu; why it ended, the first reason wins

	readerDone chan struct{} // closed when the reader has returned and the socket is closed
	done       chan struct{} // closed when the reader and the keep-alive have returned
	delivered  atomic.Int64  // messages delivered to Messages()
	waiting    atomic.Int64  // UnixNano since the reader waits for the network; 0 when not
}

// start runs a handshaken connection. rest holds the hub messages that came
// with the handshake answer.
func start(cfg Config, urls []*url.URL, header http.Header, idx int, neg negotiated, ws *websocket.Conn, rest []byte) *Conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		cfg:    cfg,
		urls:   urls,
		header: header,
		msgs:   make(chan Message, cfg.MessageBuffer),
		ctx:    ctx,
		cancel: cancel,
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		id:     neg.id,
		token:  neg.token,
		linkCh: make(chan struct{}),
	}
	l := c.newLink(ws, idx)
	c.link = l
	l.begin(rest)
	go c.supervise(l)
	return c
}

func (c *Conn) newLink(ws *websocket.Conn, idx int) *link {
	l := &link{
		c:          c,
		ws:         ws,
		urlIdx:     idx,
		started:    time.Now(),
		wsem:       make(chan struct{}, 1),
		pending:    map[string]chan completion{},
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	l.lastWrite.Store(time.Now().UnixNano())
	return l
}

// begin starts the link's goroutines.
func (l *link) begin(rest []byte) {
	kaDone := make(chan struct{})
	if l.c.cfg.KeepAliveInterval > 0 {
		go l.keepAlive(kaDone)
	} else {
		close(kaDone)
	}
	go l.read(rest, kaDone)
}

// ID returns the connectionId the server assigned: the id other clients and
// the REST API use to address this connection. A resume keeps it; it
// changes only after an EventReset that started a new connection.
func (c *Conn) ID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// Token returns the connection token from negotiate: the secret that,
// with a cursor, resumes this connection on any node of its cluster
// (?resume=<token>&cursor=<cursor>). Keep it private.
func (c *Conn) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// Cursor returns the position a resume would continue after: the cursor of
// the last message handed to Messages() (the consumer may not have read it
// yet: what is buffered is not lost). Before any message, it is the
// position just before the cursor returned by the connection's first
// Invoke whose result was one (InvokeCursor's), so that a resume also
// replays what that call committed, should it be addressed to this
// connection: the Completion can overtake that message. "" when there is
// neither.
func (c *Conn) Cursor() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resumeCursorLocked()
}

func (c *Conn) resumeCursorLocked() string {
	if c.last.ok {
		return c.last.cursor
	}
	return c.firstResult
}

// Stats returns counters of drops, resumes, resets and dropped duplicates.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Messages returns the server invocations for this connection, in arrival
// order. The channel is closed when the connection ends; a resume does not
// close it. See the package documentation on backpressure.
func (c *Conn) Messages() <-chan Message { return c.msgs }

// Done returns a channel closed when the connection has ended and all its
// goroutines have returned.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err reports why the connection ended: a *CloseError when the server sent a
// Close message, the transport or timeout error, a *ResetError (wrapping
// ErrReset) when a resume was refused, an error wrapping ErrDropped when
// resuming gave up, or nil if it is still up (or resuming) or ended because
// Close was called.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

// endErr is what calls on an ended connection return.
func (c *Conn) endErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endErrLocked()
}

func (c *Conn) endErrLocked() error {
	if c.cause != nil {
		return c.cause
	}
	return ErrClosed
}

// errLinkGone: the transport ended before anything was written, so the
// write may be retried on the next one.
var errLinkGone = errors.New("client: transport gone")

// currentLink returns the transport to write to, waiting (bounded by ctx)
// while a resume is under way. It fails once the connection has ended or
// Close was called.
func (c *Conn) currentLink(ctx context.Context) (*link, error) {
	for {
		c.mu.Lock()
		if c.ended || c.closing {
			err := c.endErrLocked()
			c.mu.Unlock()
			return nil, err
		}
		if l := c.link; l != nil {
			c.mu.Unlock()
			return l, nil
		}
		ch := c.linkCh
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.quit:
			return nil, c.endErr()
		}
	}
}

// writeFailed turns a failed write into what Invoke and Send return.
func (c *Conn) writeFailed(err error) error {
	var de *dropError
	if !errors.As(err, &de) {
		return err // ctx.Err(), ErrClosed
	}
	if c.cfg.Resume {
		return fmt.Errorf("%w while writing (the server may or may not have received it): %w", ErrDropped, err)
	}
	return c.endErr()
}

func (c *Conn) markSent() {
	c.mu.Lock()
	c.sentAny = true
	c.mu.Unlock()
}

// Invoke calls a hub method and waits for its Completion. It returns the
// raw result (nil for a void method), an *InvocationError when the server
// answered with an error, the connection's error (ErrClosed after Close)
// when the connection ended first, or ctx.Err().
//
// With Config.Resume, an Invoke made while a resume is under way waits for
// it (bounded by ctx), and one whose transport dropped before the
// Completion came fails with an error wrapping ErrDropped: its outcome is
// unknown, since the server may have run and committed it. Retrying it may
// do it twice.
func (c *Conn) Invoke(ctx context.Context, method string, args ...any) (json.RawMessage, error) {
	c.mu.Lock()
	if c.ended || c.closing {
		err := c.endErrLocked()
		c.mu.Unlock()
		return nil, err
	}
	id := strconv.FormatUint(c.nextID, 10)
	c.nextID++
	c.mu.Unlock()
	rec, err := encodeInvocation(id, method, args)
	if err != nil {
		return nil, err
	}
	for {
		l, err := c.currentLink(ctx)
		if err != nil {
			return nil, err
		}
		ch := make(chan completion, 1)
		c.mu.Lock()
		if l.pending == nil { // it has just ended
			c.mu.Unlock()
			continue
		}
		l.pending[id] = ch
		// Counted before the write: a drop right after it must not be
		// taken for a connection that did nothing.
		c.sentAny = true
		c.mu.Unlock()

		if err := l.write(ctx, rec); err != nil {
			l.forget(id)
			if errors.Is(err, errLinkGone) {
				continue // nothing was sent: use the next transport
			}
			return nil, c.writeFailed(err)
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
			l.forget(id)
			return nil, ctx.Err()
		}
	}
}

func (l *link) forget(id string) {
	l.c.mu.Lock()
	delete(l.pending, id)
	l.c.mu.Unlock()
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
// It returns once the message is written. With Config.Resume it waits for
// a resume under way, like Invoke; a write that fails because the
// transport dropped returns an error wrapping ErrDropped.
func (c *Conn) Send(ctx context.Context, method string, args ...any) error {
	rec, err := encodeInvocation("", method, args)
	if err != nil {
		return err
	}
	for {
		l, err := c.currentLink(ctx)
		if err != nil {
			return err
		}
		c.markSent() // before the write, as in Invoke
		err = l.write(ctx, rec)
		if errors.Is(err, errLinkGone) {
			continue
		}
		if err != nil {
			return c.writeFailed(err)
		}
		return nil
	}
}

// write sends one transport message. ctx bounds the wait for the write slot;
// the write itself is bounded by writeTimeout, and a failed write ends the
// transport. It returns errLinkGone when the transport ended before the
// write started, and a *dropError when the write failed.
func (l *link) write(ctx context.Context, rec []byte) error {
	c := l.c
	select {
	case l.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-l.readerDone:
		return errLinkGone
	case <-c.quit:
		return ErrClosed
	}
	defer func() { <-l.wsem }()
	if l.closeSent {
		return ErrClosed
	}
	select {
	case <-l.readerDone:
		return errLinkGone
	default:
	}
	_ = l.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := l.ws.WriteMessage(websocket.TextMessage, rec); err != nil {
		de := &dropError{fmt.Errorf("client: write: %w", err)}
		l.fail(de)
		return de
	}
	l.lastWrite.Store(time.Now().UnixNano())
	return nil
}

// fail ends the transport because of err: the socket is closed, which makes
// the reader return. Without Resume it is the connection's end too, and
// its cause is recorded at once.
func (l *link) fail(err error) {
	c := l.c
	c.mu.Lock()
	if l.err == nil { // the first reason wins: a write may fail because the reader closed the socket
		l.err = err
		if !c.cfg.Resume && c.cause == nil && !c.userClosed {
			c.cause = err
		}
	}
	c.mu.Unlock()
	_ = l.ws.Close()
}

// Close ends the connection: it sends a Close message and a WebSocket close
// frame, waits briefly for the server's answer, closes the socket and waits
// for the connection's goroutines. Pending Invokes fail with ErrClosed and
// Err stays nil, unless the connection had already ended for another reason.
// Close returns an error only if sending the Close message failed; it is
// idempotent.
//
// Close is a goodbye: the server forgets the connection at once and it
// cannot be resumed. Close never triggers a resume, and it stops one under
// way (the server then keeps the connection for its disconnect timeout,
// since there was no transport to say goodbye on). Close called while
// OnEvent runs does not wait for OnEvent to return.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.cause == nil {
			c.userClosed = true
		}
		c.closing = true
		l := c.link
		c.mu.Unlock()
		if l != nil {
			c.closeErr = l.sendClose()
		}
		close(c.quit)
		c.cancel()
		if l != nil {
			t := time.NewTimer(closeGrace)
			select {
			case <-l.readerDone:
			case <-t.C:
			}
			t.Stop()
			_ = l.ws.Close()
		}
		if !c.inEvent.Load() {
			<-c.done
		}
	})
	return c.closeErr
}

// sendClose writes the Close message and the close frame, if the
// transport is still up.
func (l *link) sendClose() error {
	t := time.NewTimer(writeTimeout)
	defer t.Stop()
	select {
	case l.wsem <- struct{}{}:
	case <-l.readerDone:
		return nil
	case <-t.C:
		return errors.New("client: close: timed out waiting for a write in progress")
	}
	defer func() { <-l.wsem }()
	select {
	case <-l.readerDone:
		return nil
	default:
	}
	l.closeSent = true
	_ = l.ws.SetWriteDeadline(time.Now().Add(closeGrace))
	err := l.ws.WriteMessage(websocket.TextMessage, closeRecord)
	if err == nil {
		err = l.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	}
	if err != nil {
		if errors.Is(err, websocket.ErrCloseSent) {
			// The server closed first (it may be answering our Close
			// message) and the reader answered its close frame: the
			// goodbye is done.
			return nil
		}
		select {
		case <-l.readerDone: // it ended meanwhile; nothing was lost
			return nil
		default:
		}
		return fmt.Errorf("client: close: %w", err)
	}
	return nil
}

// keepAlive sends a Ping whenever nothing was written for KeepAliveInterval.
func (l *link) keepAlive(done chan<- struct{}) {
	defer close(done)
	iv := l.c.cfg.KeepAliveInterval
	t := time.NewTimer(iv)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.readerDone:
			return
		case <-l.c.quit:
			return
		}
		idle := time.Since(time.Unix(0, l.lastWrite.Load()))
		if idle >= iv {
			if err := l.write(context.Background(), pingRecord); err != nil {
				return
			}
			idle = 0
		}
		t.Reset(iv - idle)
	}
}

// errQuit makes the reader return because Close was called.
var errQuit = errors.New("client: closing")

// read is the reader goroutine. When reading ends it records why, closes
// the socket, hands the pending Invokes over to the supervisor (orphans),
// waits for the keep-alive goroutine and closes done.
func (l *link) read(rest []byte, kaDone <-chan struct{}) {
	err := l.readLoop(rest)
	c := l.c
	c.mu.Lock()
	if l.err == nil {
		l.err = err
		// Without Resume this is the connection's end: its cause is
		// recorded before the socket closes, so that a write failing
		// because of that close reports it.
		if !c.cfg.Resume && !errors.Is(err, errQuit) && c.cause == nil && !c.userClosed {
			c.cause = err
		}
	}
	l.orphans, l.pending = l.pending, nil
	if c.link == l {
		c.link = nil
	}
	c.mu.Unlock()
	_ = l.ws.Close()
	close(l.readerDone)
	<-kaDone
	close(l.done)
}

// readLoop reads transport messages until the transport ends and returns
// why.
func (l *link) readLoop(rest []byte) error {
	var buf []byte
	if len(rest) > 0 {
		if err := l.handleData(rest); err != nil {
			return err
		}
	}
	for {
		if l.c.cfg.ServerTimeout > 0 {
			_ = l.ws.SetReadDeadline(time.Now().Add(l.c.cfg.ServerTimeout))
		}
		l.waiting.Store(time.Now().UnixNano())
		data, err := l.readFrame(&buf)
		l.waiting.Store(0)
		if err != nil {
			return l.readError(err)
		}
		if err := l.handleData(data); err != nil {
			var ce *CloseError
			if errors.As(err, &ce) {
				l.drainAfterClose()
			}
			return err
		}
	}
}

// readFrame reads one WebSocket message. It reads into *buf, kept from
// message to message, and returns an exact-size copy: the messages handed
// to the consumer alias it, and one allocation replaces io.ReadAll's chain
// of growing ones.
func (l *link) readFrame(buf *[]byte) ([]byte, error) {
	_, r, err := l.ws.NextReader()
	if err != nil {
		return nil, err
	}
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if cap(b) <= 1<<20 {
		*buf = b
	}
	return bytes.Clone(b), nil
}

// drainAfterClose reads (and ignores) what follows a server Close message
// until the server closes the socket, so the WebSocket close handshake
// completes, for at most closeGrace.
func (l *link) drainAfterClose() {
	_ = l.ws.SetReadDeadline(time.Now().Add(closeGrace))
	for {
		select {
		case <-l.c.quit:
			return
		default:
		}
		if _, _, err := l.ws.ReadMessage(); err != nil {
			return
		}
	}
}

// readError words a failed read. Transport failures come back as
// *dropError: a resume may follow them.
func (l *link) readError(err error) error {
	select {
	case <-l.c.quit:
		return errQuit
	default:
	}
	var ne net.Error
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return &dropError{fmt.Errorf("client: server timeout: nothing received for %s: %w", l.c.cfg.ServerTimeout, err)}
	case errors.As(err, &ce):
		return &dropError{fmt.Errorf("client: the server closed the WebSocket without a Close message: %w", err)}
	}
	return &dropError{fmt.Errorf("client: read: %w", err)}
}

// handleData processes one transport message: whole hub messages, in order.
// A server Close message is returned as a *CloseError.
func (l *link) handleData(data []byte) error {
	return splitRecords(data, func(rec []byte) error {
		m, err := signalr.JSON.Parse(rec)
		switch {
		case err != nil && m.Type == signalr.TypeCompletion && !m.HasInvocationID:
			return fmt.Errorf("client: Completion without invocationId from server: %s", abbreviate(rec))
		case err != nil:
			return fmt.Errorf("client: malformed hub message from server %s: %w", abbreviate(rec), err)
		}
		switch m.Type {
		case signalr.TypeInvocation:
			return l.deliver(m)
		case signalr.TypeCompletion:
			l.complete(m.InvocationID, m)
		case signalr.TypeClose:
			return &CloseError{Message: m.Error, AllowReconnect: m.AllowReconnect}
		case signalr.TypePing:
			// The read deadline was already extended.
		default:
			// StreamItem, Ack, Sequence and types from later protocol
			// versions: nothing here uses them.
		}
		return nil
	})
}

// deliver hands a server invocation to the consumer, waiting while the
// channel is full (backpressure) unless Close is called. A message whose
// cursor does not come after the last one delivered is dropped (counted in
// Stats.Duplicates).
func (l *link) deliver(m signalr.Message) error {
	c := l.c
	msg := Message{Target: m.Target, Arguments: m.Arguments, Cursor: m.Headers["cursor"]}
	var next position
	if msg.Cursor != "" {
		if e, i, o, err := ParseCursor(msg.Cursor); err == nil {
			next = position{cursor: msg.Cursor, epoch: e, index: i, offset: o, ok: true}
			c.mu.Lock()
			dup := !c.last.after(e, i, o)
			if dup {
				c.stats.Duplicates++
			}
			c.mu.Unlock()
			if dup {
				return nil
			}
		}
	}
	// The position moves before the hand-off, so that Cursor() covers a
	// message as soon as the consumer can have it. Once read, a message
	// is always handed over unless Close is called, and then there is no
	// resume.
	if next.ok {
		c.mu.Lock()
		c.last = next
		c.mu.Unlock()
	}
	select {
	case c.msgs <- msg:
	case <-c.quit:
		return errQuit
	}
	l.delivered.Add(1)
	if m.HasInvocationID {
		// The server wants a client result; this client registers no
		// handlers, so it answers as the official clients do without one.
		if err := l.write(context.Background(), encodeCompletionError(m.InvocationID, "Client didn't provide a result.")); err != nil {
			if errors.Is(err, ErrClosed) {
				return errQuit
			}
			return err
		}
	}
	return nil
}

// complete hands a Completion to its Invoke, and keeps the first cursor
// result as the resume position while no message has been delivered.
func (l *link) complete(id string, m signalr.Message) {
	c := l.c
	c.mu.Lock()
	ch := l.pending[id]
	delete(l.pending, id)
	if c.firstResult == "" && !m.HasError && len(m.Result) > 0 && m.Result[0] == '"' {
		var s string
		if json.Unmarshal(m.Result, &s) == nil {
			if e, i, o, err := ParseCursor(s); err == nil {
				c.firstResult = cursorBefore(e, i, o)
			}
		}
	}
	c.mu.Unlock()
	if ch != nil { // nil: the caller gave up (ctx) or the id is not ours
		var errMsg *string
		if m.HasError {
			errMsg = &m.Error
		}
		ch <- completion{result: m.Result, errMsg: errMsg}
	}
}
