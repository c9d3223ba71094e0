package hub

import (
	"context"
	"time"

	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/status"
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

// Submitter is a Publisher that can also take a group without waiting
// for its commit (ordered pipelining, pipeline.go): Submit returns once the
// group is queued, and groups submitted one after another reach the log
// in that order unless a leader change intervenes (the FSM then keeps an
// origin's commands in order: fsm.FormatOrdered). The Publisher given to
// New is asked for it; without it every invocation waits for its commit.
type Submitter interface {
	Submit(ctx context.Context, cmds []fsm.Command) (Pending, error)
}

// Pending is a submitted group: Wait returns its results once it is
// committed and applied on this node, as PublishGroup does.
type Pending interface {
	Wait(ctx context.Context) ([]fsm.Result, error)
}

// Stream is everything the hub reads of the replicated state: the log and
// the registry. *fsm.Machine implements both, and New takes it as one
// value; the Server keeps them apart (Server.stream, Server.reg), so that
// each side of the hub names only the half it reads.
type Stream interface {
	Log
	Registry
}

// Log is the read side of the log: the applied entries, the window the
// message cache holds and what the log records of the cluster (its id,
// its log format, the connection events delivered). It may be called from
// many goroutines.
type Log interface {
	// Since returns up to max entries after the cursor, in order, or an
	// error wrapping fsm.ErrCursorTooOld.
	Since(after fsm.Cursor, max int) ([]fsm.Entry, error)
	// Changed returns a channel closed at the next apply.
	Changed() <-chan struct{}
	Position() fsm.Position
	// Epoch is the cluster id, "" until it is applied (fsm.ErrNoEpoch).
	Epoch() string
	// Format is the log format every server knows: a command of a newer
	// format (an application method's fsm.KindInvoke) is not written
	// before it is raised.
	Format() uint32
	// EventsDone is how far the leader has delivered the connection events
	// the log carries (fsm.KindEventsDone; zero: never): a new leader's
	// events runner resumes there (events.go).
	EventsDone() fsm.Cursor
}

// Registry is the replicated registry of connections, groups and users,
// as this node has applied it. It may be called from many goroutines. An
// implementation may also have the allocation-free counts of
// registryCounts (limits.go), found by type assertion.
type Registry interface {
	Connection(hub, id string) (fsm.ConnInfo, bool)
	GroupConnections(hub, group string) []string
	UserConnections(hub, user string) []string
	// ConnectionsOn lists the connections held by a node; ConnectionNodes
	// the nodes that hold any, with how many (reap.go).
	ConnectionsOn(node string) []fsm.ConnInfo
	ConnectionNodes() map[string]int
	// GroupsAt returns a connection's groups right after a cursor, and its
	// user (fsm.ErrUnknownConnection, fsm.ErrHistoryTooOld).
	GroupsAt(hub, id string, c fsm.Cursor) ([]string, string, error)
}

var (
	_ Stream         = (*fsm.Machine)(nil)
	_ registryCounts = (*fsm.Machine)(nil)
)

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

// Liveness says whether a node is alive in the cluster's membership. The
// leader (Leadership) closes, in the log, the connections of a node that
// has not been alive for DisconnectTimeout: their clients are gone, or
// have resumed elsewhere (reap.go). It must not block. *cluster.Node
// implements it; the root package wires it. It may be called from many
// goroutines.
type Liveness interface {
	// Alive reports whether the node is alive and not leaving; false for
	// a node the membership does not know.
	Alive(nodeID string) bool
}

// Peers gives the client (HTTP) address of a live node by its id: SSE and
// long-polling requests for a connection held by another node are
// forwarded there (forward.go), and a request it forwarded counts against
// the address it forwarded for (limits.go). It must not block. The root
// package wires it from gossip. It may be called from many goroutines.
type Peers interface {
	// HTTPAddr returns the node's client address; false when the node is
	// not alive or did not advertise one.
	HTTPAddr(nodeID string) (addr string, ok bool)
}

// ClusterView is this node's view of the cluster for the REST API: Status
// is its Raft state (the "node" object of GET /api/v1/status),
// ClusterStatus every member as it sees them (GET /api/v1/cluster; it asks
// each for its applied index and returns within ctx; nil when it knows
// none).
// *cluster.Node implements it; the root package wires it. It may be called
// from many goroutines.
type ClusterView interface {
	Status() status.Node
	ClusterStatus(ctx context.Context) []status.Member
}
