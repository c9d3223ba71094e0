package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// request is one submitted command waiting for its outcome.
type request struct {
	cmd  fsm.Command
	done chan outcome // buffered 1: the resolver never blocks on a caller
}

type outcome struct {
	res fsm.Result
	err error
}

// inflight is one log entry handed to raft, resolved in submission order.
type inflight struct {
	f    raft.ApplyFuture
	reqs []*request
}

// Publish appends cmd to the log and returns the cursor it got, once the
// entry is committed and applied on this node. It stamps the command's ID (if
// empty) and Time. Outcome errors from the FSM (fsm.ErrUnknownConnection, ...)
// come back with the cursor the command still occupies. If ctx ends first, the
// command may or may not be applied.
func (n *Node) Publish(ctx context.Context, cmd fsm.Command) (fsm.Cursor, error) {
	if err := cmd.Validate(); err != nil {
		return fsm.Cursor{}, err
	}
	if err := n.waitLeader(ctx); err != nil {
		return fsm.Cursor{}, err
	}
	n.submitMu.Lock()
	n.idSeq++
	seq := n.idSeq
	n.submitMu.Unlock()
	if cmd.ID == "" {
		cmd.ID = n.idPrefix + strconv.FormatUint(seq, 36)
	}
	cmd.Time = time.Now().UnixNano()
	req := &request{cmd: cmd, done: make(chan outcome, 1)}
	select {
	case n.submitCh <- req:
	case <-ctx.Done():
		return fsm.Cursor{}, ctx.Err()
	case <-n.stop:
		return fsm.Cursor{}, ErrClosed
	}
	select {
	case o := <-req.done:
		if o.err != nil {
			return fsm.Cursor{}, o.err
		}
		return o.res.Cursor, o.res.Err
	case <-ctx.Done():
		return fsm.Cursor{}, ctx.Err()
	case <-n.stop:
		return fsm.Cursor{}, ErrClosed
	}
}

// waitLeader holds a submission while no leader is known, up to HoldTimeout.
func (n *Node) waitLeader(ctx context.Context) error {
	if n.raft.State() == raft.Leader {
		return nil
	}
	hold := time.NewTimer(n.cfg.HoldTimeout)
	defer hold.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if n.raft.State() == raft.Leader {
			return nil
		}
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return fmt.Errorf("%w (leader is %s)", ErrNotLeader, addr)
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
	batch := make([]*request, 0, n.cfg.MaxBatch)
	cmds := make([]fsm.Command, 0, n.cfg.MaxBatch)
	for {
		var first *request
		select {
		case <-n.stop:
			return
		case first = <-n.submitCh:
		}
		batch, cmds = batch[:0], cmds[:0]
		batch = append(batch, first)
		size := len(first.cmd.Args) + 128
	drain:
		for len(batch) < n.cfg.MaxBatch && size < n.cfg.MaxBatchBytes {
			select {
			case r := <-n.submitCh:
				batch = append(batch, r)
				size += len(r.cmd.Args) + 128
			default:
				break drain
			}
		}
		for _, r := range batch {
			cmds = append(cmds, r.cmd)
		}
		reqs := append([]*request(nil), batch...)
		if n.raft.State() != raft.Leader {
			fail(reqs, ErrNotLeader)
			continue
		}
		f := n.raft.Apply(fsm.EncodeBatch(cmds), n.cfg.ApplyTimeout)
		select {
		case n.inflight <- &inflight{f: f, reqs: reqs}:
		case <-n.stop:
			fail(reqs, ErrClosed)
			return
		}
	}
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
		if err := in.f.Error(); err != nil {
			fail(in.reqs, mapRaftError(err))
			continue
		}
		res, ok := in.f.Response().([]fsm.Result)
		if !ok || len(res) != len(in.reqs) {
			fail(in.reqs, fmt.Errorf("cluster: unexpected apply response %T", in.f.Response()))
			continue
		}
		for i, r := range in.reqs {
			r.done <- outcome{res: res[i]}
		}
	}
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
