package hub

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/signalr"
)

// Connection events, once per connection across the cluster.
//
// connected: when a connection opens (its ConnOpen is in the log; not when
// it resumes), on the node that accepts it and before the handshake is
// answered, the upstream's connected event then the hub's OnConnected run;
// either refuses the connection (Server.connected). The upstream's event id
// is the ConnOpen's cursor.
//
// disconnected: a connection ends when the log closes it (KindConnClose
// applied without an error): the client said goodbye, the server or the
// REST API closed it, it did not resume within DisconnectTimeout, or the
// leader reaped it after its node died. So the leader, whichever node that
// is, delivers the event from the log: a runner owned by the Server follows
// the stream while this node leads (Config.Leadership) and, for each close,
// POSTs the upstream's disconnected event (event id: the close's cursor)
// and runs the hub's OnDisconnected. The two run in lanes of their own, so
// an upstream that is down delays only its own lane. Every
// EventsMarkEvery events or EventsMarkInterval the runner records in the
// log (fsm.KindEventsDone) how far every lane has got; a new leader resumes
// from the last record. So events are delivered at least once: a leader
// that dies between an event and its record has the next leader deliver it
// again, with the same id, for the upstream to drop.
//
// A connection refused at connect gets no disconnected event from whoever
// refused it (Azure: "disconnect is triggered if connect returned 2xx";
// ASP.NET Core does not run OnDisconnectedAsync after OnConnectedAsync
// threw): its close's reason says who (refusedByUpstream, refusedByHandler).

// The reasons of a close that refused a connection at connect.
const (
	refusedByUpstream = "refused by the upstream: "
	refusedByHandler  = "refused by OnConnected: "
)

// closedCleanly is the reason of a close the client asked for
// (websocket.go: release).
const closedCleanly = "disconnected"

// eventsPoll is how often the runner asks Leadership whether this node
// leads: a poll, not a limit (the port is a cheap, non-blocking read).
const eventsPoll = 100 * time.Millisecond

// eventsBatch is how many entries a lane reads at a time.
const eventsBatch = 256

// maxEventBackoff caps the wait between attempts at an event the upstream
// could not take, or effects the cluster could not commit.
const maxEventBackoff = 10 * time.Second

// refusal is a connection refused at connect; by is the reason prefix.
type refusal struct {
	by  string
	err error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// connected runs a new connection's connected events, the upstream's then
// the hub's OnConnected, once its ConnOpen is at cursor at. Its error
// (a *refusal) refuses the connection; its text is for the client.
func (s *Server) connected(c *conn, at fsm.Cursor) error {
	if err := s.upstreamConnected(c, at); err != nil {
		return &refusal{by: refusedByUpstream, err: err}
	}
	if err := s.onConnected(c); err != nil {
		return &refusal{by: refusedByHandler, err: err}
	}
	return nil
}

// maxCloseReason bounds the reason a refusal writes into the log.
const maxCloseReason = 1024

// releaseRefused records the close of a connection refused at connect,
// with a reason that says who refused it (see refusal), in the background
// like release.
func (s *Server) releaseRefused(c *conn, err error) {
	if !c.opened.Load() || c.removed.Load() {
		return
	}
	c.opened.Store(false)
	reason := refusedByHandler
	var r *refusal
	if errors.As(err, &r) {
		reason = r.by
	}
	reason += err.Error()
	if len(reason) > maxCloseReason {
		reason = strings.ToValidUTF8(reason[:maxCloseReason], "")
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
		defer cancel()
		if _, err := s.pub.Publish(ctx, connClose(c, reason)); err != nil {
			c.logger().Warn("could not record the close of a refused connection", "err", err)
		}
	}()
}

// closeError is the error a disconnected event reports: none for a close
// the client asked for, else the close's reason.
func closeError(reason string) string {
	if reason == closedCleanly {
		return ""
	}
	return reason
}

// events is the runner's state, for UpstreamStats.
type events struct {
	leading   atomic.Bool
	upstream  atomic.Uint64 // disconnected events the upstream took
	dropped   atomic.Uint64 // ... or refused with a 4xx (not retried)
	handler   atomic.Uint64 // OnDisconnected runs
	gaps      atomic.Uint64 // times events were lost (the cache moved past)
	marks     atomic.Uint64 // KindEventsDone written
	mu        sync.Mutex
	pos, mark fsm.Cursor
	warned    bool // the log format is too old for marks: said once
}

// EventsStats is the connection events runner's state on this node.
type EventsStats struct {
	// Leading: this node leads and runs the events.
	Leading bool `json:"leading"`
	// Position is how far every lane has got; Mark the last progress
	// recorded in the log as this node knows it.
	Position string `json:"position,omitempty"`
	Mark     string `json:"mark,omitempty"`
	// Upstream counts disconnected events the upstream took, Dropped those
	// it refused with a 4xx (not retried), Handler OnDisconnected runs,
	// Gaps the times events were lost because the log moved past them,
	// Marks the progress records written.
	Upstream uint64 `json:"upstream_delivered"`
	Dropped  uint64 `json:"upstream_dropped"`
	Handler  uint64 `json:"handler_runs"`
	Gaps     uint64 `json:"gaps"`
	Marks    uint64 `json:"marks"`
}

func (ev *events) stats(epoch string) EventsStats {
	ev.mu.Lock()
	pos, mark := ev.pos, ev.mark
	ev.mu.Unlock()
	return EventsStats{Leading: ev.leading.Load(), Position: cursorOrEmpty(epoch, pos), Mark: cursorOrEmpty(epoch, mark),
		Upstream: ev.upstream.Load(), Dropped: ev.dropped.Load(), Handler: ev.handler.Load(),
		Gaps: ev.gaps.Load(), Marks: ev.marks.Load()}
}

// lane delivers one kind of disconnected event.
type lane struct {
	name string
	// skip reports a close whose event this lane does not deliver.
	skip func(reason string) bool
	// deliver delivers the event of close e; false: ctx ended first.
	deliver func(ctx context.Context, e *fsm.Entry) bool
}

// progress is how far a lane has got: pos is the last entry it passed,
// real the last such entry that is not a progress record (so that writing
// records is not itself progress to record).
type progress struct {
	mu        sync.Mutex
	pos, real fsm.Cursor
}

func (p *progress) set(pos fsm.Cursor, real bool) {
	p.mu.Lock()
	p.pos = pos
	if real {
		p.real = pos
	}
	p.mu.Unlock()
}

func (p *progress) get() (pos, real fsm.Cursor) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pos, p.real
}

// lanes returns the lanes this server runs: the upstream's when one is
// configured, OnDisconnected's when a hub has one.
func (s *Server) lanes() []lane {
	var out []lane
	if s.up != nil {
		out = append(out, lane{name: "upstream", deliver: s.deliverDisconnected,
			skip: func(r string) bool { return strings.HasPrefix(r, refusedByUpstream) }})
	}
	for _, a := range s.apps {
		if a.h.OnDisconnected != nil {
			out = append(out, lane{name: "OnDisconnected", deliver: s.runOnDisconnected,
				skip: func(r string) bool {
					return strings.HasPrefix(r, refusedByUpstream) || strings.HasPrefix(r, refusedByHandler)
				}})
			break
		}
	}
	return out
}

// startEvents starts the events runner when there is an event to deliver.
// Called by Start, after every Handle.
func (s *Server) startEvents() {
	if s.up != nil && len(s.up.key) == 0 {
		s.log.Warn("upstream requests are not signed: set the API key (-api-key) so the upstream can check X-ASRS-Signature")
	}
	lanes := s.lanes()
	if len(lanes) == 0 {
		return
	}
	s.wg.Add(1)
	go s.eventsLoop(lanes)
}

// leads reports whether this node leads (nil Leadership: always).
func (s *Server) leads() bool { return s.cfg.Leadership == nil || s.cfg.Leadership.IsLeader() }

// eventsLoop runs the lanes while this node leads, until the server stops.
func (s *Server) eventsLoop(lanes []lane) {
	defer s.wg.Done()
	defer s.up.closeIdle()
	poll := time.NewTicker(eventsPoll)
	defer poll.Stop()
	for {
		if s.leads() {
			s.lead(lanes, poll)
		}
		select {
		case <-s.stop:
			return
		case <-poll.C:
		}
	}
}

// lead runs the lanes from the last recorded progress until this node no
// longer leads or the server stops, recording progress as it goes.
func (s *Server) lead(lanes []lane, poll *time.Ticker) {
	ctx, cancel := context.WithCancel(s.life)
	defer cancel()
	mark := s.stream.EventsDone()
	s.ev.leading.Store(true)
	defer s.ev.leading.Store(false)
	s.ev.mu.Lock()
	s.ev.pos, s.ev.mark = mark, mark
	s.ev.mu.Unlock()
	s.log.Info("leading: delivering connection events", "from", mark, "lanes", len(lanes))

	bell := make(chan struct{}, 1) // a lane delivered EventsMarkEvery events
	progs := make([]*progress, len(lanes))
	var wg sync.WaitGroup
	for i, l := range lanes {
		p := &progress{pos: mark, real: mark}
		progs[i] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runLane(ctx, l, mark, p, bell)
		}()
	}
	tick := time.NewTicker(s.cfg.EventsMarkInterval)
	defer tick.Stop()
	for leading := true; leading; {
		select {
		case <-s.stop:
			leading = false
		case <-poll.C:
			leading = s.leads()
		case <-tick.C:
			mark = s.recordProgress(ctx, progs, mark)
		case <-bell:
			mark = s.recordProgress(ctx, progs, mark)
		}
	}
	cancel()
	wg.Wait()
	pos, _ := s.slowest(progs)
	s.log.Info("no longer leading: connection events stopped", "delivered_up_to", pos)
}

// slowest returns how far every lane has got.
func (s *Server) slowest(progs []*progress) (pos, real fsm.Cursor) {
	for i, p := range progs {
		pp, pr := p.get()
		if i == 0 || pp.Less(pos) {
			pos, real = pp, pr
		}
	}
	return pos, real
}

// recordProgress writes how far every lane has got into the log, when
// anything but progress records has passed since mark, and returns the new
// mark.
func (s *Server) recordProgress(ctx context.Context, progs []*progress, mark fsm.Cursor) fsm.Cursor {
	pos, real := s.slowest(progs)
	s.ev.mu.Lock()
	s.ev.pos = pos
	s.ev.mu.Unlock()
	if !mark.Less(real) {
		return mark
	}
	if f := s.stream.Format(); f < fsm.FormatInvoke {
		s.ev.mu.Lock()
		warn := !s.ev.warned
		s.ev.warned = true
		s.ev.mu.Unlock()
		if warn {
			s.log.Warn("connection events: progress is not recorded until every server runs log format 2; a new leader will deliver events again from the start of its cache",
				"format", f)
		}
		return mark
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	if _, err := s.pub.Publish(pctx, fsm.Command{Kind: fsm.KindEventsDone, From: pos}); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("recording connection events progress failed; retrying", "at", pos, "err", err)
		}
		return mark
	}
	s.ev.marks.Add(1)
	s.ev.mu.Lock()
	s.ev.mark = pos
	s.ev.mu.Unlock()
	return pos
}

// runLane follows the stream after from and delivers the lane's events
// until ctx ends.
func (s *Server) runLane(ctx context.Context, l lane, from fsm.Cursor, p *progress, bell chan<- struct{}) {
	pos := from
	n := 0
	// jumped: pos is the cache's floor, not a delivered entry. If the
	// cache moves on again before the lane reads from there, it is the same
	// loss, counted once.
	jumped := false
	for ctx.Err() == nil {
		changed := s.stream.Changed()
		entries, err := s.stream.Since(pos, eventsBatch)
		if errors.Is(err, fsm.ErrCursorTooOld) {
			floor := s.stream.Position().Floor
			switch {
			case pos.IsZero():
				// Events were never delivered (new feature, or a new
				// cluster whose first leader's cache has moved on).
				s.log.Info("connection events: starting from the oldest cached entry", "lane", l.name, "from", floor)
			case jumped:
			default:
				s.ev.gaps.Add(1)
				s.log.Error("CONNECTION EVENTS LOST: the log entries after the last delivered event have left the message cache; continuing from the oldest cached entry (raise -cache-age or -cache-entries, or fix the upstream)",
					"lane", l.name, "delivered_up_to", pos, "oldest_cached", floor)
			}
			pos, jumped = floor, true
			continue
		}
		jumped = false
		if err != nil {
			s.log.Error("connection events: reading the stream", "lane", l.name, "err", err)
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		if len(entries) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		for i := range entries {
			e := &entries[i]
			due := false
			if e.Kind == fsm.KindConnClose && e.Err == nil && !l.skip(e.Reason) {
				if !l.deliver(ctx, e) {
					return
				}
				n++
				due = n%s.cfg.EventsMarkEvery == 0
			}
			pos = e.Cursor
			p.set(pos, e.Kind != fsm.KindEventsDone)
			if due { // after the progress it asks to record
				select {
				case bell <- struct{}{}:
				default:
				}
			}
		}
	}
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retryable reports an upstream status worth another attempt.
func retryable(status int) bool {
	return status >= 500 || status == 408 || status == 429
}

// deliverDisconnected POSTs the upstream's disconnected event for close e,
// again until the upstream takes it (a 5xx, 408, 429, a timeout or no
// connection) or refuses it for good (another 4xx), or ctx ends.
func (s *Server) deliverDisconnected(ctx context.Context, e *fsm.Entry) bool {
	body := []byte(`{"type":` + strconv.Itoa(typeCloseConnection))
	if msg := closeError(e.Reason); msg != "" {
		body = append(append(body, `,"error":`...), signalr.AppendJSONString(nil, msg)...)
	}
	call := upstreamCall{category: categoryConnections, event: eventDisconnected, hub: e.Hub, conn: e.Conn,
		user: e.User, eventID: e.Cursor.Format(s.stream.Epoch()), contentType: contentJSON, body: append(body, '}')}
	backoff := 100 * time.Millisecond
	for {
		ans, err := s.up.do(ctx, call, nil)
		switch {
		case ctx.Err() != nil:
			return false
		case err == nil && ans.ok():
			s.ev.upstream.Add(1)
			return true
		case err == nil && !retryable(ans.status):
			s.ev.dropped.Add(1)
			s.log.Warn("the upstream refused a disconnected event; not retried", "conn", e.Conn, "hub", e.Hub,
				"event_id", call.eventID, "status", ans.status)
			return true
		}
		why := ""
		if err != nil {
			why = s.up.describe(err, true)
		} else {
			why = statusText(ans)
		}
		s.log.Warn("disconnected event not delivered; retrying", "conn", e.Conn, "hub", e.Hub,
			"event_id", call.eventID, "reason", why, "retry_in", backoff)
		if !sleepCtx(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, maxEventBackoff)
	}
}

// runOnDisconnected runs the hub's OnDisconnected for close e and commits
// its effects as one group, retrying the commit until it is in the log or
// ctx ends (at least once: a retry after a commit that answered late may
// apply them twice).
func (s *Server) runOnDisconnected(ctx context.Context, e *fsm.Entry) bool {
	a := s.appFor(e.Hub)
	if a == nil || a.h.OnDisconnected == nil {
		return true
	}
	hc := &Context{Context: ctx, ConnectionID: e.Conn, Hub: e.Hub, User: e.User, srv: s}
	func() {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("OnDisconnected panicked", "hub", e.Hub, "conn", e.Conn, "panic", p)
				hc.effects = nil
			}
		}()
		a.h.OnDisconnected(hc, closeError(e.Reason))
	}()
	hc.srv = nil // the context ends with the run: a late Send fails
	s.ev.handler.Add(1)
	if len(hc.effects) == 0 {
		return true
	}
	backoff := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
		_, err := s.pub.PublishGroup(pctx, hc.effects)
		cancel()
		switch {
		case err == nil:
			return true
		case ctx.Err() != nil:
			return false
		case errors.Is(err, fsm.ErrInvalid):
			s.log.Error("OnDisconnected's effects are invalid; dropped", "hub", e.Hub, "conn", e.Conn, "err", err)
			return true
		}
		s.log.Warn("OnDisconnected's effects not committed yet; retrying", "hub", e.Hub, "conn", e.Conn, "err", err)
		if !sleepCtx(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, maxEventBackoff)
	}
}
