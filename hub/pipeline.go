package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// Ordered pipelining: a connection's invocations of built-in methods go
// into the log in the order the client sent them without waiting for each
// commit, up to Config.MaxPipelinedInvocations in flight, and complete in
// that order.
//
// The connection's handler (inbox.go) numbers each one (fsm.Origin: the connection and a sequence
// number from 1) and submits it (Submitter); a completer goroutine waits
// for them in order and writes the Completions. The cluster keeps
// submissions in order on the common path (one batcher, one connection to
// the leader, which submits forwarded batches in the order they arrive),
// but a leader change can reorder them: an entry lost with a deposed
// leader is sent again after later ones were taken. The FSM therefore
// applies an origin's commands strictly in the order of their numbers
// (log format fsm.FormatOrdered): one that comes early is refused with
// fsm.ErrOutOfOrder, applied nowhere. By the time the completer reaches a
// command, every earlier one is decided, so it sends a refused one again
// and it applies in its turn. A command whose fate is unknown (its commit
// timed out) is decided by a reject with the same id and number: it
// applies if the command never did, closing the gap, and is a duplicate if
// it did, which says where. Hence a JoinGroup then a SendToGroup apply in
// that order, also across forward retries and leader changes.
//
// Application and upstream methods are not pipelined: they run on the
// handler once everything before them has completed, as they always did
// (their code may read what earlier invocations changed).

// pipeItem is one entry of a connection's pipeline, in client order.
type pipeItem struct {
	reply bool // the client wants a Completion
	invID string
	name  string // the method's name, for error texts
	// cmd is the command, as the one-command group Submit takes: the
	// item holds it, so a submission copies nothing more onto the heap.
	cmd     [1]fsm.Command
	pending Pending   // the submitted command, nil for the other kinds
	start   time.Time // when it was submitted
	// ctx ends PublishTimeout after start: the one deadline of the
	// command's submission, its wait and its resubmissions (one context
	// and one timer per invocation); cancel releases it once resolved.
	ctx    context.Context
	cancel context.CancelFunc
	// errText, when pending is nil and barrier is nil: a Completion with
	// this error, in its turn (a refused invocation).
	errText string
	// barrier, when set, is closed when the completer reaches it: the
	// handler waits on it before running an unpipelined method.
	barrier chan struct{}
}

// pipeline is a connection's queue of invocations in flight. The
// completer goroutine runs only while the queue holds something: an idle
// connection keeps no goroutine (and no stack) for it.
type pipeline struct {
	seq uint64 // the last sequence number given; the handler owns it

	mu sync.Mutex
	// q holds the items queued and not yet taken by the completer, at most
	// MaxPipelinedInvocations: push waits while it is full.
	q       []*pipeItem
	running bool // a completer goroutine is draining q
	// space wakes a push that found q full when the completer takes an
	// item (a wakeup, not a channel of tokens held for the connection's
	// life: an idle connection keeps 96 bytes less).
	space wakeup
}

// pipelined reports whether m, an invocation, goes through the pipeline:
// on a connection that is neither stateful (its messages carry the
// client's numbers) nor parallel, with MaxPipelinedInvocations above 1, a
// Publisher that can submit, and a cluster whose every server knows
// fsm.FormatOrdered.
func (c *conn) pipelined() bool {
	if c.sr != nil || c.parallel != nil || c.srv.cfg.MaxPipelinedInvocations < 2 || c.srv.sub == nil {
		return false
	}
	if c.pipe != nil {
		return true
	}
	s := c.srv
	if !s.ordered.Load() {
		if s.stream.Format() < fsm.FormatOrdered {
			return false
		}
		s.ordered.Store(true) // formats are only ever raised
	}
	c.pipe = &pipeline{}
	return true
}

// push queues an item, waiting while the pipeline is full, and starts the
// completer if it is not running; false when the connection ended first.
func (c *conn) push(it *pipeItem) bool {
	p := c.pipe
	p.mu.Lock()
	for len(p.q) >= c.srv.cfg.MaxPipelinedInvocations {
		space := p.space.chanLocked()
		p.mu.Unlock()
		select {
		case <-space:
		case <-c.ctx.Done():
			return false
		}
		p.mu.Lock()
	}
	p.q = append(p.q, it)
	start := !p.running
	p.running = true
	p.mu.Unlock()
	if start {
		c.invocations.Add(1)
		go func() {
			defer c.invocations.Done()
			c.complete1By1()
		}()
	}
	return true
}

// next takes the oldest item, or says the queue is empty and the
// completer stops (under the same lock push starts it under).
func (p *pipeline) next() (*pipeItem, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.q) == 0 {
		p.running = false
		p.q = nil // an idle connection keeps no queue
		return nil, false
	}
	it := p.q[0]
	p.q[0] = nil
	p.q = p.q[1:]
	p.space.wakeLocked()
	return it, true
}

// replyInOrder answers an invocation the handler refuses: through the
// pipeline when it is running, so that the answer follows those of the
// invocations before it.
func (c *conn) replyInOrder(id, errText string) {
	if c.pipe == nil {
		c.complete(id, nil, errText)
		return
	}
	c.push(&pipeItem{reply: true, invID: id, errText: errText})
}

// drainPipeline waits until every invocation in the pipeline has
// completed; false when the connection ended first.
func (c *conn) drainPipeline() bool {
	if c.pipe == nil {
		return true
	}
	b := &pipeItem{barrier: make(chan struct{})}
	if !c.push(b) {
		return false
	}
	select {
	case <-b.barrier:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// invokePipelined runs invocation m of a built-in method through the
// pipeline (the handler's part: build, number, submit, queue).
func (c *conn) invokePipelined(m hubMessage) {
	if _, ok := c.appMethod(m.Target); ok || c.upstreamMethod(m.Target) {
		if c.drainPipeline() {
			c.invoke(m)
		}
		return
	}
	it := &pipeItem{reply: m.HasInvocationID, invID: m.InvocationID}
	cmd, err := c.buildInvocation(m)
	if err != nil {
		it.errText = err.Error()
		c.push(it)
		return
	}
	it.name = builtins[strings.ToLower(m.Target)].name
	c.pipe.seq++
	cmd.Origin = fsm.Origin{Conn: c.id, Seq: c.pipe.seq}
	cmd.ID = pipeID(c.id, c.pipe.seq)
	it.cmd[0], it.start = cmd, time.Now()
	it.ctx, it.cancel = context.WithTimeout(c.ctx, c.srv.cfg.PublishTimeout)
	it.pending, err = c.srv.sub.Submit(it.ctx, it.cmd[:])
	if err != nil {
		// Not queued, so not in the log: the number is given again.
		it.cancel()
		c.pipe.seq--
		c.srv.stats.published(it.start, err) // stats.go
		it.errText = publishError(it.name, cmd, err)
		it.pending = nil
	}
	// An item the completer never reaches (the connection ended) has its
	// context ended with the connection's.
	c.push(it)
}

// pipeID is the command id of a connection's n-th pipelined command: the
// same for every copy of it (a resubmission, the reject that decides it),
// so that no two of them apply.
func pipeID(conn string, n uint64) string {
	return "p:" + conn + ":" + strconv.FormatUint(n, 36)
}

// complete1By1 is the completer: it resolves the pipeline's items in order
// and writes their Completions, until the queue is empty or the connection
// ends.
func (c *conn) complete1By1() {
	for c.ctx.Err() == nil {
		it, ok := c.pipe.next()
		if !ok {
			return
		}
		switch {
		case it.barrier != nil:
			close(it.barrier)
		case it.pending == nil:
			if it.reply {
				c.complete(it.invID, nil, it.errText)
			}
		default:
			if !c.resolve(it) {
				return
			}
		}
	}
}

// resolve waits for a submitted command's outcome, sends it again while
// it comes out of order, and decides it with a reject when its fate is
// unknown; then it answers the client. False when the connection is to
// end (it could not be decided, or it ended).
func (c *conn) resolve(it *pipeItem) bool {
	timeout := c.srv.cfg.PublishTimeout
	ctx := it.ctx
	defer it.cancel()
	res, err := it.pending.Wait(ctx)
	for err == nil && res[0].Err == fsm.ErrOutOfOrder {
		// Everything before it is decided now: in its turn, it applies.
		c.srv.stats.pipelineResent.Add(1)
		var p Pending
		if p, err = c.srv.sub.Submit(ctx, it.cmd[:]); err == nil {
			res, err = p.Wait(ctx)
		}
	}
	if c.ctx.Err() != nil {
		return false
	}
	var r fsm.Result
	if err == nil {
		r = res[0]
	}
	if err != nil || r.Err == fsm.ErrExpired {
		// Unknown: it may be in the log or not. Decide it.
		var ok bool
		if r, ok = c.decide(it); !ok {
			return false
		}
		if r.Err == nil && !r.Duplicate {
			// The reject applied: the command never will.
			c.srv.stats.published(it.start, errNotCommitted)
			if it.reply {
				c.complete(it.invID, nil, fmt.Sprintf("%s: not sent, the cluster did not commit it within %s; retry", it.name, timeout))
			}
			return true
		}
		err = nil // a duplicate: the command applied, at r.Cursor
		r.Err = nil
	}
	c.srv.stats.published(it.start, r.Err)
	if r.Err != nil {
		if it.reply {
			c.complete(it.invID, nil, publishError(it.name, it.cmd[0], r.Err))
		}
		return true
	}
	if it.reply {
		if !c.srv.isDispatched(r.Cursor) {
			// A timer only when there is something to wait for.
			wctx, wcancel := context.WithTimeout(c.ctx, timeout)
			c.srv.waitDispatched(wctx, r.Cursor)
			wcancel()
		}
		res, _ := json.Marshal(r.Cursor.Format(c.srv.stream.Epoch()))
		c.complete(it.invID, res, "")
	}
	return true
}

// errNotCommitted counts a pipelined command that a reject decided as not
// applied.
var errNotCommitted = errors.New("hub: not committed in time")

// decide submits a reject with the command's id and number: it applies
// when the command never did (so its number is used and later ones may
// apply), and is a duplicate of it when it did. When even that cannot be
// committed the connection is closed, with allowReconnect: its later
// invocations cannot apply until the gap is decided.
func (c *conn) decide(it *pipeItem) (fsm.Result, bool) {
	rej := fsm.Reject(c.hub, "not committed in time")
	rej.Origin, rej.ID = it.cmd[0].Origin, it.cmd[0].ID
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.cfg.PublishTimeout)
	defer cancel()
	p, err := c.srv.sub.Submit(ctx, []fsm.Command{rej})
	var res []fsm.Result
	if err == nil {
		res, err = p.Wait(ctx)
	}
	if err == nil && res[0].Err == nil {
		return res[0], true
	}
	if err == nil {
		err = res[0].Err
	}
	if c.ctx.Err() == nil {
		c.logger().Warn("closing a connection: an invocation's commit could not be decided", "err", err)
		c.close(disconnect{reason: "Connection closed with an error: the cluster could not commit this connection's invocations; reconnect.",
			allowReconnect: true, flush: true, cause: endServer})
	}
	return fsm.Result{}, false
}
