// Package check owns the chaos suite's verdict: Check reads a run's
// history.History and returns a Report with the run's numbers and every
// violation of the hub's guarantees (one log, each message once, no
// phantom or aborted reads, no lost acks, gap-free in-order delivery per
// subscriber session, real-time order of acks, converged final state).
//
// Check is pure and works on the history alone, so a saved run can be
// re-checked offline (cmd/chaos-check). It is a direct log checker in the
// style of Jepsen's Kafka checker: every ack, delivery and final read carries
// its log position, so the global order is observed, not searched for.
// Positions are sparse (joins, connection opens and no-ops occupy positions
// too), so "next" always means the next observed message of the group.
// Everything is linear or n log n in the number of events.
package check

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/raftplane/raftplane/chaos/history"
)

// Violation kinds.
const (
	// KindDivergent: one position holds two different ids.
	KindDivergent = "divergent"
	// KindReadMismatch: two nodes' complete reads of a group disagree on
	// their common position range.
	KindReadMismatch = "read-mismatch"
	// KindDuplicate: one id at two positions.
	KindDuplicate = "duplicate"
	// KindPhantom: an id delivered or read that was never invoked.
	KindPhantom = "phantom"
	// KindAbortedRead: an id delivered or read whose every publish
	// attempt definitely failed.
	KindAbortedRead = "aborted-read"
	// KindLostAck: an acknowledged id missing from a node's complete read
	// of its group, or never observed at all.
	KindLostAck = "lost-ack"
	// KindNonmonotonic: a session delivered a position at or before one it
	// had already delivered (or at or before its join of that group).
	KindNonmonotonic = "nonmonotonic"
	// KindGap: a session skipped messages of a group it joined.
	KindGap = "gap"
	// KindUnseenAtEnd: a session alive at the end lacks the tail of a group.
	KindUnseenAtEnd = "unseen-at-end"
	// KindUnexpectedDelivery: a session got a message of a group it never
	// joined.
	KindUnexpectedDelivery = "unexpected-delivery"
	// KindRealtime: a publish acked before another was first invoked got a
	// later or equal position.
	KindRealtime = "realtime"
	// KindState: nodes' final states differ in position or digest.
	KindState = "state"
	// KindLeaders: the final states do not name exactly one leader.
	KindLeaders = "leaders"
	// KindAnomaly: the harness recorded an Anomaly event.
	KindAnomaly = "anomaly"
	// KindGroupMismatch: one id was invoked, delivered or read under
	// different groups.
	KindGroupMismatch = "group-mismatch"
	// KindMalformed: the history breaks its own contract (an outcome with
	// no invoke, a missing position or id). A harness bug can hide system
	// bugs, so it fails the run too.
	KindMalformed = "malformed"
)

// MaxExamples is how many violations of one kind a Report keeps; Counts
// stays exact beyond it.
const MaxExamples = 100

// Violation is one broken guarantee. Which of P, ID, Pos, Session, Node and
// Group are set depends on Kind.
type Violation struct {
	Kind    string       `json:"kind"`
	Detail  string       `json:"detail"`
	T       int64        `json:"t,omitempty"`
	P       string       `json:"p,omitempty"`
	ID      string       `json:"id,omitempty"`
	Pos     *history.Pos `json:"pos,omitempty"`
	Session int          `json:"session,omitempty"`
	Node    string       `json:"node,omitempty"`
	Group   string       `json:"group,omitempty"`
}

// PublishStats counts publishes.
type PublishStats struct {
	Invoked int `json:"invoked"`
	OK      int `json:"ok"`
	Fail    int `json:"fail"`
	Info    int `json:"info"`
	// Open counts invokes with no outcome by the end; they are treated as
	// indeterminate, like Info.
	Open int `json:"open"`
	// IDs is the number of distinct ids invoked; Retries the invokes
	// beyond the first of each id (retries after Info and deliberate
	// duplicate sends).
	IDs     int `json:"ids"`
	Retries int `json:"retries"`
	// Acked is the number of distinct ids with at least one OK.
	Acked int `json:"acked"`
	// Recovered counts ids never acked, some attempt indeterminate, that
	// were observed in the log anyway; Unrecovered those never observed.
	Recovered   int `json:"recovered"`
	Unrecovered int `json:"unrecovered"`
	// Canaries counts distinct canary ids invoked; CanariesOK those acked.
	Canaries   int `json:"canaries"`
	CanariesOK int `json:"canaries_ok"`
	// Expired counts Fail and Info outcomes refused by the FSM as expired
	// (stamped more than fsm.MaxCommandAge behind the newest stamp): the
	// expected fate of a late copy, a storm of them after a clock fault.
	Expired int `json:"expired"`
}

// ExpiredText is what the error of a command the FSM refused as expired
// says (fsm.ErrExpired).
const ExpiredText = "command expired"

// expired is 1 for an outcome refused as expired.
func expired(e *history.Event) int {
	if strings.Contains(e.Err, ExpiredText) {
		return 1
	}
	return 0
}

// SubscriberStats counts subscriber events.
type SubscriberStats struct {
	Sessions   int `json:"sessions"`
	Joins      int `json:"joins"`
	Deliveries int `json:"deliveries"`
	Drops      int `json:"drops"`
	Resumes    int `json:"resumes"`
	Resets     int `json:"resets"`
	Leaves     int `json:"leaves"`
	// AliveAtEnd counts sessions with neither Reset nor Leave.
	AliveAtEnd int `json:"alive_at_end"`
}

// ReadStats counts the final reads.
type ReadStats struct {
	// PerNode is the number of Read events per node.
	PerNode map[string]int `json:"per_node"`
	// Complete counts node/group reads that ended with ReadDone;
	// Incomplete lists the others as "node/group".
	Complete   int      `json:"complete"`
	Incomplete []string `json:"incomplete,omitempty"`
}

// NodeState is a node's last State event.
type NodeState struct {
	Node   string      `json:"node"`
	Pos    history.Pos `json:"pos"`
	Digest string      `json:"digest"`
	Role   string      `json:"role"`
}

// StateSummary is the final state of the nodes. Known is false when the
// history has no State event (offline or unit histories): the state checks
// are then not run, which is not a violation.
type StateSummary struct {
	Known   bool        `json:"known"`
	Nodes   []NodeState `json:"nodes,omitempty"`
	Leaders []string    `json:"leaders,omitempty"`
}

// Report is Check's result.
type Report struct {
	Events int `json:"events"`
	// Duration is the time from the first to the last event.
	Duration    time.Duration   `json:"duration_ns"`
	Publishes   PublishStats    `json:"publishes"`
	Subscribers SubscriberStats `json:"subscribers"`
	Reads       ReadStats       `json:"reads"`
	// Faults counts FaultStart events by Kind.
	Faults map[string]int `json:"faults"`
	Notes  int            `json:"notes"`
	State  StateSummary   `json:"state"`
	// MaxUnavailable is the longest time without a publish completing:
	// the longest interval between consecutive OK events, where the first
	// interval starts at the first Invoke and the last ends at the last OK.
	// With invokes but no OK at all, it runs from the first Invoke to the
	// last event. MaxUnavailableFrom and To are its bounds on the run clock.
	MaxUnavailable     time.Duration `json:"max_unavailable_ns"`
	MaxUnavailableFrom int64         `json:"max_unavailable_from"`
	MaxUnavailableTo   int64         `json:"max_unavailable_to"`
	// LatencyP50 and LatencyP99 are nearest-rank percentiles of Invoke to
	// OK of the same attempt (same process, same id).
	LatencyP50 time.Duration `json:"latency_p50_ns"`
	LatencyP99 time.Duration `json:"latency_p99_ns"`
	// Counts is the exact number of violations per kind; Violations keeps
	// at most MaxExamples of each kind, in the order they were found.
	Counts     map[string]int `json:"counts"`
	Violations []Violation    `json:"violations"`
}

type pkey struct{ p, id string }

type attempt struct {
	t     int64
	group string
}

type idInfo struct {
	group   string
	invokes int
	oks     int
	fails   int
	infos   int
	open    int
	// pos is the first position the id was observed at; later different
	// positions are duplicates.
	pos    history.Pos
	hasPos bool
	okPos  history.Pos
	hasOK  bool
	// seen: delivered or read (an OK alone is not an observation by a
	// reader of the log).
	seen bool
}

type nodeGroup struct{ node, group string }

type posID struct {
	pos history.Pos
	id  string
}

type readInfo struct {
	nodeGroup
	ids  map[string]struct{}
	list []posID
	done bool
}

type skey struct {
	p string
	n int
}

type cursor struct {
	last      history.Pos
	delivered bool
}

type session struct {
	skey
	groups     map[string]*cursor
	groupOrder []string
	last       history.Pos
	hasLast    bool
	ended      bool
	// resume is the Resume since the last delivery, named in violations
	// because resume is where gaps and repeats come from.
	resume *history.Event
}

type flagKey struct {
	kind string
	id   string
	pos  history.Pos
}

type checker struct {
	r       *Report
	evs     []*history.Event
	ids     map[string]*idInfo
	okOrder []string
	pending map[pkey]attempt
	posID   map[history.Pos]string
	// groupPos collects every position observed in each group; sorted, it
	// is the group's global order G_g.
	groupPos  map[string]map[history.Pos]struct{}
	order     map[string][]history.Pos
	reads     map[nodeGroup]*readInfo
	readOrder []nodeGroup
	sessions  map[skey]*session
	sessOrder []*session
	states    map[string]*history.Event
	flagged   map[flagKey]struct{}
	latencies []int64
}

// Check checks a history. h need not be sorted by T; it is not modified.
func Check(h history.History) Report {
	r := Report{
		Events:     len(h),
		Faults:     map[string]int{},
		Counts:     map[string]int{},
		Violations: []Violation{},
		Reads:      ReadStats{PerNode: map[string]int{}},
	}
	c := &checker{
		r:        &r,
		ids:      map[string]*idInfo{},
		pending:  map[pkey]attempt{},
		posID:    map[history.Pos]string{},
		groupPos: map[string]map[history.Pos]struct{}{},
		order:    map[string][]history.Pos{},
		reads:    map[nodeGroup]*readInfo{},
		sessions: map[skey]*session{},
		states:   map[string]*history.Event{},
		flagged:  map[flagKey]struct{}{},
	}
	// Pointers, not a copy: soak histories reach 10^6 events of ~300 bytes.
	c.evs = make([]*history.Event, len(h))
	for i := range h {
		c.evs[i] = &h[i]
	}
	byT := func(a, b *history.Event) int {
		switch {
		case a.T < b.T:
			return -1
		case a.T > b.T:
			return 1
		}
		return 0
	}
	if !slices.IsSortedFunc(c.evs, byT) {
		slices.SortStableFunc(c.evs, byT)
	}
	if len(c.evs) > 0 {
		r.Duration = time.Duration(c.evs[len(c.evs)-1].T - c.evs[0].T)
	}
	c.collect()
	c.buildOrder()
	c.subscribers()
	c.lostAcks()
	c.readMismatches()
	c.realtime()
	c.finalState()
	return r
}

func (c *checker) add(v Violation) {
	c.r.Counts[v.Kind]++
	if c.r.Counts[v.Kind] <= MaxExamples {
		c.r.Violations = append(c.r.Violations, v)
	}
}

// once reports whether (kind, id, pos) is flagged for the first time, so one
// fact seen by many sources is one violation.
func (c *checker) once(kind, id string, pos history.Pos) bool {
	k := flagKey{kind, id, pos}
	if _, ok := c.flagged[k]; ok {
		return false
	}
	c.flagged[k] = struct{}{}
	return true
}

func (c *checker) malformed(e *history.Event, what string) {
	c.add(Violation{Kind: KindMalformed, T: e.T, P: e.P, ID: e.ID, Node: e.Node, Group: e.Group, Session: e.Session,
		Detail: fmt.Sprintf("%s event of %s at t=%s: %s", e.Type, e.P, dur(e.T), what)})
}

func (c *checker) id(id string) *idInfo {
	inf := c.ids[id]
	if inf == nil {
		inf = &idInfo{}
		c.ids[id] = inf
	}
	return inf
}

func pp(p history.Pos) *history.Pos { return &p }

func isCanary(id string) bool { return strings.HasPrefix(id, "canary-") }

// source names where an observation came from, for details.
func source(e *history.Event) string {
	switch e.Type {
	case history.OK:
		return "acked to " + e.P
	case history.Deliver:
		return fmt.Sprintf("delivered to %s session %d", e.P, e.Session)
	case history.Read:
		return "read from " + e.Node
	}
	return e.Type + " by " + e.P
}

// observe records that id sits at pos in group, and flags divergence and
// duplication against everything observed before.
func (c *checker) observe(e *history.Event, id, group string, pos history.Pos) {
	inf := c.id(id)
	if !inf.hasPos {
		inf.pos, inf.hasPos = pos, true
	} else if inf.pos != pos && c.once(KindDuplicate, id, pos) {
		c.add(Violation{Kind: KindDuplicate, T: e.T, P: e.P, ID: id, Pos: pp(pos), Node: e.Node, Group: group, Session: e.Session,
			Detail: fmt.Sprintf("id %s at %s (%s) was first observed at %s", id, pos, source(e), inf.pos)})
	}
	if other, ok := c.posID[pos]; !ok {
		c.posID[pos] = id
	} else if other != id && c.once(KindDivergent, id, pos) {
		c.add(Violation{Kind: KindDivergent, T: e.T, P: e.P, ID: id, Pos: pp(pos), Node: e.Node, Group: group, Session: e.Session,
			Detail: fmt.Sprintf("position %s holds %s (%s) but was first observed holding %s", pos, id, source(e), other)})
	}
	gp := c.groupPos[group]
	if gp == nil {
		gp = map[history.Pos]struct{}{}
		c.groupPos[group] = gp
	}
	gp[pos] = struct{}{}
}

// availability follows the longest stretch without a successful publish,
// from the first invoke on (collect).
type availability struct {
	firstInvoke, prevOK int64
	invoked, anyOK      bool
}

// invoke notes an invoke at t.
func (a *availability) invoke(t int64) {
	if !a.invoked {
		a.firstInvoke, a.prevOK, a.invoked = t, t, true
	}
}

// ok notes a successful publish at t, measuring the gap since the last.
func (a *availability) ok(r *Report, t int64) {
	if a.invoked {
		gap(r, a.prevOK, t)
		a.prevOK = t
	}
	a.anyOK = true
}

// gap records from-to as the longest unavailability if it is.
func gap(r *Report, from, to int64) {
	if d := time.Duration(to - from); d > r.MaxUnavailable {
		r.MaxUnavailable, r.MaxUnavailableFrom, r.MaxUnavailableTo = d, from, to
	}
}

// collect is the first pass: publishes, observations, reads, counts.
func (c *checker) collect() {
	r := c.r
	var avail availability
	for _, e := range c.evs {
		switch e.Type {
		case history.Invoke:
			c.collectInvoke(e, &avail)
		case history.OK, history.Fail, history.Info:
			c.collectOutcome(e, &avail)
		case history.Deliver:
			r.Subscribers.Deliveries++
			if e.ID == "" || e.Pos == nil {
				c.malformed(e, "no id or no position")
				continue
			}
			c.id(e.ID).seen = true
			c.observe(e, e.ID, e.Group, *e.Pos)
		case history.Read:
			r.Reads.PerNode[e.Node]++
			if e.ID == "" || e.Pos == nil {
				c.malformed(e, "no id or no position")
				continue
			}
			c.id(e.ID).seen = true
			c.observe(e, e.ID, e.Group, *e.Pos)
			ri := c.read(e)
			ri.ids[e.ID] = struct{}{}
			ri.list = append(ri.list, posID{*e.Pos, e.ID})
		case history.ReadDone:
			c.read(e).done = true
		case history.State:
			if e.Pos == nil {
				c.malformed(e, "no position")
				continue
			}
			c.states[e.Node] = e
		case history.FaultStart:
			r.Faults[e.Kind]++
		case history.Note:
			r.Notes++
		case history.Anomaly:
			c.add(Violation{Kind: KindAnomaly, T: e.T, P: e.P, Node: e.Node,
				Detail: fmt.Sprintf("%s on %s at t=%s: %s", e.Kind, orDash(e.Node), dur(e.T), e.Text)})
		}
	}
	if avail.invoked && !avail.anyOK && len(c.evs) > 0 {
		gap(r, avail.firstInvoke, c.evs[len(c.evs)-1].T)
	}
	c.collectTotals()
}

// collectInvoke counts an invoke and opens its attempt; an invoke without
// an id is only reported as malformed.
func (c *checker) collectInvoke(e *history.Event, avail *availability) {
	r := c.r
	if e.ID == "" {
		c.malformed(e, "no id")
		return
	}
	r.Publishes.Invoked++
	avail.invoke(e.T)
	inf := c.id(e.ID)
	if inf.invokes == 0 {
		inf.group = e.Group
		r.Publishes.IDs++
		if isCanary(e.ID) {
			r.Publishes.Canaries++
		}
	} else {
		r.Publishes.Retries++
		if e.Group != inf.group && c.once(KindGroupMismatch, e.ID, history.Pos{}) {
			c.add(Violation{Kind: KindGroupMismatch, T: e.T, P: e.P, ID: e.ID, Group: e.Group,
				Detail: fmt.Sprintf("id %s invoked for group %q, first invoked for %q", e.ID, e.Group, inf.group)})
		}
	}
	inf.invokes++
	k := pkey{e.P, e.ID}
	if _, ok := c.pending[k]; ok {
		c.malformed(e, "invoked again before the previous attempt's outcome (that attempt counts as open)")
		inf.open++
		r.Publishes.Open++
	}
	c.pending[k] = attempt{t: e.T, group: e.Group}
}

// collectOutcome closes an attempt with its outcome (ok, fail, info); an
// acknowledged publish is observed at its position.
func (c *checker) collectOutcome(e *history.Event, avail *availability) {
	r := c.r
	if e.ID == "" {
		c.malformed(e, "no id")
		return
	}
	inf := c.id(e.ID)
	k := pkey{e.P, e.ID}
	a, pending := c.pending[k]
	if !pending {
		c.malformed(e, "outcome with no pending invoke of "+e.ID+" by "+e.P)
		a.group = inf.group
	}
	delete(c.pending, k)
	switch e.Type {
	case history.Fail:
		r.Publishes.Fail++
		inf.fails++
		r.Publishes.Expired += expired(e)
		return
	case history.Info:
		r.Publishes.Info++
		inf.infos++
		r.Publishes.Expired += expired(e)
		return
	}
	r.Publishes.OK++
	inf.oks++
	if pending {
		c.latencies = append(c.latencies, e.T-a.t)
	}
	avail.ok(r, e.T)
	if e.Pos == nil {
		c.malformed(e, "no position")
		return
	}
	if !inf.hasOK {
		inf.okPos, inf.hasOK = *e.Pos, true
		c.okOrder = append(c.okOrder, e.ID)
		r.Publishes.Acked++
		if isCanary(e.ID) {
			r.Publishes.CanariesOK++
		}
	}
	c.observe(e, e.ID, a.group, *e.Pos)
}

// collectTotals closes the first pass: the attempts never answered, the
// publishes never acknowledged (recovered when seen anyway), the latency
// percentiles and the reads.
func (c *checker) collectTotals() {
	r := c.r
	for k := range c.pending {
		c.ids[k.id].open++
		r.Publishes.Open++
	}
	for _, inf := range c.ids {
		if inf.invokes > 0 && inf.oks == 0 && inf.infos+inf.open > 0 {
			if inf.seen {
				r.Publishes.Recovered++
			} else {
				r.Publishes.Unrecovered++
			}
		}
	}
	slices.Sort(c.latencies)
	r.LatencyP50 = time.Duration(percentile(c.latencies, 50))
	r.LatencyP99 = time.Duration(percentile(c.latencies, 99))
	for _, ng := range c.readOrder {
		if c.reads[ng].done {
			r.Reads.Complete++
		} else {
			r.Reads.Incomplete = append(r.Reads.Incomplete, ng.node+"/"+ng.group)
		}
	}
}

func (c *checker) read(e *history.Event) *readInfo {
	k := nodeGroup{e.Node, e.Group}
	ri := c.reads[k]
	if ri == nil {
		ri = &readInfo{nodeGroup: k, ids: map[string]struct{}{}}
		c.reads[k] = ri
		c.readOrder = append(c.readOrder, k)
	}
	return ri
}

// percentile is the nearest-rank percentile of sorted xs.
func percentile(xs []int64, p int) int64 {
	if len(xs) == 0 {
		return 0
	}
	i := (len(xs)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return xs[i-1]
}

func (c *checker) buildOrder() {
	for g, set := range c.groupPos {
		o := make([]history.Pos, 0, len(set))
		for p := range set {
			o = append(o, p)
		}
		slices.SortFunc(o, cmpPos)
		c.order[g] = o
	}
	c.groupPos = nil
}

func cmpPos(a, b history.Pos) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}

// after returns the index in o of the first position after p.
func after(o []history.Pos, p history.Pos) int {
	return sort.Search(len(o), func(i int) bool { return p.Less(o[i]) })
}

// at returns the index in o of p, which must be in o.
func at(o []history.Pos, p history.Pos) int {
	return sort.Search(len(o), func(i int) bool { return !o[i].Less(p) })
}

func (c *checker) session(e *history.Event) *session {
	k := skey{e.P, e.Session}
	s := c.sessions[k]
	if s == nil {
		s = &session{skey: k, groups: map[string]*cursor{}}
		c.sessions[k] = s
		c.sessOrder = append(c.sessOrder, s)
	}
	return s
}

// subscribers is the second pass: it needs the complete global order and
// every id's final publish outcome.
func (c *checker) subscribers() {
	r := c.r
	// Joins are placed by their log position, not by when the harness
	// recorded them: a message right after a join can reach the subscriber
	// (and be recorded) before the join's completion does. A session joins
	// a group once; a second join of the same group counts from the first.
	for _, e := range c.evs {
		if e.Type != history.Join {
			continue
		}
		r.Subscribers.Joins++
		s := c.session(e)
		if e.Pos == nil {
			c.malformed(e, "no position")
			continue
		}
		if _, ok := s.groups[e.Group]; !ok {
			s.groupOrder = append(s.groupOrder, e.Group)
			s.groups[e.Group] = &cursor{last: *e.Pos}
		}
	}
	for _, e := range c.evs {
		switch e.Type {
		case history.Deliver:
			if e.ID == "" || e.Pos == nil {
				continue
			}
			c.observed(e)
			c.deliver(c.session(e), e)
		case history.Read:
			if e.ID == "" || e.Pos == nil {
				continue
			}
			c.observed(e)
		case history.Drop:
			r.Subscribers.Drops++
			c.session(e)
		case history.Resume:
			r.Subscribers.Resumes++
			c.session(e).resume = e
		case history.Reset:
			r.Subscribers.Resets++
			c.session(e).ended = true
		case history.Leave:
			r.Subscribers.Leaves++
			c.session(e).ended = true
		}
	}
	r.Subscribers.Sessions = len(c.sessOrder)
	for _, s := range c.sessOrder {
		if s.ended {
			continue
		}
		r.Subscribers.AliveAtEnd++
		for _, g := range s.groupOrder {
			cur, o := s.groups[g], c.order[g]
			i := after(o, cur.last)
			if i == len(o) {
				continue
			}
			what := "its join at " + cur.last.String()
			if cur.delivered {
				what = "its last delivery at " + cur.last.String()
			}
			c.add(Violation{Kind: KindUnseenAtEnd, P: s.p, Session: s.n, Group: g, ID: c.posID[o[i]], Pos: pp(o[i]),
				Detail: fmt.Sprintf("%s session %d, alive at the end, lacks %d message(s) of group %s after %s; first missing %s at %s",
					s.p, s.n, len(o)-i, g, what, c.posID[o[i]], o[i])})
		}
	}
}

// observed checks a delivered or read id against its publishes.
func (c *checker) observed(e *history.Event) {
	inf := c.ids[e.ID]
	switch {
	case inf.invokes == 0:
		if c.once(KindPhantom, e.ID, history.Pos{}) {
			c.add(Violation{Kind: KindPhantom, T: e.T, P: e.P, ID: e.ID, Pos: pp(*e.Pos), Node: e.Node, Group: e.Group, Session: e.Session,
				Detail: fmt.Sprintf("id %s at %s (%s) was never invoked", e.ID, *e.Pos, source(e))})
		}
	case inf.fails == inf.invokes:
		if c.once(KindAbortedRead, e.ID, history.Pos{}) {
			c.add(Violation{Kind: KindAbortedRead, T: e.T, P: e.P, ID: e.ID, Pos: pp(*e.Pos), Node: e.Node, Group: e.Group, Session: e.Session,
				Detail: fmt.Sprintf("id %s at %s (%s) but all %d of its publish attempts definitely failed", e.ID, *e.Pos, source(e), inf.invokes)})
		}
	}
	if inf.invokes > 0 && e.Group != inf.group && c.once(KindGroupMismatch, e.ID, history.Pos{}) {
		c.add(Violation{Kind: KindGroupMismatch, T: e.T, P: e.P, ID: e.ID, Pos: pp(*e.Pos), Node: e.Node, Group: e.Group, Session: e.Session,
			Detail: fmt.Sprintf("id %s %s under group %q, invoked for %q", e.ID, source(e), e.Group, inf.group)})
	}
}

func (c *checker) deliver(s *session, e *history.Event) {
	p, g := *e.Pos, e.Group
	ctx := ""
	if s.resume != nil {
		rp := "?"
		if s.resume.Pos != nil {
			rp = s.resume.Pos.String()
		}
		ctx = fmt.Sprintf(" (first delivery after resume from %s on %s)", rp, orDash(s.resume.Node))
	}
	v := Violation{T: e.T, P: s.p, Session: s.n, ID: e.ID, Pos: pp(p), Node: e.Node, Group: g}
	if s.hasLast && !s.last.Less(p) {
		how := "went back"
		if p == s.last {
			how = "repeated"
		}
		v.Kind = KindNonmonotonic
		v.Detail = fmt.Sprintf("%s session %d %s: %s at %s after %s at %s%s", s.p, s.n, how, e.ID, p, c.posID[s.last], s.last, ctx)
		c.add(v)
		// The cursor stays at the furthest delivery, so one stray repeat
		// is one violation, not also a gap on the next delivery.
		return
	}
	s.last, s.hasLast = p, true
	cur, joined := s.groups[g]
	if !joined {
		v.Kind = KindUnexpectedDelivery
		v.Detail = fmt.Sprintf("%s session %d got %s at %s of group %s, which it never joined%s", s.p, s.n, e.ID, p, g, ctx)
		c.add(v)
		s.resume = nil
		return
	}
	if !cur.last.Less(p) {
		v.Kind = KindNonmonotonic
		v.Detail = fmt.Sprintf("%s session %d got %s at %s, at or before its join of group %s at %s%s", s.p, s.n, e.ID, p, g, cur.last, ctx)
		c.add(v)
		s.resume = nil
		return
	}
	o := c.order[g]
	if i, j := after(o, cur.last), at(o, p); j > i {
		prev := "its join at " + cur.last.String()
		if cur.delivered {
			prev = fmt.Sprintf("%s at %s", c.posID[cur.last], cur.last)
		}
		v.Kind = KindGap
		v.Detail = fmt.Sprintf("%s session %d skipped %d message(s) of group %s between %s and %s at %s; first skipped %s at %s%s",
			s.p, s.n, j-i, g, prev, e.ID, p, c.posID[o[i]], o[i], ctx)
		c.add(v)
	}
	cur.last, cur.delivered = p, true
	s.resume = nil
}

// lostAcks checks every acked id against its group's complete reads.
func (c *checker) lostAcks() {
	complete := map[string][]*readInfo{}
	for _, ng := range c.readOrder {
		if ri := c.reads[ng]; ri.done {
			complete[ng.group] = append(complete[ng.group], ri)
		}
	}
	for _, rs := range complete {
		slices.SortFunc(rs, func(a, b *readInfo) int { return strings.Compare(a.node, b.node) })
	}
	for _, id := range c.okOrder {
		inf := c.ids[id]
		v := Violation{Kind: KindLostAck, ID: id, Pos: pp(inf.okPos), Group: inf.group}
		if !inf.seen {
			v.Detail = fmt.Sprintf("acked id %s (at %s, group %s) was never delivered or read", id, inf.okPos, inf.group)
			if n := len(complete[inf.group]); n > 0 {
				v.Detail += fmt.Sprintf(" (missing from all %d complete reads of the group)", n)
			}
			c.add(v)
			continue
		}
		for _, ri := range complete[inf.group] {
			if _, ok := ri.ids[id]; !ok {
				v.Node = ri.node
				v.Detail = fmt.Sprintf("acked id %s (at %s) is missing from %s's complete read of group %s", id, inf.okPos, ri.node, inf.group)
				c.add(v)
			}
		}
	}
}

// readMismatches compares every pair of complete reads of a group on their
// common range: after convergence every node must hold the same log there.
func (c *checker) readMismatches() {
	byGroup := map[string][]*readInfo{}
	var groups []string
	for _, ng := range c.readOrder {
		ri := c.reads[ng]
		if !ri.done {
			continue
		}
		if _, ok := byGroup[ng.group]; !ok {
			groups = append(groups, ng.group)
		}
		slices.SortFunc(ri.list, func(a, b posID) int { return cmpPos(a.pos, b.pos) })
		// A position read twice is one entry here; two ids at it were
		// already flagged as divergent.
		ri.list = slices.CompactFunc(ri.list, func(a, b posID) bool { return a.pos == b.pos })
		byGroup[ng.group] = append(byGroup[ng.group], ri)
	}
	slices.Sort(groups)
	for _, g := range groups {
		rs := byGroup[g]
		slices.SortFunc(rs, func(a, b *readInfo) int { return strings.Compare(a.node, b.node) })
		for i := range rs {
			for j := i + 1; j < len(rs); j++ {
				c.compareReads(g, rs[i], rs[j])
			}
		}
	}
}

func (c *checker) compareReads(g string, a, b *readInfo) {
	A, B := a.list, b.list
	if len(A) == 0 || len(B) == 0 {
		return
	}
	lo, hi := A[0].pos, A[len(A)-1].pos
	if lo.Less(B[0].pos) {
		lo = B[0].pos
	}
	if B[len(B)-1].pos.Less(hi) {
		hi = B[len(B)-1].pos
	}
	in := func(p history.Pos) bool { return !p.Less(lo) && !hi.Less(p) }
	lacks := func(has, lacks *readInfo, x posID) {
		c.add(Violation{Kind: KindReadMismatch, ID: x.id, Pos: pp(x.pos), Node: lacks.node, Group: g,
			Detail: fmt.Sprintf("%s's complete read of group %s has %s at %s; %s's (range %s..%s in common) has nothing there",
				has.node, g, x.id, x.pos, lacks.node, lo, hi)})
	}
	i, j := 0, 0
	for i < len(A) || j < len(B) {
		switch {
		case j == len(B) || (i < len(A) && A[i].pos.Less(B[j].pos)):
			if in(A[i].pos) {
				lacks(a, b, A[i])
			}
			i++
		case i == len(A) || B[j].pos.Less(A[i].pos):
			if in(B[j].pos) {
				lacks(b, a, B[j])
			}
			j++
		default:
			if A[i].id != B[j].id {
				c.add(Violation{Kind: KindReadMismatch, ID: B[j].id, Pos: pp(B[j].pos), Node: b.node, Group: g,
					Detail: fmt.Sprintf("complete reads of group %s disagree at %s: %s has %s, %s has %s",
						g, A[i].pos, a.node, A[i].id, b.node, B[j].id)})
			}
			i++
			j++
		}
	}
}

// realtime is one sweep in time order: the highest acked position so far is
// remembered at each id's first invoke and must be below that id's acked
// position. Info and open attempts never complete (the Knossos convention),
// so they constrain nothing.
func (c *checker) realtime() {
	type mark struct {
		pos  history.Pos
		id   string
		t    int64
		has  bool
		invT int64
	}
	var top mark
	first := make(map[string]mark, len(c.ids))
	evs := c.evs
	for i := 0; i < len(evs); {
		j := i
		for j < len(evs) && evs[j].T == evs[i].T {
			j++
		}
		// Invokes before OKs of the same instant: an OK at the same T as an
		// invoke is not "earlier", so it must not constrain it.
		for _, e := range evs[i:j] {
			if e.Type == history.Invoke && e.ID != "" {
				if _, ok := first[e.ID]; !ok {
					m := top
					m.invT = e.T
					first[e.ID] = m
				}
			}
		}
		for _, e := range evs[i:j] {
			if e.Type != history.OK || e.ID == "" || e.Pos == nil {
				continue
			}
			p := *e.Pos
			if m, ok := first[e.ID]; ok && m.has && m.id != e.ID && !m.pos.Less(p) && c.once(KindRealtime, e.ID, history.Pos{}) {
				c.add(Violation{Kind: KindRealtime, T: e.T, P: e.P, ID: e.ID, Pos: pp(p), Group: c.ids[e.ID].group,
					Detail: fmt.Sprintf("%s was acked at %s at t=%s, before %s was first invoked at t=%s, yet %s was acked at %s",
						m.id, m.pos, dur(m.t), e.ID, dur(m.invT), e.ID, p)})
			}
			if !top.has || top.pos.Less(p) {
				top = mark{pos: p, id: e.ID, t: e.T, has: true}
			}
		}
		i = j
	}
}

// finalState compares the nodes' last State events against the most
// common (position, digest).
func (c *checker) finalState() {
	if len(c.states) == 0 {
		return
	}
	st := &c.r.State
	st.Known = true
	type pd struct {
		pos    history.Pos
		digest string
	}
	votes := map[pd]int{}
	for node, e := range c.states {
		st.Nodes = append(st.Nodes, NodeState{Node: node, Pos: *e.Pos, Digest: e.Digest, Role: e.Role})
		votes[pd{*e.Pos, e.Digest}]++
	}
	slices.SortFunc(st.Nodes, func(a, b NodeState) int { return strings.Compare(a.Node, b.Node) })
	var ref pd
	best := 0
	// Nodes are sorted, so ties go to the first node's state: deterministic.
	for _, n := range st.Nodes {
		k := pd{n.Pos, n.Digest}
		if votes[k] > best {
			ref, best = k, votes[k]
		}
	}
	var agree []string
	for _, n := range st.Nodes {
		if n.Role == "Leader" {
			st.Leaders = append(st.Leaders, n.Node)
		}
		if (pd{n.Pos, n.Digest}) == ref {
			agree = append(agree, n.Node)
		}
	}
	for _, n := range st.Nodes {
		if (pd{n.Pos, n.Digest}) == ref {
			continue
		}
		c.add(Violation{Kind: KindState, Node: n.Node, Pos: pp(n.Pos), T: c.states[n.Node].T,
			Detail: fmt.Sprintf("%s ended at %s digest %s; %v ended at %s digest %s", n.Node, n.Pos, n.Digest, agree, ref.pos, ref.digest)})
	}
	if len(st.Leaders) != 1 {
		c.add(Violation{Kind: KindLeaders,
			Detail: fmt.Sprintf("%d leaders in the final states %v, want exactly 1", len(st.Leaders), st.Leaders)})
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// dur prints a run-clock time.
func dur(t int64) string { return time.Duration(t).Round(time.Microsecond).String() }
