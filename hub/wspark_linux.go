package hub

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// poller is the epoll set parked WebSocket readers wait in (wspark.go), and
// the goroutine that waits on it: one for the server, instead of one per
// idle connection. The set is the poller's own, beside the runtime's: a
// socket can be in several epoll sets, and the runtime's, edge-triggered,
// is not disturbed by a level-triggered, one-shot arming here.
type poller struct {
	srv   *Server
	epfd  int
	wakeR int // a pipe's ends: close writes to it, and run ends
	wakeW int
	tick  time.Duration // how often run looks for passed deadlines

	mu     sync.Mutex
	byID   map[uint32]*parking // the parkings whose sockets are in the set
	next   uint32
	broken bool // the set failed or closed: nothing is armed any more
	closed bool // the descriptors are closed: their numbers are not ours
	due    []*parking
}

// wakePipeID is the epoll key of the wake pipe; parkings' ids start at 1.
const wakePipeID = 0

// newPoller makes the epoll set. tick bounds how late a parked reader's
// passed read deadline is noticed.
func newPoller(s *Server, tick time.Duration) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: wakePipeID}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fds[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return &poller{srv: s, epfd: epfd, wakeR: fds[0], wakeW: fds[1], tick: tick, byID: map[uint32]*parking{}}, nil
}

// arm parks pk: its socket (w's) is armed for one readiness event, its
// deadline recorded. It reports false when it could not (the caller waits
// in the socket instead): the transport closed, the set failed, or the
// socket could not be reached.
func (p *poller) arm(pk *parking, w *idleWait, deadline time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pk.released || p.broken {
		return false
	}
	if !pk.added {
		fd := -1
		if err := w.raw.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
			return false
		}
		for {
			p.next++
			if _, used := p.byID[p.next]; p.next != wakePipeID && !used {
				break
			}
		}
		pk.id, pk.fd = p.next, fd
	}
	pk.deadline.Store(deadline.UnixNano())
	// Parked before armed: the event can come at once, and every waker
	// (run, release) takes p.mu first, which this holds.
	pk.state.Store(parkParked)
	op := syscall.EPOLL_CTL_MOD
	if !pk.added {
		op = syscall.EPOLL_CTL_ADD
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(pk.id)}
	if err := syscall.EpollCtl(p.epfd, op, pk.fd, &ev); err != nil {
		pk.state.Store(parkRunning)
		return false
	}
	if !pk.added {
		pk.added = true
		p.byID[pk.id] = pk
	}
	return true
}

// release takes pk's socket out of the set for good, before the transport
// closes it. The caller then wakes pk.
func (p *poller) release(pk *parking) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pk.released = true
	if !pk.added {
		return
	}
	pk.added = false
	delete(p.byID, pk.id)
	if !p.broken {
		// The socket is still open: its number is still this connection's.
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, pk.fd, nil)
	}
}

// run waits on the set until close: it starts the reader of each socket
// that becomes readable, and every tick those whose deadline has passed.
func (p *poller) run() {
	defer p.srv.wg.Done()
	defer p.closeFDs()
	events := make([]syscall.EpollEvent, 128)
	last := time.Now()
	for {
		n, err := syscall.EpollWait(p.epfd, events, max(int(p.tick/time.Millisecond), 1))
		if err != nil && !errors.Is(err, syscall.EINTR) {
			p.srv.log.Error("the WebSocket poller failed; idle readers wait in their sockets from now on", "err", err)
			p.fail()
			return
		}
		for i := range max(n, 0) {
			id := uint32(events[i].Fd)
			if id == wakePipeID {
				p.fail() // close: wake whatever is still parked
				return
			}
			p.mu.Lock()
			pk := p.byID[id]
			p.mu.Unlock()
			if pk != nil {
				p.srv.wake(pk)
			}
		}
		if now := time.Now(); now.Sub(last) >= p.tick {
			last = now
			p.expire(now)
		}
	}
}

// expire wakes the parked readers whose read deadline has passed: each
// reads, fails with the deadline error, and ends its connection as a
// reader waiting in its socket would have.
func (p *poller) expire(now time.Time) {
	p.mu.Lock()
	due := p.due[:0]
	for _, pk := range p.byID {
		if pk.state.Load() == parkParked && pk.deadline.Load() <= now.UnixNano() {
			due = append(due, pk)
		}
	}
	p.mu.Unlock()
	for _, pk := range due {
		p.srv.wake(pk)
	}
	clear(due)
	p.due = due[:0]
}

// fail stops parking and wakes every parked reader: they wait in their
// sockets from now on.
func (p *poller) fail() {
	p.mu.Lock()
	p.broken = true
	all := make([]*parking, 0, len(p.byID))
	for _, pk := range p.byID {
		all = append(all, pk)
	}
	clear(p.byID)
	p.mu.Unlock()
	for _, pk := range all {
		p.srv.wake(pk)
	}
}

// close ends run (the server's end, once its connections are gone).
func (p *poller) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		_, _ = syscall.Write(p.wakeW, []byte{1})
	}
}

func (p *poller) closeFDs() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.broken, p.closed = true, true
	syscall.Close(p.epfd)
	syscall.Close(p.wakeR)
	syscall.Close(p.wakeW)
}
