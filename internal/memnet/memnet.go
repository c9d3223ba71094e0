// Package memnet is an in-memory IP network for tests, which a test can
// partition: hosts listen and dial on it as on TCP (it satisfies
// cluster.Network), and Partition, Isolate and Heal change what reaches
// what while the nodes run.
//
// A host is an IP address (Host("10.0.0.1")); its listeners are
// "ip:port" and a dial names one. A connection is a pair of buffered byte
// streams (BufferSize each way, so a writer blocks when its peer does not
// read, as on TCP) with deadlines, net.Conn's full contract.
//
// What a partition does: it refuses every new dial between the two sides
// at once (ErrPartitioned), and it cuts every connection open between
// them: their reads and writes, pending or later, fail with
// ErrPartitioned, on both ends. A real partition drops packets, so a real
// connection hangs until a deadline or keepalive fires and then fails; the
// node's code must handle the failure either way, and the hang only adds
// a wait whose length is the code's timeouts (Raft's transport waits 10
// s), which would make tests slow and their outcome depend on how busy
// the machine is. Cutting at once tests the same recovery (redial, retry,
// a new leader) without the wait. Heal lifts every partition; connections
// cut stay cut, as a real connection that timed out stays closed.
//
// The package starts no goroutine: everything happens on the callers'
// goroutines, and deadlines are timers (time.AfterFunc) stopped when the
// connection closes.
package memnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// DefaultBufferSize is how many bytes a connection holds each way before
// a write blocks (about a loopback TCP socket's buffer).
const DefaultBufferSize = 256 << 10

// DefaultBacklog is how many dialled connections a listener holds that it
// has not accepted; a dial beyond them is refused (ECONNREFUSED), as a
// dial fails when a real listener's queue stays full.
const DefaultBacklog = 128

// firstPort is where the ports a listen on port 0 gets start (as the
// kernel's ephemeral range does).
const firstPort = 32768

// ErrPartitioned is what a dial across a partition returns, and what the
// reads and writes of a connection a partition cut return.
var ErrPartitioned = errors.New("memnet: partitioned")

// Network is one in-memory network. The zero value is not usable: New.
type Network struct {
	bufferSize int
	backlog    int

	mu        sync.Mutex
	listeners map[netip.AddrPort]*listener
	conns     map[*conn]struct{} // the dialling ends of open connections
	nextPort  map[netip.Addr]uint16
	cut       map[[2]netip.Addr]bool // host pairs partitioned, lower address first
	isolated  map[netip.Addr]bool    // hosts partitioned from every other
}

// Option changes a Network's limits.
type Option func(*Network)

// BufferSize sets the bytes a connection holds each way (at least 1).
func BufferSize(n int) Option { return func(nw *Network) { nw.bufferSize = max(n, 1) } }

// Backlog sets the connections a listener holds unaccepted (at least 1).
func Backlog(n int) Option { return func(nw *Network) { nw.backlog = max(n, 1) } }

// New returns a network with no hosts and no partition.
func New(opts ...Option) *Network {
	nw := &Network{
		bufferSize: DefaultBufferSize,
		backlog:    DefaultBacklog,
		listeners:  map[netip.AddrPort]*listener{},
		conns:      map[*conn]struct{}{},
		nextPort:   map[netip.Addr]uint16{},
		cut:        map[[2]netip.Addr]bool{},
		isolated:   map[netip.Addr]bool{},
	}
	for _, o := range opts {
		o(nw)
	}
	return nw
}

// Host is one host of the network: what it listens on and dials from.
type Host struct {
	nw *Network
	ip netip.Addr
	// err is why ip is not a usable address; Listen and Dial return it.
	err error
}

// Host returns the host with address ip ("10.0.0.1"). A bad address gives
// a host whose Listen and Dial fail, saying why.
func (nw *Network) Host(ip string) *Host {
	a, err := netip.ParseAddr(ip)
	switch {
	case err != nil:
		err = fmt.Errorf("memnet: host address %q: %w", ip, err)
	case a.IsUnspecified():
		err = fmt.Errorf("memnet: host address %q is unspecified", ip)
	}
	return &Host{nw: nw, ip: a.Unmap(), err: err}
}

// String returns the host's address.
func (h *Host) String() string { return h.ip.String() }

func pairOf(a, b netip.Addr) [2]netip.Addr {
	if b.Less(a) {
		a, b = b, a
	}
	return [2]netip.Addr{a, b}
}

// blocked reports whether a and b are partitioned; nw.mu held. A host
// always reaches itself.
func (nw *Network) blocked(a, b netip.Addr) bool {
	return a != b && (nw.isolated[a] || nw.isolated[b] || nw.cut[pairOf(a, b)])
}

// Partition cuts host a from host b (addresses, as given to Host), both
// ways: dials between them fail and their open connections are cut.
func (nw *Network) Partition(a, b string) error {
	pa, err1 := netip.ParseAddr(a)
	pb, err2 := netip.ParseAddr(b)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("memnet: partition: %w", err)
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.cut[pairOf(pa.Unmap(), pb.Unmap())] = true
	nw.cutBlocked()
	return nil
}

// Isolate cuts host ip from every other host, those that appear later
// too: dials to and from it fail and its open connections are cut.
func (nw *Network) Isolate(ip string) error {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("memnet: isolate: %w", err)
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.isolated[a.Unmap()] = true
	nw.cutBlocked()
	return nil
}

// Heal lifts every partition and isolation. Connections that were cut
// stay cut; new dials succeed.
func (nw *Network) Heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	clear(nw.cut)
	clear(nw.isolated)
}

// cutBlocked cuts the open connections whose ends are now partitioned;
// nw.mu held.
func (nw *Network) cutBlocked() {
	for c := range nw.conns {
		if nw.blocked(c.local.Addr(), c.remote.Addr()) {
			c.in.fail(ErrPartitioned)
			c.out.fail(ErrPartitioned)
			delete(nw.conns, c)
		}
	}
}

// Conns returns how many connections are open (dialled, not yet closed by
// either end nor cut): a test's check that nothing is left behind.
func (nw *Network) Conns() int {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return len(nw.conns)
}

func opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Addr: addr, Err: err}
}

// Listen listens on addr ("ip:port", the host's own address or an
// unspecified one; port 0 picks a free port).
func (h *Host) Listen(addr string) (net.Listener, error) {
	if h.err != nil {
		return nil, h.err
	}
	ap, err := parseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("memnet: listen on %q: %w", addr, err)
	}
	if !ap.Addr().IsUnspecified() && ap.Addr() != h.ip {
		return nil, opError("listen", net.TCPAddrFromAddrPort(ap),
			fmt.Errorf("%w (host %s)", syscall.EADDRNOTAVAIL, h.ip))
	}
	nw := h.nw
	nw.mu.Lock()
	defer nw.mu.Unlock()
	port := ap.Port()
	if port == 0 {
		if port, err = nw.freePort(h.ip); err != nil {
			return nil, err
		}
	}
	local := netip.AddrPortFrom(h.ip, port)
	if nw.listeners[local] != nil {
		return nil, opError("listen", net.TCPAddrFromAddrPort(local), syscall.EADDRINUSE)
	}
	l := &listener{nw: nw, addr: local, queue: make(chan *conn, nw.backlog), done: make(chan struct{})}
	nw.listeners[local] = l
	return l, nil
}

// parseAddrPort parses "ip:port"; an empty host is the unspecified one.
func parseAddrPort(addr string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", port, err)
	}
	ip := netip.IPv4Unspecified()
	if host != "" {
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("memnet has addresses, not names: %w", err)
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
}

// freePort picks a port of ip no listener or connection uses; nw.mu held.
func (nw *Network) freePort(ip netip.Addr) (uint16, error) {
	for range 1 << 16 {
		p := nw.nextPort[ip]
		if p < firstPort {
			p = firstPort
		}
		nw.nextPort[ip] = p + 1 // wraps to 0, then back to firstPort
		if nw.listeners[netip.AddrPortFrom(ip, p)] == nil && !nw.portInUse(ip, p) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("memnet: host %s has no free port", ip)
}

// portInUse reports whether a connection of ip uses port p; nw.mu held.
func (nw *Network) portInUse(ip netip.Addr, p uint16) bool {
	for c := range nw.conns {
		if c.local == netip.AddrPortFrom(ip, p) {
			return true
		}
	}
	return false
}

// Dial connects to addr ("ip:port") from this host. It fails at once
// with ErrPartitioned across a partition, and with ECONNREFUSED where
// nothing listens or the listener's backlog is full; it never waits, so
// ctx matters only if it has ended already.
func (h *Host) Dial(ctx context.Context, addr string) (net.Conn, error) {
	if h.err != nil {
		return nil, h.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ap, err := parseAddrPort(addr)
	if err != nil || ap.Addr().IsUnspecified() {
		return nil, fmt.Errorf("memnet: dial %q: want ip:port (%v)", addr, err)
	}
	nw := h.nw
	remote := net.TCPAddrFromAddrPort(ap)
	// One critical section from the checks to the backlog: a partition or
	// a listener's Close either comes before (the dial fails) or after
	// (the connection is cut or dropped from the backlog).
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.blocked(h.ip, ap.Addr()) {
		return nil, opError("dial", remote, fmt.Errorf("%w: %s from %s", ErrPartitioned, ap, h.ip))
	}
	l := nw.listeners[ap]
	if l == nil {
		return nil, opError("dial", remote, syscall.ECONNREFUSED)
	}
	port, err := nw.freePort(h.ip)
	if err != nil {
		return nil, err
	}
	client, server := newPair(nw, netip.AddrPortFrom(h.ip, port), ap, nw.bufferSize)
	select {
	case l.queue <- server:
	default:
		return nil, opError("dial", remote, fmt.Errorf("%w (backlog of %d full)", syscall.ECONNREFUSED, cap(l.queue)))
	}
	nw.conns[client] = struct{}{}
	return client, nil
}

// listener is a host's listening port.
type listener struct {
	nw    *Network
	addr  netip.AddrPort
	queue chan *conn // dialled, not yet accepted (the backlog)
	once  sync.Once
	done  chan struct{}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, opError("accept", l.Addr(), net.ErrClosed)
	default:
	}
	select {
	case c := <-l.queue:
		return c, nil
	case <-l.done:
		return nil, opError("accept", l.Addr(), net.ErrClosed)
	}
}

// Close stops listening; connections in the backlog are closed (their
// dialers read EOF), those accepted already stay open.
func (l *listener) Close() error {
	first := false
	l.once.Do(func() {
		first = true
		// Under the lock Dial enqueues under: no dial reaches the backlog
		// after it is drained below.
		l.nw.mu.Lock()
		delete(l.nw.listeners, l.addr)
		close(l.done)
		l.nw.mu.Unlock()
	})
	if !first {
		return opError("close", l.Addr(), net.ErrClosed)
	}
	for {
		select {
		case c := <-l.queue:
			c.Close()
		default:
			return nil
		}
	}
}

func (l *listener) Addr() net.Addr { return net.TCPAddrFromAddrPort(l.addr) }

// stream is one direction of a connection: a bounded buffer between a
// writer and a reader.
type stream struct {
	max int

	mu      sync.Mutex
	buf     []byte
	wclosed bool  // the writer closed: the reader gets EOF once buf is drained
	rclosed bool  // the reader closed: writes fail
	err     error // cut by a partition: both sides fail
	wake    chan struct{}
}

func newStream(max int) *stream { return &stream{max: max, wake: make(chan struct{})} }

// changed wakes every waiter; s.mu held.
func (s *stream) changed() {
	close(s.wake)
	s.wake = make(chan struct{})
}

func (s *stream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		s.changed()
	}
}

func (s *stream) closeWrite() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.wclosed {
		s.wclosed = true
		s.changed()
	}
}

func (s *stream) closeRead() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.rclosed {
		s.rclosed, s.buf = true, nil
		s.changed()
	}
}

// read copies what is buffered into b, waiting for something (or EOF, a
// cut, the deadline) if nothing is.
func (s *stream) read(b []byte, dl *deadline) (int, error) {
	for {
		if dl.passed() { // a passed deadline fails even with data waiting, as on TCP
			return 0, os.ErrDeadlineExceeded
		}
		s.mu.Lock()
		switch {
		case s.rclosed:
			s.mu.Unlock()
			return 0, net.ErrClosed
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return 0, err
		case len(s.buf) > 0 || len(b) == 0:
			n := copy(b, s.buf)
			s.buf = s.buf[n:]
			if len(s.buf) == 0 {
				s.buf = nil // let the backing array go
			}
			if n > 0 {
				s.changed()
			}
			s.mu.Unlock()
			return n, nil
		case s.wclosed:
			s.mu.Unlock()
			return 0, io.EOF
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-dl.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// write appends b, waiting for room as the reader drains the buffer.
func (s *stream) write(b []byte, dl *deadline) (int, error) {
	done := 0
	for {
		if dl.passed() {
			return done, os.ErrDeadlineExceeded
		}
		s.mu.Lock()
		switch {
		case s.wclosed:
			s.mu.Unlock()
			return done, net.ErrClosed
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return done, err
		case s.rclosed:
			s.mu.Unlock()
			return done, syscall.EPIPE
		}
		if room := s.max - len(s.buf); room > 0 {
			n := min(room, len(b)-done)
			s.buf = append(s.buf, b[done:done+n]...)
			done += n
			s.changed()
		}
		if done == len(b) {
			s.mu.Unlock()
			return done, nil
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-dl.wait():
			return done, os.ErrDeadlineExceeded
		}
	}
}

// conn is one end of a connection.
type conn struct {
	nw            *Network
	local, remote netip.AddrPort
	in, out       *stream // in: the peer writes, this end reads
	peer          *conn
	rd, wd        deadline
	once          sync.Once
}

func newPair(nw *Network, client, server netip.AddrPort, size int) (*conn, *conn) {
	up, down := newStream(size), newStream(size)
	c := &conn{nw: nw, local: client, remote: server, in: down, out: up}
	s := &conn{nw: nw, local: server, remote: client, in: up, out: down}
	c.peer, s.peer = s, c
	return c, s
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.in.read(b, &c.rd)
	if err != nil && err != io.EOF {
		err = opError("read", c.RemoteAddr(), err)
	}
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.out.write(b, &c.wd)
	if err != nil {
		err = opError("write", c.RemoteAddr(), err)
	}
	return n, err
}

// Close closes this end: the peer reads what was written and then EOF,
// and its writes fail.
func (c *conn) Close() error {
	first := false
	c.once.Do(func() {
		first = true
		c.out.closeWrite()
		c.in.closeRead()
		c.rd.set(time.Time{})
		c.wd.set(time.Time{})
		c.nw.mu.Lock()
		delete(c.nw.conns, c)
		delete(c.nw.conns, c.peer)
		c.nw.mu.Unlock()
	})
	if !first {
		return opError("close", c.RemoteAddr(), net.ErrClosed)
	}
	return nil
}

func (c *conn) LocalAddr() net.Addr  { return net.TCPAddrFromAddrPort(c.local) }
func (c *conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

func (c *conn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

func (c *conn) SetReadDeadline(t time.Time) error  { c.rd.set(t); return nil }
func (c *conn) SetWriteDeadline(t time.Time) error { c.wd.set(t); return nil }

// deadline is one of a connection's deadlines: a channel closed when it
// passes (the pattern of net.Pipe's).
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer
	ch    chan struct{} // nil: no deadline yet
}

// set sets the deadline to t (zero: none).
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	if d.timer != nil && !d.timer.Stop() {
		<-d.ch // the timer fired: wait for it to have closed ch
	}
	d.timer = nil
	passed := isClosed(d.ch)
	if t.IsZero() {
		if passed {
			d.ch = make(chan struct{})
		}
		return
	}
	if wait := time.Until(t); wait > 0 {
		if passed {
			d.ch = make(chan struct{})
		}
		ch := d.ch
		d.timer = time.AfterFunc(wait, func() { close(ch) })
		return
	}
	if !passed {
		close(d.ch)
	}
}

// wait returns a channel closed once the deadline has passed.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

// passed reports whether the deadline has passed.
func (d *deadline) passed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch != nil && isClosed(d.ch)
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
