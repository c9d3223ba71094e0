package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftplane/raftplane/client"
)

// Bounds of the scenarios.
const (
	dialTimeout   = 20 * time.Second // one connection: negotiate, upgrade, handshake, JoinGroup
	invokeTimeout = 15 * time.Second // one publish (the server's publish timeout is 10s)
	maxInFlight   = 2048             // paced publishes awaiting their Completion
	drainQuiet    = 3 * time.Second  // drain ends when nothing arrived for this long
	drainMax      = 60 * time.Second // and at the latest after this
	msgTarget     = "m"
	group         = "g"
)

// base is the tool's clock origin: send times travel in the payload as
// microseconds since base (small integers, exact in any JSON decoder).
var base = time.Now()

func sinceBase() int64 { return int64(time.Since(base) / time.Microsecond) }

func hubURL(nodeURL, hub, user string) string {
	return nodeURL + "/hubs/" + hub + "?user=" + user
}

// negotiateClient is shared by every Dial, so negotiate reuses keep-alive
// connections instead of leaving a TIME_WAIT socket per connection.
var negotiateClient = &http.Client{
	Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second},
	Timeout:   dialTimeout,
}

// dialMany opens n connections, at most conc at a time, each bounded by
// dialTimeout; cfgFor returns connection i's config and setup (optional)
// runs on it once dialled. Failed connections are nil; it returns how many
// failed and the first error.
func dialMany(ctx context.Context, n, conc int, cfgFor func(i int) client.Config, setup func(i int, c *client.Conn) error) ([]*client.Conn, int, error) {
	conns := make([]*client.Conn, n)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr error
	var mu sync.Mutex
	fail := func(err error) {
		failed.Add(1)
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			fail(ctx.Err())
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, dialTimeout)
			defer cancel()
			cfg := cfgFor(i)
			if cfg.HTTPClient == nil {
				cfg.HTTPClient = negotiateClient
			}
			c, err := client.Dial(dctx, cfg)
			if err != nil {
				fail(err)
				return
			}
			if setup != nil {
				if err := setup(i, c); err != nil {
					c.Close()
					fail(err)
					return
				}
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	return conns, int(failed.Load()), firstErr
}

// closeAll closes connections, 200 at a time, bounded by 30s overall.
func closeAll(conns []*client.Conn) {
	sem := make(chan struct{}, 200)
	var wg sync.WaitGroup
	deadline := time.After(30 * time.Second)
	for _, c := range conns {
		if c == nil {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-deadline:
			return // the process exits soon; the servers see the drops
		}
		wg.Add(1)
		go func(c *client.Conn) {
			defer wg.Done()
			defer func() { <-sem }()
			c.Close()
		}(c)
	}
	wg.Wait()
}

// drain discards a connection's messages (a Broadcast would reach it).
func drain(c *client.Conn) {
	go func() {
		for range c.Messages() {
		}
	}()
}

// sub is one subscriber's record of the current round.
type sub struct {
	mu       sync.Mutex
	round    int64
	seen     bitset
	count    int // distinct messages of the round
	dups     int
	reorders int
	// the last cursor seen (cursor order is the log's order, across rounds)
	lastIdx uint64
	lastOff uint32
	haveCur bool
	stale   int // messages of an earlier round
	lat     hist
	// failover
	node                       int
	droppedAt, resumedAt       time.Time // resumedAt: EventResumed, after the replay settled
	transportAt                time.Time // droppedAt + Event.Elapsed: the resumed transport's start
	resets, gaveUp, dropsCount int
}

func (s *sub) reset(round int64) {
	s.mu.Lock()
	s.round, s.seen, s.count, s.dups, s.reorders, s.stale, s.lat = round, nil, 0, 0, 0, 0, hist{}
	s.mu.Unlock()
}

// parseInt reads a JSON integer argument (no allocation: every delivery
// goes through it, on the machine the servers share).
func parseInt(raw []byte) (int64, bool) {
	neg := len(raw) > 0 && raw[0] == '-'
	if neg {
		raw = raw[1:]
	}
	if len(raw) == 0 || len(raw) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// consume records the messages of a subscriber until its connection ends.
func (s *sub) consume(c *client.Conn) {
	for m := range c.Messages() {
		if m.Target != msgTarget || len(m.Arguments) < 3 {
			continue
		}
		now := sinceBase()
		round, ok1 := parseInt(m.Arguments[0])
		seq, ok2 := parseInt(m.Arguments[1])
		ts, ok3 := parseInt(m.Arguments[2])
		if !ok1 || !ok2 || !ok3 || seq < 0 {
			continue
		}
		s.mu.Lock()
		if round != s.round {
			s.stale++
			s.mu.Unlock()
			continue
		}
		if s.seen.set(int(seq)) {
			s.dups++
		} else {
			s.count++
		}
		if _, idx, off, err := client.ParseCursor(m.Cursor); err == nil {
			if s.haveCur && (idx < s.lastIdx || idx == s.lastIdx && off <= s.lastOff) {
				s.reorders++
			} else {
				s.lastIdx, s.lastOff, s.haveCur = idx, off, true
			}
		}
		s.lat.record(now - ts)
		s.mu.Unlock()
	}
}

// publisher publishes the messages of a round at a fixed rate from one
// connection, each with InvokeCursor so it knows which were committed.
type publisher struct {
	cs        []*client.Conn // message seq goes through cs[seq%len(cs)]
	hub       string
	mu        sync.Mutex
	committed bitset
	ok, fails int
	firstErr  error
	sendLat   hist
	// failover: the first commit of an invoke issued at or after mark
	mark        time.Time
	firstCommit time.Time
}

type roundResult struct {
	offered, committed, failed int
	window                     time.Duration
	subs                       int
	delivered, expected        int64 // confirmed-committed messages delivered / expected
	extra                      int64 // delivered messages whose invoke was not confirmed
	dups, reorders, stale      int
	lat                        hist
	commitLat                  hist
	drainTime                  time.Duration
	span                       time.Duration // from the first send to the last delivery seen
	drainCut                   bool          // the drain stopped at drainMax with deliveries still coming
	clientDups                 int           // messages the client dropped for a cursor not after the last
	firstErr                   error
}

// runRound publishes rate msg/s for d to the group and waits for the
// deliveries. at/hook, when hook is set, runs hook after at. (Long as the
// scenario scripts are: pace, publish, drain, tally, in order.)
func runRound(ctx context.Context, p *publisher, subs []*sub, round int64, rate float64, d time.Duration, pad string, at time.Duration, hook func()) roundResult {
	for _, s := range subs {
		s.reset(round)
	}
	p.mu.Lock()
	p.committed, p.ok, p.fails, p.firstErr, p.sendLat = nil, 0, 0, nil, hist{}
	p.mu.Unlock()
	var hookWG sync.WaitGroup
	start := time.Now()
	if hook != nil {
		hookWG.Add(1)
		go func() {
			defer hookWG.Done()
			if sleepCtx(ctx, at) == nil {
				hook()
			}
		}()
	}
	pc := newPacer(start, rate, d)
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	offered := 0
	for i := 0; pc.wait(ctx, i); i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		offered++
		wg.Add(1)
		go func(seq int) {
			defer wg.Done()
			defer func() { <-sem }()
			ictx, cancel := context.WithTimeout(ctx, invokeTimeout)
			defer cancel()
			sent := time.Now()
			_, err := p.cs[seq%len(p.cs)].InvokeCursor(ictx, "SendToGroup", group, msgTarget, round, seq, sinceBase(), pad)
			done := time.Now()
			p.mu.Lock()
			defer p.mu.Unlock()
			if err != nil {
				p.fails++
				if p.firstErr == nil {
					p.firstErr = err
				}
				return
			}
			p.ok++
			p.committed.set(seq)
			p.sendLat.record(int64(done.Sub(sent) / time.Microsecond))
			if !p.mark.IsZero() && !sent.Before(p.mark) && (p.firstCommit.IsZero() || done.Before(p.firstCommit)) {
				p.firstCommit = done
			}
		}(i)
	}
	window := d // the pacer's window; shorter only if ctx ended it
	if ctx.Err() != nil {
		window = min(d, time.Since(start))
	}
	wg.Wait() // each invoke is bounded by invokeTimeout
	hookWG.Wait()

	p.mu.Lock()
	committed := p.committed
	rr := roundResult{offered: offered, committed: p.ok, failed: p.fails, window: window, subs: len(subs), firstErr: p.firstErr}
	rr.commitLat.merge(&p.sendLat)
	p.mu.Unlock()

	// Drain: until every subscriber has every committed message, nothing
	// arrived for drainQuiet, or drainMax.
	drainStart := time.Now()
	want := int64(rr.committed) * int64(len(subs))
	all := int64(rr.offered) * int64(len(subs))
	var last int64 = -1
	lastChange := time.Now()
	for {
		var got int64
		for _, s := range subs {
			s.mu.Lock()
			got += int64(s.count)
			s.mu.Unlock()
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		// Everything offered arrived, or nothing more arrives (publishes that
		// failed or timed out may still be committed and delivered, and
		// must not spill into the next round).
		if got >= all || time.Since(lastChange) > drainQuiet || ctx.Err() != nil {
			break
		}
		if time.Since(drainStart) > drainMax {
			rr.drainCut = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rr.drainTime = time.Since(drainStart)
	rr.span = lastChange.Sub(start)
	for _, s := range subs {
		s.mu.Lock()
		in := int64(s.seen.andCount(committed))
		rr.delivered += in
		rr.extra += int64(s.count) - in
		rr.dups += s.dups
		rr.reorders += s.reorders
		rr.stale += s.stale
		rr.lat.merge(&s.lat)
		s.round = -1 // late messages of this round count as stale
		s.mu.Unlock()
	}
	rr.expected = want
	return rr
}

// latencyMetrics adds the delivery figures of a round to r.
func (rr *roundResult) addMetrics(r *Result, rate float64, bar time.Duration, withHolds bool) {
	achieved := float64(rr.committed) / rr.window.Seconds()
	r.metric("offered", rr.offered)
	r.metric("committed", rr.committed)
	r.metric("publish_errors", rr.failed)
	r.metric("achieved_per_s", achieved)
	r.metric("delivered_per_s", float64(rr.delivered)/max(rr.window, rr.span).Seconds())
	ratio := math.NaN() // nothing committed: no ratio
	if rr.expected > 0 {
		ratio = float64(rr.delivered) / float64(rr.expected)
	}
	r.metric("delivered_pct", 100*ratio)
	r.metric("lost", rr.expected-rr.delivered)
	r.metric("reorders", rr.reorders+rr.clientDups)
	r.metric("dups", rr.dups)
	r.metric("p50_ms", msOf(rr.lat.quantile(0.50)))
	r.metric("p90_ms", msOf(rr.lat.quantile(0.90)))
	r.metric("p99_ms", msOf(rr.lat.quantile(0.99)))
	r.metric("max_ms", msOf(rr.lat.max))
	r.metric("commit_p99_ms", msOf(rr.commitLat.quantile(0.99)))
	if rr.extra > 0 {
		r.note("%d deliveries of messages whose publish was not confirmed (failed or timed out invokes that were committed anyway)", rr.extra)
	}
	if rr.drainCut {
		r.note("deliveries were still arriving %v after the last publish: lost includes messages still on their way", drainMax)
	}
	if rr.stale > 0 {
		r.note("%d messages of an earlier round arrived late", rr.stale)
	}
	if rr.firstErr != nil {
		r.note("first publish error: %v", rr.firstErr)
	}
	if withHolds {
		h := holds(achieved, rate, rr.delivered, rr.expected, rr.lat.quantile(0.99), bar)
		r.Holds = &h
	}
}

// endedConns counts the connections that have ended (for example closed
// by the server as too slow a consumer) and gives one's error.
func endedConns(conns []*client.Conn) (int, error) {
	n := 0
	var first error
	for _, c := range conns {
		if c == nil {
			continue
		}
		select {
		case <-c.Done():
			n++
			if first == nil {
				first = c.Err()
			}
		default:
		}
	}
	return n, first
}

// clientDups sums the client's safety net: messages it dropped because
// their cursor did not come after the last one delivered.
func clientDups(conns []*client.Conn) int {
	n := 0
	for _, c := range conns {
		if c != nil {
			n += c.Stats().Duplicates
		}
	}
	return n
}

// holds is the fanout bar: >= 98% of the target rate committed, every
// committed message delivered to every subscriber, p99 under the bar.
func holds(achieved, target float64, delivered, expected int64, p99us int64, bar time.Duration) bool {
	return achieved >= 0.98*target && expected > 0 && delivered == expected && time.Duration(p99us)*time.Microsecond < bar
}

// dialPublishers opens the paced publisher's -pub-conns connections on one
// node. The server runs one connection's hub methods one at a time (as
// ASP.NET Core does), so one connection publishes at most 1/commit latency
// messages per second; more connections lift that cap.
func dialPublishers(ctx context.Context, e *env, cfg *config, nodeIdx int) ([]*client.Conn, error) {
	pcs, failed, err := dialMany(ctx, cfg.pubConns, cfg.dialConc, func(i int) client.Config {
		return client.Config{URL: hubURL(e.nodes[nodeIdx].url, cfg.hub, "publisher"+strconv.Itoa(i))}
	}, func(i int, c *client.Conn) error { drain(c); return nil })
	if failed > 0 {
		return pcs, fmt.Errorf("publisher: %d of %d connections failed: %w", failed, cfg.pubConns, err)
	}
	return pcs, nil
}

type fanoutPlan struct {
	kind    string // fanout or latency
	subs    int
	subNode int // latency: the subscribers' node; fanout: round robin
	pubNode int
	rates   []float64
}

// connectSubs dials n subscribers, joins them to the group and starts
// their consumers. nodeOf gives subscriber i's node.
func connectSubs(ctx context.Context, e *env, cfg *config, n int, nodeOf func(i int) int, extra func(i int, s *sub, cc *client.Config)) ([]*sub, []*client.Conn, int, error) {
	subs := make([]*sub, n)
	for i := range subs {
		subs[i] = &sub{round: -1, node: nodeOf(i)}
	}
	conns, failed, err := dialMany(ctx, n, cfg.dialConc, func(i int) client.Config {
		cc := client.Config{URL: hubURL(e.nodes[subs[i].node].url, cfg.hub, "s"+strconv.Itoa(i)), MessageBuffer: 256}
		if extra != nil {
			extra(i, subs[i], &cc)
		}
		return cc
	}, func(i int, c *client.Conn) error {
		jctx, cancel := context.WithTimeout(ctx, invokeTimeout)
		defer cancel()
		if _, err := c.Invoke(jctx, "JoinGroup", group); err != nil {
			return fmt.Errorf("JoinGroup: %w", err)
		}
		go subs[i].consume(c)
		return nil
	})
	live := subs[:0:0]
	for i, c := range conns {
		if c != nil {
			live = append(live, subs[i])
		}
	}
	return live, conns, failed, err
}

func runFanout(ctx context.Context, e *env, cfg *config, plan fanoutPlan) ([]Result, error) {
	n := len(e.nodes)
	nodeOf := func(i int) int { return i % n }
	if plan.kind == "latency" {
		nodeOf = func(int) int { return plan.subNode }
	}
	t0 := time.Now()
	subs, conns, failed, err := connectSubs(ctx, e, cfg, plan.subs, nodeOf, nil)
	defer closeAll(conns)
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d subscribers failed to connect: %v", failed, plan.subs, err)
	}
	ramp := time.Since(t0)
	fmt.Fprintf(e.logw, "raftplane-bench: %d subscribers connected in %v\n", len(subs), ramp.Round(time.Millisecond))
	pcs, err := dialPublishers(ctx, e, cfg, plan.pubNode)
	defer closeAll(pcs)
	if err != nil {
		return nil, err
	}
	p := &publisher{cs: pcs, hub: cfg.hub}
	pad := strings.Repeat("x", cfg.payload)
	var results []Result
	for ri, rate := range plan.rates {
		if ctx.Err() != nil {
			break
		}
		before := e.cpuTimes()
		dups0 := clientDups(conns)
		tag := fmt.Sprintf("%s-%g", plan.kind, rate)
		var stagesBefore []stageSnapshot
		if plan.kind == "latency" {
			stagesBefore = e.scrapeStages(ctx) // stages.go
		}
		profWait := e.prof.cpu(ctx, e, tag, cfg.duration)
		rr := runRound(ctx, p, subs, int64(ri), rate, cfg.duration, pad, 0, nil)
		profWait()
		e.prof.heap(ctx, e, tag)
		rr.clientDups = clientDups(conns) - dups0
		r := Result{Scenario: plan.kind}
		r.param("nodes", n)
		r.param("subscribers", len(subs))
		r.param("rate", rate)
		r.param("pub_conns", len(pcs))
		r.param("duration_s", cfg.duration.Seconds())
		r.param("payload", cfg.payload)
		rr.addMetrics(&r, rate, cfg.p99Bar, true)
		r.CPU = e.cpuDelta(before, e.cpuTimes())
		ended, why := endedConns(conns)
		r.metric("subs_ended", ended)
		if ended > 0 {
			r.note("%d subscriber connections ended by the end of this rate (their later messages count as lost): %v", ended, why)
		}
		if plan.kind == "latency" {
			r.note("publisher on %s, subscriber on %s", e.nodes[plan.pubNode].name, e.nodes[plan.subNode].name)
		} else {
			r.note("subscribers connected in %v; publisher on %s; CPU figures cover the publish and drain of this rate", ramp.Round(time.Millisecond), e.nodes[plan.pubNode].name)
		}
		r.note("latency: publisher's InvokeCursor start to delivery on the subscriber (one process, one clock); p99 bar %v; reorders: deliveries whose cursor did not follow the previous one's (log order; the publisher has up to %d invokes in flight, so its send order is not its sequence order)", cfg.p99Bar, maxInFlight)
		results = append(results, r)
		if plan.kind == "latency" {
			results = append(results, stageResults(e, stagesBefore, e.scrapeStages(ctx), rate)...)
		}
		fmt.Fprintf(e.logw, "raftplane-bench: rate %v done\n", rate)
	}
	return results, ctx.Err()
}

// runPublish: C publishers, closed loop, SendToGroup into a group nobody is
// in, for -duration. (A scenario script, read top to bottom.)
func runPublish(ctx context.Context, e *env, cfg *config) ([]Result, error) {
	n := len(e.nodes)
	conns, failed, err := dialMany(ctx, cfg.publishers, cfg.dialConc, func(i int) client.Config {
		return client.Config{URL: hubURL(e.nodes[i%n].url, cfg.hub, "p"+strconv.Itoa(i)), MessageBuffer: 16}
	}, func(i int, c *client.Conn) error { drain(c); return nil })
	defer closeAll(conns)
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d publishers failed to connect: %v", failed, cfg.publishers, err)
	}
	pad := strings.Repeat("x", cfg.payload)
	profWait := e.prof.cpu(ctx, e, "publish", cfg.duration)
	defer profWait()
	before := e.cpuTimes()
	start := time.Now()
	deadline := start.Add(cfg.duration)
	type pubStats struct {
		ok, fails int
		lat       hist
		err       error
	}
	stats := make([]pubStats, len(conns)*cfg.inflight)
	var wg sync.WaitGroup
	for i := range stats {
		c := conns[i%len(conns)]
		wg.Add(1)
		go func(i int, c *client.Conn) {
			defer wg.Done()
			st := &stats[i]
			for time.Now().Before(deadline) && ctx.Err() == nil {
				ictx, cancel := context.WithTimeout(ctx, invokeTimeout)
				t := time.Now()
				_, err := c.InvokeCursor(ictx, "SendToGroup", "nobody-listens", msgTarget, pad)
				cancel()
				if err != nil {
					st.fails++
					if st.err == nil {
						st.err = err
					}
					if errors.Is(err, client.ErrClosed) || c.Err() != nil {
						return
					}
					continue
				}
				st.ok++
				st.lat.record(int64(time.Since(t) / time.Microsecond))
			}
		}(i, c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := e.cpuDelta(before, e.cpuTimes())
	var ok, fails int
	var lat hist
	var firstErr error
	for i := range stats {
		ok += stats[i].ok
		fails += stats[i].fails
		lat.merge(&stats[i].lat)
		if firstErr == nil {
			firstErr = stats[i].err
		}
	}
	r := Result{Scenario: "publish", CPU: cpu}
	r.param("nodes", n)
	r.param("publishers", len(conns))
	r.param("inflight", cfg.inflight)
	r.param("duration_s", cfg.duration.Seconds())
	r.param("payload", cfg.payload)
	r.metric("committed", ok)
	r.metric("errors", fails)
	r.metric("committed_per_s", float64(ok)/elapsed.Seconds())
	r.metric("invoke_p50_ms", msOf(lat.quantile(0.5)))
	r.metric("invoke_p99_ms", msOf(lat.quantile(0.99)))
	r.metric("invoke_max_ms", msOf(lat.max))
	r.note("each publisher: its own WebSocket connection (spread round robin over the nodes), InvokeCursor(SendToGroup) into a group nobody is in, back to back, %d at a time; no subscribers", cfg.inflight)
	if cfg.inflight > 1 {
		r.note("the invocations in flight on one connection are pipelined by the nodes (up to -max-pipelined-invocations, applied in the order they reach the node)")
	}
	if firstErr != nil {
		r.note("first error: %v", firstErr)
	}
	return []Result{r}, ctx.Err()
}

// runConns: N idle connections to node 1, its RSS before and after.
func runConns(ctx context.Context, e *env, cfg *config) ([]Result, error) {
	nd := e.nodes[0]
	r := Result{Scenario: "conns"}
	r.param("conns", cfg.conns)
	var rssBefore int64 = -1
	if nd.cmd != nil {
		_ = sleepCtx(ctx, time.Second) // let the startup settle
		if v, err := procRSS(nd.pid()); err == nil {
			rssBefore = v
		}
	} else {
		r.note("RSS not measured: -targets nodes are not the tool's processes")
	}
	toolRSS0, _ := procRSS(os.Getpid())
	before := e.cpuTimes()
	start := time.Now()
	conns, failed, err := dialMany(ctx, cfg.conns, cfg.dialConc, func(i int) client.Config {
		return client.Config{URL: hubURL(nd.url, cfg.hub, "c"+strconv.Itoa(i)), MessageBuffer: 1}
	}, func(i int, c *client.Conn) error { drain(c); return nil })
	defer closeAll(conns)
	ramp := time.Since(start)
	ok := cfg.conns - failed
	_ = sleepCtx(ctx, cfg.idle) // idle: let the server's buffers settle
	local, lerr := e.localConnections(ctx, nd)
	defer e.prof.heap(ctx, e, "conns")
	r.metric("connected", ok)
	r.metric("failed", failed)
	r.metric("ramp_s", ramp.Seconds())
	r.metric("dials_per_s", float64(ok)/ramp.Seconds())
	if lerr == nil {
		r.metric("server_local_conns", local)
	}
	if rssBefore >= 0 {
		if after, err := procRSS(nd.pid()); err == nil {
			r.metric("rss_before_mib", float64(rssBefore)/(1<<20))
			r.metric("rss_after_mib", float64(after)/(1<<20))
			if ok > 0 {
				r.metric("bytes_per_conn", (after-rssBefore)/int64(ok))
			}
		}
	}
	if toolRSS1, err := procRSS(os.Getpid()); err == nil && ok > 0 {
		r.metric("tool_bytes_per_conn", (toolRSS1-toolRSS0)/int64(ok))
	}
	r.CPU = e.cpuDelta(before, e.cpuTimes())
	r.note("connections to %s only, idle (keep-alive pings only), dialled %d at a time; RSS is %s's VmRSS 1s after start and %v after the last dial", nd.name, cfg.dialConc, nd.name, cfg.idle)
	if err != nil {
		r.note("first dial error: %v", err)
	}
	return []Result{r}, ctx.Err()
}

// runFailover: fanout with Resume, the leader killed after a third of the
// duration. (A scenario script, read top to bottom like the others: set
// up, run, kill, measure, report; TestScenarios_Smoke runs it.)
func runFailover(ctx context.Context, e *env, cfg *config) ([]Result, error) {
	n := len(e.nodes)
	leader, err := e.leader(ctx)
	if err != nil {
		return nil, fmt.Errorf("finding the leader: %w", err)
	}
	pubNode := (leader + 1) % n
	var t0 atomic.Int64 // kill time, UnixNano; 0 before
	subs, conns, failed, err := connectSubs(ctx, e, cfg, cfg.subscribers, func(i int) int { return i % n }, func(i int, s *sub, cc *client.Config) {
		for j := 1; j < n; j++ { // the others, after its own node
			cc.URLs = append(cc.URLs, hubURL(e.nodes[(s.node+j)%n].url, cfg.hub, "s"+strconv.Itoa(i)))
		}
		cc.Resume = true
		cc.ResumeTimeout = 20 * time.Second
		cc.OnEvent = func(ev client.Event) {
			s.mu.Lock()
			defer s.mu.Unlock()
			switch ev.Kind {
			case client.EventDropped:
				s.dropsCount++
				if s.droppedAt.IsZero() {
					s.droppedAt = time.Now()
				}
			case client.EventResumed:
				s.resumedAt = time.Now()
				s.transportAt = s.droppedAt.Add(ev.Elapsed)
			case client.EventReset:
				s.resets++
			case client.EventGaveUp:
				s.gaveUp++
			}
		}
	})
	defer closeAll(conns)
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d subscribers failed to connect: %v", failed, cfg.subscribers, err)
	}
	pcs, err := dialPublishers(ctx, e, cfg, pubNode)
	defer closeAll(pcs)
	if err != nil {
		return nil, err
	}
	p := &publisher{cs: pcs, hub: cfg.hub}
	pad := strings.Repeat("x", cfg.payload)
	rate := cfg.rates[0]
	killAt := cfg.duration / 3
	var killErr error
	before := e.cpuTimes()
	rr := runRound(ctx, p, subs, 0, rate, cfg.duration, pad, killAt, func() {
		now := time.Now()
		p.mu.Lock()
		p.mark = now
		p.mu.Unlock()
		t0.Store(now.UnixNano())
		killErr = e.kill(e.nodes[leader])
	})
	cpu := e.cpuDelta(before, e.cpuTimes())
	// Resumes may still be running: wait for them (bounded by their timeout).
	kill := time.Unix(0, t0.Load())
	deadline := time.Now().Add(25 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		pending := 0
		for _, s := range subs {
			s.mu.Lock()
			if s.node == leader && s.resumedAt.IsZero() && s.resets == 0 && s.gaveUp == 0 {
				pending++
			}
			s.mu.Unlock()
		}
		if pending == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := Result{Scenario: "failover", CPU: cpu}
	r.param("nodes", n)
	r.param("subscribers", len(subs))
	r.param("rate", rate)
	r.param("pub_conns", len(pcs))
	r.param("duration_s", cfg.duration.Seconds())
	r.param("payload", cfg.payload)
	if killErr != nil || t0.Load() == 0 {
		return []Result{r}, fmt.Errorf("killing the leader %s: %v", e.nodes[leader].name, killErr)
	}
	p.mu.Lock()
	first := p.firstCommit
	p.mu.Unlock()
	if first.IsZero() {
		r.metric("first_commit_ms", nil)
	} else {
		r.metric("first_commit_ms", float64(first.Sub(kill))/float64(time.Millisecond))
	}
	var onKilled, resumed, resets, gaveUp int
	var resumeTimes, settleTimes []int64
	for _, s := range subs {
		s.mu.Lock()
		if s.node == leader {
			onKilled++
			if !s.resumedAt.IsZero() {
				resumed++
				resumeTimes = append(resumeTimes, int64(s.transportAt.Sub(kill)/time.Microsecond))
				settleTimes = append(settleTimes, int64(s.resumedAt.Sub(kill)/time.Microsecond))
			}
		}
		resets += s.resets
		gaveUp += s.gaveUp
		s.mu.Unlock()
	}
	slices.Sort(resumeTimes)
	slices.Sort(settleTimes)
	r.metric("subs_on_killed", onKilled)
	r.metric("resumed", resumed)
	r.metric("resets", resets)
	r.metric("gave_up", gaveUp)
	if len(resumeTimes) > 0 {
		r.metric("resume_p50_ms", msOf(exactQuantile(resumeTimes, 0.5)))
		r.metric("all_resumed_ms", msOf(resumeTimes[len(resumeTimes)-1]))
		r.metric("all_replayed_ms", msOf(settleTimes[len(settleTimes)-1]))
	} else {
		r.metric("resume_p50_ms", nil)
		r.metric("all_resumed_ms", nil)
		r.metric("all_replayed_ms", nil)
	}
	rr.clientDups = clientDups(conns)
	rr.addMetrics(&r, rate, cfg.p99Bar, false)
	r.note("killed the leader %s with SIGKILL %v into the load; publisher on %s; first_commit_ms: from the kill to the first Completion of an invoke issued after it; resume_p50_ms/all_resumed_ms: from the kill until the subscribers of %s (client.Config.Resume) had their resumed transport on another node (EventDropped time + EventResumed.Elapsed); all_replayed_ms: until the last EventResumed, which the client emits once the replay has settled (100ms quiet, at most 1s after the handshake)", e.nodes[leader].name, killAt, e.nodes[pubNode].name, e.nodes[leader].name)
	return []Result{r}, ctx.Err()
}
