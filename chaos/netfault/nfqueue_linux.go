//go:build linux

package netfault

// An NFQUEUE delayer for kernels without netem: iptables rules in a
// node's namespace divert its packets to a netfilter queue, and this
// process holds each one for delay + U(0, jitter) before accepting it. The
// queue's netlink socket is created inside the node's namespace (a socket
// stays in the namespace it was created in) from a locked OS thread that
// setns'es there and back, so no helper process is needed. Raw
// NETLINK_NETFILTER with the standard library only; copy mode "meta", so no
// payload crosses into user space.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

const (
	nfnlSubsysQueue = 3
	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaCfgCmd      = 1
	nfqaCfgParams   = 2
	nfqaCfgQueueMax = 3
	nfqaCfgMask     = 4
	nfqaCfgFlags    = 5
	nfqaPacketHdr   = 1
	nfqaVerdictHdr  = 2

	nfqnlCfgCmdBind   = 1
	nfqnlCopyMeta     = 1
	nfqaCfgFFailOpen  = 1
	nfAccept          = 1
	nlmsgHdrLen       = 16
	nfgenHdrLen       = 4
	delayQueueMaxLen  = 16384
	delayRcvBufBytes  = 8 << 20
	netlinkNoENOBUFS  = 5
	solNetlink        = 270
	sysSetnsUnsupport = -1
)

// setnsTrap is setns(2)'s number; package syscall lacks it on most
// architectures.
func setnsTrap() int {
	switch runtime.GOARCH {
	case "amd64":
		return 308
	case "arm64", "riscv64", "loong64":
		return 268
	case "386":
		return 346
	case "arm":
		return 375
	case "ppc64", "ppc64le":
		return 350
	case "s390x":
		return 339
	}
	return sysSetnsUnsupport
}

func setns(fd uintptr) error {
	trap := setnsTrap()
	if trap == sysSetnsUnsupport {
		return fmt.Errorf("setns: unknown syscall number on %s", runtime.GOARCH)
	}
	if _, _, e := syscall.Syscall(uintptr(trap), fd, syscall.CLONE_NEWNET, 0); e != 0 {
		return e
	}
	return nil
}

// netlinkInNetns opens a NETLINK_NETFILTER socket inside the network
// namespace at path (/run/netns/chI).
func netlinkInNetns(path string) (int, error) {
	type res struct {
		fd  int
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // unlocked only if the thread is back home
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			c <- res{-1, err}
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			c <- res{-1, err}
			return
		}
		defer target.Close()
		if err := setns(target.Fd()); err != nil {
			runtime.UnlockOSThread()
			c <- res{-1, fmt.Errorf("setns %s: %w", path, err)}
			return
		}
		fd, serr := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_NETFILTER)
		if err := setns(orig.Fd()); err == nil {
			runtime.UnlockOSThread()
		} // else the goroutine exits locked and the runtime discards the thread
		c <- res{fd, serr}
	}()
	r := <-c
	return r.fd, r.err
}

// delayer is one node's running NFQUEUE delayer.
type delayer struct {
	f *os.File

	mu      sync.Mutex
	delay   time.Duration
	jitter  time.Duration
	pending map[uint32]*time.Timer
	closed  bool
	done    chan struct{}
	seq     uint32
}

func startDelayer(nsPath string, queue uint16, delay, jitter time.Duration) (*delayer, error) {
	fd, err := netlinkInNetns(nsPath)
	if err != nil {
		return nil, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, delayRcvBufBytes)
	_ = syscall.SetsockoptInt(fd, solNetlink, netlinkNoENOBUFS, 1)
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind netlink: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	d := &delayer{
		f:       os.NewFile(uintptr(fd), "nfqueue"),
		delay:   delay,
		jitter:  jitter,
		pending: map[uint32]*time.Timer{},
		done:    make(chan struct{}),
	}
	cfg := func(attrs ...[]byte) error {
		return d.request(queue, nfqnlMsgConfig, syscall.NLM_F_ACK, attrs...)
	}
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params[0:4], 0xffff)
	params[4] = nfqnlCopyMeta
	maxLen := binary.BigEndian.AppendUint32(nil, delayQueueMaxLen)
	flags := binary.BigEndian.AppendUint32(nil, nfqaCfgFFailOpen)
	if err := cfg(nla(nfqaCfgCmd, []byte{nfqnlCfgCmdBind, 0, 0, 0})); err != nil {
		d.f.Close()
		return nil, fmt.Errorf("binding queue %d: %w", queue, err)
	}
	if err := cfg(nla(nfqaCfgParams, params), nla(nfqaCfgQueueMax, maxLen)); err != nil {
		d.f.Close()
		return nil, fmt.Errorf("configuring queue %d: %w", queue, err)
	}
	// Fail open: if the queue overflows, packets pass undelayed instead of
	// being dropped.
	_ = cfg(nla(nfqaCfgFlags, flags), nla(nfqaCfgMask, flags))
	go d.loop(queue)
	return d, nil
}

// nla encodes one netlink attribute, padded to 4 bytes.
func nla(typ uint16, payload []byte) []byte {
	n := 4 + len(payload)
	b := make([]byte, (n+3)&^3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(n))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	copy(b[4:], payload)
	return b
}

// request sends one nfnetlink queue message; with NLM_F_ACK it waits for
// the kernel's answer (only before loop starts reading).
func (d *delayer) request(queue uint16, msg uint16, flags uint16, attrs ...[]byte) error {
	d.mu.Lock()
	d.seq++
	seq := d.seq
	d.mu.Unlock()
	size := nlmsgHdrLen + nfgenHdrLen
	for _, a := range attrs {
		size += len(a)
	}
	b := make([]byte, nlmsgHdrLen+nfgenHdrLen, size)
	binary.NativeEndian.PutUint32(b[0:4], uint32(size))
	binary.NativeEndian.PutUint16(b[4:6], nfnlSubsysQueue<<8|msg)
	binary.NativeEndian.PutUint16(b[6:8], syscall.NLM_F_REQUEST|flags)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	b[16] = syscall.AF_UNSPEC
	b[17] = 0 // NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:20], queue)
	for _, a := range attrs {
		b = append(b, a...)
	}
	if _, err := d.f.Write(b); err != nil {
		return err
	}
	if flags&syscall.NLM_F_ACK == 0 {
		return nil
	}
	buf := make([]byte, 8192)
	d.f.SetReadDeadline(time.Now().Add(2 * time.Second))
	defer d.f.SetReadDeadline(time.Time{})
	for {
		k, err := d.f.Read(buf)
		if err != nil {
			return err
		}
		for m := buf[:k]; len(m) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(m[0:4]))
			if l < nlmsgHdrLen || l > len(m) {
				break
			}
			typ := binary.NativeEndian.Uint16(m[4:6])
			if typ == syscall.NLMSG_ERROR && binary.NativeEndian.Uint32(m[8:12]) == seq && l >= nlmsgHdrLen+4 {
				if e := int32(binary.NativeEndian.Uint32(m[16:20])); e != 0 {
					return syscall.Errno(-e)
				}
				return nil
			}
			m = m[(l+3)&^3:]
		}
	}
}

// loop reads queued packets and schedules their verdicts.
func (d *delayer) loop(queue uint16) {
	defer close(d.done)
	buf := make([]byte, 65536)
	for {
		k, err := d.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.ENOBUFS) {
				continue
			}
			d.mu.Lock()
			closed := d.closed
			d.mu.Unlock()
			if closed {
				return
			}
			continue
		}
		for m := buf[:k]; len(m) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(m[0:4]))
			if l < nlmsgHdrLen || l > len(m) {
				break
			}
			typ := binary.NativeEndian.Uint16(m[4:6])
			if typ == nfnlSubsysQueue<<8|nfqnlMsgPacket && l >= nlmsgHdrLen+nfgenHdrLen {
				if id, ok := packetID(m[nlmsgHdrLen+nfgenHdrLen : l]); ok {
					d.hold(queue, id)
				}
			}
			m = m[(l+3)&^3:]
		}
	}
}

func packetID(attrs []byte) (uint32, bool) {
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs[0:2]))
		typ := binary.NativeEndian.Uint16(attrs[2:4]) & 0x3fff
		if l < 4 || l > len(attrs) {
			return 0, false
		}
		if typ == nfqaPacketHdr && l >= 8 {
			return binary.BigEndian.Uint32(attrs[4:8]), true
		}
		attrs = attrs[(l+3)&^3:]
	}
	return 0, false
}

func (d *delayer) hold(queue uint16, id uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed { // stopping: let it through at once
		go d.accept(queue, id)
		return
	}
	wait := d.delay
	if d.jitter > 0 {
		wait += rand.N(d.jitter)
	}
	d.pending[id] = time.AfterFunc(wait, func() {
		d.mu.Lock()
		_, ok := d.pending[id]
		delete(d.pending, id)
		d.mu.Unlock()
		if ok {
			d.accept(queue, id)
		}
	})
}

func (d *delayer) accept(queue uint16, id uint32) {
	v := make([]byte, 8)
	binary.BigEndian.PutUint32(v[0:4], nfAccept)
	binary.BigEndian.PutUint32(v[4:8], id)
	_ = d.request(queue, nfqnlMsgVerdict, 0, nla(nfqaVerdictHdr, v))
}

func (d *delayer) set(delay, jitter time.Duration) {
	d.mu.Lock()
	d.delay, d.jitter = delay, jitter
	d.mu.Unlock()
}

// stop accepts every held packet at once and closes the queue (packets
// still queued when the socket closes would be dropped).
func (d *delayer) stop(queue uint16) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	// A timer that already fired but has not taken its id out of pending
	// finds it gone and leaves the verdict to us.
	var ids []uint32
	for id, t := range d.pending {
		t.Stop()
		ids = append(ids, id)
	}
	d.pending = map[uint32]*time.Timer{}
	d.mu.Unlock()
	for _, id := range ids {
		d.accept(queue, id)
	}
	d.f.Close()
	<-d.done
}

// nfqueueSupported: this build can run the delayer.
const nfqueueSupported = true
