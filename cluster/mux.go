package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Raft traffic and the internal RPC share one port: the first byte a
// dialer writes says which service the connection is for (the pattern
// Consul, Nomad and rqlite use). The port is on the node's Network (TCP
// unless one is injected: network.go), so whatever the network, a node has
// one address and a partition of the network cuts both services.
const (
	muxRaft byte = 1
	muxRPC  byte = 2
)

// muxHeaderTimeout bounds how long an accepted connection may take to
// complete its TLS handshake (with peer TLS) and send its service byte.
const muxHeaderTimeout = 5 * time.Second

// mux accepts connections on one listener and hands each to the service its
// first byte names. With peer TLS the handshake comes first: the service
// byte and everything after it travel inside TLS, and a connection whose
// handshake fails is closed having received nothing but TLS's own messages.
type mux struct {
	ln   net.Listener
	net  Network // what dial connects through: the listener's network
	log  *slog.Logger
	subs map[byte]*muxListener

	serverTLS *tls.Config // nil: plaintext
	clientTLS *tls.Config // nil: plaintext

	// tlsFailures counts accepted connections whose TLS handshake failed
	// (no certificate, a certificate from another CA, not TLS at all).
	tlsFailures atomic.Uint64

	closeOnce sync.Once
	done      chan struct{}
	life      context.Context // ends with done; interrupts handshakes in progress
	endLife   context.CancelFunc
	wg        sync.WaitGroup
}

func newMux(ln net.Listener, nw Network, lg *slog.Logger, serverTLS, clientTLS *tls.Config) *mux {
	life, endLife := context.WithCancel(context.Background())
	m := &mux{ln: ln, net: nw, log: lg, subs: map[byte]*muxListener{}, done: make(chan struct{}),
		serverTLS: serverTLS, clientTLS: clientTLS, life: life, endLife: endLife}
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
	// One deadline covers the handshake and the service byte; closing the
	// mux cuts it short, so close need not wait for a slow stranger.
	_ = c.SetDeadline(time.Now().Add(muxHeaderTimeout))
	stop := context.AfterFunc(m.life, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	raw := c
	if m.serverTLS != nil {
		tc := tls.Server(raw, m.serverTLS)
		if err := tc.Handshake(); err != nil {
			m.tlsFailures.Add(1)
			m.log.Debug("peer TLS handshake failed on the raft port", "remote", raw.RemoteAddr(), "err", err)
			raw.Close()
			return
		}
		c = tc
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		raw.Close()
		return
	}
	if !stop() { // the mux is closing
		raw.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
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
		m.endLife()
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
	return l.m.dial(string(addr), l.b, timeout)
}

// dial connects to a peer's shared port over the node's Network, does the
// TLS client handshake when peer TLS is on, and names service b; timeout
// bounds each step. Every connection a node opens to a peer comes from
// here (Raft's transport through muxListener.Dial, the RPC through rpcTo),
// so an injected network carries all of them.
func (m *mux) dial(addr string, b byte, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	c, err := m.net.Dial(ctx, addr)
	cancel()
	if err != nil {
		return nil, err
	}
	raw := c
	_ = raw.SetDeadline(time.Now().Add(timeout))
	if cfg := m.clientTLS; cfg != nil {
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			// A config that checks host names needs one: the host we dial.
			host, _, _ := net.SplitHostPort(addr)
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, fmt.Errorf("peer TLS handshake with %s: %w", addr, err)
		}
		c = tc
	}
	if _, err := c.Write([]byte{b}); err != nil {
		raw.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// PeerTLSFailures returns how many connections to this node's Raft port
// failed the peer TLS handshake since it opened: strangers, peers with a
// certificate from another CA or an expired one, plaintext dialers.
func (n *Node) PeerTLSFailures() uint64 {
	if n.mux == nil {
		return 0
	}
	return n.mux.tlsFailures.Load()
}

// advertisedListener reports the advertised address to raft, which puts it
// in the configuration, while listening on the bind address.
type advertisedListener struct {
	*muxListener
	adv net.Addr
}

func (l advertisedListener) Addr() net.Addr { return l.adv }
