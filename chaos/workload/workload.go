// Package workload owns the chaos suite's clients: publishers that send
// uniquely identified messages to groups through hub invocations and the
// REST API (retrying indeterminate REST sends with the same idempotency
// key), subscribers that join groups with the Go client and follow their
// connection across nodes with cursor resume, and the final reads of every
// node's retained history. Every operation and outcome goes to the history.
package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftplane/raftplane/chaos/history"
	"github.com/raftplane/raftplane/client"
	"github.com/raftplane/raftplane/fsm"
)

// Target is the client method every workload message is sent to; its
// arguments are [id, group].
const Target = "m"

// CanaryPrefix starts the ids of the messages sent after the final heal.
const CanaryPrefix = "canary-"

// Env is what every client needs.
type Env struct {
	Rec    *history.Recorder
	URLs   []string // node base URLs, by node index
	Names  []string // node names, by node index
	Hub    string
	Groups []string
	HTTP   *http.Client
	// Timeout bounds one publish attempt.
	Timeout time.Duration
}

func (e *Env) hubURL(i int, user string) string {
	return e.URLs[i] + "/hubs/" + e.Hub + "?user=" + url.QueryEscape(user)
}

// Publisher sends messages one at a time, each with a new id, to a random
// group, through node after node (it moves on after any error).
type Publisher struct {
	Env      *Env
	Name     string // "pub-3"
	Via      string // "hub" or "rest"
	Rng      *rand.Rand
	Interval time.Duration
	// RetryProb is the chance that an indeterminate REST send is retried
	// with the same id; ReplayProb the chance that an acknowledged one is
	// sent again (a client that lost the answer), which must answer the
	// same position.
	RetryProb, ReplayProb float64
	// LateReplayProb is the chance that an acknowledged REST send is sent
	// again LateReplayMin to LateReplayMax later (a client retrying after
	// a while, within the 30 s the FSM remembers an id): it must answer
	// the same position, whatever the faults (a clock that jumped ahead in
	// between, say) did meanwhile.
	LateReplayProb               float64
	LateReplayMin, LateReplayMax time.Duration

	node int
	seq  int
	conn *client.Conn
	late []lateSend // acknowledged sends to replay, in no order
}

// lateSend is an acknowledged send to replay at due.
type lateSend struct {
	due, acked time.Time
	id, group  string
}

// maxReplayAge bounds how long after its acknowledgement a late replay is
// still sent: the FSM recognises an id for fsm.DedupWindow (30 s) by the
// stamps of the log, and a replay held up by the cluster (no quorum) may
// wait up to the HTTP client's 10 s before it is applied. A replay that
// could only go out later is dropped, as a client past the documented
// window gets no promise: the soak with seed 20261209 sent one 32 s after
// its ack (a majority was down for 20 s) and the checker counted the
// duplicate.
const maxReplayAge = fsm.DedupWindow - 12*time.Second

// Run publishes until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	p.node = p.Rng.IntN(len(p.Env.URLs))
	defer func() {
		if p.conn != nil {
			_ = p.conn.Close()
		}
	}()
	for ctx.Err() == nil {
		p.replayDue(ctx)
		p.seq++
		id := fmt.Sprintf("%s-%d", p.Name, p.seq)
		group := p.Env.Groups[p.Rng.IntN(len(p.Env.Groups))]
		if p.Via == "hub" {
			p.publishHub(ctx, id, group)
		} else {
			p.publishREST(ctx, id, group)
		}
		select {
		case <-ctx.Done():
		case <-time.After(p.Interval):
		}
	}
}

func (p *Publisher) next() {
	p.node = (p.node + 1) % len(p.Env.URLs)
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn = nil
	}
}

func (p *Publisher) publishHub(ctx context.Context, id, group string) {
	rec := p.Env.Rec
	if p.conn == nil {
		dctx, cancel := context.WithTimeout(ctx, p.Env.Timeout)
		c, err := client.Dial(dctx, client.Config{URL: p.Env.hubURL(p.node, p.Name), HandshakeTimeout: p.Env.Timeout,
			KeepAliveInterval: time.Second, ServerTimeout: 5 * time.Second})
		cancel()
		if err != nil {
			p.next()
			return
		}
		go func() {
			for range c.Messages() {
			}
		}()
		p.conn = c
	}
	rec.Add(history.Event{P: p.Name, Type: history.Invoke, ID: id, Group: group, Node: p.Env.Names[p.node], Via: "hub"})
	ictx, cancel := context.WithTimeout(ctx, p.Env.Timeout)
	cur, err := p.conn.InvokeCursor(ictx, "SendToGroup", group, Target, id, group)
	cancel()
	if err != nil {
		// Whatever the error, the command may have reached the log (a
		// forward that timed out, a drop after the write): indeterminate.
		// It is not retried: an invocation carries no idempotency key.
		rec.Add(history.Event{P: p.Name, Type: history.Info, ID: id, Err: err.Error()})
		p.next()
		return
	}
	p.ok(id, cur)
}

func (p *Publisher) ok(id, cur string) {
	_, pos, err := history.ParseCursor(cur)
	if err != nil {
		p.Env.Rec.Add(history.Event{P: p.Name, Type: history.Info, ID: id, Err: "acknowledged with a bad cursor: " + err.Error()})
		return
	}
	p.Env.Rec.Add(history.Event{P: p.Name, Type: history.OK, ID: id, Pos: &pos})
}

// replayDue sends again the acknowledged sends whose time has come.
func (p *Publisher) replayDue(ctx context.Context) {
	now := time.Now()
	kept := p.late[:0]
	for _, l := range p.late {
		if now.Before(l.due) || ctx.Err() != nil {
			kept = append(kept, l)
			continue
		}
		if now.Sub(l.acked) > maxReplayAge {
			p.Env.Rec.Add(history.Event{P: p.Name, Type: history.Note,
				Text: fmt.Sprintf("late replay of %s dropped: %s after its ack, too late for the FSM's dedup window", l.id, now.Sub(l.acked).Round(time.Millisecond))})
			continue
		}
		if p.Env.sendREST(ctx, p.Name, p.node, l.id, l.group) != history.OK {
			p.next()
		}
	}
	p.late = kept
}

func (p *Publisher) publishREST(ctx context.Context, id, group string) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		outcome := p.Env.sendREST(ctx, p.Name, p.node, id, group)
		if outcome == history.OK && p.LateReplayProb > 0 && p.Rng.Float64() < p.LateReplayProb {
			d := p.LateReplayMin
			if p.LateReplayMax > d {
				d += time.Duration(p.Rng.Int64N(int64(p.LateReplayMax - d)))
			}
			now := time.Now()
			p.late = append(p.late, lateSend{due: now.Add(d), acked: now, id: id, group: group})
		}
		switch {
		case outcome == history.OK && p.Rng.Float64() < p.ReplayProb:
			p.Env.sendREST(ctx, p.Name, p.node, id, group) // must answer the same position
			return
		case outcome == history.Info && attempt < 2 && p.Rng.Float64() < p.RetryProb:
			p.next()
			continue
		case outcome != history.OK:
			p.next()
		}
		return
	}
}

// sendREST sends one message through node i's REST API with the message id
// as its idempotency key and records the attempt; it returns the outcome
// type (OK, Fail or Info).
func (e *Env) sendREST(ctx context.Context, proc string, i int, id, group string) string {
	e.Rec.Add(history.Event{P: proc, Type: history.Invoke, ID: id, Group: group, Node: e.Names[i], Via: "rest"})
	body, _ := json.Marshal(map[string]any{"target": Target, "arguments": []string{id, group}})
	rctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, "POST", e.URLs[i]+"/api/v1/hubs/"+e.Hub+"/groups/"+url.PathEscape(group), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", id)
	resp, err := e.HTTP.Do(req)
	if err != nil {
		e.Rec.Add(history.Event{P: proc, Type: history.Info, ID: id, Err: err.Error()})
		return history.Info
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == 200:
		var r struct {
			Cursor string `json:"cursor"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			e.Rec.Add(history.Event{P: proc, Type: history.Info, ID: id, Err: "200 with a bad body: " + string(b)})
			return history.Info
		}
		_, pos, err := history.ParseCursor(r.Cursor)
		if err != nil {
			e.Rec.Add(history.Event{P: proc, Type: history.Info, ID: id, Err: err.Error()})
			return history.Info
		}
		e.Rec.Add(history.Event{P: proc, Type: history.OK, ID: id, Pos: &pos})
		return history.OK
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		// The request was refused before reaching the log.
		e.Rec.Add(history.Event{P: proc, Type: history.Fail, ID: id, Err: fmt.Sprintf("%s: %s", resp.Status, b)})
		return history.Fail
	default:
		e.Rec.Add(history.Event{P: proc, Type: history.Info, ID: id, Err: fmt.Sprintf("%s: %s", resp.Status, b)})
		return history.Info
	}
}

// Canaries publishes one canary per node and group through that node,
// retrying (with the same id) until each is acknowledged or ctx ends. It
// returns the ids acknowledged, by group, with their positions.
func (e *Env) Canaries(ctx context.Context) (map[string]history.Pos, error) {
	out := map[string]history.Pos{}
	for i := range e.URLs {
		for _, g := range e.Groups {
			id := fmt.Sprintf("%s%s-%s", CanaryPrefix, e.Names[i], g)
			for {
				if e.sendREST(ctx, "canary", i, id, g) == history.OK {
					break
				}
				select {
				case <-ctx.Done():
					return out, fmt.Errorf("canary %s not acknowledged: %w", id, ctx.Err())
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
	}
	for _, ev := range e.Rec.Events() {
		if ev.P == "canary" && ev.Type == history.OK {
			out[ev.ID] = *ev.Pos
		}
	}
	return out, nil
}

// Subscriber holds one subscription at a time (a session): a resuming
// connection that joined its groups. It migrates between nodes now and
// then, follows drops through resume, and starts a new session after a
// reset.
type Subscriber struct {
	Env    *Env
	Name   string // "sub-1"
	Groups []string
	Rng    *rand.Rand
	// HopMin and HopMax bound the time between voluntary migrations to
	// another node (0: never).
	HopMin, HopMax time.Duration

	calm atomic.Bool // no more voluntary hops

	mu      sync.Mutex
	session int
	joined  map[string]history.Pos // of the current session
	got     map[string]bool        // canary ids delivered in the current session
}

// Calm stops the voluntary hops (the final phase).
func (s *Subscriber) Calm() { s.calm.Store(true) }

// Has reports whether the current session has every canary of its groups
// published after it joined them; missing names what it lacks.
func (s *Subscriber) Has(canaries map[string]history.Pos) (ok bool, missing []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.joined == nil {
		return false, []string{"no session"}
	}
	for id, pos := range canaries {
		g := id[strings.LastIndex(id, "-")+1:]
		j, in := s.joined[g]
		if in && j.Less(pos) && !s.got[id] {
			missing = append(missing, id)
		}
	}
	return len(missing) == 0, missing
}

// Run keeps a session open until ctx ends.
func (s *Subscriber) Run(ctx context.Context) {
	for ctx.Err() == nil {
		s.runSession(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// runSession is one connection of the subscriber, from connect to its
// end: join, receive and record, resume. Left whole for the reason of
// chaos.Run: the suite needs network namespaces to run.
func (s *Subscriber) runSession(ctx context.Context) {
	rec, env := s.Env.Rec, s.Env
	s.mu.Lock()
	s.session++
	sess := s.session
	s.joined, s.got = nil, map[string]bool{}
	s.mu.Unlock()

	first := s.Rng.IntN(len(env.URLs))
	var urls []string
	for k := range env.URLs {
		urls = append(urls, env.hubURL((first+k)%len(env.URLs), s.Name))
	}
	nodeOf := func(u string) string {
		for i, base := range env.URLs {
			if strings.HasPrefix(u, base+"/") {
				return env.Names[i]
			}
		}
		return u
	}
	ended := make(chan error, 1)
	cfg := client.Config{URLs: urls, Resume: true, ResumeTimeout: time.Minute, HandshakeTimeout: 5 * time.Second,
		KeepAliveInterval: time.Second, ServerTimeout: 5 * time.Second, MessageBuffer: 4096,
		OnEvent: func(ev client.Event) {
			e := history.Event{P: s.Name, Session: sess, Node: nodeOf(ev.URL)}
			if ev.Err != nil {
				e.Err = ev.Err.Error()
			}
			switch ev.Kind {
			case client.EventDropped:
				e.Type = history.Drop
			case client.EventResumed:
				e.Type = history.Resume
				if _, p, err := history.ParseCursor(ev.Cursor); err == nil {
					e.Pos = &p
				}
			case client.EventReset, client.EventGaveUp:
				e.Type = history.Reset
				if ev.Kind == client.EventGaveUp {
					e.Err = "gave up: " + e.Err
				}
				select {
				case ended <- ev.Err:
				default:
				}
			}
			rec.Add(e)
		}}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := client.Dial(dctx, cfg)
	cancel()
	if err != nil {
		rec.Add(history.Event{P: s.Name, Type: history.Note, Session: sess, Text: "dial failed: " + err.Error()})
		return
	}
	defer c.Close()

	// Deliveries are recorded by a reader that starts before the joins, so
	// a message right after a join is never held up behind them.
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		for m := range c.Messages() {
			s.deliver(sess, m)
		}
	}()
	joined := map[string]history.Pos{}
	for _, g := range s.Groups {
		jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		cur, err := c.InvokeCursor(jctx, "JoinGroup", g)
		cancel()
		var pos history.Pos
		if err == nil {
			_, pos, err = history.ParseCursor(cur)
		}
		if err != nil {
			// The join may or may not be in the log: this session cannot
			// say what it should receive, so it ends here.
			rec.Add(history.Event{P: s.Name, Type: history.Leave, Session: sess, Err: "join " + g + ": " + err.Error()})
			return
		}
		rec.Add(history.Event{P: s.Name, Type: history.Join, Session: sess, Group: g, Pos: &pos})
		joined[g] = pos
	}
	s.mu.Lock()
	s.joined = joined
	s.mu.Unlock()

	for {
		hop := make(<-chan time.Time)
		if s.HopMax > 0 && !s.calm.Load() {
			hop = time.After(s.HopMin + time.Duration(s.Rng.Int64N(int64(s.HopMax-s.HopMin)+1)))
		}
		select {
		case <-ctx.Done():
			// Alive at the end of the run: no Leave, every message counts.
			return
		case <-ended:
			return
		case <-delivered:
			if err := c.Err(); err != nil {
				var re *client.ResetError
				if !errors.As(err, &re) { // a reset was recorded by OnEvent
					rec.Add(history.Event{P: s.Name, Type: history.Reset, Session: sess, Err: "connection ended: " + err.Error()})
				}
			}
			return
		case <-hop:
			if !s.calm.Load() {
				_ = c.Migrate()
			}
		}
	}
}

func (s *Subscriber) deliver(sess int, m client.Message) {
	if m.Target != Target || len(m.Arguments) != 2 {
		return
	}
	var id, group string
	_ = json.Unmarshal(m.Arguments[0], &id)
	_ = json.Unmarshal(m.Arguments[1], &group)
	e := history.Event{P: s.Name, Type: history.Deliver, Session: sess, ID: id, Group: group}
	if _, p, err := history.ParseCursor(m.Cursor); err == nil {
		e.Pos = &p
	} else {
		e.Err = "no cursor: " + err.Error()
	}
	s.Env.Rec.Add(e)
	if strings.HasPrefix(id, CanaryPrefix) {
		s.mu.Lock()
		if s.session == sess {
			s.got[id] = true
		}
		s.mu.Unlock()
	}
}

// ReadAll records node i's retained history of every group: a Read event
// per message and a ReadDone when the read covered the whole log (nothing
// was evicted from the node's cache).
func (e *Env) ReadAll(ctx context.Context, i int, complete bool) error {
	for _, g := range e.Groups {
		after := ""
		for {
			u := e.URLs[i] + "/api/v1/hubs/" + e.Hub + "/groups/" + url.PathEscape(g) + "/messages?limit=1000"
			if after != "" {
				u += "&after=" + url.QueryEscape(after)
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
			resp, err := e.HTTP.Do(req)
			if err != nil {
				return fmt.Errorf("read %s %s: %w", e.Names[i], g, err)
			}
			var page struct {
				Messages []struct {
					Cursor    string            `json:"cursor"`
					Arguments []json.RawMessage `json:"arguments"`
				} `json:"messages"`
				Next string `json:"next"`
			}
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if resp.StatusCode != 200 || err != nil {
				return fmt.Errorf("read %s %s: %s (%v)", e.Names[i], g, resp.Status, err)
			}
			for _, m := range page.Messages {
				var id string
				if len(m.Arguments) > 0 {
					_ = json.Unmarshal(m.Arguments[0], &id)
				}
				_, p, err := history.ParseCursor(m.Cursor)
				if err != nil {
					return err
				}
				e.Rec.Add(history.Event{P: "reader", Type: history.Read, Node: e.Names[i], Group: g, ID: id, Pos: &p})
			}
			if len(page.Messages) == 0 {
				break
			}
			after = page.Next
		}
		if complete {
			e.Rec.Add(history.Event{P: "reader", Type: history.ReadDone, Node: e.Names[i], Group: g})
		}
	}
	return nil
}
