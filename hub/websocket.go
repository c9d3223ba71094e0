package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/raftplane/raftplane/fsm"
)

// wsTransport writes hub messages as WebSocket messages.
type wsTransport struct {
	ws      *websocket.Conn
	rd      *wsReader // its reader, to wake when parked (nil in tests)
	binary  bool
	timeout time.Duration
	abrupt  atomic.Bool
}

func (t *wsTransport) write(p []byte) error {
	_ = t.ws.SetWriteDeadline(time.Now().Add(t.timeout))
	typ := websocket.TextMessage
	if t.binary {
		typ = websocket.BinaryMessage
	}
	return t.ws.WriteMessage(typ, p)
}

// setBinary switches to binary frames after a binary protocol's handshake
// (MessagePack, msgpack.go: setBinaryFrames). Called before the writer starts.
func (t *wsTransport) setBinary(on bool) { t.binary = on }

func (t *wsTransport) close() error {
	t.rd.unpark() // before the socket closes: wspark.go
	if !t.abrupt.Load() {
		_ = t.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	}
	return t.ws.Close()
}

// dropAbruptly makes close end the socket without a close frame: to the
// client it looks like a lost connection, which a stateful-reconnect client
// answers by reconnecting, to any node.
func (t *wsTransport) dropAbruptly() { t.abrupt.Store(true) }

// handleConnect serves [base]?id=<token>: the WebSocket transport. Without an
// id it is a skipNegotiation connect and the connection is made on the spot.
func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	hub := r.PathValue("hub")
	if err := validHub(hub); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		s.handleHTTPTransport(w, r, hub) // SSE, long polling, POST sends: sse.go, longpoll.go
		return
	}
	if s.refuseWebSocket(w, r, hub) {
		return
	}
	ident, err := s.identify(r, hub)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	user := ident.user
	r = withIdentity(r, ident) // for newConn: claims and expiry
	if err := s.accepting(); err != nil {
		writeUnavailable(w, err)
		return
	}
	var id string
	var rr *resumeReq
	var statefulOK bool
	if raw := queryValue(r, "resume"); raw != "" {
		var status int
		if rr, status, err = s.prepareResume(r, hub, user, raw); err != nil {
			s.stats.resume(outcomeRefused) // stats.go
			writeError(w, status, err.Error())
			return
		}
		id, user = rr.id, rr.user
	} else if raw := queryValue(r, "id"); raw == "" {
		id = newConnectionID() // skipNegotiation
	} else {
		tok, err := s.parseToken(raw)
		switch {
		case err != nil:
			writeError(w, http.StatusNotFound, "No Connection with that ID: "+err.Error())
			return
		case tok.Hub != hub:
			writeError(w, http.StatusNotFound, fmt.Sprintf("No Connection with that ID on hub %q", hub))
			return
		case s.jwtRequired() && tok.User != user:
			writeError(w, http.StatusForbidden, "the access token's user does not match the negotiated connection's")
			return
		case tok.Stateful && !s.cfg.DisableStatefulReconnect && s.registered(hub, tok.ID):
			// The socket of a stateful-reconnect connection dropped and its
			// client came back, to this node or any other.
			s.statefulReconnect(w, r, tok)
			return
		case time.Since(tok.Issued) > s.cfg.NegotiateTTL:
			writeError(w, http.StatusNotFound, fmt.Sprintf("connection token expired: connect within %s of negotiate", s.cfg.NegotiateTTL))
			return
		}
		id, user = tok.ID, tok.User
		statefulOK = tok.Stateful && !s.cfg.DisableStatefulReconnect
		if tok.V0 {
			// Negotiate version 0 gave the client the token as its id, and
			// that is the id apps will address it by.
			id = raw
		}
	}
	rd, ok := s.claimUpgradeAs(w, r, s.admissionFor(r, hub, user, rr != nil), id)
	if !ok {
		return
	}
	tr := &wsTransport{ws: rd.ws, rd: rd, timeout: s.cfg.SendTimeout}
	c := s.newConn(r, id, hub, user, tr)
	c.resume = rr
	c.statefulOK = statefulOK
	// The connection lives on a goroutine of its own: the handler returns,
	// and with it net/http's per-connection state (its buffers, the request,
	// a stack grown by the handler chain), which would otherwise be held for
	// the whole life of every WebSocket.
	go s.serveWebSocket(c, rd)
}

// claimUpgrade claims connection id on this node and upgrades the request
// to a WebSocket. On failure it has answered. The connection is not
// counted for its user: stateful reconnects use it, whose connection the
// registry already counts.
func (s *Server) claimUpgrade(w http.ResponseWriter, r *http.Request, hub, id string, resume bool) (*wsReader, bool) {
	return s.claimUpgradeAs(w, r, s.admissionFor(r, hub, "", resume), id)
}

// claimUpgradeAs is claimUpgrade for an admission.
func (s *Server) claimUpgradeAs(w http.ResponseWriter, r *http.Request, a admission, id string) (*wsReader, bool) {
	if err := s.claim(id, a); err != nil {
		writeClaimError(w, err) // limits.go
		return nil, false
	}
	var capture *readBufferCapture
	if s.ws.ReadBufferSize == 0 { // wsidle.go: gorilla reads through our buffer
		capture = &readBufferCapture{ResponseWriter: w, size: s.cfg.WSReadBufferSize, bufs: &s.readBufs}
		w = capture
	}
	ws, err := s.ws.Upgrade(w, r, nil)
	if err != nil {
		s.unclaim(id)
		return nil, false // the upgrader has answered
	}
	rd := &wsReader{ws: ws, srv: s, binary: true}
	if capture != nil {
		rd.idle = newIdleWait(capture.br, capture.lr, capture.raw)
		if p := s.idlePoll.Load(); p != nil && rd.idle != nil {
			rd.park = &parking{p: p, r: rd}
		}
	}
	return rd, true
}

// upgraderReadBuffer is gorilla's ReadBufferSize for a configured read
// buffer of size bytes: 0, so that it reads through the buffer a Hijack
// returns (wsidle.go), when it would reuse it.
func upgraderReadBuffer(size int) int {
	if size >= minOwnReadBuffer {
		return 0
	}
	return size
}

// registered reports whether connection id of hub is in the log.
func (s *Server) registered(hub, id string) bool {
	_, ok := s.reg.Connection(hub, id)
	return ok
}

// readBufs lends wsReader its read buffers.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// wsReader reads a WebSocket as a byte stream of hub messages, whatever the
// frame type, refreshing the client timeout on every message.
type wsReader struct {
	ws     *websocket.Conn
	srv    *Server
	binary bool // the transport carries binary frames: MessagePack is allowed
	// lastBinary says whether the last frame read was binary.
	lastBinary bool
	// idle, when set, is where the reader waits between messages
	// (wsidle.go).
	idle *idleWait
	// park is the reader's registration with the server's poller, when it
	// can park (wspark.go); nil: it waits in its socket.
	park *parking
}

// canBinary reports the binary capability (msgpack.go: canBinary).
func (r *wsReader) canBinary() bool { return r.binary }

// next returns the next chunk of bytes, waiting at most d.
func (r *wsReader) next(d time.Duration, fn func([]byte)) error {
	_ = r.ws.SetReadDeadline(time.Now().Add(d))
	typ, rd, err := r.ws.NextReader()
	if err != nil {
		return err
	}
	r.lastBinary = typ == websocket.BinaryMessage
	return readMessage(rd, fn)
}

// readMessage passes one message to fn, as it is read. The buffer is
// borrowed for the length of a message: an idle connection, waiting for
// its next message, holds none (and its stack holds none of this frame).
func readMessage(rd io.Reader, fn func([]byte)) error {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			fn(buf[:n])
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// reader is a transport's inbound side as the connection loop sees it.
type reader interface {
	next(timeout time.Duration, fn func([]byte)) error
}

// claim reserves a connection id on this node until unclaim or cleanup, so
// that a second transport for the same id is refused with 409. It is where
// the connection limits bind (limits.go): a refusal is a *limitError.
func (s *Server) claim(id string, a admission) error {
	if _, ok := s.reg.Connection(a.hub, id); ok && !a.resume {
		return fmt.Errorf("connection %s is already active", id)
	}
	users := 0
	if s.cfg.MaxConnectionsPerUser > 0 && a.user != "" && !a.resume {
		users = s.userConnections(a.hub, a.user) // read outside s.mu: it takes the registry's lock
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return errShuttingDown
	}
	if _, ok := s.conns[id]; ok {
		return fmt.Errorf("connection %s is already active on this node", id)
	}
	if err := s.checkAdmissionLocked(a, users); err != nil {
		return err
	}
	s.holdLocked(id, a)
	if t := s.detached[id]; t != nil {
		t.Stop() // it is back: no longer waiting to expire
		delete(s.detached, id)
	}
	s.conns[id] = nil
	s.connWG.Add(1)
	return nil
}

func (s *Server) unclaim(id string) {
	s.mu.Lock()
	delete(s.conns, id)
	s.unholdLocked(id)
	s.mu.Unlock()
	s.connWG.Done()
}

// serve runs a connection from handshake to cleanup on the calling
// goroutine (the transports whose caller waits for the end: Server-Sent
// Events, long polling).
func (s *Server) serve(c *conn, rd reader) {
	defer s.unclaim(c.id)
	defer c.cancel()
	if split, leftover, ok := s.admit(c, rd); ok {
		s.run(c, rd, split, leftover)
	}
}

// serveWebSocket is serve for a WebSocket, whose caller does not wait: once
// the connection is admitted and started, its reading moves to a goroutine
// of its own (readWebSocket), and this one, its stack grown by the
// handshake, ends.
func (s *Server) serveWebSocket(c *conn, rd *wsReader) {
	split, leftover, ok := s.admit(c, rd)
	s.startReading(c, rd, split, leftover, ok)
}

// startReading starts an admitted connection (ok) and moves its reading
// to a goroutine of its own; it ends one that was not admitted.
func (s *Server) startReading(c *conn, rd *wsReader, split splitter, leftover []pendingRecord, ok bool) {
	if !ok {
		c.cancel()
		s.unclaim(c.id)
		return
	}
	c.in.split = split
	s.begin(c, leftover)
	go s.readWebSocket(c, rd)
}

// readWebSocket is a WebSocket connection's reader until the connection's
// end, then its cleanup. It is readLoop with wsReader.next written in:
// idle readers are most of a busy node's goroutines, and a goroutine parked
// in gorilla's read already uses most of the 2 KB stack it starts with; a
// few more frames under it, and every idle connection holds 4 KB instead.
func (s *Server) readWebSocket(c *conn, r *wsReader) { s.readWebSocketFrom(c, r, false) }

// readWebSocketFrom is readWebSocket, resumed (wspark.go: wake) by a reader
// that parked: its read deadline is set and its socket was readable (or the
// deadline passed, or the transport closed), so it reads at once.
func (s *Server) readWebSocketFrom(c *conn, r *wsReader, resumed bool) {
	var err error
	for c.ctx.Err() == nil {
		if !resumed {
			if r.idle == nil {
				_ = r.ws.SetReadDeadline(time.Now().Add(s.cfg.ClientTimeout))
			} else {
				var parked bool
				if parked, err = s.awaitReadable(c, r); parked {
					return // a new reader continues when there is something to read
				}
				if err != nil {
					break
				}
			}
		}
		resumed = false
		var typ int
		var rd io.Reader
		if typ, rd, err = r.ws.NextReader(); err != nil {
			break
		}
		r.lastBinary = typ == websocket.BinaryMessage
		if err = readMessage(rd, c.receive); err != nil {
			break
		}
	}
	s.endWebSocket(c, err)
}

// endWebSocket ends a WebSocket connection once its reading has.
func (s *Server) endWebSocket(c *conn, err error) {
	if err != nil {
		s.readEnded(c, err)
	}
	c.awaitInbox()
	s.finish(c)
	c.cancel()
	s.unclaim(c.id)
}

// admit takes a connection through its handshake, its entry in the log and
// a resume's replay. ok is false when the connection ended on the way (it
// was answered and released); the caller then cancels and unclaims it.
func (s *Server) admit(c *conn, rd reader) (split splitter, leftover []pendingRecord, ok bool) {
	// Until the writer owns the transport, ending the connection's context
	// (Server.Close) must close the transport to unblock the handshake read.
	// Both are set before Close can see c; a Close that ran since the claim
	// saw a nil entry and skipped it, so c ends itself when it sees closing.
	c.handshaking.Store(true)
	c.armCloseOnCancel()
	s.mu.Lock()
	s.conns[c.id] = c
	closing := s.closing
	s.mu.Unlock()
	if closing {
		c.cancel()
	}

	hs, split, leftover, alive, hsErr := s.readHandshake(c, rd)
	if !alive {
		return nil, nil, false
	}
	if hsErr == nil {
		var p protocol
		if p, hsErr = s.checkHandshake(*hs, canBinary(rd)); hsErr == nil {
			c.setProtocol(p)
			setBinaryFrames(c.tr, p.binary()) // MessagePack: binary frames from the handshake response on
			if c.statefulOK && hs.Version >= 2 {
				c.sr = newStateful() // below version 2 the client does not do it (as ASP.NET Core)
			}
		}
	}
	if hsErr == nil && c.resume != nil && c.resume.reset != "" {
		s.refuseResume(c)
		return nil, nil, false
	}
	var opened fsm.Cursor
	if hsErr == nil {
		opened, hsErr = s.open(c)
	}
	if hsErr != nil {
		c.logger().Debug("handshake failed", "err", hsErr)
		s.stats.resumeFailed(c) // stats.go
		_ = c.tr.write(encodeHandshakeResponse(hsErr.Error()))
		_ = c.tr.close()
		return nil, nil, false
	}
	if !c.disarmCloseOnCancel() || c.ctx.Err() != nil {
		_ = c.tr.close()
		s.release(c)
		return nil, nil, false
	}
	c.handshaking.Store(false)
	if err := c.tr.write(encodeHandshakeResponse("")); err != nil {
		_ = c.tr.close()
		s.release(c)
		return nil, nil, false
	}
	if c.resume != nil {
		n, err := s.replay(c, c.resume, opened)
		if err != nil {
			c.logger().Warn("resume replay failed", "err", err)
			s.stats.resume(outcomeRefused) // stats.go
			_ = c.tr.write(c.proto.appendClose(nil, "Resume failed: "+err.Error()+". Start a new connection.", true))
			_ = c.tr.close()
			s.release(c)
			return nil, nil, false
		}
		c.logger().Debug("resumed", "from", c.resume.from, "replayed", n, "live_after", opened)
		s.stats.resume(outcomeResumed) // stats.go
	}
	c.logger().Debug("connected", "user", c.user)
	return split, leftover, true
}

// refuseResume ends a connection whose resume cannot be exact: the
// handshake succeeds so that the client reads the reason, in a Close that
// lets it start a new connection.
func (s *Server) refuseResume(c *conn) {
	if !c.disarmCloseOnCancel() {
		return
	}
	c.logger().Info("resume refused", "reason", c.resume.reset)
	s.stats.resume(outcomeReset) // stats.go
	_ = c.tr.write(encodeHandshakeResponse(""))
	_ = c.tr.write(c.proto.appendClose(nil, c.resume.reset, true))
	_ = c.tr.close()
}

// run starts the connection's writer, then reads the client's messages
// (handled by the inbox's handler) until the connection ends, and cleans up.
func (s *Server) run(c *conn, rd reader, split splitter, leftover []pendingRecord) {
	c.in.split = split
	s.begin(c, leftover)
	s.readLoop(c, rd)
	s.finish(c)
}

// begin starts the connection's writer and queues what came with the
// handshake for the handler.
func (s *Server) begin(c *conn, leftover []pendingRecord) {
	if n := s.cfg.MaxParallelInvocations; n > 1 && c.sr == nil {
		c.parallel = make(chan struct{}, n)
	}
	c.startWriter()
	s.stats.connected(c) // stats.go
	for _, l := range leftover {
		c.put(inboxItem{p: l.rec, record: true, info: l.info})
	}
}

// finish ends the connection once its reading has: its invocations and
// its writer are waited for, then it is released.
func (s *Server) finish(c *conn) {
	c.cancel()
	c.invocations.Wait() // ended by the context: Publish returns
	<-c.writerEnded()
	s.stats.disconnected(c) // stats.go
	s.release(c)
}

// readLoop reads the client's bytes and queues them for the connection's
// handler (inbox.go) until the connection ends, then waits for the handler
// to finish. An idle connection waits in it, so nothing deep runs on its
// goroutine: the splitting and handling are on the handler's, and the end
// is handled in a function of its own (readEnded).
func (s *Server) readLoop(c *conn, rd reader) {
	for c.ctx.Err() == nil {
		if err := rd.next(s.cfg.ClientTimeout, c.receive); err != nil {
			s.readEnded(c, err)
			break
		}
	}
	c.awaitInbox()
}

// badFraming ends a connection whose stream cannot be resynchronised
// (MessagePack: a bad length prefix), saying why. The handler calls it
// (inbox.go).
func (s *Server) badFraming(c *conn, err error) {
	c.logger().Debug("closing: bad framing", "err", err)
	c.goodbye.Store(true) // a broken client: nothing to resume
	c.close(disconnect{reason: "Connection closed with an error: " + err.Error(), flush: true, cause: endProtocolError})
	select {
	case <-c.writerEnded():
	case <-time.After(s.cfg.SendTimeout):
	}
}

// readEnded handles the end of the client's side: a timeout, a close, an
// error.
func (s *Server) readEnded(c *conn, err error) {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout() && c.ctx.Err() == nil:
		// Tell the client why, as ASP.NET Core does, and let it come back.
		c.logger().Debug("client timeout", "after", s.cfg.ClientTimeout)
		c.close(disconnect{reason: fmt.Sprintf("Connection closed: nothing received from the client for %s.", s.cfg.ClientTimeout),
			allowReconnect: true, cause: endClientTimeout})
		select {
		case <-c.writerEnded():
		case <-time.After(s.cfg.SendTimeout):
		}
	case errors.As(err, &ce):
		// A clean close the client started is a goodbye; one that
		// only answers the server's own close is not.
		if (ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway) && !c.isClosing() {
			c.goodbye.Store(true)
		}
	case c.ctx.Err() == nil:
		c.logger().Debug("read ended", "err", err)
	}
}

// pendingRecord is a hub message that arrived in the handshake's frame.
type pendingRecord struct {
	rec  []byte
	info recordInfo
}

// readHandshake reads until the client's handshake record, within
// HandshakeTimeout. The handshake is always a JSON record; what follows it
// goes to the splitter of the protocol it names (MessagePack: binary), even
// within the same frame, and is returned as leftover. alive is false when
// the transport ended first (it is closed then); hsErr is a handshake
// failure to report to the client.
func (s *Server) readHandshake(c *conn, rd reader) (hs *handshakeRequest, split splitter, leftover []pendingRecord, alive bool, hsErr error) {
	hsSplit := newRecordSplitter(s.cfg.MaxMessageSize)
	keep := func(rec []byte, info recordInfo) {
		leftover = append(leftover, pendingRecord{append([]byte(nil), rec...), info})
	}
	deadline := time.Now().Add(s.cfg.HandshakeTimeout)
	for hs == nil && hsErr == nil {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil, nil, true, wireError("Handshake was canceled.")
		}
		err := rd.next(left, func(p []byte) {
			if hs != nil || hsErr != nil {
				if hsErr == nil {
					split.feed(p, keep)
				}
				return
			}
			n := len(p) // feed the handshake splitter through the first 0x1E only
			if i := bytes.IndexByte(p, recordSeparator); i >= 0 {
				n = i + 1
			}
			hsSplit.feed(p[:n], func(rec []byte, info recordInfo) {
				if info.Oversized {
					hsErr = wireErrorf("Handshake was canceled: %d bytes exceed the limit of %d.", info.Size, s.cfg.MaxMessageSize)
					return
				}
				req, err := parseHandshake(rec)
				if err != nil {
					hsErr = err
				} else {
					hs = &req
				}
			})
			if hs != nil && hsErr == nil {
				split = newSplitter(hs.Protocol, s.cfg.MaxMessageSize)
				split.feed(p[n:], keep)
			}
		})
		if err != nil && hs == nil && hsErr == nil {
			c.logger().Debug("connection ended before handshake", "err", err)
			_ = c.tr.close()
			return nil, nil, nil, false, nil
		}
	}
	return hs, split, leftover, true, hsErr
}

// checkHandshake accepts the JSON protocol and, when the transport carries
// binary frames (binaryOK), MessagePack; versions up to 2. It returns the
// protocol to use.
func (s *Server) checkHandshake(h handshakeRequest, binaryOK bool) (protocol, error) {
	p := protocolByName(h.Protocol)
	if p == nil {
		return nil, wireErrorf("The protocol '%s' is not supported.", h.Protocol)
	}
	if h.Version < 0 || h.Version > 2 {
		return nil, wireErrorf("The server does not support version %d of the '%s' protocol.", h.Version, h.Protocol)
	}
	if p.binary() && !binaryOK {
		return nil, wireErrorf("Cannot use the '%s' protocol on the current transport. The transport does not support 'Binary' transfer format.", h.Protocol)
	}
	return p, nil
}

// open records the connection in the log and waits until the dispatcher
// has attached it, so that it receives exactly what follows its ConnOpen.
func (s *Server) open(c *conn) (fsm.Cursor, error) {
	ctx, cancel := context.WithTimeout(c.ctx, s.cfg.PublishTimeout)
	defer cancel()
	cmd := fsm.ConnOpen(c.hub, c.id, c.user, s.cfg.NodeID)
	if c.resume != nil {
		cmd = fsm.ConnResume(c.hub, c.id, c.user, s.cfg.NodeID, c.resume.from)
	}
	cmd.ID = c.openID // the dispatcher attaches c at this entry, not at another transport's

	cur, err := s.pub.Publish(ctx, cmd)
	if err != nil {
		return cur, wireErrorf("Connection refused: the cluster did not record it (%v). Retry.", err)
	}
	c.opened.Store(true)
	select {
	case <-c.wait(&c.attached):
	case <-ctx.Done():
		s.release(c)
		return cur, wireError("Connection refused: timed out waiting for delivery to start. Retry.")
	}
	c.armExpiry() // authz.go
	if cmd.Kind == fsm.KindConnOpen {
		if err := s.connected(c, cur); err != nil { // events.go: the upstream's connected, then OnConnected
			c.goodbye.Store(true) // refused: closed at once, not kept for a resume
			s.releaseRefused(c, err)
			return cur, err
		}
	}
	return cur, nil
}

// onConnected runs the hub's OnConnected handler for a new connection and
// commits its effects; its error refuses the connection.
func (s *Server) onConnected(c *conn) error {
	a := s.appFor(c.hub)
	if a == nil || a.h.OnConnected == nil {
		return nil
	}
	ctx := s.newContext(c)
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("OnConnected panicked", "hub", c.hub, "panic", p)
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return a.h.OnConnected(ctx)
	}()
	ctx.srv = nil
	if err != nil {
		c.logger().Debug("OnConnected refused the connection", "err", err)
		var he *Error
		if errors.As(err, &he) {
			return wireErrorf("Connection refused: %s", he.Message)
		}
		return wireError("Connection refused: an unexpected error occurred in OnConnected on the server.")
	}
	if len(ctx.effects) == 0 {
		return nil
	}
	pctx, cancel := context.WithTimeout(c.ctx, s.cfg.PublishTimeout)
	defer cancel()
	if _, err := s.pub.PublishGroup(pctx, ctx.effects); err != nil {
		return wireErrorf("Connection refused: the cluster did not record what OnConnected did (%v). Retry.", err)
	}
	return nil
}

// release records the connection's departure in the log, unless the log
// already has it. A connection that ended without a goodbye (its transport
// dropped, the server timed it out or shed it, the node is shutting down)
// stays registered for DisconnectTimeout so that it can resume, on any
// node; one that said goodbye is closed at once. It runs in the background
// so a handler returns at once; Server.Close waits for it.
func (s *Server) release(c *conn) {
	if !c.opened.Load() || c.removed.Load() {
		return
	}
	c.opened.Store(false)
	if !c.goodbye.Load() {
		s.detach(c)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
		defer cancel()
		if _, err := s.pub.Publish(ctx, connClose(c, "disconnected")); err != nil {
			c.logger().Warn("could not record disconnect", "err", err)
		}
	}()
}

// detach keeps an abruptly ended connection registered for
// DisconnectTimeout, then closes it in the log unless it resumed meanwhile
// (here or on another node). During shutdown nothing is scheduled: the
// connections stay registered and the leader closes them once this node has
// been gone for the disconnect timeout, unless they resume elsewhere.
func (s *Server) detach(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	if old := s.detached[c.id]; old != nil {
		old.Stop()
	}
	s.detached[c.id] = time.AfterFunc(s.cfg.DisconnectTimeout, func() { s.expire(c) })
}

func (s *Server) expire(c *conn) {
	s.mu.Lock()
	delete(s.detached, c.id)
	if s.closing || s.conns[c.id] != nil {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	if ci, ok := s.reg.Connection(c.hub, c.id); !ok || ci.Node != s.cfg.NodeID {
		return // resumed elsewhere, or already closed
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
	defer cancel()
	if _, err := s.pub.Publish(ctx, connClose(c, fmt.Sprintf("disconnected (no resume within %s)", s.cfg.DisconnectTimeout))); err != nil &&
		!errors.Is(err, fsm.ErrUnknownConnection) {
		c.logger().Warn("could not record disconnect", "err", err)
	}
}
