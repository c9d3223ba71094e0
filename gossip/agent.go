package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Sentinel errors. Callers match them with errors.Is.
var (
	// ErrClosed means Close was called.
	ErrClosed = errors.New("gossip: agent closed")
	// ErrNotStarted means the call needs Start first.
	ErrNotStarted = errors.New("gossip: agent not started")
	// ErrLeft means Leave was called; a memberlist that left cannot come
	// back (hashicorp/memberlist#140), so make a new Agent.
	ErrLeft = errors.New("gossip: agent has left")
)

const (
	// eventBuffer is the capacity of the Events channel.
	eventBuffer = 1024
	// metaUpdateTimeout bounds UpdateMeta's wait for the broadcast.
	metaUpdateTimeout = 5 * time.Second
	// defaultLeaveTimeout is used by Leave when given no timeout.
	defaultLeaveTimeout = 5 * time.Second
)

// Agent is one node's gossip membership: it advertises the local Meta,
// keeps a table of all members it has heard of and reports changes. Its
// methods are safe for concurrent use.
//
// Lock order: lifeMu, then memberlist's internal lock, then mu. Nothing
// calls into memberlist while holding mu, because memberlist calls the
// delegates (which take mu) with its own lock held.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	events  chan Event
	dropped atomic.Uint64
	// joinFailures counts failed join attempts (all Join calls).
	joinFailures atomic.Uint64

	// lifeMu serializes Start, Close and the meta writers (UpdateMeta,
	// Leave), so memberlist never sees Leave or UpdateNode after Shutdown.
	lifeMu sync.Mutex

	mu         sync.Mutex
	ml         *memberlist.Memberlist // nil until Start
	localAddr  string
	meta       Meta   // local meta, authoritative
	metaBytes  []byte // meta encoded, what NodeMeta returns
	members    map[string]*Member
	left       bool
	closed     bool
	joinCalled bool
	joined     chan struct{} // closed on the first successful join
	joinedDone bool
	stop       chan struct{} // closed by Close
	wg         sync.WaitGroup
}

// New validates cfg and returns an Agent. It starts nothing; call Start.
func New(cfg Config) (*Agent, error) {
	return newAgent(cfg, eventBuffer)
}

func newAgent(cfg Config, buffer int) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.SecretKey = append([]byte(nil), cfg.SecretKey...)
	b, err := cfg.Meta.Encode()
	if err != nil {
		return nil, err
	}
	return &Agent{
		cfg:       cfg,
		log:       cfg.Logger,
		events:    make(chan Event, buffer),
		meta:      cfg.Meta,
		metaBytes: b,
		members:   make(map[string]*Member),
		joined:    make(chan struct{}),
		stop:      make(chan struct{}),
	}, nil
}

// Start creates the memberlist, which listens on BindAddr (UDP and TCP)
// and starts probing and gossiping. The local node becomes a member and an
// EventJoin for it is emitted.
func (a *Agent) Start() error {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	a.mu.Lock()
	closed, started := a.closed, a.ml != nil
	a.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case started:
		return errors.New("gossip: agent already started")
	}

	mc := a.cfg.memberlistConfig()
	mc.Delegate = metaDelegate{a}
	mc.Events = eventDelegate{a}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("gossip: start memberlist on %s: %w", a.cfg.BindAddr, err)
	}
	addr := ml.LocalNode().Address()

	a.mu.Lock()
	a.ml, a.localAddr = ml, addr
	a.mu.Unlock()
	a.log.Info("gossip: started", "id", a.cfg.Meta.ID, "addr", addr, "encrypted", len(a.cfg.SecretKey) > 0)
	return nil
}

// LocalAddr returns the gossip host:port peers use to reach this node (the
// real port when BindAddr had port 0), or "" before Start.
func (a *Agent) LocalAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.localAddr
}

// Members returns every member this node knows of, itself included, sorted
// by ID. Dead and left members stay listed (with their last Meta) until the
// same ID comes back, or for 72h. A member whose meta could not
// be parsed has only ID (its node name) and Addr set.
func (a *Agent) Members() []Member {
	a.mu.Lock()
	a.pruneLocked(time.Now())
	out := make([]Member, 0, len(a.members))
	for _, m := range a.members {
		out = append(out, *m)
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Local returns this node as a member, with its current Meta. Before Start
// it has no Addr.
func (a *Agent) Local() Member {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := Member{Meta: a.meta, Addr: a.localAddr}
	if e, ok := a.members[a.meta.ID]; ok {
		m.State, m.Since = e.State, e.Since
	}
	return m
}

// UpdateMeta applies f to a copy of the local Meta, validates the result
// and, once started, advertises it (memberlist.UpdateNode, waiting up to
// 5s for the broadcast). Before Start the change is simply kept for Start.
// The ID cannot change. f must not call UpdateMeta, Leave or Close.
//
// A broadcast timeout is returned as an error, but the new Meta is already
// in effect locally and still spreads with later gossip.
func (a *Agent) UpdateMeta(f func(*Meta)) error {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	a.mu.Lock()
	cur, closed, left := a.meta, a.closed, a.left
	a.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case left:
		return ErrLeft
	}

	next := cur
	f(&next)
	if next.ID != cur.ID {
		return fmt.Errorf("gossip: meta ID cannot change (from %q to %q)", cur.ID, next.ID)
	}
	if next == cur {
		return nil
	}
	b, err := next.Encode()
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.meta, a.metaBytes = next, b
	ml := a.ml
	a.mu.Unlock()
	if ml == nil {
		return nil
	}
	if err := ml.UpdateNode(metaUpdateTimeout); err != nil {
		return fmt.Errorf("gossip: broadcast meta update: %w", err)
	}
	return nil
}

// Events returns the membership events: EventJoin, EventUpdate and
// EventLeave, for other nodes and for this one, in the order memberlist
// reported them. The channel is buffered and never blocks memberlist: when
// it is full the event is dropped and counted (DroppedEvents). Consumers
// should therefore also reconcile from Members() periodically. The channel
// is never closed; stop reading when the Agent is closed.
func (a *Agent) Events() <-chan Event {
	return a.events
}

// DroppedEvents returns how many events were dropped because Events() was
// full.
func (a *Agent) DroppedEvents() uint64 {
	return a.dropped.Load()
}

// Leave announces a graceful leave: it sets Meta.Leaving and broadcasts it
// (so others report StateLeft rather than StateDead), then calls
// memberlist's Leave. It is best effort: on timeout it returns an error,
// and the others may see the node as dead instead. timeout <= 0 means 5s.
// Leave again is a no-op; afterwards the Agent can only be closed.
func (a *Agent) Leave(timeout time.Duration) error {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if timeout <= 0 {
		timeout = defaultLeaveTimeout
	}
	a.mu.Lock()
	switch {
	case a.closed:
		a.mu.Unlock()
		return ErrClosed
	case a.ml == nil:
		a.mu.Unlock()
		return ErrNotStarted
	case a.left:
		a.mu.Unlock()
		return nil
	}
	a.left = true
	next := a.meta
	next.Leaving = true
	b, err := next.Encode()
	if err == nil {
		a.meta, a.metaBytes = next, b
	}
	ml := a.ml
	a.mu.Unlock()

	deadline := time.Now().Add(timeout)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	} else if err := ml.UpdateNode(timeout / 2); err != nil {
		errs = append(errs, fmt.Errorf("gossip: broadcast leaving flag: %w", err))
	}
	if err := ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		errs = append(errs, fmt.Errorf("gossip: leave: %w", err))
	}
	a.log.Info("gossip: left", "id", next.ID, "err", errors.Join(errs...))
	return errors.Join(errs...)
}

// Close shuts memberlist down without a leave message (others will detect
// the node as failed unless Leave was called first), stops the join
// goroutines and waits for them. An in-flight join attempt may hold Close
// for up to memberlist's TCP timeout. Close is idempotent.
func (a *Agent) Close() error {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	close(a.stop)
	ml := a.ml
	a.mu.Unlock()

	var err error
	if ml != nil {
		if err = ml.Shutdown(); err != nil {
			err = fmt.Errorf("gossip: shutdown: %w", err)
		}
	}
	a.wg.Wait()
	return err
}
