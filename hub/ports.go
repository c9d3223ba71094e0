package hub

import (
	"context"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// Publisher appends a command to the log. Publish returns the command's
// cursor once it is committed and applied on this node; fsm outcome errors
// (fsm.ErrUnknownConnection, ...) come back as the error. Any other error
// means the cluster could not take the command (no leader, shutting down).
// It may be called from many goroutines.
type Publisher interface {
	Publish(ctx context.Context, cmd fsm.Command) (fsm.Cursor, error)
	// PublishGroup appends cmds as one unit (one log entry, in order,
	// nothing between them) and returns a result per command; the error is
	// for the whole group (the cluster could not take it, or it is
	// invalid). An application method's effects go through it.
	PublishGroup(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error)
}

// Stream is the read side of the log: the applied entries and the
// replicated registry. *fsm.Machine implements it. It may be called from
// many goroutines.
type Stream interface {
	// Since returns up to max entries after the cursor, in order, or an
	// error wrapping fsm.ErrCursorTooOld.
	Since(after fsm.Cursor, max int) ([]fsm.Entry, error)
	// Changed returns a channel closed at the next apply.
	Changed() <-chan struct{}
	Position() fsm.Position
	Epoch() string
	// Format is the log format every server knows: a command of a newer
	// format (an application method's fsm.KindInvoke) is not written
	// before it is raised.
	Format() uint32
	Connection(hub, id string) (fsm.ConnInfo, bool)
	GroupConnections(hub, group string) []string
	UserConnections(hub, user string) []string
	// ConnectionsOn lists the connections held by a node.
	ConnectionsOn(node string) []fsm.ConnInfo
	// GroupsAt returns a connection's groups right after a cursor, and its
	// user (fsm.ErrUnknownConnection, fsm.ErrHistoryTooOld).
	GroupsAt(hub, id string, c fsm.Cursor) ([]string, string, error)
	// EventsDone is how far the leader has delivered the connection events
	// the log carries (fsm.KindEventsDone; zero: never): a new leader's
	// events runner resumes there (events.go).
	EventsDone() fsm.Cursor
}

var _ Stream = (*fsm.Machine)(nil)

// Readiness says whether this node can commit, for GET /readyz: nil when
// it knows a leader it heard from within maxContact and the cluster id is
// applied; otherwise an error whose text is the reason given to the
// prober. It must not block on the network. *cluster.Node implements it;
// cmd/raftplane wires it. It may be called from many goroutines.
type Readiness interface {
	Ready(maxContact time.Duration) error
}

// Leadership says whether this node leads the cluster now. Only the leader
// runs the connection events runner (events.go), so that each disconnected
// event is delivered once per leadership, not once per node. It is polled,
// so it must not block. *cluster.Node implements it; cmd/raftplane wires
// it. It may be called from many goroutines.
type Leadership interface {
	IsLeader() bool
}
