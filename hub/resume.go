package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/raftplane/raftplane/fsm"
)

// resumeReq is a cursor resume: connect with ?resume=<the connection's
// token>&cursor=<last cursor seen> on any node, and the connection continues
// with its id, user and groups, first replaying what it missed after the
// cursor, then live. reset, when set, is why that cannot be done; the client
// then gets a Close with that error and allowReconnect, never a silent gap.
type resumeReq struct {
	id     string
	user   string
	from   fsm.Cursor
	groups []string // the connection's groups right after from
	reset  string
}

// prepareResume checks a resume request before the upgrade. Errors that are
// about the request itself are HTTP errors; errors about the stream (an
// expired cursor, another cluster's cursor, a connection that is gone) are
// resets, told to the client as a SignalR Close.
func (s *Server) prepareResume(r *http.Request, hub, user, rawTok string) (*resumeReq, int, error) {
	tok, err := s.parseToken(rawTok)
	switch {
	case err != nil:
		return nil, http.StatusNotFound, fmt.Errorf("resume: %w", err)
	case tok.Hub != hub:
		return nil, http.StatusNotFound, fmt.Errorf("resume: the token is for hub %q", tok.Hub)
	case s.jwtRequired() && tok.User != user:
		return nil, http.StatusForbidden, errors.New("resume: the access token's user does not match the connection's")
	}
	rr := &resumeReq{id: tok.ID, user: tok.User}
	if tok.V0 {
		rr.id = rawTok
	}
	raw := queryValue(r, "cursor")
	if raw == "" {
		return nil, http.StatusBadRequest, errors.New("resume: missing cursor (the last cursor the client received)")
	}
	epoch, c, err := fsm.ParseCursor(raw)
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("resume: %w", err)
	}
	pos := s.stream.Position()
	if epoch != pos.Epoch {
		rr.reset = fmt.Sprintf("Resume refused: cursor %s comes from another cluster (epoch %s; this cluster is %s). Start a new connection.", raw, epoch, pos.Epoch)
		return rr, 0, nil
	}
	if pos.Last.Less(c) {
		// The client saw this cursor on a node that is ahead of this one:
		// wait until this node has applied it, or the connection's state
		// here would be older than what the client already has.
		if pos, err = s.waitApplied(r.Context(), c); err != nil {
			return nil, http.StatusServiceUnavailable, fmt.Errorf("resume: this node has not yet applied cursor %s (%v); retry", raw, err)
		}
	}
	if ci, ok := s.reg.Connection(hub, rr.id); ok && c.Less(ci.Opened) {
		c = ci.Opened // nothing before the connection existed was addressed to it
	}
	rr.from = c
	groups, owner, err := s.reg.GroupsAt(hub, rr.id, c)
	switch {
	case errors.Is(err, fsm.ErrUnknownConnection):
		rr.reset = fmt.Sprintf("Resume refused: connection %s is closed (it was away longer than the disconnect timeout). Start a new connection.", rr.id)
		return rr, 0, nil
	case err != nil:
		rr.reset = fmt.Sprintf("Resume refused: cursor expired (%v). Start a new connection.", err)
		return rr, 0, nil
	case owner != rr.user:
		return nil, http.StatusForbidden, errors.New("resume: the connection belongs to another user")
	}
	if c.Less(pos.Floor) {
		rr.reset = fmt.Sprintf("Resume refused: cursor expired: %s is older than the message cache (oldest available %s). Start a new connection.",
			raw, pos.Floor.Format(pos.Epoch))
		return rr, 0, nil
	}
	rr.groups = groups
	return rr, 0, nil
}

// waitApplied waits, up to PublishTimeout, until this node's stream has
// reached cursor c.
func (s *Server) waitApplied(ctx context.Context, c fsm.Cursor) (fsm.Position, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	for {
		ch := s.stream.Changed()
		pos := s.stream.Position()
		if !pos.Last.Less(c) {
			return pos, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return pos, ctx.Err()
		case <-s.stop:
			return pos, errShuttingDown
		}
	}
}

// replay writes to c's transport everything addressed to it after rr.from
// up to and including upto, computed from the log alone: its groups start
// as they were at rr.from and change with its own joins and leaves on the
// way, exactly as the dispatcher would have delivered them.
func (s *Server) replay(c *conn, rr *resumeReq, upto fsm.Cursor) (int, error) {
	groups := map[string]struct{}{}
	for _, g := range rr.groups {
		groups[g] = struct{}{}
	}
	epoch := s.stream.Epoch()
	pos := rr.from
	var buf []byte
	sent := 0
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := c.tr.write(buf)
		buf = buf[:0]
		return err
	}
	for pos.Less(upto) {
		entries, err := s.stream.Since(pos, dispatchBatch)
		if err != nil {
			return sent, err
		}
		if len(entries) == 0 {
			return sent, fmt.Errorf("replay: stream ends at %s before %s", pos, upto)
		}
		for i := range entries {
			e := &entries[i]
			if upto.Less(e.Cursor) {
				return sent, flush()
			}
			pos = e.Cursor
			if e.Hub != c.hub {
				continue
			}
			if e.Err != nil {
				buf, sent = c.replayCompletion(buf, e, epoch, sent)
				continue
			}
			switch e.Kind {
			case fsm.KindGroupJoin:
				if e.Conn == c.id {
					groups[e.Group] = struct{}{}
				}
			case fsm.KindGroupLeave:
				if e.Conn == c.id {
					delete(groups, e.Group)
				}
			case fsm.KindPublish:
				if !addressed(e, c, groups) {
					continue
				}
				buf = c.proto.appendInvocation(buf, e.Target, e.Args, c.cursorHeader(e.Cursor, epoch))
				sent++
				if c.sr != nil {
					c.sr.recordSent(e.Cursor)
				}
			}
			buf, sent = c.replayCompletion(buf, e, epoch, sent)
			if len(buf) >= maxCoalesce {
				if err := flush(); err != nil {
					return sent, err
				}
			}
		}
	}
	return sent, flush()
}

// replayCompletion appends the Completion that entry e owes c, if c is a
// stateful-reconnect connection and e carries out one of its messages.
func (c *conn) replayCompletion(buf []byte, e *fsm.Entry, epoch string, sent int) ([]byte, int) {
	if c.sr == nil || e.Origin.Conn != c.id {
		return buf, sent
	}
	if f := completionFor(c.proto, e, epoch); f != nil {
		buf = append(buf, f...)
		c.sr.recordSent(e.Cursor)
		sent++
	}
	return buf, sent
}

// addressed reports whether a publish reaches connection c whose groups are
// groups at that point of the log.
func addressed(e *fsm.Entry, c *conn, groups map[string]struct{}) bool {
	for _, x := range e.Exclude {
		if x == c.id {
			return false
		}
	}
	switch e.Audience {
	case fsm.AudienceAll:
		return true
	case fsm.AudienceGroup:
		_, ok := groups[e.Key]
		return ok
	case fsm.AudienceUser:
		return c.user != "" && e.Key == c.user
	case fsm.AudienceConnection:
		return e.Key == c.id
	}
	return false
}
