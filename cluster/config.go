package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// Config configures a Node. Start from DefaultConfig.
type Config struct {
	// NodeID is the Raft server id; stable across restarts (persisted by cmd).
	NodeID string
	// DataDir holds raft.db (log and stable store) and snapshots/. It may
	// be empty with RaftStores, which replace both.
	DataDir string
	// RaftStores, when set, are the Raft stores the node uses instead of
	// opening raft.db and snapshots/ in DataDir (network.go): the caller
	// opens them, and closes them after Close. Nil: the stores in DataDir.
	RaftStores *RaftStores
	// RaftBind is the address Raft (and the node's RPC, on the same port)
	// listens on.
	RaftBind string
	// Network is what the node listens on and dials its peers' Raft ports
	// on (network.go). Nil: TCP.
	Network Network
	// RaftAdvertise is the address peers dial; defaults to RaftBind.
	RaftAdvertise string
	// Bootstrap makes a node with no Raft state start a one-node cluster.
	// Nodes that join an existing cluster set it false.
	Bootstrap bool

	// Raft timings. The defaults (500/500/250 ms) were measured on a 2-vCPU
	// machine: a new leader commits 1.1 s after the old one dies (median),
	// and they never flapped under saturation, where 100 ms did; 250/250/125
	// halves failover on a LAN whose nodes are never starved of CPU
	// (docs/performance.md, "Failover"). LeaderLeaseTimeout must not exceed
	// HeartbeatTimeout.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// MaxAppendEntries caps the entries of one AppendEntries, of one
	// leader-loop drain and of one FSM batch. hashicorp/raft allocates a
	// slice of this capacity for every AppendEntries it sends and every
	// batch it commits, used or not: at 1024, two thirds of what a node
	// allocated at 1,000 msg/s, and the garbage collections that made most
	// of the cross-node p99 (at 64, a leader allocates a fifth less than at
	// 128). The cap is seldom reached: an entry carries up to MaxBatch
	// commands and each node has at most MaxInflight entries on their way,
	// so a batch holds more than a few entries only for a follower that
	// fell behind. Such a follower catches up at MaxAppendEntries entries
	// per round trip (raft sends them one AppendEntries at a time until it
	// is level): tens of thousands of entries/s over a LAN, where a round
	// trip with the follower's fsync is under a millisecond, but 1,280/s
	// over a 50 ms link, which a busy leader can outrun; raise it for
	// followers that far away (docs/scaling.md).
	MaxAppendEntries  int
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// NoSync turns fsync off: faster and unsafe; for benchmarks only.
	NoSync bool
	// NoCommitNotices turns the leader's commit notices off (notice.go):
	// followers then learn of a commit only from the next AppendEntries,
	// which under a steady stream is the next entry's.
	NoCommitNotices bool
	// NoParallelAppend makes every node sync each write on raft's loop, as
	// hashicorp/raft does by itself (the leader before it replicates, a
	// follower before it answers), instead of syncing behind the write
	// while raft goes on (asynclog.go). Without fsync (NoSync) there is
	// nothing to move and this has no effect.
	NoParallelAppend bool
	// NoFollowerCommits turns follower commits off (followercommit.go): with
	// two or three voters, a follower takes the commit of entries it stored
	// from the leader of its term by itself instead of waiting to hear of it
	// from the leader; with fsync once the leader said they are on its disk
	// too (its durable notices, sent by a leader that appends in parallel
	// and sends commit notices).
	NoFollowerCommits bool

	// MaxBatch caps the commands packed into one log entry.
	MaxBatch int
	// MaxBatchBytes caps the encoded size of one log entry.
	MaxBatchBytes int
	// MaxInflight caps the entries this node has on their way into the log
	// (handed to raft, or forwarded to the leader) and not yet resolved.
	// Under load, what is submitted meanwhile waits and goes into the next
	// entry together: fewer, larger entries, so fewer fsyncs and RPCs per
	// message. A lone command still goes out at once.
	MaxInflight int
	// HoldTimeout is how long a submission waits for a leader before failing
	// with ErrNoLeader.
	HoldTimeout time.Duration
	// ApplyTimeout bounds how long raft may take to enqueue an entry.
	ApplyTimeout time.Duration

	// Members is gossip's view of the cluster; nil runs a node without
	// membership management (a fixed one-node cluster).
	Members Membership
	// MaxVoters caps the voters (odd: 1, 3 or 5); other members stay
	// non-voters that still receive the whole log.
	MaxVoters int
	// ReapAfter is how long a member may be dead in gossip before the leader
	// removes it from the Raft configuration.
	ReapAfter time.Duration
	// ReconcileInterval is how often the leader reconciles membership even
	// without gossip events.
	ReconcileInterval time.Duration
	// StabilizeTime is how long a non-voter must have been a member before
	// it may be promoted.
	StabilizeTime time.Duration
	// MaxTrailing is how many entries behind the leader a non-voter may be
	// and still count as caught up.
	MaxTrailing uint64

	Logger *slog.Logger

	// MaxClockSkew is how far ahead of the leader's clock a forwarded
	// command's stamp may be; a stamp further ahead is clamped to the
	// leader's clock. The FSM measures command age against the newest stamp
	// applied, so one stamp from the future would make every later command
	// expire (fsm/DESIGN.md, "Time in the log"). It is also how far ahead of
	// the time the node knows (the newest stamp applied, advanced by its
	// monotonic clock) its own wall clock may be and still be stamped as it
	// is (clock.go). Default 1s; at most fsm.MaxCommandAge/3.
	MaxClockSkew time.Duration

	// ServerTLS, when set, puts the Raft port behind TLS: every accepted
	// connection completes a handshake, within muxHeaderTimeout, before it
	// may name a service, so a peer without a certificate the config
	// accepts gets nothing of Raft or the RPC. It must require and verify
	// client certificates (mutual TLS; certs.Reloader.ServerConfig does).
	// ClientTLS is what this node dials its peers with; it must verify
	// them. Both or neither: nil is plaintext, for a trusted network.
	ServerTLS *tls.Config
	ClientTLS *tls.Config
}

// DefaultConfig returns LAN defaults.
func DefaultConfig() Config {
	return Config{
		RaftBind:           "127.0.0.1:7000",
		Bootstrap:          true,
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		MaxAppendEntries:   64,
		SnapshotInterval:   20 * time.Second,
		SnapshotThreshold:  16384,
		TrailingLogs:       10240,
		MaxBatch:           256,
		MaxBatchBytes:      1 << 20,
		MaxInflight:        4,
		HoldTimeout:        5 * time.Second,
		ApplyTimeout:       10 * time.Second,
		MaxVoters:          3,
		ReapAfter:          30 * time.Second,
		ReconcileInterval:  time.Second,
		StabilizeTime:      2 * time.Second,
		MaxTrailing:        256,
		MaxClockSkew:       time.Second,
	}
}

// Validate checks fields and their relations, naming the values. (Its
// length is a list of independent checks, one per field or relation.)
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("NodeID is empty"))
	}
	if c.DataDir == "" && c.RaftStores == nil {
		errs = append(errs, errors.New("DataDir is empty (it may be only with RaftStores)"))
	}
	if s := c.RaftStores; s != nil && (s.Logs == nil || s.Stable == nil || s.Snaps == nil) {
		errs = append(errs, fmt.Errorf("RaftStores needs all three stores (log set: %t, stable set: %t, snapshots set: %t)",
			s.Logs != nil, s.Stable != nil, s.Snaps != nil))
	}
	if c.RaftBind == "" {
		errs = append(errs, errors.New("RaftBind is empty"))
	}
	if c.HeartbeatTimeout < 5*time.Millisecond {
		errs = append(errs, fmt.Errorf("HeartbeatTimeout (%s) must be at least 5ms", c.HeartbeatTimeout))
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("ElectionTimeout (%s) must not be less than HeartbeatTimeout (%s)", c.ElectionTimeout, c.HeartbeatTimeout))
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("LeaderLeaseTimeout (%s) cannot be larger than HeartbeatTimeout (%s)", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	if c.CommitTimeout <= 0 {
		errs = append(errs, fmt.Errorf("CommitTimeout (%s) must be positive", c.CommitTimeout))
	}
	if c.MaxAppendEntries < 1 || c.MaxAppendEntries > 1<<16 {
		errs = append(errs, fmt.Errorf("MaxAppendEntries (%d) must be in [1, 65536]", c.MaxAppendEntries))
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("MaxBatch (%d) must be at least 1", c.MaxBatch))
	}
	if c.MaxInflight < 2 {
		errs = append(errs, fmt.Errorf("MaxInflight (%d) must be at least 2", c.MaxInflight))
	}
	if c.MaxBatchBytes < 1024 {
		errs = append(errs, fmt.Errorf("MaxBatchBytes (%d) must be at least 1024", c.MaxBatchBytes))
	}
	if c.SnapshotInterval < time.Second {
		errs = append(errs, fmt.Errorf("SnapshotInterval (%s) must be at least 1s", c.SnapshotInterval))
	}
	if c.SnapshotThreshold < 1 {
		errs = append(errs, errors.New("SnapshotThreshold must be at least 1"))
	}
	if c.HoldTimeout > fsm.DedupWindow/3 {
		// A forward is retried with the same command ids for up to
		// HoldTimeout; the FSM must still remember them by then.
		errs = append(errs, fmt.Errorf("HoldTimeout (%s) must be at most a third of the FSM's duplicate window (%s)", c.HoldTimeout, fsm.DedupWindow))
	}
	if c.HoldTimeout <= 0 || c.ApplyTimeout <= 0 {
		errs = append(errs, fmt.Errorf("HoldTimeout (%s) and ApplyTimeout (%s) must be positive", c.HoldTimeout, c.ApplyTimeout))
	}
	if c.MaxVoters < 1 || c.MaxVoters > 7 || c.MaxVoters%2 == 0 {
		errs = append(errs, fmt.Errorf("MaxVoters (%d) must be odd, from 1 to 7", c.MaxVoters))
	}
	if c.ReapAfter < time.Second || c.ReconcileInterval <= 0 || c.StabilizeTime < 0 {
		errs = append(errs, fmt.Errorf("ReapAfter (%s) must be at least 1s, ReconcileInterval (%s) positive, StabilizeTime (%s) not negative",
			c.ReapAfter, c.ReconcileInterval, c.StabilizeTime))
	}
	if c.MaxClockSkew < 0 || c.MaxClockSkew > fsm.MaxCommandAge/3 {
		errs = append(errs, fmt.Errorf("MaxClockSkew (%s) must be from 0 to a third of the FSM's MaxCommandAge (%s)", c.MaxClockSkew, fsm.MaxCommandAge/3))
	}
	errs = append(errs, c.validateTLS()...)
	if len(errs) > 0 {
		return fmt.Errorf("cluster config: %w", errors.Join(errs...))
	}
	return nil
}

// validateTLS checks the peer TLS pair: both or neither, and each side
// verifies the other, since a one-way check lets a stranger in.
func (c Config) validateTLS() []error {
	if (c.ServerTLS == nil) != (c.ClientTLS == nil) {
		return []error{fmt.Errorf("ServerTLS (set: %t) and ClientTLS (set: %t) must be set together", c.ServerTLS != nil, c.ClientTLS != nil)}
	}
	if c.ServerTLS == nil {
		return nil
	}
	var errs []error
	s := c.ServerTLS
	customVerify := s.VerifyConnection != nil || s.VerifyPeerCertificate != nil
	if s.ClientAuth != tls.RequireAndVerifyClientCert && (s.ClientAuth != tls.RequireAnyClientCert || !customVerify) {
		errs = append(errs, fmt.Errorf("ServerTLS.ClientAuth (%s) must require and verify client certificates", s.ClientAuth))
	}
	if len(s.Certificates) == 0 && s.GetCertificate == nil && s.GetConfigForClient == nil {
		errs = append(errs, errors.New("ServerTLS has no certificate"))
	}
	cl := c.ClientTLS
	if cl.InsecureSkipVerify && cl.VerifyConnection == nil && cl.VerifyPeerCertificate == nil {
		errs = append(errs, errors.New("ClientTLS.InsecureSkipVerify is set with no VerifyConnection: peers would go unverified"))
	}
	if len(cl.Certificates) == 0 && cl.GetClientCertificate == nil {
		errs = append(errs, errors.New("ClientTLS has no client certificate"))
	}
	return errs
}
