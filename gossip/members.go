package gossip

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// forgetAfter is how long a dead or left member stays in the table (serf's
// default reconnect timeout), so a consumer can still reap it long after
// memberlist itself has forgotten the node.
const forgetAfter = 72 * time.Hour

// State is a member's liveness as this node sees it.
type State int

const (
	// StateAlive: the member answers probes.
	StateAlive State = iota
	// StateSuspect is reserved: memberlist v0.6.0 does not expose suspicion
	// through its delegates, so a member is reported alive until it is
	// declared dead.
	StateSuspect
	// StateDead: the member stopped answering and was declared failed.
	StateDead
	// StateLeft: the member left gracefully (it set Meta.Leaving first).
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Member is one node as this node sees it.
type Member struct {
	Meta
	// Addr is the member's gossip host:port.
	Addr string
	// State is its liveness.
	State State
	// Since is when State last changed, by the local clock.
	Since time.Time
}

// EventKind says what happened to a member.
type EventKind int

const (
	// EventJoin: a member became alive (first seen, or back from dead/left).
	EventJoin EventKind = iota
	// EventUpdate: an alive member changed its Meta.
	EventUpdate
	// EventLeave: a member left (StateLeft) or died (StateDead).
	EventLeave
)

func (k EventKind) String() string {
	switch k {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is a membership change, with the member as it is after the change.
type Event struct {
	Kind   EventKind
	Member Member
}

// observe applies a memberlist notification to the table and emits the
// event. memberlist calls it with its node lock held and never
// concurrently, so it must not block and must not call memberlist.
func (a *Agent) observe(kind EventKind, n *memberlist.Node) {
	meta := a.nodeMeta(n)
	now := time.Now()

	a.mu.Lock()
	defer a.mu.Unlock()
	m, known := a.members[n.Name]
	if !known {
		m = &Member{}
		a.members[n.Name] = m
	}
	state := StateAlive
	if kind == EventLeave {
		// n.State is not updated by memberlist (#266): decide from Meta.
		state = StateDead
		if meta.Leaving || (known && m.Leaving) {
			state = StateLeft
		}
	}
	if !known || m.State != state {
		m.Since = now
	}
	m.Meta, m.Addr, m.State = meta, n.Address(), state
	a.pruneLocked(now)

	if a.closed {
		return
	}
	select {
	case a.events <- Event{Kind: kind, Member: *m}:
	default:
		a.dropped.Add(1)
	}
}

// nodeMeta decodes a node's meta. Unparsable meta, or meta whose ID is not
// the node name, yields a Meta with only ID set to the node name.
func (a *Agent) nodeMeta(n *memberlist.Node) Meta {
	m, err := DecodeMeta(n.Meta)
	if err == nil && m.ID != n.Name {
		err = fmt.Errorf("meta ID %q is not the node name", m.ID)
	}
	if err != nil {
		a.log.Warn("gossip: member has unusable meta", "member", n.Name, "addr", n.Address(), "err", err)
		return Meta{ID: n.Name}
	}
	return m
}

// pruneLocked forgets members dead or left for longer than forgetAfter.
func (a *Agent) pruneLocked(now time.Time) {
	for name, m := range a.members {
		if (m.State == StateDead || m.State == StateLeft) && now.Sub(m.Since) > forgetAfter {
			delete(a.members, name)
		}
	}
}

// eventDelegate feeds memberlist.EventDelegate calls into the table.
type eventDelegate struct{ a *Agent }

func (d eventDelegate) NotifyJoin(n *memberlist.Node)   { d.a.observe(EventJoin, n) }
func (d eventDelegate) NotifyUpdate(n *memberlist.Node) { d.a.observe(EventUpdate, n) }
func (d eventDelegate) NotifyLeave(n *memberlist.Node)  { d.a.observe(EventLeave, n) }

// metaDelegate implements memberlist.Delegate; only NodeMeta is used.
type metaDelegate struct{ a *Agent }

// NodeMeta returns the encoded local meta. It is always within the limit:
// every stored encoding passed Meta.Encode's size check.
func (d metaDelegate) NodeMeta(limit int) []byte {
	d.a.mu.Lock()
	defer d.a.mu.Unlock()
	if len(d.a.metaBytes) > limit {
		d.a.log.Error("gossip: local meta over the memberlist limit", "size", len(d.a.metaBytes), "limit", limit)
		return nil
	}
	return d.a.metaBytes
}

func (metaDelegate) NotifyMsg([]byte)                {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (metaDelegate) LocalState(bool) []byte          { return nil }
func (metaDelegate) MergeRemoteState([]byte, bool)   {}

var (
	_ memberlist.EventDelegate = eventDelegate{}
	_ memberlist.Delegate      = metaDelegate{}
)
