package hub

import (
	"bufio"
	"errors"
	"net"
	"net/http"
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
type readBufferCapture struct {
	http.ResponseWriter
	size int
	br   *bufio.Reader
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
	h.br = bufio.NewReaderSize(nc, h.size)
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
	raw      syscall.RawConn
	readable func(fd uintptr) bool // made once per connection: RawConn.Read keeps no reference
	peek     [1]byte
}

func newIdleWait(br *bufio.Reader, raw syscall.RawConn) *idleWait {
	if raw == nil {
		return nil
	}
	w := &idleWait{br: br, raw: raw}
	w.readable = w.peekReadable
	return w
}

// wait returns when the connection has something to read: bytes gorilla
// buffered already, or a readable socket (data, its end, an error). It
// obeys the connection's read deadline.
func (w *idleWait) wait() error {
	if w.br.Buffered() > 0 {
		return nil
	}
	return w.raw.Read(w.readable)
}
