package hub

// Long polling, as ASP.NET Core does it: the first GET activates the
// connection with an empty 200; each later GET waits up to PollTimeout for
// data (200 with every buffered hub message, 200 empty on timeout); a newer
// poll ends an older one with 204; DELETE says goodbye (202); polls on a
// closed connection get 204. The keep-alive is inherent: no hub Pings are
// sent, and the connection is considered gone when no poll has been pending
// for ClientTimeout (httpReader.next).

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// lpMaxBuffered bounds the bytes waiting for a poll; the writer then waits
// (up to SendTimeout) for a poll to take them, so the connection's send
// queue (MaxQueuedMessages) applies as on the other transports.
const lpMaxBuffered = 4 * maxCoalesce

var (
	jsonPingFrame    = jsonProtocol{}.appendPing(nil)
	msgpackPingFrame = msgpackProtocol{}.appendPing(nil)
)

// lpTransport buffers outgoing hub messages for the next poll. Each poll
// writes only its own ResponseWriter, on its own handler goroutine.
type lpTransport struct {
	sess    *httpSession
	timeout time.Duration

	mu       sync.Mutex
	buf      []byte
	closed   bool          // the connection ended: polls get what is left, then 204
	deleted  bool          // the client said goodbye: polls get 204
	dataCh   chan struct{} // closed (and replaced) when data arrives or the transport closes
	drained  chan struct{} // closed (and replaced) when a poll takes the buffer
	poll     chan struct{} // the pending poll's cancel channel; nil when none
	lastPoll time.Time     // when a poll last began or ended
}

func newLPTransport(sess *httpSession, timeout time.Duration) *lpTransport {
	return &lpTransport{
		sess:     sess,
		timeout:  timeout,
		dataCh:   make(chan struct{}),
		drained:  make(chan struct{}),
		lastPoll: time.Now(),
	}
}

func (t *lpTransport) wakeLocked() {
	close(t.dataCh)
	t.dataCh = make(chan struct{})
}

// write buffers p for the next poll. Pings are dropped: long polling has
// inherent keep-alive.
func (t *lpTransport) write(p []byte) error {
	if bytes.Equal(p, jsonPingFrame) || bytes.Equal(p, msgpackPingFrame) {
		return nil
	}
	var timer *time.Timer
	t.mu.Lock()
	for !t.closed && len(t.buf) > 0 && len(t.buf)+len(p) > lpMaxBuffered {
		dr := t.drained
		t.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(t.timeout)
			defer timer.Stop()
		}
		select {
		case <-dr:
		case <-t.sess.done:
		case <-timer.C:
			return errSlowPoller
		}
		t.mu.Lock()
	}
	defer t.mu.Unlock()
	if t.closed {
		return errTransportClosed
	}
	t.buf = append(t.buf, p...)
	t.wakeLocked()
	return nil
}

var errSlowPoller = errors.New("long polling: no poll took the buffered messages in time")

// close ends the transport; a pending poll returns what is buffered, or 204.
func (t *lpTransport) close() error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		t.wakeLocked()
	}
	t.mu.Unlock()
	t.sess.end()
	return nil
}

// alive reports whether a poll is pending or one ended within d.
func (t *lpTransport) alive(d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.poll != nil || time.Since(t.lastPoll) < d
}

// startLongPolling creates a long-polling connection on its first GET and
// answers it with the activating empty 200. The connection runs on its own
// goroutine from here on; polls and POSTs reach it through its session.
func (s *Server) startLongPolling(w http.ResponseWriter, r *http.Request, hub, id, user string) {
	if s.openLongPolling(w, r, hub, id, user) == nil {
		return
	}
	lpHeaders(w)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// openLongPolling creates a long-polling connection and starts it on its
// own goroutine; nil when it was refused (and answered).
func (s *Server) openLongPolling(w http.ResponseWriter, r *http.Request, hub, id, user string) *httpSession {
	sess := newHTTPSession(transportLP, id, user)
	tr := newLPTransport(sess, s.cfg.SendTimeout)
	sess.lp = tr
	c := s.newConn(r, id, hub, user, tr)
	sess.c = c
	if !s.register(w, r, sess, hub) {
		c.cancel()
		return nil
	}
	go func() {
		s.serve(c, &httpReader{sess: sess})
		s.retire(sess)
	}()
	return sess
}

func lpHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")
	h.Set("Long-Running", "true")
}

// poll answers one long poll.
func (s *Server) poll(w http.ResponseWriter, r *http.Request, sess *httpSession) {
	t := sess.lp
	mine := make(chan struct{})
	t.mu.Lock()
	if t.poll != nil {
		close(t.poll) // a newer poll ends the older one with 204
	}
	t.poll = mine
	t.lastPoll = time.Now()
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if t.poll == mine {
			t.poll = nil
		}
		t.lastPoll = time.Now()
		t.mu.Unlock()
	}()
	lpHeaders(w)
	timer := time.NewTimer(s.cfg.PollTimeout)
	defer timer.Stop()
	for {
		t.mu.Lock()
		select {
		case <-mine:
			t.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		default:
		}
		if len(t.buf) > 0 && !t.deleted {
			data := t.buf
			t.buf = nil
			close(t.drained)
			t.drained = make(chan struct{})
			t.mu.Unlock()
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.SendTimeout))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(data)
			return
		}
		if t.closed || t.deleted {
			t.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		wake := t.dataCh
		t.mu.Unlock()
		select {
		case <-wake:
		case <-mine:
		case <-timer.C:
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusOK)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// handleDelete is the long-polling client's goodbye: 202, any pending poll
// ends with 204, and the connection closes without a resume window.
func (s *Server) handleDelete(w http.ResponseWriter, sess *httpSession) {
	t := sess.lp
	t.mu.Lock()
	t.deleted = true
	if t.poll != nil {
		close(t.poll)
		t.poll = nil
	}
	t.mu.Unlock()
	sess.c.goodbye.Store(true)
	sess.c.cancel()
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}
