package main

// durable.go is not part of the ceiling: raftplane's docs/experiments/
// durableceiling adds it (with a small patch to the ceiling's other files)
// to measure the floor of a durable, replicated fan-out with the ceiling's
// own fan-out code, when -durable-dir (default $CEILING_DURABLE_DIR) names
// a folder for the nodes' logs. One node (-durable-leader, c0 unless set)
// orders every publish; a
// publish is delivered, anywhere, only once it is on disk (write +
// fdatasync) on a majority of the three nodes, which is the least any
// design that keeps acknowledged messages through a crash has to wait for.
// It does what raftplane's commit path does and nothing else: the leader
// appends and syncs in parallel with replication; a follower syncs, answers
// the leader and commits by itself once the leader says its own copy is on
// disk (a durable notice); the leader commits on its own sync and one
// follower's answer. No terms, no elections, no recovery: it measures, it
// does not survive faults. Publish only once the links are up: like the
// ceiling's forwards, an append a down link would carry is dropped, and
// the followers then refuse every later one (out of order), so nothing
// commits again.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// Link frame kinds (the first byte of a frame body when -durable-dir is set).
const (
	kindAppend  byte = 'A' // leader -> followers: seq, then a forward body
	kindDurable byte = 'D' // leader -> followers: the leader's log is on disk up to seq
	kindAck     byte = 'K' // follower -> everyone: this node's log is on disk up to seq
)

type pending struct {
	seq           uint64
	hub           *hub
	op            byte
	group, target string
	args          []json.RawMessage
	done          func(seq uint64) // leader only: the publisher's completion
}

type durable struct {
	s      *server
	leader bool
	f      *os.File

	mu        sync.Mutex
	cond      *sync.Cond
	buf       []byte // appended, not yet written
	last      uint64 // last seq appended (written to buf)
	onDisk    uint64 // synced up to
	peerAck   uint64 // leader: highest follower ack
	leaderD   uint64 // follower: the leader's durable notice
	delivered uint64
	queue     []*pending // appended, not yet delivered, in seq order
}

func newDurable(s *server, dir string, leader bool) (*durable, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, s.node+".log"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	d := &durable{s: s, leader: leader, f: f}
	d.cond = sync.NewCond(&d.mu)
	go d.syncer()
	return d, nil
}

// propose is the leader's publish: append, replicate, deliver on commit.
func (d *durable) propose(h *hub, op byte, group, target string, args []json.RawMessage, done func(uint64)) {
	if !d.leader {
		if done != nil {
			done(0)
		}
		return
	}
	body := encodeForward(op, h.name, group, target, args)[4:]
	d.mu.Lock()
	d.last++
	p := &pending{seq: d.last, hub: h, op: op, group: group, target: target, args: args, done: done}
	d.queue = append(d.queue, p)
	d.appendLocked(p.seq, body)
	// Replicate under d.mu so frames leave in seq order.
	if d.s.link != nil {
		d.s.link.forward(frame(kindAppend, p.seq, body))
	}
	d.mu.Unlock()
}

// appendLocked queues seq's record for the syncer.
func (d *durable) appendLocked(seq uint64, body []byte) {
	d.buf = binary.BigEndian.AppendUint32(d.buf, uint32(len(body)+8))
	d.buf = binary.BigEndian.AppendUint64(d.buf, seq)
	d.buf = append(d.buf, body...)
	d.cond.Signal()
}

// follow handles a frame from a peer.
func (d *durable) follow(body []byte) error {
	if len(body) < 9 {
		return errors.New("short durable frame")
	}
	kind, seq, rest := body[0], binary.BigEndian.Uint64(body[1:9]), body[9:]
	d.mu.Lock()
	defer d.mu.Unlock()
	switch kind {
	case kindAppend:
		if d.leader || seq != d.last+1 {
			return errors.New("append out of order")
		}
		op, hubName, group, target, args, err := decodeForward(rest)
		if err != nil {
			return err
		}
		// rest aliases the reader's buffer: keep copies.
		cp := make([]json.RawMessage, len(args))
		for i, a := range args {
			cp[i] = append(json.RawMessage(nil), a...)
		}
		d.last = seq
		d.queue = append(d.queue, &pending{seq: seq, hub: d.s.hub(hubName), op: op, group: group, target: target, args: cp})
		d.appendLocked(seq, rest)
	case kindDurable:
		if !d.leader && seq > d.leaderD {
			d.leaderD = seq
			d.deliverLocked()
		}
	case kindAck:
		if d.leader && seq > d.peerAck {
			d.peerAck = seq
			d.deliverLocked()
		}
	}
	return nil
}

// syncer writes and fdatasyncs whatever was appended meanwhile (group
// commit), then tells the peers how far this node's log is on disk.
func (d *durable) syncer() {
	var b []byte
	for {
		d.mu.Lock()
		for len(d.buf) == 0 {
			d.cond.Wait()
		}
		b, d.buf = d.buf, b[:0]
		upTo := d.last
		d.mu.Unlock()
		if _, err := d.f.Write(b); err != nil {
			log.Fatalf("durable: write: %v", err)
		}
		if err := syscall.Fdatasync(int(d.f.Fd())); err != nil { // as raftplane's log
			log.Fatalf("durable: sync: %v", err)
		}
		d.mu.Lock()
		d.onDisk = upTo
		d.deliverLocked()
		d.mu.Unlock()
		kind := kindAck
		if d.leader {
			kind = kindDurable
		}
		if d.s.link != nil {
			d.s.link.forward(frame(kind, upTo, nil))
		}
	}
}

// deliverLocked delivers, in order, what a majority holds on disk: on the
// leader its own copy and one follower's; on a follower its own and the
// leader's.
func (d *durable) deliverLocked() {
	other := d.leaderD
	if d.leader {
		other = d.peerAck
	}
	commit := min(d.onDisk, other)
	for len(d.queue) > 0 && d.queue[0].seq <= commit {
		p := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		d.deliver(p)
	}
	d.delivered = max(d.delivered, commit)
}

func (d *durable) deliver(p *pending) {
	m := newShared(encodeInvocation(p.target, p.args, p.seq))
	for _, c := range p.hub.members(p.op, p.group) {
		c.send(m)
	}
	if p.done != nil {
		p.done(p.seq)
	}
}

func frame(kind byte, seq uint64, body []byte) []byte {
	b := make([]byte, 4, 4+9+len(body))
	b = append(b, kind)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)-4))
	return b
}

// proposeDurable publishes through the durable log; the completion goes out
// once the publish is committed. args alias the reader's buffer: copied.
func (c *conn) proposeDurable(m *inMessage, op byte, group, target string, args []json.RawMessage) {
	cp := make([]json.RawMessage, len(args))
	for i, a := range args {
		cp[i] = append(json.RawMessage(nil), a...)
	}
	var done func(uint64)
	if m.InvocationID != nil {
		id := *m.InvocationID
		done = func(seq uint64) {
			c.send(private(encodeCompletion(id, `"`+strconv.FormatUint(seq, 10)+`"`, "")))
		}
	}
	c.s.dur.propose(c.hub, op, group, target, cp, done)
}
