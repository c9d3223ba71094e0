package hub

// The HTTP transports: Server-Sent Events (this file) and long polling
// (longpoll.go). Both carry client→server messages as POST bodies, both
// reuse serve() (websocket.go) with a transport and a reader of their own,
// and both keep their per-connection HTTP state in an httpSession,
// registered in Server.sessions by connection id.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Transport names as negotiate and the clients spell them.
const (
	transportWebSockets = "WebSockets"
	transportSSE        = "ServerSentEvents"
	transportLP         = "LongPolling"
)

// postSizeFactor: a POST body may hold this many maximum-size hub messages
// (the JS client batches what it queued while the previous POST ran).
const postSizeFactor = 8

var (
	errTransportClosed = errors.New("transport closed")
	errStreamEnded     = errors.New("event stream request ended")
)

// timeoutError is the reader's client timeout; serve recognises it as a
// net.Error whose Timeout() is true.
type timeoutError struct{}

func (timeoutError) Error() string   { return "client timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// httpSession is the HTTP side of one SSE or long-polling connection.
type httpSession struct {
	kind string // transportSSE or transportLP
	id   string
	user string
	c    *conn

	in      chan *postChunk // POST bodies, to the connection's reader
	postSem chan struct{}   // one POST at a time
	done    chan struct{}   // closed when the transport has ended
	once    sync.Once

	lp *lpTransport // long polling only
}

func newHTTPSession(kind, id, user string) *httpSession {
	return &httpSession{
		kind:    kind,
		id:      id,
		user:    user,
		in:      make(chan *postChunk),
		postSem: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

// end marks the transport ended; POSTs get 404 from now on.
func (h *httpSession) end() { h.once.Do(func() { close(h.done) }) }

func (h *httpSession) ended() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// postChunk is one POST body on its way to the reader; fed is closed once
// the reader has processed it.
type postChunk struct {
	data []byte
	fed  chan struct{}
}

// httpReader is the inbound side of SSE and long polling: POST bodies.
type httpReader struct {
	sess *httpSession
	req  context.Context // SSE: the event stream request; long polling: nil
}

// canBinary: long polling carries binary; SSE is text only.
func (r *httpReader) canBinary() bool { return r.sess.kind == transportLP }

// next feeds the next POST body to fn. Without one for d it reports a
// client timeout, except on long polling while polls keep arriving (its
// keep-alive is inherent): then it returns nil and serve asks again.
func (r *httpReader) next(d time.Duration, fn func([]byte)) error {
	t := time.NewTimer(d)
	defer t.Stop()
	var reqDone <-chan struct{}
	if r.req != nil {
		reqDone = r.req.Done()
	}
	select {
	case ch := <-r.sess.in:
		defer close(ch.fed)
		fn(ch.data)
		return nil
	case <-r.sess.done:
		return errTransportClosed
	case <-reqDone:
		return errStreamEnded
	case <-t.C:
		if r.sess.lp != nil && r.sess.lp.alive(d) {
			return nil
		}
		return timeoutError{}
	}
}

// session returns the HTTP session registered for a connection id.
func (s *Server) session(id string) *httpSession {
	v, ok := s.sessions.Load(id)
	if !ok {
		return nil
	}
	return v.(*httpSession)
}

// retire ends a session once its connection has ended. It stays registered
// for NegotiateTTL, so that late requests get the closed-connection answers
// (long polling: 204) and its token cannot open a new connection.
func (s *Server) retire(sess *httpSession) {
	sess.end()
	if sess.lp != nil {
		_ = sess.lp.close()
	}
	time.AfterFunc(s.cfg.NegotiateTTL, func() { s.sessions.CompareAndDelete(sess.id, sess) })
}

// localWebSocket reports whether id is a connection of this node that has
// no HTTP session: a WebSocket (or one being claimed).
func (s *Server) localWebSocket(id string) bool {
	s.mu.Lock()
	_, ok := s.conns[id]
	s.mu.Unlock()
	return ok && s.session(id) == nil
}

// connToken resolves ?id= to a connection id, as handleConnect does.
func (s *Server) connToken(raw, hub, user string) (id string, tok connToken, status int, err error) {
	tok, err = s.parseToken(raw)
	switch {
	case err != nil:
		return "", tok, http.StatusNotFound, wireErrorf("No Connection with that ID: %v", err)
	case tok.Hub != hub:
		return "", tok, http.StatusNotFound, wireErrorf("No Connection with that ID on hub %q", hub)
	case s.jwtRequired() && tok.User != user:
		return "", tok, http.StatusForbidden, errors.New("the access token's user does not match the negotiated connection's")
	}
	if tok.V0 {
		return raw, tok, 0, nil
	}
	return tok.ID, tok, 0, nil
}

// refuseWebSocket answers a WebSocket upgrade that must not proceed: the
// transport is disabled, or the id belongs to an SSE or long-polling
// connection. It reports whether it answered.
func (s *Server) refuseWebSocket(w http.ResponseWriter, r *http.Request, hub string) bool {
	if s.cfg.DisableWebSockets {
		writeError(w, http.StatusNotFound, "the WebSockets transport is not enabled on this server")
		return true
	}
	raw := queryValue(r, "id")
	if raw == "" {
		return false
	}
	if tok, err := s.parseToken(raw); err == nil && tok.Hub == hub {
		id := tok.ID
		if tok.V0 {
			id = raw
		}
		if s.session(id) != nil {
			writeError(w, http.StatusBadRequest, "Cannot change transports mid-connection")
			return true
		}
	}
	return false
}

// acceptsEventStream reports whether a GET asks for Server-Sent Events.
func acceptsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(v), "text/event-stream") {
			return true
		}
	}
	return false
}

// handleHTTPTransport serves the non-WebSocket requests on [base]?id=:
// an SSE stream or a long poll (GET), a send (POST), a long-polling goodbye
// (DELETE). Status codes follow the ASP.NET Core dispatcher.
func (s *Server) handleHTTPTransport(w http.ResponseWriter, r *http.Request, hub string) {
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodDelete:
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	raw := queryValue(r, "id")
	if raw == "" {
		writeError(w, http.StatusBadRequest, "Connection ID required")
		return
	}
	ident, err := s.identify(r, hub)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	user := ident.user
	r = withIdentity(r, ident) // for newConn: claims and expiry
	id, tok, status, err := s.connToken(raw, hub, user)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	sess := s.session(id)
	if sess == nil && !s.localWebSocket(id) && s.forwardToOwner(w, r, tok) {
		return
	}
	switch r.Method {
	case http.MethodPost:
		s.transportPost(w, r, sess, hub, id, tok)
	case http.MethodDelete:
		s.transportDelete(w, sess, id)
	default:
		s.transportGet(w, r, sess, hub, id, tok)
	}
}

// transportPost is a client's send on an HTTP transport. A POST for a
// negotiated connection that has no transport yet starts it as long
// polling, as ASP.NET Core does: the connection exists from negotiate on
// there, and a client may send its handshake before its first poll
// (signalrcore does).
func (s *Server) transportPost(w http.ResponseWriter, r *http.Request, sess *httpSession, hub, id string, tok connToken) {
	switch {
	case sess != nil:
		s.handlePost(w, r, sess)
	case s.localWebSocket(id):
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, "POST requests are not allowed for WebSocket connections")
	case !s.cfg.DisableLongPolling && time.Since(tok.Issued) <= s.cfg.NegotiateTTL && s.accepting() == nil && !s.registered(hub, id):
		if sess := s.openLongPolling(w, r, hub, id, tok.User); sess != nil {
			s.handlePost(w, r, sess)
		}
	default:
		writeError(w, http.StatusNotFound, "No Connection with that ID")
	}
}

// transportDelete is a long-polling client's goodbye.
func (s *Server) transportDelete(w http.ResponseWriter, sess *httpSession, id string) {
	switch {
	case sess != nil && sess.kind == transportLP:
		s.handleDelete(w, sess)
	case sess != nil || s.localWebSocket(id):
		writeError(w, http.StatusBadRequest, "Cannot terminate this connection using the DELETE endpoint: it is not a long-polling connection")
	default:
		writeError(w, http.StatusNotFound, "No Connection with that ID")
	}
}

// transportGet is an SSE stream or a long poll: of a session this node
// holds, or the first request of a new connection.
func (s *Server) transportGet(w http.ResponseWriter, r *http.Request, sess *httpSession, hub, id string, tok connToken) {
	sse := acceptsEventStream(r)
	if sess != nil {
		switch {
		case (sess.kind == transportSSE) != sse:
			writeError(w, http.StatusBadRequest, "Cannot change transports mid-connection")
		case sse && sess.ended():
			writeError(w, http.StatusNotFound, "No Connection with that ID: it has closed")
		case sse:
			writeError(w, http.StatusConflict, "another event stream is already active for this connection")
		default:
			s.poll(w, r, sess)
		}
		return
	}
	if s.localWebSocket(id) {
		writeError(w, http.StatusBadRequest, "Cannot change transports mid-connection")
		return
	}
	// A new connection, made by its first transport request.
	if sse && s.cfg.DisableServerSentEvents {
		writeError(w, http.StatusNotFound, "the ServerSentEvents transport is not enabled on this server")
		return
	}
	if !sse && s.cfg.DisableLongPolling {
		writeError(w, http.StatusNotFound, "the LongPolling transport is not enabled on this server")
		return
	}
	if time.Since(tok.Issued) > s.cfg.NegotiateTTL {
		writeError(w, http.StatusNotFound, fmt.Sprintf("connection token expired: connect within %s of negotiate", s.cfg.NegotiateTTL))
		return
	}
	if err := s.accepting(); err != nil {
		writeUnavailable(w, err)
		return
	}
	if sse {
		s.serveSSE(w, r, hub, id, tok.User)
	} else {
		s.startLongPolling(w, r, hub, id, tok.User)
	}
}

// register adds a new session and claims its connection id. On failure it
// has answered.
func (s *Server) register(w http.ResponseWriter, r *http.Request, sess *httpSession, hub string) bool {
	if _, loaded := s.sessions.LoadOrStore(sess.id, sess); loaded {
		writeError(w, http.StatusConflict, "another transport request is already active for this connection")
		return false
	}
	if err := s.claim(sess.id, s.admissionFor(r, hub, sess.user, false)); err != nil {
		s.sessions.CompareAndDelete(sess.id, sess)
		writeClaimError(w, err) // limits.go
		return false
	}
	return true
}

// handlePost feeds a POST body to the connection's reader and answers 200
// once it has been processed. POSTs to one connection run one at a time.
func (s *Server) handlePost(w http.ResponseWriter, r *http.Request, sess *httpSession) {
	limit := int64(s.cfg.MaxMessageSize) * postSizeFactor
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", limit))
			return
		}
		writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return
	}
	if sess.ended() {
		writeError(w, http.StatusNotFound, "No Connection with that ID: it has closed")
		return
	}
	ctx := r.Context()
	select {
	case sess.postSem <- struct{}{}:
	case <-sess.done:
		writeError(w, http.StatusNotFound, "No Connection with that ID: it has closed")
		return
	case <-ctx.Done():
		return
	}
	defer func() { <-sess.postSem }()
	if len(body) > 0 {
		ch := &postChunk{data: body, fed: make(chan struct{})}
		select {
		case sess.in <- ch:
		case <-sess.done:
			writeError(w, http.StatusNotFound, "No Connection with that ID: it has closed")
			return
		case <-ctx.Done():
			return
		}
		select {
		case <-ch.fed:
		case <-ctx.Done():
			return
		}
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// sseTransport writes each transport message as one unnamed SSE event. Its
// writes come from the stream's handler goroutine (during the handshake)
// or from the connection's writer, never both at once, and all of them end
// before the handler returns (serve waits for the writer).
type sseTransport struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	sess    *httpSession
	timeout time.Duration
	buf     []byte
}

func (t *sseTransport) write(p []byte) error {
	if t.sess.ended() {
		return errTransportClosed
	}
	t.buf = appendSSEEvent(t.buf[:0], p)
	_ = t.rc.SetWriteDeadline(time.Now().Add(t.timeout))
	if _, err := t.w.Write(t.buf); err != nil {
		return err
	}
	return t.rc.Flush()
}

// close ends the stream: the handler returns once serve has.
func (t *sseTransport) close() error {
	t.sess.end()
	return nil
}

// appendSSEEvent writes p as one event: each line as "data: <line>\r\n",
// then a blank line. CR, LF and CRLF all end a line in SSE, so each counts
// as one line break here (in JSON they can only be whitespace).
func appendSSEEvent(dst, p []byte) []byte {
	for {
		i := bytes.IndexAny(p, "\r\n")
		line := p
		if i >= 0 {
			line = p[:i]
		}
		dst = append(dst, "data: "...)
		dst = append(dst, line...)
		dst = append(dst, '\r', '\n')
		if i < 0 {
			break
		}
		if p[i] == '\r' && i+1 < len(p) && p[i+1] == '\n' {
			i++
		}
		p = p[i+1:]
		if len(p) == 0 {
			break
		}
	}
	return append(dst, '\r', '\n')
}

// serveSSE runs an SSE connection on the stream request's goroutine, from
// the first bytes to the end of the connection.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, hub, id, user string) {
	sess := newHTTPSession(transportSSE, id, user)
	rc := http.NewResponseController(w)
	tr := &sseTransport{w: w, rc: rc, sess: sess, timeout: s.cfg.SendTimeout}
	c := s.newConn(r, id, hub, user, tr)
	sess.c = c
	if !s.register(w, r, sess, hub) {
		c.cancel()
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Long-Running", "true")
	w.WriteHeader(http.StatusOK)
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.SendTimeout))
	_, err := io.WriteString(w, ":\r\n")
	if err == nil {
		err = rc.Flush()
	}
	if err != nil {
		c.cancel()
		s.unclaim(id)
		s.retire(sess)
		return
	}
	s.serve(c, &httpReader{sess: sess, req: r.Context()})
	s.retire(sess)
}

// availableTransports lists the enabled transports in preference order.
func (s *Server) availableTransports() []transportInfo {
	var out []transportInfo
	if !s.cfg.DisableWebSockets {
		out = append(out, transportInfo{Transport: transportWebSockets, TransferFormats: []string{"Text", "Binary"}})
	}
	if !s.cfg.DisableServerSentEvents {
		out = append(out, transportInfo{Transport: transportSSE, TransferFormats: []string{"Text"}})
	}
	if !s.cfg.DisableLongPolling {
		out = append(out, transportInfo{Transport: transportLP, TransferFormats: []string{"Text", "Binary"}})
	}
	return out
}
