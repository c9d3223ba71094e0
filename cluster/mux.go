package cluster

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Raft traffic and the internal RPC share one TCP port: the first byte a
// dialer writes says which service the connection is for (the pattern
// Consul, Nomad and rqlite use).
const (
	muxRaft byte = 1
	muxRPC  byte = 2
)

// muxHeaderTimeout bounds how long an accepted connection may take to send
// its service byte.
const muxHeaderTimeout = 5 * time.Second

// mux accepts connections on one listener and hands each to the service its
// first byte names.
type mux struct {
	ln   net.Listener
	log  *slog.Logger
	subs map[byte]*muxListener

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

func newMux(ln net.Listener, lg *slog.Logger) *mux {
	m := &mux{ln: ln, log: lg, subs: map[byte]*muxListener{}, done: make(chan struct{})}
	for _, b := range []byte{muxRaft, muxRPC} {
		m.subs[b] = &muxListener{m: m, b: b, ch: make(chan net.Conn, 16)}
	}
	return m
}

func (m *mux) start() {
	m.wg.Add(1)
	go m.acceptLoop()
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Temporary failures (EMFILE...): back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.log.Warn("raft port accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-m.done:
				return
			}
			continue
		}
		backoff = 0
		m.wg.Add(1)
		go m.route(c)
	}
}

func (m *mux) route(c net.Conn) {
	defer m.wg.Done()
	_ = c.SetReadDeadline(time.Now().Add(muxHeaderTimeout))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	sub := m.subs[b[0]]
	if sub == nil {
		m.log.Debug("unknown service byte on the raft port", "byte", b[0], "remote", c.RemoteAddr())
		c.Close()
		return
	}
	select {
	case sub.ch <- c:
	case <-m.done:
		c.Close()
	}
}

func (m *mux) close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		err = m.ln.Close()
		m.wg.Wait()
		for _, s := range m.subs {
		drain:
			for {
				select {
				case c := <-s.ch:
					c.Close()
				default:
					break drain
				}
			}
		}
	})
	return err
}

// muxListener is one service's view of the shared port. For Raft it is the
// raft.StreamLayer.
type muxListener struct {
	m  *mux
	b  byte
	ch chan net.Conn
}

var _ raft.StreamLayer = (*muxListener)(nil)

func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

// Close does nothing: the mux owns the port and closes it once.
func (l *muxListener) Close() error { return nil }

func (l *muxListener) Addr() net.Addr { return l.m.ln.Addr() }

// Dial connects to a peer's shared port and names this service.
func (l *muxListener) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return dialService(string(addr), l.b, timeout)
}

func dialService(addr string, b byte, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{b}); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// advertisedListener reports the advertised address to raft, which puts it
// in the configuration, while listening on the bind address.
type advertisedListener struct {
	*muxListener
	adv net.Addr
}

func (l advertisedListener) Addr() net.Addr { return l.adv }
