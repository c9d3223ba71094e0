package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// Stateful reconnect (the official clients' withStatefulReconnect) on any
// node. Both directions number their trackable messages (invocations,
// completions) from 1; after a dropped socket the client reconnects with
// the same token, possibly through a load balancer to another node, sends
// Sequence with its oldest unacknowledged message and resends from there,
// and expects the server's Sequence and resend likewise.
//
// raftplane keeps no per-connection buffer that would pin the client to a
// node. The connection's output is a function of the log: every message it
// receives is a log entry (a publish that addresses it), and so is every
// Completion it gets, because each of its client messages becomes one log
// command carrying an Origin (connection, client sequence number,
// invocation id), a reject command included when the message is refused
// before the log. So any node can recompute the stream and number it. The
// node holding the connection writes acknowledgement checkpoints into the
// log (ConnAck: the client had received N messages, the N-th at cursor C);
// a node taking the connection over sends Sequence N+1 and replays the
// stream after C, and the client drops what it already had. Client messages
// sent again are applied once: the FSM drops an Origin whose sequence
// number it has already applied.

// statefulAckInterval is how often the server acknowledges the client's
// messages and checkpoints the client's acknowledgements (the .NET server
// acks on a 1 s timer too).
const statefulAckInterval = time.Second

// statefulHold bounds how long a new stateful connection holds its first
// messages back waiting for the client's first message (see stateful.spoke).
const statefulHold = 2 * time.Second

// stateful is the stateful-reconnect state of a connection.
type stateful struct {
	// spoke is closed when the client's first message after the handshake
	// arrives. The JS client builds its message buffer only after the
	// handshake resolves and counts nothing that reaches it before; it
	// sends a Ping right after building it. Holding messages until then
	// keeps both sides' numbering equal.
	spoke     chan struct{}
	spokeOnce sync.Once

	mu      sync.Mutex
	outSeq  uint64    // messages sent to the client so far (written)
	sent    []sentMsg // sent, not yet acknowledged
	ackSeq  uint64    // checkpoint: the client acknowledged ackSeq messages ...
	ackAt   fsm.Cursor
	written uint64 // ... and this much of it is in the log

	// inSeq numbers the client's messages; the handler (inbox.go) owns it.
	inSeq uint64
	// applied is the highest client message applied, what the server
	// acknowledges: the handler writes it under mu, the writer reads it.
	applied uint64
	// ackedIn is what the writer last acknowledged; the writer owns it.
	ackedIn uint64
}

// maxUnacked bounds the sent messages remembered for checkpoints: a client
// that never acknowledges costs no more (its checkpoint just stops moving,
// and a takeover replays more).
const maxUnacked = 1 << 16

// sentMsg is a message sent to the client: its number and the cursor of
// the entry it comes from. last is false for a delivery followed, at the
// same cursor, by the Completion of the connection's own command.
type sentMsg struct {
	seq  uint64
	at   fsm.Cursor
	last bool
}

func newStateful() *stateful { return &stateful{spoke: make(chan struct{})} }

// clientSpoke records the client's first message; it reports whether this
// was it.
func (st *stateful) clientSpoke() (first bool) {
	st.spokeOnce.Do(func() { close(st.spoke); first = true })
	return first
}

// recordSent numbers a message written to the client.
func (st *stateful) recordSent(at fsm.Cursor) {
	st.mu.Lock()
	st.outSeq++
	if n := len(st.sent); n > 0 && st.sent[n-1].at == at {
		st.sent[n-1].last = false
	}
	if len(st.sent) >= maxUnacked {
		st.sent = st.sent[1:]
	}
	st.sent = append(st.sent, sentMsg{seq: st.outSeq, at: at, last: true})
	st.mu.Unlock()
}

// onAck handles the client's Ack n: it frees what was acknowledged and
// moves the checkpoint to the last acknowledged message that ends its
// entry (a replay starts after an entry, never inside one).
func (st *stateful) onAck(n uint64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	k := 0
	for k < len(st.sent) && st.sent[k].seq <= n {
		if m := st.sent[k]; m.last && m.seq > st.ackSeq {
			st.ackSeq, st.ackAt = m.seq, m.at
		}
		k++
	}
	st.sent = st.sent[k:]
}

// checkpoint returns a checkpoint not yet in the log, if any.
func (st *stateful) checkpoint() (seq uint64, at fsm.Cursor, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ackSeq, st.ackAt, st.ackSeq > st.written
}

func (st *stateful) checkpointed(seq uint64) {
	st.mu.Lock()
	if seq > st.written {
		st.written = seq
	}
	st.mu.Unlock()
}

// trackable reports the client message types that are numbered.
func trackable(t int) bool { return t >= typeInvocation && t <= typeCancelInvocation }

// handleStateful processes one client message of a stateful connection.
// refusal, when set, refuses it (an oversized or malformed message). It
// reports whether the message is done with (numbered and handled);
// otherwise the caller handles it as on any connection (Ping, Close).
func (c *conn) handleStateful(m hubMessage, refusal string) bool {
	st := c.sr
	switch {
	case m.Type == typeAck:
		st.onAck(uint64(m.SequenceID))
		return true
	case m.Type == typeSequence:
		// The client reconnected and resends from its message SequenceID:
		// number from there; what was applied before is skipped.
		if m.SequenceID > 0 {
			st.inSeq = uint64(m.SequenceID) - 1
		}
		return true
	case !trackable(m.Type):
		return false
	}
	st.inSeq++
	seq := st.inSeq
	if seq <= st.applied {
		return true // sent again after a reconnect: applied already
	}
	origin := fsm.Origin{Conn: c.id, Seq: seq}
	if m.HasInvocationID && (m.Type == typeInvocation || m.Type == typeStreamInvocation) {
		origin.InvocationID = m.InvocationID
	}
	var cmds []fsm.Command
	if refusal == "" {
		cmds, refusal = c.statefulCommands(m)
	}
	if refusal != "" {
		cmds = []fsm.Command{fsm.Reject(c.hub, refusal)}
	}
	// The last command carries the message: its origin and id (an
	// application method's effects come before it, with neither).
	last := &cmds[len(cmds)-1]
	last.Origin = origin
	last.ID = "s:" + c.id + ":" + strconv.FormatUint(seq, 10)
	if c.commitStateful(cmds) {
		st.mu.Lock()
		st.applied = seq
		st.mu.Unlock()
	}
	return true
}

// statefulCommands turns a client message into its commands, or says why
// it is refused.
func (c *conn) statefulCommands(m hubMessage) ([]fsm.Command, string) {
	switch m.Type {
	case typeStreamInvocation:
		return nil, fmt.Sprintf("Unknown hub method '%s': this hub has no streaming methods.", m.Target)
	case typeInvocation:
		if am, ok := c.appMethod(m.Target); ok {
			return c.statefulApp(m, am)
		}
		if c.upstreamMethod(m.Target) {
			return c.statefulUpstream(m) // upstream.go
		}
		cmd, err := c.buildInvocation(m)
		if err != nil {
			return nil, err.Error()
		}
		return []fsm.Command{cmd}, ""
	}
	return nil, "ignored" // a client result or stream item: nothing routes it
}

// commitStateful publishes a stateful connection's command until it is in
// the log (retrying with the same origin is safe: the log applies it once)
// or the connection ends. The Completion is not sent from here: the
// dispatcher sends it from the log, so any node can send it again.
func (c *conn) commitStateful(cmds []fsm.Command) bool {
	backoff := 50 * time.Millisecond
	for c.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(c.ctx, c.srv.cfg.PublishTimeout)
		res, err := c.srv.pub.PublishGroup(ctx, cmds)
		cancel()
		if err == nil && len(res) > 0 && res[len(res)-1].Err == fsm.ErrOutOfOrder {
			// An earlier message of the client is not applied yet (log
			// format 3 applies an origin's commands in order): this one
			// is not in the log, and goes again.
			err = fsm.ErrOutOfOrder
		}
		if err == nil || isOutcome(err) {
			return true
		}
		c.logger().Debug("stateful command not committed yet; retrying", "err", err)
		select {
		case <-c.ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return false
}

// isOutcome reports an error that is the applied command's outcome (it is
// in the log, with its error).
func isOutcome(err error) bool {
	return errors.Is(err, fsm.ErrUnknownConnection) || errors.Is(err, fsm.ErrConnectionExists) || errors.Is(err, fsm.ErrResumeDenied)
}

// completionFor returns the Completion that entry e owes its origin, or
// nil: every node computes the same one.
func completionFor(p protocol, e *fsm.Entry, epoch string) []byte {
	if e.Origin.InvocationID == "" {
		return nil
	}
	switch {
	case e.Kind == fsm.KindReject:
		return p.appendCompletion(nil, e.Origin.InvocationID, nil, e.Reason)
	case e.Kind == fsm.KindInvoke:
		// An application method: its result or error, after its effects.
		if e.Reason != "" {
			return p.appendCompletion(nil, e.Origin.InvocationID, nil, e.Reason)
		}
		return p.appendCompletion(nil, e.Origin.InvocationID, e.Args, "")
	case e.Err != nil:
		return p.appendCompletion(nil, e.Origin.InvocationID, nil, outcomeError(e))
	}
	res, _ := json.Marshal(e.Cursor.Format(epoch))
	return p.appendCompletion(nil, e.Origin.InvocationID, res, "")
}

// outcomeError words an applied command's error for its Completion.
func outcomeError(e *fsm.Entry) string {
	id := e.Key
	if e.Kind != fsm.KindPublish {
		id = e.Conn
	}
	if e.Err == fsm.ErrUnknownConnection {
		return fmt.Sprintf("unknown connection '%s'", id)
	}
	return e.Err.Error()
}

// statefulAcks, run by the writer every statefulAckInterval, acknowledges
// the client's applied messages.
func (c *conn) statefulAck(buf []byte) []byte {
	st := c.sr
	st.mu.Lock()
	applied := st.applied
	st.mu.Unlock()
	if applied <= st.ackedIn {
		return buf
	}
	st.ackedIn = applied
	return c.proto.appendAck(buf, applied)
}

// checkpointSweep writes the acknowledgement checkpoints of this node's
// stateful connections into the log (Start runs it once per
// statefulAckInterval), so that another node taking one over replays from
// there.
func (s *Server) checkpointSweep(conns []*conn) {
	var due []*conn
	for _, c := range conns {
		if c.sr != nil {
			if _, _, ok := c.sr.checkpoint(); ok {
				due = append(due, c)
			}
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, c := range due {
		seq, at, _ := c.sr.checkpoint()
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
			defer cancel()
			cmd := fsm.ConnAck(c.hub, c.id, seq, at)
			if _, err := s.pub.Publish(ctx, cmd); err == nil || isOutcome(err) {
				c.sr.checkpointed(seq)
			}
		}()
	}
	wg.Wait()
}

// statefulReconnect continues a stateful-reconnect connection whose socket
// dropped, on this node whichever node held it: no negotiate and no
// handshake; the client sends Sequence and resends what the server had not
// acknowledged, the server sends Sequence (the first message after the last
// checkpoint) and replays the connection's stream from the log, then goes
// live.
func (s *Server) statefulReconnect(w http.ResponseWriter, r *http.Request, tok connToken) {
	hub := tok.Hub
	s.evictLocal(tok.ID)
	ci, ok := s.reg.Connection(hub, tok.ID)
	if !ok {
		s.stats.reattach(outcomeReset) // stats.go
		writeError(w, http.StatusNotFound, "No Connection with that ID: it has closed")
		return
	}
	from, seq := ci.AckAt, ci.AckSeq
	if seq == 0 || from.Less(ci.Opened) {
		from, seq = ci.Opened, 0
	}
	if pos := s.stream.Position(); from.Less(pos.Floor) {
		s.stats.reattach(outcomeReset) // stats.go
		writeError(w, http.StatusNotFound, fmt.Sprintf("connection %s cannot be continued: what it missed is older than the message cache", tok.ID))
		return
	}
	groups, owner, err := s.reg.GroupsAt(hub, tok.ID, from)
	if err != nil || owner != tok.User {
		s.stats.reattach(reattachOutcome(err)) // stats.go
		writeError(w, http.StatusNotFound, fmt.Sprintf("connection %s cannot be continued: %v", tok.ID, err))
		return
	}
	rd, ok := s.claimUpgrade(w, r, hub, tok.ID, true)
	if !ok {
		s.stats.reattach(outcomeRefused) // stats.go
		return
	}
	c := s.newConn(r, tok.ID, hub, tok.User, &wsTransport{ws: rd.ws, rd: rd, timeout: s.cfg.SendTimeout})
	c.statefulOK = true
	c.sr = newStateful()
	c.sr.clientSpoke()
	c.sr.outSeq, c.sr.ackSeq, c.sr.ackAt, c.sr.written = seq, seq, from, seq
	c.sr.applied = ci.ClientSeq
	c.resume = &resumeReq{id: tok.ID, user: tok.User, from: from, groups: groups}
	go s.serveReattached(c, rd) // off the handler, as handleConnect
}

// evictLocal ends a transport of connection id still held on this node (a
// half-dead socket its client has given up on) and waits, briefly, until
// it has let go of the id.
func (s *Server) evictLocal(id string) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		c, held := s.conns[id]
		s.mu.Unlock()
		if !held {
			return
		}
		if c != nil {
			c.cancel()
			_ = c.tr.close()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveReattached runs a stateful reconnect: the client's first frame
// names the protocol (text: JSON, binary: MessagePack), the connection is
// resumed in the log, the server's Sequence and the replay go out, then the
// connection runs as any other, its reading on a goroutine of its own
// (readWebSocket).
func (s *Server) serveReattached(c *conn, rd *wsReader) {
	s.mu.Lock()
	s.conns[c.id] = c
	s.mu.Unlock()
	split, leftover, ok := s.admitReattached(c, rd)
	s.startReading(c, rd, split, leftover, ok)
}

// admitReattached is admit for a stateful reconnect.
func (s *Server) admitReattached(c *conn, rd *wsReader) (split splitter, leftover []pendingRecord, ok bool) {
	c.armCloseOnCancel()

	var first []byte
	if err := rd.next(s.cfg.HandshakeTimeout, func(p []byte) { first = append(first, p...) }); err != nil {
		s.stats.reattach(outcomeRefused) // stats.go
		c.disarmCloseOnCancel()
		_ = c.tr.close()
		return nil, nil, false
	}
	var p protocol = jsonProtocol{}
	if rd.lastBinary {
		p = msgpackProtocol{}
	}
	c.setProtocol(p)
	setBinaryFrames(c.tr, p.binary())
	split = newSplitter(p.name(), s.cfg.MaxMessageSize)
	split.feed(first, func(rec []byte, info recordInfo) {
		leftover = append(leftover, pendingRecord{append([]byte(nil), rec...), info})
	})
	opened, err := s.open(c)
	if err != nil || !c.disarmCloseOnCancel() || c.ctx.Err() != nil {
		c.logger().Debug("stateful reconnect refused", "err", err)
		s.stats.reattach(outcomeRefused) // stats.go
		_ = c.tr.close()
		s.release(c)
		return nil, nil, false
	}
	if err := c.tr.write(p.appendSequence(nil, c.sr.outSeq+1)); err != nil {
		_ = c.tr.close()
		s.release(c)
		return nil, nil, false
	}
	n, err := s.replay(c, c.resume, opened)
	if err != nil {
		c.logger().Warn("stateful reconnect replay failed", "err", err)
		s.stats.reattach(outcomeRefused) // stats.go
		_ = c.tr.write(p.appendClose(nil, "Reconnect failed: "+err.Error()+".", true))
		_ = c.tr.close()
		s.release(c)
		return nil, nil, false
	}
	c.logger().Debug("stateful reconnect", "from", c.resume.from, "sequence", c.sr.outSeq-uint64(n)+1, "replayed", n)
	s.stats.reattach(outcomeResumed) // stats.go
	return split, leftover, true
}
