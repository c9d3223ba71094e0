package hub

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
)

// An idle WebSocket's reader waits for its socket to become readable
// outside gorilla's read path. Parked in gorilla's NextReader, a goroutine
// has about 1.1 KB of frames on its stack (frame parsing, bufio, net, poll),
// just under what fits in the 2 KB a goroutine starts with; the runtime
// starts goroutines with the average stack in use, which connections
// being opened lift over 2 KB, and a parked 4 KB stack never shrinks
// (hub/DESIGN.md). Parked in the socket's readiness wait it has about half
// that, so every idle reader keeps a 2 KB stack.
//
// The wait is only right when gorilla holds nothing read and unparsed:
// the connection's reader knows, because gorilla reads through a buffer
// of ours (Upgrader.ReadBufferSize 0 makes it reuse the reader a Hijack
// returns). Where the socket gives no raw access (a TLS listener) or the
// platform no peek (wsidle_other.go), the reader waits in gorilla as
// before.

// minOwnReadBuffer is the smallest read buffer gorilla reuses from a
// Hijack (below it, it makes its own of 4 KB).
const minOwnReadBuffer = 257

// readBufferCapture is the http.ResponseWriter gorilla's Upgrade is given:
// its Hijack returns the hijacked connection with a read buffer of ours,
// and keeps both for the connection's reader.
//
// The buffer gorilla keeps for the connection's life is the smallest it
// takes (minOwnReadBuffer); under it a lentReader reads the socket into a
// buffer of Config.WSReadBufferSize lent from bufs while it holds unread
// bytes, as the write buffers are lent for a write. So an idle connection
// keeps 288 bytes instead of its read buffer, and the socket is read in
// reads as large as before.
type readBufferCapture struct {
	http.ResponseWriter
	size int
	bufs *sync.Pool // of *[]byte of size bytes
	br   *bufio.Reader
	lr   *lentReader
	raw  syscall.RawConn
}

func (h *readBufferCapture) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hub: the response cannot be hijacked")
	}
	nc, brw, err := hj.Hijack()
	if err != nil || brw.Reader.Buffered() > 0 {
		return nc, brw, err // gorilla refuses data sent before the handshake's answer
	}
	h.lr = &lentReader{rd: nc, size: h.size, bufs: h.bufs}
	h.br = bufio.NewReaderSize(h.lr, minOwnReadBuffer)
	if sc, ok := nc.(syscall.Conn); ok && canPeek {
		if raw, err := sc.SyscallConn(); err == nil {
			h.raw = raw
		}
	}
	return nc, bufio.NewReadWriter(h.br, brw.Writer), nil
}

// idleWait is what a wsReader needs to wait outside gorilla: nil raw means
// it cannot.
type idleWait struct {
	br       *bufio.Reader
	lr       *lentReader
	raw      syscall.RawConn
	readable func(fd uintptr) bool // made once per connection: RawConn.Read keeps no reference
	peek     [1]byte
}

func newIdleWait(br *bufio.Reader, lr *lentReader, raw syscall.RawConn) *idleWait {
	if raw == nil {
		return nil
	}
	w := &idleWait{br: br, lr: lr, raw: raw}
	w.readable = w.peekReadable
	return w
}

// buffered reports whether gorilla or the lent buffer holds bytes read from
// the socket and not yet parsed: the reader must not wait for the socket
// then.
func (w *idleWait) buffered() bool { return w.br.Buffered() > 0 || w.lr.buffered() > 0 }

// readableNow reports whether the socket has something to read (data, its
// end, an error) without waiting.
func (w *idleWait) readableNow() bool {
	ready := false
	if err := w.raw.Control(func(fd uintptr) { ready = w.peekReadable(fd) }); err != nil {
		return true // the socket is closed: the read says so
	}
	return ready
}

// wait returns when the connection has something to read: bytes gorilla
// buffered already, or a readable socket (data, its end, an error). It
// obeys the connection's read deadline.
func (w *idleWait) wait() error {
	if w.buffered() {
		return nil
	}
	return w.raw.Read(w.readable)
}

// lentReader reads rd through a buffer of size bytes lent from bufs for as
// long as it holds bytes not yet read (the connection's reader is its only
// user). A read as large as the buffer goes straight to rd. A read that
// blocks in rd holds the buffer (where the reader waits outside gorilla,
// it reads only once the socket is readable, so an idle connection holds
// none).
type lentReader struct {
	rd   io.Reader
	size int
	bufs *sync.Pool
	buf  *[]byte // lent while r < w
	r, w int
	err  error // rd's error that came with bytes, returned once they are read
}

// Read implements io.Reader.
func (l *lentReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if l.buf == nil {
		if err := l.err; err != nil {
			l.err = nil
			return 0, err
		}
		if len(p) >= l.size {
			return l.rd.Read(p)
		}
		l.buf = l.bufs.Get().(*[]byte)
		n, err := l.rd.Read((*l.buf)[:l.size])
		if n <= 0 {
			l.giveBack()
			return 0, err
		}
		l.r, l.w, l.err = 0, n, err
	}
	n := copy(p, (*l.buf)[l.r:l.w])
	l.r += n
	if l.r == l.w {
		l.giveBack()
	}
	return n, nil
}

// buffered returns how many bytes read from rd are not yet read from l.
func (l *lentReader) buffered() int {
	if l == nil || l.buf == nil {
		return 0
	}
	return l.w - l.r
}

func (l *lentReader) giveBack() {
	l.bufs.Put(l.buf)
	l.buf, l.r, l.w = nil, 0, 0
}
