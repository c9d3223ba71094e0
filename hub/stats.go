package hub

// Counters for operators. hub knows nothing of Prometheus: it keeps plain
// atomic counters where things happen and answers Stats with a snapshot;
// the metrics package turns that into metrics at scrape time. What can be
// read from state when asked (open connections, queue depths, the
// dispatcher's lag) is computed in Stats, not counted on the way.
//
// Cost on the hot paths (BenchmarkStats_HotPaths): a publish takes two
// clock reads and three atomic adds; a dispatched batch one clock read, and
// per entry an add (three for a publish) that only the dispatcher makes; a
// transport write and a received message an add on a counter shard picked
// by the connection id, so connections writing in parallel rarely share a
// cache line. None allocates.

import (
	"context"
	"errors"
	"github.com/raftplane/raftplane/status"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// Disconnect reasons, the keys of Stats.Disconnects.
const (
	// DisconnectClient: the client closed the connection, or its transport
	// dropped.
	DisconnectClient = "client"
	// DisconnectClientTimeout: nothing came from the client for ClientTimeout.
	DisconnectClientTimeout = "client_timeout"
	// DisconnectProtocolError: the client broke the protocol's framing.
	DisconnectProtocolError = "protocol_error"
	// DisconnectServer: the server closed it (the REST API or an
	// application closed it through the log, the node is shutting down,
	// the dispatcher fell behind the cache).
	DisconnectServer = "server"
	// DisconnectSlowConsumer: its send queue passed MaxQueuedMessages or
	// MaxQueuedBytes.
	DisconnectSlowConsumer = "slow_consumer"
	// DisconnectTokenExpired: its access token expired.
	DisconnectTokenExpired = "token_expired"
	// DisconnectMoved: the connection resumed on another transport (on this
	// node or another); this transport ended, the connection did not.
	DisconnectMoved = "moved"
	// DisconnectReaped: this node closed in the log a connection whose
	// process is gone (reap.go): one a previous run of this node left in
	// the registry (it ended in a crash), or, as the leader, one of a node
	// not alive for DisconnectTimeout. No transport of this process
	// carried it.
	DisconnectReaped = "reaped"
)

// Resume and stateful-reconnect outcomes, the keys of Stats.Resumes and
// Stats.StatefulReconnects.
const (
	// ResumeResumed: the connection continued with nothing missed.
	ResumeResumed = "resumed"
	// ResumeReset: it cannot be continued (closed, its cursor older than
	// the cache or from another cluster): the client was told to start a
	// new connection.
	ResumeReset = "reset"
	// ResumeRefused: the attempt failed (a bad or foreign token, the node
	// not caught up, the cluster did not record it, the replay failed); the
	// client may try again.
	ResumeRefused = "refused"
)

// Publish results, the keys of Stats.Publishes.
const (
	// PublishCommitted: committed and applied on this node.
	PublishCommitted = "committed"
	// PublishCommittedError: committed with an outcome error (an unknown
	// connection, a malformed entry): in the log, it changed nothing.
	PublishCommittedError = "committed_error"
	// PublishFailed: not committed (no leader, timeout, shutting down,
	// invalid).
	PublishFailed = "failed"
)

// Transport names in Stats, lower case as metric labels are.
const (
	StatsWebSockets  = "websockets"
	StatsSSE         = "sse"
	StatsLongPolling = "longpolling"
)

// queueDepthBounds are the upper bounds of Stats.QueueDepth's buckets, in
// messages.
var queueDepthBounds = [...]float64{0, 1, 4, 16, 64, 256, 1024, 4096, 16384}

// statsBehind is how many connections Stats.Behind lists.
const statsBehind = 10

// Stats is a snapshot of a Server's counters, which count from New, and of
// its local connections at the moment of the call.
type Stats struct {
	// Connections counts the open local connections (handshake done, not
	// ended) by hub, transport and protocol, sorted.
	Connections []ConnectionCount
	// Connects counts handshakes completed, by transport; a resume and a
	// stateful reconnect each count as a new one.
	Connects map[string]uint64
	// Disconnects counts ended connections by reason (Disconnect*).
	Disconnects map[string]uint64
	// Resumes and StatefulReconnects count attempts by outcome (Resume*).
	Resumes            map[string]uint64
	StatefulReconnects map[string]uint64
	// ClientMessages counts hub messages received from clients (every
	// type, pings included); RESTMessages the REST API's sends.
	ClientMessages uint64
	RESTMessages   uint64
	// PipelineResent counts pipelined invocations sent again because they
	// reached the log before an earlier one of their connection
	// (fsm.ErrOutOfOrder: after a leader change, most often).
	PipelineResent uint64
	// Commands counts the commands the dispatcher read from the log, by
	// fsm.Kind name: every node counts every command of the log once.
	Commands map[string]uint64
	// Deliveries counts hub messages written to local clients by live
	// delivery, DeliveredBytes their bytes (handshakes, pings, acks, Close
	// messages and resume replays not included).
	Deliveries     uint64
	DeliveredBytes uint64
	// Publishes counts this node's Publish and PublishGroup calls by result
	// (Publish*); PublishLatency is how long the committed ones took, from
	// the call (accepted on this node) to its return (committed, and
	// applied on this node).
	Publishes      map[string]uint64
	PublishLatency Histogram
	// DispatchLatency is, for every publish the dispatcher read, the time
	// from the leader's stamp (when the leader accepted it) to its queueing
	// on this node's recipients. Across nodes it includes clock skew.
	DispatchLatency Histogram
	// WriteLatency is, for every write of messages the dispatcher queued,
	// the time from the dispatcher handing them to the connection's writer
	// to the transport's write returning: the last stage of a delivery.
	WriteLatency Histogram
	// Position is the stream's window; Dispatched is the cursor the
	// dispatcher has queued everything up to; DispatcherLag is the number
	// of log indexes applied but not dispatched yet.
	Position      fsm.Position
	Dispatched    fsm.Cursor
	DispatcherLag uint64
	// QueueDepth is the distribution of messages queued per open local
	// connection, now (Sum: messages queued in all). QueuedBytes is what
	// they hold in all, counting a batch being written.
	QueueDepth  Histogram
	QueuedBytes uint64
	// Behind lists the connections with the most bytes queued, most first
	// (at most 10, only connections with something queued).
	Behind []ConnectionQueue
	// LimitRefusals counts refusals by limit name (max_connections, ...),
	// as /api/v1/status shows them.
	LimitRefusals map[string]uint64
}

// ConnectionCount is a number of open connections of one hub over one
// transport and protocol.
type ConnectionCount struct {
	Hub, Transport, Protocol string
	Count                    int
}

// ConnectionQueue is one connection's send queue.
type ConnectionQueue struct {
	ID, Hub, User string
	Messages      int
	Bytes         int
}

// Histogram is a snapshot of a histogram (status.Histogram).
type Histogram = status.Histogram

// Stats returns the server's counters and a walk of its local connections:
// its cost grows with their number (bounded by MaxConnections), a short
// lock per connection. It may be called from many goroutines.
func (s *Server) Stats() Stats {
	st := &s.stats
	out := Stats{
		Connects:           map[string]uint64{},
		Disconnects:        map[string]uint64{},
		Resumes:            map[string]uint64{},
		StatefulReconnects: map[string]uint64{},
		Commands:           map[string]uint64{},
		Publishes:          map[string]uint64{},
		LimitRefusals:      map[string]uint64{},
		ClientMessages:     st.received.sum(),
		RESTMessages:       st.restReceived.Load(),
		PipelineResent:     st.pipelineResent.Load(),
		Deliveries:         st.frames.sum(),
		DeliveredBytes:     st.bytes.sum(),
		PublishLatency:     st.publishLat.Snapshot(),
		DispatchLatency:    st.dispatchLat.Snapshot(),
		WriteLatency:       st.writeLat.Snapshot(),
	}
	for i, name := range transportStatNames {
		out.Connects[name] = st.connects[i].Load()
	}
	for i, name := range endReasonNames {
		if name != "" {
			out.Disconnects[name] = st.disconnects[i].Load()
		}
	}
	for i, name := range outcomeNames {
		out.Resumes[name] = st.resumes[i].Load()
		out.StatefulReconnects[name] = st.reattaches[i].Load()
	}
	for i, name := range publishResultNames {
		out.Publishes[name] = st.publishes[i].Load()
	}
	for k := range st.commands {
		if n := st.commands[k].Load(); n > 0 {
			out.Commands[fsm.Kind(k).String()] = n
		}
	}
	for k := range numLimits {
		out.LimitRefusals[limitNames[k]] = s.lim.refused[k].Load()
	}
	s.dispMu.Lock()
	out.Dispatched = s.dispPos
	s.dispMu.Unlock()
	out.Position = s.stream.Position()
	if out.Dispatched.Index < out.Position.Last.Index {
		out.DispatcherLag = out.Position.Last.Index - out.Dispatched.Index
	}
	s.connectionStats(&out)
	return out
}

// connectionStats fills in the open connections and their queues.
func (s *Server) connectionStats(out *Stats) {
	// The list is in a buffer lent by connBufs: the dashboard and the
	// metrics call this every few seconds, and a fresh copy of it each
	// time was most of what an idle node with many connections allocated.
	bp := s.connBufs.Get().(*[]*conn)
	defer func() { clear(*bp); s.connBufs.Put(bp) }()
	s.mu.Lock()
	*bp = s.appendLiveLocked((*bp)[:0])
	s.mu.Unlock()
	conns := *bp
	type key struct{ hub, tr, proto string }
	counts := map[key]int{}
	depth := make([]uint64, len(queueDepthBounds)+1)
	var queued, bytes uint64
	var behind []ConnectionQueue
	for _, c := range conns {
		if c.handshaking.Load() || c.ctx.Err() != nil {
			continue // not open yet; or ended, being cleaned up
		}
		c.mu.Lock()
		proto, n, b := c.proto.name(), len(c.queue), c.queuedBytes+c.inflight
		c.mu.Unlock()
		counts[key{c.hub, transportStatName(c.tr), proto}]++
		depth[sort.SearchFloat64s(queueDepthBounds[:], float64(n))]++
		queued += uint64(n)
		bytes += uint64(b)
		if b > 0 {
			behind = append(behind, ConnectionQueue{ID: c.id, Hub: c.hub, User: c.user, Messages: n, Bytes: b})
		}
	}
	for k, n := range counts {
		out.Connections = append(out.Connections, ConnectionCount{Hub: k.hub, Transport: k.tr, Protocol: k.proto, Count: n})
	}
	sort.Slice(out.Connections, func(i, j int) bool {
		a, b := out.Connections[i], out.Connections[j]
		if a.Hub != b.Hub {
			return a.Hub < b.Hub
		}
		if a.Transport != b.Transport {
			return a.Transport < b.Transport
		}
		return a.Protocol < b.Protocol
	})
	out.QueueDepth = status.Cumulative(queueDepthBounds[:], depth, float64(queued))
	out.QueuedBytes = bytes
	sort.Slice(behind, func(i, j int) bool { return behind[i].Bytes > behind[j].Bytes })
	if len(behind) > statsBehind {
		behind = behind[:statsBehind]
	}
	out.Behind = behind
}

// RequireAPIKey wraps h with the REST API's key check (Config.APIKey, sent
// as Authorization: Bearer <key>), answering 401 as the REST API does: for
// routes an embedding program mounts beside the server (/metrics,
// /dashboard).
func (s *Server) RequireAPIKey(h http.Handler) http.Handler {
	return s.api(h.ServeHTTP)
}

// serverStats are a Server's counters.
type serverStats struct {
	connects     [len(transportStatNames)]atomic.Uint64
	disconnects  [len(endReasonNames)]atomic.Uint64
	resumes      [len(outcomeNames)]atomic.Uint64
	reattaches   [len(outcomeNames)]atomic.Uint64
	publishes    [len(publishResultNames)]atomic.Uint64
	received     shardedCounter
	restReceived atomic.Uint64
	// pipelineResent: pipeline.go
	pipelineResent atomic.Uint64
	frames         shardedCounter
	bytes          shardedCounter
	// commands is written by the dispatcher only, by fsm.Kind (a byte).
	commands    [256]atomic.Uint64
	publishLat  status.Latency
	dispatchLat status.Latency
	writeLat    status.Latency
}

// endCause is why the server ended a connection, recorded on the conn
// (conn.endReason, under conn.mu) when it decides to; the zero value means
// no recorded cause, sorted out by disconnected.
type endCause uint8

const (
	endNone endCause = iota
	endClient
	endClientTimeout
	endProtocolError
	endServer
	endSlow
	endTokenExpired
	endMoved
	endReaped
	numEndCauses
)

var endReasonNames = [numEndCauses]string{
	endClient:        DisconnectClient,
	endClientTimeout: DisconnectClientTimeout,
	endProtocolError: DisconnectProtocolError,
	endServer:        DisconnectServer,
	endSlow:          DisconnectSlowConsumer,
	endTokenExpired:  DisconnectTokenExpired,
	endMoved:         DisconnectMoved,
	endReaped:        DisconnectReaped,
}

// markEndLocked records why the server is about to close c, unless a
// cause is recorded already or c is closing for another reason: the first
// decision is the one that ends it. c.mu is held.
func (c *conn) markEndLocked(why endCause) {
	if c.endReason == endNone && !c.closing {
		c.endReason = why
	}
}

const (
	trWebSockets = iota
	trSSE
	trLongPolling
)

var transportStatNames = [...]string{trWebSockets: StatsWebSockets, trSSE: StatsSSE, trLongPolling: StatsLongPolling}

func transportStat(t transport) int {
	switch t.(type) {
	case *sseTransport:
		return trSSE
	case *lpTransport:
		return trLongPolling
	}
	return trWebSockets
}

func transportStatName(t transport) string { return transportStatNames[transportStat(t)] }

// connected counts a connection whose handshake is done, as run starts it.
func (st *serverStats) connected(c *conn) {
	st.connects[transportStat(c.tr)].Add(1)
}

// disconnected counts a connection run has ended: the cause the server
// recorded, else a client goodbye, else a close by the server that
// recorded none (shutdown, the log closed it), else the client's side.
func (st *serverStats) disconnected(c *conn) {
	c.mu.Lock()
	why, closing := c.endReason, c.closing
	c.mu.Unlock()
	switch {
	case why != endNone:
	case c.goodbye.Load():
		why = endClient
	case closing:
		why = endServer
	default:
		why = endClient
	}
	st.disconnects[why].Add(1)
}

// reaped counts a connection closed in the log without a transport.
func (st *serverStats) reaped() { st.disconnects[endReaped].Add(1) }

const (
	outcomeResumed = iota
	outcomeReset
	outcomeRefused
	numOutcomes
)

var outcomeNames = [numOutcomes]string{outcomeResumed: ResumeResumed, outcomeReset: ResumeReset, outcomeRefused: ResumeRefused}

// resume counts a cursor resume's outcome.
func (st *serverStats) resume(outcome int) { st.resumes[outcome].Add(1) }

// reattach counts a stateful reconnect's outcome.
func (st *serverStats) reattach(outcome int) { st.reattaches[outcome].Add(1) }

// resumeFailed counts a cursor resume that failed after its upgrade
// (refused); nothing for a new connection.
func (st *serverStats) resumeFailed(c *conn) {
	if c.resume != nil {
		st.resume(outcomeRefused)
	}
}

// reattachOutcome is the outcome of a stateful reconnect the registry
// refused with err: reset when the connection or its history is gone.
func reattachOutcome(err error) int {
	if errors.Is(err, fsm.ErrUnknownConnection) || errors.Is(err, fsm.ErrHistoryTooOld) {
		return outcomeReset
	}
	return outcomeRefused
}

// receivedFrom counts a hub message from c's client.
func (st *serverStats) receivedFrom(c *conn) { st.received.add(c.id, 1) }

// wrote counts the queued hub messages a writer has written to c (none
// when it dropped them).
func (st *serverStats) wrote(c *conn, frames []outFrame, dropped bool) {
	if len(frames) == 0 || dropped {
		return
	}
	n := 0
	for i := range frames {
		n += len(frames[i].b)
	}
	st.frames.add(c.id, uint64(len(frames)))
	st.bytes.add(c.id, uint64(n))
}

// dispatchedBatch counts a batch of entries the dispatcher has queued:
// commands by kind, and the time since the leader stamped each publish.
// Only the dispatcher calls it.
func (st *serverStats) dispatchedBatch(entries []fsm.Entry) {
	now := time.Now().UnixNano()
	for i := range entries {
		e := &entries[i]
		st.commands[byte(e.Kind)].Add(1)
		if e.Kind == fsm.KindPublish && e.Time > 0 && now >= e.Time {
			st.dispatchLat.Observe(time.Duration(now - e.Time))
		}
	}
}

const (
	pubCommitted = iota
	pubCommittedError
	pubFailed
	numPublishResults
)

var publishResultNames = [numPublishResults]string{
	pubCommitted: PublishCommitted, pubCommittedError: PublishCommittedError, pubFailed: PublishFailed,
}

// published counts a Publish or PublishGroup call that started at start.
func (st *serverStats) published(start time.Time, err error) {
	switch {
	case err == nil:
		st.publishes[pubCommitted].Add(1)
	case isOutcome(err) || errors.Is(err, fsm.ErrRejected):
		st.publishes[pubCommittedError].Add(1)
	default:
		st.publishes[pubFailed].Add(1)
		return
	}
	st.publishLat.Observe(time.Since(start))
}

// timedPublisher is the Server's Publisher: the configured one, with every
// call counted and timed. (Optional interfaces of the configured Publisher
// are hidden behind it: ask s.cfg's, not s.pub, for those.)
type timedPublisher struct {
	Publisher
	st *serverStats
}

func (p timedPublisher) Publish(ctx context.Context, cmd fsm.Command) (fsm.Cursor, error) {
	start := time.Now()
	cur, err := p.Publisher.Publish(ctx, cmd)
	p.st.published(start, err)
	return cur, err
}

func (p timedPublisher) PublishGroup(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	start := time.Now()
	res, err := p.Publisher.PublishGroup(ctx, cmds)
	p.st.published(start, err)
	return res, err
}

// shardedCounter is a counter many goroutines add to: each adds to the
// shard of its key, each shard on its own cache line, and a read sums them.
type shardedCounter struct {
	shards [16]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

// add adds n to key's shard; connection ids are random, so their last
// byte spreads them.
func (sc *shardedCounter) add(key string, n uint64) {
	var i byte
	if len(key) > 0 {
		i = key[len(key)-1]
	}
	sc.shards[i%16].n.Add(n)
}

func (sc *shardedCounter) sum() uint64 {
	var t uint64
	for i := range sc.shards {
		t += sc.shards[i].n.Load()
	}
	return t
}
