package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// request is one submission waiting for its outcome: a command, or a group
// of commands (PublishGroup, a forwarded batch) that goes into one log
// entry, in order, with nothing between them.
type request struct {
	cmds []fsm.Command
	done chan outcome // buffered 1: the resolver never blocks on a caller
	// stamped: a leader accepted the commands already (they came through
	// acceptForwarded), so their time is a leader's and travels unchanged.
	stamped bool
}

type outcome struct {
	res []fsm.Result // one per command of the request
	err error
}

// inflight is one batch on its way into the log, resolved in submission
// order: either an entry handed to raft on this (leader) node, or a batch
// forwarded to the leader.
type inflight struct {
	f    raft.ApplyFuture // leader path
	fwd  chan fwdOutcome  // forward path
	data []byte           // the encoded batch, to forward if leadership moves
	reqs []*request
}

type fwdOutcome struct {
	res []fsm.Result
	err error
}

// Publish appends cmd to the log and returns the cursor it got, once the
// entry is committed and applied on this node. It stamps the command's ID (if
// empty) and Time. Outcome errors from the FSM (fsm.ErrUnknownConnection, ...)
// come back with the cursor the command still occupies. If ctx ends first, the
// command may or may not be applied.
//
// An invalid command (see fsm.Command.Validate) fails at once with an error
// wrapping fsm.ErrInvalid, before it reaches the log. If the entry that
// carried the command is rejected by the FSM as malformed, the error wraps
// fsm.ErrRejected and the command was not applied.
func (n *Node) Publish(ctx context.Context, cmd fsm.Command) (fsm.Cursor, error) {
	res, err := n.PublishGroup(ctx, []fsm.Command{cmd})
	if err != nil {
		return fsm.Cursor{}, err
	}
	return res[0].Cursor, res[0].Err
}

// PublishGroup appends cmds to the log as one unit: in one entry, in order,
// with no other command between them, so every replica applies all of them
// at the same point of the log or none (a hub method's effects). It returns
// a result per command, once the entry is committed and applied on this
// node. Like Publish, it stamps Time on every command, and an ID on every
// command that has none except the effects of an fsm.KindInvoke (the invoke
// is deduplicated for them). It fails before the log with an error wrapping
// fsm.ErrInvalid when fsm.ValidateBatch refuses cmds or when they are too
// large to travel in one forwarded batch.
func (n *Node) PublishGroup(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	s, err := n.Submit(ctx, cmds)
	if err != nil {
		return nil, err
	}
	return s.Wait(ctx)
}

// Submission is a group of commands on its way into the log (Submit).
type Submission struct {
	n   *Node
	req request // one allocation for both: the batcher takes &req
}

// Wait returns the group's results once its entry is committed and applied
// on this node, as PublishGroup does. If ctx ends first, the commands may
// or may not be applied.
func (s *Submission) Wait(ctx context.Context) ([]fsm.Result, error) {
	select {
	case o := <-s.req.done:
		return o.res, o.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.n.stop:
		return nil, ErrClosed
	}
}

// Submit is PublishGroup without the wait: it returns once the group is
// queued for the log. Groups submitted one after another (by one
// goroutine) are cut into entries in that order and reach the leader in
// that order; only a leader change can reorder them (an entry lost with
// the old leader is sent again after later ones were taken), which is why
// a connection that pipelines numbers its commands (fsm.Origin) and the
// FSM applies an origin's commands in order (fsm.FormatOrdered).
func (n *Node) Submit(ctx context.Context, cmds []fsm.Command) (*Submission, error) {
	if len(cmds) == 0 {
		return nil, fmt.Errorf("%w: an empty group", fsm.ErrInvalid)
	}
	if err := checkGroup(cmds); err != nil {
		return nil, err
	}
	if err := n.disk.Err(); err != nil {
		return nil, err // disk.go: refused at once, not after ApplyTimeout
	}
	if err := n.waitLeader(ctx); err != nil {
		return nil, err
	}
	cmds = append([]fsm.Command(nil), cmds...)
	now := n.stamp()
	var effect []bool // a lone command is nobody's effect
	if len(cmds) > 1 {
		effect = effects(cmds)
	}
	for i := range cmds {
		c := &cmds[i]
		c.Time = now
		if c.ID == "" && (effect == nil || !effect[i]) {
			n.submitMu.Lock()
			n.idSeq++
			seq := n.idSeq
			n.submitMu.Unlock()
			c.ID = n.idPrefix + strconv.FormatUint(seq, 36)
		}
	}
	s := &Submission{n: n, req: request{cmds: cmds, done: make(chan outcome, 1)}}
	select {
	case n.submitCh <- &s.req:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.stop:
		return nil, ErrClosed
	}
}

// effects marks the commands that are effects of an fsm.KindInvoke (the
// Effects commands just before it): they carry no id, the invoke's stands
// for them.
func effects(cmds []fsm.Command) []bool {
	out := make([]bool, len(cmds))
	for j := range cmds {
		if cmds[j].Kind == fsm.KindInvoke {
			for i := max(0, j-int(cmds[j].Effects)); i < j; i++ {
				out[i] = true
			}
		}
	}
	return out
}

// checkGroup validates a submission: what fsm.ValidateBatch accepts, except
// a cluster-init (only a leader writes it, itself: initCluster), within the
// size a forwarded batch may have.
func checkGroup(cmds []fsm.Command) error {
	size := 1 + binary.MaxVarintLen32
	for i := range cmds {
		if err := checkSubmitted(&cmds[i]); err != nil {
			if len(cmds) == 1 {
				return err
			}
			return fmt.Errorf("command %d: %w", i, err)
		}
		size += fsm.BatchEntrySize(fsm.EncodedSize(&cmds[i]) + 2*binary.MaxVarintLen64) // room for an ID and a stamp
	}
	if err := fsm.ValidateBatch(cmds); err != nil {
		return err
	}
	if size > maxForwardBatch {
		return fmt.Errorf("%w: %d commands of about %d bytes in one group, the limit is %d", fsm.ErrInvalid, len(cmds), size, maxForwardBatch)
	}
	return nil
}

// checkSubmitted validates a command a client or a peer submits: what
// fsm.Command.Validate accepts, except a cluster-init, which only a leader
// writes, itself (initCluster).
func checkSubmitted(c *fsm.Command) error {
	if c.Kind == fsm.KindClusterInit {
		return fmt.Errorf("%w: a cluster-init command is written by the leader only", fsm.ErrInvalid)
	}
	return c.Validate()
}

// stamp returns the time to stamp on a command: this node's clock, but
// never less than the newest stamp applied, so that time in the log does
// not go backward when leadership moves to a node whose clock is behind
// (the FSM measures command age against the newest stamp: a leader stamping
// far behind it would see all its commands expire). clock.go has the rest.
func (n *Node) stamp() int64 {
	return n.clock.stamp(n.machine.Newest())
}

// waitLeader holds a submission while no leader is known, up to HoldTimeout.
func (n *Node) waitLeader(ctx context.Context) error {
	if addr, _ := n.raft.LeaderWithID(); addr != "" {
		return nil
	}
	hold := time.NewTimer(n.cfg.HoldTimeout)
	defer hold.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-tick.C:
		case <-hold.C:
			return fmt.Errorf("%w after waiting %s", ErrNoLeader, n.cfg.HoldTimeout)
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stop:
			return ErrClosed
		}
	}
}

// batchLoop packs queued commands into log entries: whatever is queued when
// an entry is cut goes into it, so a lone command is sent at once and a burst
// shares entries. It does not wait for commits; resolveLoop does.
func (n *Node) batchLoop() {
	defer n.wg.Done()
	// The format caps the commands of one entry, and an entry may have to
	// travel in one RPC frame (forwarded to the leader).
	maxCount := min(n.cfg.MaxBatch, fsm.MaxBatchCommands)
	maxBytes := min(n.cfg.MaxBatchBytes, maxForwardBatch)
	batch := make([]*request, 0, maxCount)
	cmds := make([]fsm.Command, 0, maxCount)
	var held *request // the first of the next batch: it differs in stamped, or did not fit
	for {
		first := held
		held = nil
		if first == nil {
			select {
			case <-n.stop:
				return
			case first = <-n.submitCh:
			}
		}
		batch, cmds = batch[:0], cmds[:0]
		batch = append(batch, first)
		// The exact encoded size: a version byte, the count, then each
		// command with its length (a lone command may be as large as
		// fsm.MaxCommandBytes, which maxForwardBatch holds; a group is
		// never split, checkGroup bounds it).
		size := 1 + binary.MaxVarintLen32 + requestSize(first)
		count := len(first.cmds)
	drain:
		for count < maxCount && size < maxBytes {
			select {
			case r := <-n.submitCh:
				rs := requestSize(r)
				if r.stamped != first.stamped || size+rs > maxBytes || count+len(r.cmds) > maxCount {
					// A batch is forwarded stamped or not as a whole, and
					// within the limits.
					held = r
					break drain
				}
				batch = append(batch, r)
				size += rs
				count += len(r.cmds)
			default:
				break drain
			}
		}
		for _, r := range batch {
			cmds = append(cmds, r.cmds...)
		}
		reqs := append([]*request(nil), batch...)
		in := &inflight{reqs: reqs}
		in.data = fsm.EncodeBatch(cmds)
		if n.isLeader() {
			in.f = n.raft.Apply(in.data, n.cfg.ApplyTimeout)
		} else {
			in.fwd = make(chan fwdOutcome, 1)
			// Sent from here, so batches reach the leader in the order they
			// were cut (one connection keeps them in order, and the leader
			// submits them in the order they arrive: acceptForwarded); the
			// answer is waited for, and retries made, on a goroutine.
			sent := n.sendForward(in.data, first.stamped)
			n.wg.Add(1)
			// Commands a leader accepted before it was deposed keep their
			// stamp on the way to the next one.
			go n.forward(in.fwd, in.data, len(cmds), first.stamped, sent)
		}
		select {
		case n.inflight <- in:
		case <-n.stop:
			fail(reqs, ErrClosed)
			return
		}
	}
}

// requestSize is what a request's commands add to an encoded batch.
func requestSize(r *request) int {
	n := 0
	for i := range r.cmds {
		n += fsm.BatchEntrySize(fsm.EncodedSize(&r.cmds[i]))
	}
	return n
}

// resolveLoop waits for entries in the order they were handed to raft and
// gives every command its outcome.
func (n *Node) resolveLoop() {
	defer n.wg.Done()
	for {
		var in *inflight
		select {
		case <-n.stop:
			return
		case in = <-n.inflight:
		}
		var res []fsm.Result
		if in.f != nil {
			if err := n.await(in.f); err != nil {
				if errors.Is(err, ErrClosed) {
					fail(in.reqs, err)
					return
				}
				err = mapRaftError(err)
				if !errors.Is(err, ErrNotLeader) {
					fail(in.reqs, err)
					continue
				}
				// Leadership moved while the entry was in flight: it may or
				// may not be committed. Forward the same commands to the new
				// leader; their ids make a second copy impossible.
				in.f, in.fwd = nil, make(chan fwdOutcome, 1)
				n.wg.Add(1)
				go n.forward(in.fwd, in.data, len(in.reqs), true, nil)
			}
		}
		if in.f != nil {
			var err error
			if res, err = applyResponse(in.f.Response()); err != nil {
				fail(in.reqs, err)
				continue
			}
		} else {
			var o fwdOutcome
			select {
			case o = <-in.fwd:
			case <-n.stop:
				fail(in.reqs, ErrClosed)
				return
			}
			if o.err != nil {
				fail(in.reqs, o.err)
				continue
			}
			res = o.res
			// The caller is told only once its node has applied the entry,
			// so what it sent is already in its node's stream.
			if err := n.waitApplied(res); err != nil {
				fail(in.reqs, err)
				continue
			}
		}
		total := 0
		for _, r := range in.reqs {
			total += len(r.cmds)
		}
		if len(res) != total {
			fail(in.reqs, fmt.Errorf("cluster: %d results for %d commands", len(res), total))
			continue
		}
		for _, r := range in.reqs {
			r.done <- outcome{res: res[:len(r.cmds):len(r.cmds)]}
			res = res[len(r.cmds):]
		}
	}
}

// waitApplied waits until this node has applied every entry in res.
func (n *Node) waitApplied(res []fsm.Result) error {
	var last fsm.Cursor
	for _, r := range res {
		if last.Less(r.Cursor) {
			last = r.Cursor
		}
	}
	ctx, cancel := context.WithTimeout(n.life, n.cfg.ApplyTimeout)
	defer cancel()
	if err := n.machine.Wait(ctx, last); err != nil {
		return fmt.Errorf("%w: committed at %s but not applied on this node within %s", ErrLagging, last, n.cfg.ApplyTimeout)
	}
	return nil
}

// sentForward is a first attempt at forwarding a batch, already written to
// the leader's connection.
type sentForward struct {
	addr raft.ServerAddress
	c    *rpcClient
	id   uint64
	ch   chan frame
	at   time.Time // when it was written (StageForward)
}

// sendForward writes a batch to the leader over the connection this node
// already has to it, without waiting for the answer; nil when there is no
// leader known or no connection yet (forward then dials, off the batcher).
func (n *Node) sendForward(batch []byte, stamped bool) *sentForward {
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return nil
	}
	c := n.rpcOpen(string(addr))
	if c == nil {
		return nil
	}
	id, ch, err := c.send(forwardType(stamped), batch)
	if err != nil {
		return nil
	}
	return &sentForward{addr: addr, c: c, id: id, ch: ch, at: time.Now()}
}

func forwardType(stamped bool) byte {
	if stamped {
		return rpcForwardStamped
	}
	return rpcForward
}

// sendToLeader sends a batch to the leader this node knows, dialling it if
// needed; nil and why when it cannot.
func (n *Node) sendToLeader(typ byte, batch []byte) (*sentForward, error) {
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return nil, ErrNoLeader
	}
	c, err := n.rpcTo(string(addr))
	if err == nil {
		var id uint64
		var ch chan frame
		if id, ch, err = c.send(typ, batch); err == nil {
			return &sentForward{addr: addr, c: c, id: id, ch: ch, at: time.Now()}, nil
		}
	}
	n.stats.forward(fwdError) // stats.go
	return nil, fmt.Errorf("forward to leader %s: %w", addr, err)
}

// forward sends a batch to the leader and retries, with the same command
// ids, until HoldTimeout: on a new leader, on a broken connection, even when
// the previous attempt may have been applied, because the FSM drops a
// command id it has applied before and returns the first cursor. sent, if
// not nil, is the first attempt, already on its way.
func (n *Node) forward(out chan<- fwdOutcome, batch []byte, count int, stamped bool, sent *sentForward) {
	typ := forwardType(stamped)
	defer n.wg.Done()
	deadline := time.Now().Add(n.cfg.HoldTimeout)
	backoff := 5 * time.Millisecond
	var lastErr error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if time.Now().Add(backoff).After(deadline) {
				if lastErr == nil {
					lastErr = ErrNoLeader
				}
				n.stats.forward(fwdGaveUp) // stats.go
				out <- fwdOutcome{err: fmt.Errorf("%w: gave up forwarding after %s: %w", ErrNoLeader, n.cfg.HoldTimeout, lastErr)}
				return
			}
			select {
			case <-time.After(backoff):
			case <-n.stop:
				out <- fwdOutcome{err: ErrClosed}
				return
			}
			backoff = min(2*backoff, 250*time.Millisecond)
		}
		if n.isLeader() {
			// Leadership came here while we waited: apply directly.
			f := n.raft.Apply(batch, n.cfg.ApplyTimeout)
			if err := n.await(f); err != nil {
				if errors.Is(err, ErrClosed) {
					out <- fwdOutcome{err: ErrClosed}
					return
				}
				lastErr = mapRaftError(err)
				continue
			}
			res, err := applyResponse(f.Response())
			out <- fwdOutcome{res: res, err: err}
			return
		}
		if attempt > 0 || sent == nil {
			if sent, lastErr = n.sendToLeader(typ, batch); sent == nil {
				continue
			}
		}
		addr := sent.addr
		ctx, cancel := context.WithTimeout(n.life, time.Until(deadline))
		watched := n.cancelOnLeaderChange(ctx, cancel, addr)
		f, err := sent.c.wait(ctx, sent.id, sent.ch)
		cancel()
		<-watched
		if err == nil {
			n.stats.forwardRTT.Observe(time.Since(sent.at))
		}
		if err != nil {
			n.stats.forward(fwdError) // stats.go
			lastErr = fmt.Errorf("forward to %s: %w", addr, err)
			continue
		}
		n.stats.forwardReply(f.typ) // stats.go
		switch f.typ {
		case rpcForwardOK:
			res, err := decodeResults(f.body)
			if err == nil && len(res) != count {
				err = fmt.Errorf("rpc: %d results for %d commands", len(res), count)
			}
			out <- fwdOutcome{res: res, err: err}
			return
		case rpcRefused:
			// The leader will refuse these commands however often they
			// are sent: give up at once.
			out <- fwdOutcome{err: refusalError(addr, f.body)}
			return
		case rpcNotLeader:
			lastErr = fmt.Errorf("%w: %s is no longer the leader", ErrNotLeader, addr)
		default:
			lastErr = fmt.Errorf("leader %s: %s", addr, f.body)
		}
	}
}

// leaderPoll is how often a forward in flight checks whether the leader it
// waits for is still the leader.
const leaderPoll = 50 * time.Millisecond

// cancelOnLeaderChange calls cancel once this node learns of a leader other
// than addr, so that a forward stuck on a deposed leader (isolated, paused)
// moves to the new one at once instead of waiting out HoldTimeout; the
// commands keep their ids, so the retry cannot apply them twice. The
// returned channel closes when the watcher has stopped, after ctx ends.
func (n *Node) cancelOnLeaderChange(ctx context.Context, cancel context.CancelFunc, addr raft.ServerAddress) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(leaderPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if now, _ := n.raft.LeaderWithID(); now != "" && now != addr {
					cancel()
					return
				}
			}
		}
	}()
	return done
}

// await waits for a future raft answers once the FSM has applied (Apply,
// Barrier), or until this node stops (ErrClosed). raft does not answer
// such a future when it shuts down between the commit and the FSM's apply
// (runFSM returns with entries still queued): a goroutine waiting on it
// for ever would hold Close for ever. The waiter goroutine that is left
// behind then ends with the process; it holds nothing but the future.
func (n *Node) await(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.stop:
		select {
		case err := <-done: // answered meanwhile
			return err
		default:
			return ErrClosed
		}
	}
}

// applyResponse interprets what the FSM returned for an entry: a result per
// command, or an error for the whole entry (fsm.ErrRejected: none of its
// commands was applied).
func applyResponse(resp any) ([]fsm.Result, error) {
	switch r := resp.(type) {
	case []fsm.Result:
		return r, nil
	case error:
		return nil, r
	}
	return nil, fmt.Errorf("cluster: unexpected apply response %T", resp)
}

func fail(reqs []*request, err error) {
	for _, r := range reqs {
		r.done <- outcome{err: err}
	}
}

func mapRaftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	return err
}
