package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// EventKind says what an Event reports.
type EventKind int

// The kinds of Event.
const (
	// EventDropped: the transport dropped unexpectedly and, Resume being
	// on, a resume starts once OnEvent returns. Err is why it dropped.
	EventDropped EventKind = iota + 1
	// EventResumed: a resume succeeded and its replay has arrived. Replayed
	// counts the messages it delivered.
	EventResumed
	// EventReset: messages may have been lost. Either the server refused
	// the resume (the connection then ends: Err() returns the same
	// *ResetError), or there was nothing to resume from and a new
	// connection, with a new ID, took the old one's place (the Conn carries
	// on). Err is a *ResetError either way.
	EventReset
	// EventGaveUp: no node accepted the resume within ResumeTimeout. The
	// connection ends; Err is Err()'s value.
	EventGaveUp
)

// String implements fmt.Stringer.
func (k EventKind) String() string {
	switch k {
	case EventDropped:
		return "dropped"
	case EventResumed:
		return "resumed"
	case EventReset:
		return "reset"
	case EventGaveUp:
		return "gave-up"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is what Config.OnEvent is told.
type Event struct {
	Kind EventKind
	// URL is the hub URL concerned: the node whose transport dropped
	// (EventDropped), the node resumed on (EventResumed), the node that
	// refused or took the new connection (EventReset), the last node tried
	// (EventGaveUp). Its query string is kept; no token is in it.
	URL string
	// Err: why the transport dropped (EventDropped), the *ResetError
	// (EventReset), the connection's final error (EventGaveUp).
	Err error
	// Cursor is the last cursor seen when the transport dropped: the one
	// the resume asks the server to continue after ("" if none).
	Cursor string
	// Replayed (EventResumed) is how many messages the resumed transport
	// delivered before it went quiet: the server's replay of what the
	// connection missed. The protocol does not mark the end of the replay,
	// so this counts what arrived until the client had waited
	// resumeSettle (100ms) with nothing to read, or for resumeSettleMax
	// (1s) after the handshake: a live message that arrived in that window
	// is counted too.
	Replayed int
	// Attempts (EventResumed, EventReset, EventGaveUp) is how many
	// connection attempts the resume made.
	Attempts int
	// Elapsed (EventResumed, EventReset, EventGaveUp) is the time from the
	// drop to the resumed (or refused, or abandoned) transport.
	Elapsed time.Duration
}

// Replay settling: see Event.Replayed.
const (
	resumeSettle    = 100 * time.Millisecond
	resumeSettleMax = time.Second
	settlePoll      = 20 * time.Millisecond
)

// emit calls OnEvent, if set. Only the supervisor goroutine calls it, with
// no lock held.
func (c *Conn) emit(ev Event) {
	if c.cfg.OnEvent == nil {
		return
	}
	c.inEvent.Store(true)
	defer c.inEvent.Store(false)
	c.cfg.OnEvent(ev)
}

// maxRefusals is how many refusals (a Close "Resume ..." after the
// handshake, or an HTTP 400, 401, 403 or 404) confirm a reset. A refused
// attempt changes nothing on the server, and a node that has not yet
// applied the latest entries of the log refuses a resume it could honour a
// moment later (it does not know the connection yet and takes it for
// closed), so a refusal is confirmed by asking again, on the next nodes,
// after a backoff. A reset also follows when ResumeTimeout passes after a
// refusal.
const maxRefusals = 3

// resumeRun is one resume: from a drop to a transport that settled, a
// reset or giving up.
type resumeRun struct {
	dropped  time.Time // when the transport dropped
	cursor   string    // the cursor to resume from; "" for a new connection
	idx      int       // the URL index of the last attempt (first: the one that dropped)
	attempts int
	refusals int
	refusal  *ResetError // the last refusal
	lastErr  error       // the last failed attempt's error
}

// supervise follows the connection's transports one after the other: when
// one ends it decides whether to resume, resumes, or ends the connection.
// It closes done last.
func (c *Conn) supervise(l *link) {
	defer close(c.done)
	defer c.cancel()
	for {
		c.watch(l)
		c.mu.Lock()
		err, orphans, closing := l.err, l.orphans, c.closing
		l.orphans = nil
		c.mu.Unlock()

		var run *resumeRun
		if ce := refusal(l, err); ce != nil && !closing {
			// The server refused the resume after the handshake.
			run = l.run
			run.refusals++
			run.refusal = &ResetError{Message: ce.Message, Cursor: run.cursor}
			c.mu.Lock()
			if cur := c.resumeCursorLocked(); cur != "" {
				run.cursor = cur // a partial replay may have moved it on
			}
			c.mu.Unlock()
			if run.refusals >= maxRefusals {
				c.finish(run.refusal, orphans)
				c.report(&Event{Kind: EventReset, URL: c.urls[l.urlIdx].Redacted(), Err: run.refusal, Cursor: run.cursor,
					Attempts: run.attempts, Elapsed: time.Since(run.dropped)})
				return
			}
			c.failDropped(orphans, err)
		} else {
			resumable, final := c.classify(err, closing)
			if !resumable {
				c.finish(final, orphans)
				return
			}
			c.failDropped(orphans, err)
			run = &resumeRun{dropped: time.Now(), idx: l.urlIdx}
			c.mu.Lock()
			c.stats.Drops++
			run.cursor = c.resumeCursorLocked()
			c.mu.Unlock()
			c.emit(Event{Kind: EventDropped, URL: c.urls[l.urlIdx].Redacted(), Err: err, Cursor: run.cursor})
		}
		next, final, ev := c.reconnect(run)
		if next == nil {
			c.finish(final, nil)
			c.report(ev)
			return
		}
		c.report(ev) // a new connection replaced one with nothing to resume
		l = next
	}
}

// failDropped fails the Invokes that were waiting when the transport
// dropped: the server may or may not have run them.
func (c *Conn) failDropped(orphans map[string]chan completion, cause error) {
	dropped := fmt.Errorf("%w before the result came (the server may or may not have run the invocation): %w", ErrDropped, cause)
	for _, ch := range orphans {
		ch <- completion{err: dropped}
	}
}

// report counts and emits an EventReset or EventGaveUp, if ev is set.
func (c *Conn) report(ev *Event) {
	if ev == nil {
		return
	}
	if ev.Kind == EventReset {
		c.countReset()
	}
	c.emit(*ev)
}

func (c *Conn) countReset() {
	c.mu.Lock()
	c.stats.Resets++
	c.mu.Unlock()
}

// watch waits for the transport to end. For a resumed transport it reports
// EventResumed once the replay has arrived (see Event.Replayed), unless the
// server refused the resume.
func (c *Conn) watch(l *link) {
	if l.run == nil {
		<-l.done
		return
	}
	t := time.NewTicker(settlePoll)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			c.mu.Lock()
			err, closing := l.err, c.closing
			c.mu.Unlock()
			if !closing && refusal(l, err) == nil {
				c.resumed(l)
			}
			return
		case now := <-t.C:
			w := l.waiting.Load()
			if (w != 0 && now.Sub(time.Unix(0, w)) >= resumeSettle) || now.Sub(l.started) >= resumeSettleMax {
				c.resumed(l)
				<-l.done
				return
			}
		}
	}
}

// resumed reports a successful resume.
func (c *Conn) resumed(l *link) {
	n := int(l.delivered.Load())
	c.mu.Lock()
	c.stats.Resumes++
	c.stats.Replayed += n
	c.mu.Unlock()
	c.emit(Event{Kind: EventResumed, URL: c.urls[l.urlIdx].Redacted(), Cursor: l.run.cursor, Replayed: n,
		Attempts: l.run.attempts, Elapsed: l.started.Sub(l.run.dropped)})
}

// refusal returns the server's refusal of a resume, if the resumed
// transport l ended with one: a Close right after the handshake whose
// error starts "Resume " ("Resume refused: ...", "Resume failed: ...").
func refusal(l *link, err error) *CloseError {
	var ce *CloseError
	if l.run != nil && errors.As(err, &ce) && strings.HasPrefix(ce.Message, "Resume ") {
		return ce
	}
	return nil
}

// classify decides what follows the end of a transport that was not
// refused: a resume, or the end of the connection with final as its cause.
func (c *Conn) classify(err error, closing bool) (resumable bool, final error) {
	if closing || errors.Is(err, errQuit) {
		return false, nil
	}
	if !c.cfg.Resume {
		return false, err
	}
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.AllowReconnect, err
	}
	var de *dropError
	return errors.As(err, &de), err
}

// finish ends the connection: it records the cause, fails the Invokes
// still pending and closes Messages.
func (c *Conn) finish(final error, orphans map[string]chan completion) {
	c.mu.Lock()
	if c.cause == nil && !c.userClosed && final != nil {
		c.cause = final
	}
	c.ended = true
	c.link = nil
	close(c.linkCh)
	failure := c.endErrLocked()
	c.mu.Unlock()
	for _, ch := range orphans {
		ch <- completion{err: failure}
	}
	close(c.msgs)
}

// reconnect replaces a dropped transport: a cursor resume on the URLs in
// turn after run.idx, with backoff, until ResumeTimeout after the drop.
// With no cursor and nothing ever sent, it makes a new connection instead
// and returns the EventReset that says so. It returns a nil link when the
// connection must end: final is then why (nil after Close), and ev, if
// set, the event to report.
//
//lint:ignore ST1008 the event is an optional extra beside the outcome, read in that order by the one caller
func (c *Conn) reconnect(run *resumeRun) (next *link, final error, ev *Event) {
	c.mu.Lock()
	sentAny, token := c.sentAny, c.token
	c.mu.Unlock()
	fresh := run.cursor == ""
	if fresh && sentAny {
		// Resuming from an earlier position is impossible (the server only
		// knows cursors) and a new connection would silently lose what the
		// calls did (groups joined) and what was sent to the connection.
		re := &ResetError{Message: "nothing to resume from: the connection had received no message and no call had returned a cursor, " +
			"but it had sent invocations, whose effects (groups joined) a new connection would not have. Start a new connection."}
		return nil, re, &Event{Kind: EventReset, URL: c.urls[run.idx].Redacted(), Err: re, Elapsed: time.Since(run.dropped)}
	}
	deadline := run.dropped.Add(c.cfg.ResumeTimeout)
	for {
		if run.attempts > 0 {
			left := time.Until(deadline)
			if left > 0 {
				t := time.NewTimer(min(c.backoff(run.attempts), left))
				select {
				case <-t.C:
				case <-c.quit:
					t.Stop()
					return nil, nil, nil
				}
			}
			if !time.Now().Before(deadline) {
				return c.giveUp(run)
			}
		}
		run.attempts++
		run.idx = (run.idx + 1) % len(c.urls)
		l, neg, err := c.attempt(run.idx, token, run.cursor, deadline)
		if err == nil {
			if !c.install(l, run, neg) {
				return nil, nil, nil // Close was called
			}
			if fresh {
				re := &ResetError{Message: fmt.Sprintf("nothing to resume from: the connection had received no message and made no call, "+
					"so a new connection (id %s) replaced it; messages sent to the old one while it was away are lost", neg.id)}
				return l, nil, &Event{Kind: EventReset, URL: c.urls[run.idx].Redacted(), Err: re, Attempts: run.attempts, Elapsed: time.Since(run.dropped)}
			}
			return l, nil, nil
		}
		if c.ctx.Err() != nil {
			return nil, nil, nil // Close was called
		}
		run.lastErr = err
		if permanent(err) {
			// An HTTP refusal of the request itself (bad or unknown token
			// or cursor, authentication): confirmed like any refusal.
			var he *HTTPError
			errors.As(err, &he)
			msg := fmt.Sprintf("%s refused the resume: HTTP %d: %s", c.urls[run.idx].Redacted(), he.StatusCode, he.Message)
			if fresh {
				msg = fmt.Sprintf("nothing to resume from, and %s refused a new connection: HTTP %d: %s", c.urls[run.idx].Redacted(), he.StatusCode, he.Message)
			}
			run.refusals++
			run.refusal = &ResetError{Message: msg, Cursor: run.cursor}
			if run.refusals >= maxRefusals {
				return nil, run.refusal, &Event{Kind: EventReset, URL: c.urls[run.idx].Redacted(), Err: run.refusal, Cursor: run.cursor,
					Attempts: run.attempts, Elapsed: time.Since(run.dropped)}
			}
		}
	}
}

// giveUp ends a resume at its deadline: a reset if a node refused it (and
// none accepted it since), otherwise an error wrapping ErrDropped.
//
//lint:ignore ST1008 it returns what reconnect returns
func (c *Conn) giveUp(run *resumeRun) (*link, error, *Event) {
	if run.refusal != nil {
		return nil, run.refusal, &Event{Kind: EventReset, URL: c.urls[run.idx].Redacted(), Err: run.refusal, Cursor: run.cursor,
			Attempts: run.attempts, Elapsed: time.Since(run.dropped)}
	}
	final := fmt.Errorf("%w: resuming gave up after %s and %d attempts on %d URLs; last attempt: %w",
		ErrDropped, c.cfg.ResumeTimeout, run.attempts, len(c.urls), run.lastErr)
	return nil, final, &Event{Kind: EventGaveUp, URL: c.urls[run.idx].Redacted(), Err: final, Cursor: run.cursor,
		Attempts: run.attempts, Elapsed: time.Since(run.dropped)}
}

// backoff is the wait after the attempt-th failed attempt: doubling from
// ResumeBackoffMin up to ResumeBackoffMax, with jitter (a random half of
// it at most is taken off).
func (c *Conn) backoff(attempt int) time.Duration {
	d := c.cfg.ResumeBackoffMax
	if attempt-1 < 30 {
		if b := c.cfg.ResumeBackoffMin << (attempt - 1); b > 0 && b < d {
			d = b
		}
	}
	return d/2 + rand.N(d/2+1)
}

// attempt makes one connection attempt on c.urls[idx]: a cursor resume
// (upgrade and handshake, no negotiate), or, with no cursor, a new
// connection. It is bounded by HandshakeTimeout, the resume deadline and
// Close.
func (c *Conn) attempt(idx int, token, cursor string, deadline time.Time) (*link, negotiated, error) {
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel2()
	header, err := authHeader(ctx, c.cfg, c.header)
	if err != nil {
		return nil, negotiated{}, err
	}
	u := c.urls[idx]
	if cursor == "" {
		neg, ws, rest, err := dialOnce(ctx, c.cfg, u, header)
		if err != nil {
			return nil, negotiated{}, err
		}
		l := c.newLink(ws, idx)
		l.pendingRest = rest
		return l, neg, nil
	}
	ws, err := connect(ctx, c.cfg.Dialer, u, resumeURL(u, token, cursor), header)
	if err != nil {
		return nil, negotiated{}, err
	}
	rest, err := handshake(ctx, ws)
	if err != nil {
		ws.Close()
		return nil, negotiated{}, err
	}
	l := c.newLink(ws, idx)
	l.pendingRest = rest
	return l, negotiated{}, nil
}

// install makes l the connection's transport and starts it, unless Close
// was called meanwhile: then l says goodbye and is closed, and install
// returns false. A new connection (no cursor) brings its new id and token.
func (c *Conn) install(l *link, run *resumeRun, neg negotiated) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		_ = l.sendClose()
		_ = l.ws.Close()
		return false
	}
	if run.cursor == "" {
		c.id, c.token = neg.id, neg.token
	} else {
		l.run = run
	}
	l.started = time.Now()
	c.link = l
	close(c.linkCh)
	c.linkCh = make(chan struct{})
	c.mu.Unlock()
	rest := l.pendingRest
	l.pendingRest = nil
	l.begin(rest)
	return true
}

// ErrMigrate is the drop cause that Migrate gives the transport it ends.
var ErrMigrate = errors.New("client: migrating to another node")

// Migrate moves a Resume connection to the next node: it ends the current
// transport without a goodbye and resumes, as after a drop, on the next URL
// in turn (EventDropped with ErrMigrate, then EventResumed). Use it to take
// connections off a node before maintenance or to rebalance after a node
// comes back. Nothing is lost or repeated. It returns an error if Resume is
// off, the connection has ended, or a resume is already under way.
func (c *Conn) Migrate() error {
	if !c.cfg.Resume {
		return errors.New("client: Migrate needs Config.Resume")
	}
	c.mu.Lock()
	l, ended := c.link, c.ended || c.closing
	c.mu.Unlock()
	switch {
	case ended:
		return c.endErr()
	case l == nil:
		return errors.New("client: a resume is already under way")
	}
	l.fail(&dropError{ErrMigrate})
	return nil
}
