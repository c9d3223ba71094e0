package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// The internal RPC runs on the Raft port (service byte muxRPC). A connection
// carries pipelined frames in both directions:
//
//	frame    = uvarint(len(body)+1+len(id)) type id body
//	id       = uvarint request id, echoed by the response
//
// Requests: rpcForward (body: an fsm batch), rpcForwardStamped (the same,
// from a deposed leader: its commands already carry a leader's time, which
// the receiver keeps unless it is too far ahead) and rpcStats (no body).
// One-way, with request id 0 and no response: rpcDurable, a leader's
// durable notice (body: uvarint term, uvarint index, the leader's ID;
// followercommit.go). A node that does not know a type answers rpcFailed,
// which for id 0 its sender drops.
// Responses: rpcForwardOK (uvarint n, then n x {uvarint index, uvarint
// offset, byte outcome code, byte duplicate}), rpcStatsOK (uvarint applied,
// uvarint last log index), rpcNotLeader, rpcFailed (body: message; the
// sender may retry) and rpcRefused (body: a refusal byte, then a message;
// final: the same request would be refused again).
const (
	rpcForward   byte = 1
	rpcStats     byte = 2
	rpcForwardOK byte = 3
	rpcStatsOK   byte = 4
	rpcNotLeader byte = 5
	rpcFailed    byte = 6

	rpcForwardStamped byte = 7
	rpcRefused        byte = 8
	rpcDurable        byte = 9
)

// Refusal bytes of an rpcRefused response.
const (
	refusedInvalid  byte = 1 // the request or a command in it is invalid (fsm.ErrInvalid)
	refusedRejected byte = 2 // the log entry that carried it was rejected (fsm.ErrRejected)
)

// maxRPCFrame bounds a frame so a corrupt length cannot allocate much, and
// holds a batch with one command of the largest size the log takes.
const maxRPCFrame = fsm.MaxCommandBytes + 64

// maxForwardBatch is the largest batch a frame carries (the frame also holds
// a type byte and a request id).
const maxForwardBatch = maxRPCFrame - 1 - binary.MaxVarintLen64

type frame struct {
	typ  byte
	id   uint64
	body []byte
}

func writeFrame(w io.Writer, f frame) error {
	var hdr [2*binary.MaxVarintLen64 + 1]byte
	idb := binary.AppendUvarint(nil, f.id)
	n := binary.PutUvarint(hdr[:], uint64(1+len(idb)+len(f.body)))
	hdr[n] = f.typ
	n++
	n += copy(hdr[n:], idb)
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := w.Write(f.body)
	return err
}

func readFrame(r *bufio.Reader) (frame, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return frame{}, err
	}
	if size < 2 || size > maxRPCFrame {
		return frame{}, fmt.Errorf("rpc: frame of %d bytes", size)
	}
	// Grow with the bytes that actually arrive: a length prefix alone must
	// not make us allocate it.
	var b bytes.Buffer
	b.Grow(int(min(size, 64<<10)))
	if _, err := io.CopyN(&b, r, int64(size)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	buf := b.Bytes()
	id, n := binary.Uvarint(buf[1:])
	if n <= 0 {
		return frame{}, errors.New("rpc: bad request id")
	}
	return frame{typ: buf[0], id: id, body: buf[1+n:]}, nil
}

func encodeResults(res []fsm.Result) []byte {
	b := binary.AppendUvarint(nil, uint64(len(res)))
	for _, r := range res {
		b = binary.AppendUvarint(b, r.Cursor.Index)
		b = binary.AppendUvarint(b, uint64(r.Cursor.Offset))
		b = append(b, fsm.ErrorCode(r.Err))
		dup := byte(0)
		if r.Duplicate {
			dup = 1
		}
		b = append(b, dup)
	}
	return b
}

func decodeResults(b []byte) ([]fsm.Result, error) {
	bad := errors.New("rpc: malformed forward response")
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, bad
	}
	b = b[k:]
	out := make([]fsm.Result, 0, n)
	for i := uint64(0); i < n; i++ {
		idx, k1 := binary.Uvarint(b)
		if k1 <= 0 {
			return nil, bad
		}
		off, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 || off > 1<<32-1 || len(b) < k1+k2+2 {
			return nil, bad
		}
		code, dup := b[k1+k2], b[k1+k2+1]
		err, ok := fsm.ErrorFromCode(code)
		if !ok {
			return nil, bad
		}
		out = append(out, fsm.Result{Cursor: fsm.Cursor{Index: idx, Offset: uint32(off)}, Err: err, Duplicate: dup == 1})
		b = b[k1+k2+2:]
	}
	if len(b) != 0 {
		return nil, bad
	}
	return out, nil
}

// serveRPC accepts internal RPC connections until the mux closes.
func (n *Node) serveRPC(l *muxListener) {
	defer n.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if !n.adoptRPCConn(c) {
			return
		}
	}
}

// adoptRPCConn serves an accepted RPC connection on a goroutine that
// closeRPC stops and waits for. It closes c and returns false once the node
// is closing.
func (n *Node) adoptRPCConn(c net.Conn) bool {
	n.rpcMu.Lock()
	defer n.rpcMu.Unlock()
	if n.rpcClosed {
		c.Close()
		return false
	}
	n.rpcIn[c] = struct{}{}
	n.rpcWG.Add(1)
	go n.serveRPCConn(c)
	return true
}

// refused builds an rpcRefused response.
func refused(id uint64, why byte, msg string) frame {
	return frame{typ: rpcRefused, id: id, body: append([]byte{why}, msg...)}
}

// refusalError is the error a forwarder returns for an rpcRefused response.
func refusalError(addr raft.ServerAddress, body []byte) error {
	if len(body) > 0 && body[0] == refusedRejected {
		return fmt.Errorf("%w (leader %s: %s)", fsm.ErrRejected, addr, body[1:])
	}
	if len(body) > 0 && body[0] == refusedInvalid {
		body = body[1:]
	}
	return fmt.Errorf("%w: refused by the leader %s: %s", fsm.ErrInvalid, addr, body)
}

func (n *Node) serveRPCConn(c net.Conn) {
	defer n.rpcWG.Done()
	defer func() {
		n.rpcMu.Lock()
		delete(n.rpcIn, c)
		n.rpcMu.Unlock()
		c.Close()
	}()
	r := bufio.NewReader(c)
	var wmu sync.Mutex
	var reqs sync.WaitGroup
	defer reqs.Wait()
	reply := func(f frame) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := writeFrame(c, f); err != nil {
			c.Close()
		}
	}
	for {
		f, err := readFrame(r)
		if err != nil {
			return
		}
		switch f.typ {
		case rpcForward, rpcForwardStamped:
			cmds, err := fsm.DecodeBatch(f.body)
			if err != nil {
				reply(refused(f.id, refusedInvalid, "forwarded batch: "+err.Error()))
				continue
			}
			// Submitted here, in the order the batches arrive on this
			// connection (a follower sends them in the order it cut them),
			// and waited for on a goroutine of its own.
			req, answer := n.acceptForwarded(f.id, cmds, f.typ == rpcForwardStamped)
			if req == nil {
				reply(answer)
				continue
			}
			reqs.Add(1)
			go func(id uint64) {
				defer reqs.Done()
				reply(n.answerForwarded(id, req))
			}(f.id)
		case rpcDurable:
			// One-way: nothing is answered, and a body that is not a
			// notice is dropped (only a peer past the mux sends these).
			if d, ok := decodeDurableNotice(f.body); ok && n.commits != nil {
				n.commits.leaderDurable(d)
			}
		case rpcStats:
			st := n.Status()
			b := binary.AppendUvarint(nil, n.machine.Position().Applied)
			b = binary.AppendUvarint(b, st.LastLogIndex)
			reply(frame{typ: rpcStatsOK, id: f.id, body: b})
		default:
			reply(frame{typ: rpcFailed, id: f.id, body: []byte(fmt.Sprintf("unknown request type %d", f.typ))})
		}
	}
}

// acceptForwarded runs forwarded commands through this (leader's) batcher, so
// they share entries with local ones. Their ids are kept, which is what makes
// a retried forward safe. Their time is restamped with the leader's clock,
// unless a deposed leader stamped them already (stamped): a command keeps
// the time a leader first accepted it at, so the FSM can refuse a copy that
// arrives too late to be recognised as a duplicate (fsm.MaxCommandAge).
// A stamp more than MaxClockSkew ahead of this leader's is clamped to it:
// the FSM measures ages against the newest stamp applied, so one stamp from
// the future would expire every later command (see fsm/DESIGN.md).
//
// Every command is validated first, so that a buggy or hostile peer cannot
// put into the log what a local submitter could not: nothing is submitted
// unless the whole request is valid.
//
// It returns the request to wait for (answerForwarded), or nil and the
// answer when the commands are not submitted.
func (n *Node) acceptForwarded(id uint64, cmds []fsm.Command, stamped bool) (*request, frame) {
	if !n.isLeader() {
		return nil, frame{typ: rpcNotLeader, id: id}
	}
	now := n.stamp()
	limit := now + n.cfg.MaxClockSkew.Nanoseconds()
	var clamped int
	var ahead int64
	effect := effects(cmds)
	for i := range cmds {
		c := &cmds[i]
		if err := checkSubmitted(c); err != nil {
			return nil, refused(id, refusedInvalid, fmt.Sprintf("command %d: %v", i, err))
		}
		if c.ID == "" && !effect[i] { // an invoke's effect: the invoke carries the id
			return nil, refused(id, refusedInvalid, fmt.Sprintf("command %d: %v: a forwarded command needs an id", i, fsm.ErrInvalid))
		}
		switch {
		case !stamped || c.Time <= 0:
			c.Time = now
		case c.Time > limit:
			clamped++
			ahead = max(ahead, c.Time-now)
			c.Time = now
		}
	}
	if err := fsm.ValidateBatch(cmds); err != nil {
		return nil, refused(id, refusedInvalid, err.Error())
	}
	if clamped > 0 {
		n.log.Warn("clamped forwarded command stamps from the future to this leader's clock",
			"commands", clamped, "ahead", time.Duration(ahead), "max_clock_skew", n.cfg.MaxClockSkew)
	}
	// The batch stays one request, so it stays in one entry: a group in it
	// (a hub method's effects) is never split or interleaved.
	req := &request{cmds: cmds, done: make(chan outcome, 1), stamped: true}
	select {
	case n.submitCh <- req:
		return req, frame{}
	case <-n.stop:
		return nil, frame{typ: rpcFailed, id: id, body: []byte("leader shutting down")}
	}
}

// answerForwarded waits for a forwarded request's outcome and words it.
func (n *Node) answerForwarded(id uint64, req *request) frame {
	var o outcome
	select {
	case o = <-req.done:
	case <-n.stop:
		return frame{typ: rpcFailed, id: id, body: []byte("leader shutting down")}
	}
	if o.err != nil {
		if errors.Is(o.err, ErrNotLeader) {
			return frame{typ: rpcNotLeader, id: id}
		}
		if errors.Is(o.err, fsm.ErrRejected) {
			return refused(id, refusedRejected, o.err.Error())
		}
		return frame{typ: rpcFailed, id: id, body: []byte(o.err.Error())}
	}
	res := o.res
	return frame{typ: rpcForwardOK, id: id, body: encodeResults(res)}
}

// rpcClient is one pipelined connection to a peer's internal RPC.
type rpcClient struct {
	addr string
	c    net.Conn

	wmu     sync.Mutex
	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan frame
	err     error // set once the connection broke
	done    chan struct{}
}

// rpcOpen returns the working connection to addr if there is one, without
// dialling.
func (n *Node) rpcOpen(addr string) *rpcClient {
	n.rpcMu.Lock()
	defer n.rpcMu.Unlock()
	if c := n.rpcOut[addr]; c != nil && !n.rpcClosed {
		select {
		case <-c.done:
		default:
			return c
		}
	}
	return nil
}

// rpcTo returns a working connection to addr, dialling if needed.
func (n *Node) rpcTo(addr string) (*rpcClient, error) {
	n.rpcMu.Lock()
	if n.rpcClosed {
		n.rpcMu.Unlock()
		return nil, ErrClosed
	}
	if c := n.rpcOut[addr]; c != nil {
		select {
		case <-c.done:
		default:
			n.rpcMu.Unlock()
			return c, nil
		}
	}
	n.rpcMu.Unlock()
	conn, err := n.mux.dial(addr, muxRPC, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &rpcClient{addr: addr, c: conn, pending: map[uint64]chan frame{}, done: make(chan struct{})}
	n.rpcMu.Lock()
	defer n.rpcMu.Unlock()
	if n.rpcClosed {
		conn.Close()
		return nil, ErrClosed
	}
	if old := n.rpcOut[addr]; old != nil {
		select {
		case <-old.done:
		default: // another caller won the race; use theirs
			conn.Close()
			return old, nil
		}
	}
	n.rpcOut[addr] = c
	n.rpcWG.Add(1)
	go func() {
		defer n.rpcWG.Done()
		c.readLoop()
	}()
	return c, nil
}

func (c *rpcClient) readLoop() {
	r := bufio.NewReader(c.c)
	for {
		f, err := readFrame(r)
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		ch := c.pending[f.id]
		delete(c.pending, f.id)
		c.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	}
}

func (c *rpcClient) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
	for id, ch := range c.pending {
		delete(c.pending, id)
		close(ch)
	}
	c.mu.Unlock()
	c.c.Close()
}

// call sends one request and waits for its response.
func (c *rpcClient) call(ctx context.Context, typ byte, body []byte) (frame, error) {
	id, ch, err := c.send(typ, body)
	if err != nil {
		return frame{}, err
	}
	return c.wait(ctx, id, ch)
}

// post writes one request that has no response (id 0).
func (c *rpcClient) post(typ byte, body []byte) error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.write(frame{typ: typ, body: body})
}

// write writes f whole, or fails the connection.
func (c *rpcClient) write(f frame) error {
	c.wmu.Lock()
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err := writeFrame(c.c, f)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
	}
	return err
}

// postDurable sends a durable notice body to the peer at addr (its Raft
// address, where the internal RPC runs too).
func (n *Node) postDurable(addr raft.ServerAddress, body []byte) error {
	c, err := n.rpcTo(string(addr))
	if err != nil {
		return err
	}
	return c.post(rpcDurable, body)
}

// send writes one request; wait waits for its response. Requests sent one
// after another by one goroutine reach the peer in that order (one
// connection, written under wmu), which is what keeps forwarded batches in
// order (forward).
func (c *rpcClient) send(typ byte, body []byte) (uint64, chan frame, error) {
	ch := make(chan frame, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, nil, err
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()

	if err := c.write(frame{typ: typ, id: id, body: body}); err != nil {
		return 0, nil, err
	}
	return id, ch, nil
}

func (c *rpcClient) wait(ctx context.Context, id uint64, ch chan frame) (frame, error) {
	select {
	case f, ok := <-ch:
		if !ok {
			c.mu.Lock()
			err := c.err
			c.mu.Unlock()
			return frame{}, fmt.Errorf("rpc to %s: %w", c.addr, err)
		}
		return f, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return frame{}, ctx.Err()
	}
}

// closeRPC closes every internal RPC connection and waits for their
// goroutines.
func (n *Node) closeRPC() {
	n.rpcMu.Lock()
	n.rpcClosed = true
	for _, c := range n.rpcOut {
		c.c.Close()
	}
	for c := range n.rpcIn {
		c.Close()
	}
	n.rpcMu.Unlock()
	n.rpcWG.Wait()
}

// PeerStats is what a peer reports about itself over the internal RPC.
type PeerStats struct {
	Applied      uint64
	LastLogIndex uint64
}

// peerStats asks a peer (by Raft address) for its applied index.
func (n *Node) peerStats(ctx context.Context, addr string) (PeerStats, error) {
	c, err := n.rpcTo(addr)
	if err != nil {
		return PeerStats{}, err
	}
	f, err := c.call(ctx, rpcStats, nil)
	if err != nil {
		return PeerStats{}, err
	}
	if f.typ != rpcStatsOK {
		return PeerStats{}, fmt.Errorf("stats from %s: %s", addr, f.body)
	}
	applied, k := binary.Uvarint(f.body)
	last, k2 := binary.Uvarint(f.body[max(k, 0):])
	if k <= 0 || k2 <= 0 {
		return PeerStats{}, errors.New("rpc: malformed stats response")
	}
	return PeerStats{Applied: applied, LastLogIndex: last}, nil
}
