package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/cluster/wal"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/gossip"
	"github.com/raftplane/raftplane/status"
)

// Node is one member of a raftplane cluster: it owns the Raft instance, its
// transport, its stores (unless they were injected: Config.RaftStores), and
// the write path into the log.
type Node struct {
	cfg     Config
	log     *slog.Logger
	machine *fsm.Machine

	raft      *raft.Raft
	transport *raft.NetworkTransport
	notices   *commitNotices   // notice.go; nil with Config.NoCommitNotices
	asyncLog  *asyncLog        // asynclog.go; nil when writes sync before raft goes on
	gate      *ackGate         // asynclog.go: with asyncLog or commits, between the transport and raft
	commits   *followerCommits // followercommit.go; nil unless Config.TakesFollowerCommits
	beats     heartbeats       // heartbeat.go: closed after raft, before the stores
	stores    nodeStores       // its closer is nil with injected stores: their caller closes them

	idPrefix string    // unique per process start, for command ids
	idSeq    uint64    // guarded by submitMu
	clock    *clock    // clock.go: what stamps commands
	disk     diskState // disk.go: whether writes to the Raft stores fail

	mux          *mux
	hasState     bool   // Raft state existed on disk when the node opened
	localCluster string // the cluster id this node's data belongs to, if known at open

	rpcMu     sync.Mutex
	rpcClosed bool
	rpcIn     map[net.Conn]struct{}
	rpcOut    map[string]*rpcClient
	rpcWG     sync.WaitGroup

	submitMu sync.Mutex
	submitCh chan *request
	inflight chan *inflight
	notifyCh chan bool

	stop      chan struct{}
	life      context.Context // ends with stop, for waits that take a context
	endLife   context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	stats nodeStats // stats.go: the counters Stats reports
}

// New validates cfg and prepares a node; Open starts it.
func New(cfg Config, machine *fsm.Machine) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if machine == nil {
		return nil, errors.New("cluster: nil fsm")
	}
	if cfg.RaftAdvertise == "" {
		cfg.RaftAdvertise = cfg.RaftBind
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	ck, err := clockFromEnv(os.Getenv) // clock.go: the tests' clock hook
	if err != nil {
		return nil, err
	}
	ck.skew = cfg.MaxClockSkew.Nanoseconds()
	life, endLife := context.WithCancel(context.Background())
	return &Node{
		life:     life,
		endLife:  endLife,
		cfg:      cfg,
		log:      lg,
		machine:  machine,
		clock:    ck,
		disk:     diskState{hook: newDiskHook(os.Getenv)}, // diskhook.go: the tests' disk hook
		idPrefix: hex.EncodeToString(b[:]) + "-",
		submitCh: make(chan *request, 4096),
		// MaxInflight counts the entry the resolver waits on and the one the
		// batcher holds while the channel is full.
		inflight: make(chan *inflight, cfg.MaxInflight-2),
		notifyCh: make(chan bool, 16),
		rpcIn:    map[net.Conn]struct{}{},
		rpcOut:   map[string]*rpcClient{},
		stop:     make(chan struct{}),
	}, nil
}

// Open opens the stores (or takes the injected ones), listens on the
// node's Network, starts Raft, bootstraps a one-node cluster when
// configured to and there is no Raft state, and starts the node's loops.
// When it fails, what it opened so far is closed again. (Its length is its
// steps in the order they must run, each pushing its cleanup on undo: a
// split would spread that one order over several functions.)
func (n *Node) Open() (err error) {
	// undo holds the cleanups of what Open acquired so far, run in reverse
	// order when it fails: one cleanup path, whichever step fails.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	rc, err := n.raftConfig()
	if err != nil {
		return err
	}
	st, err := n.openStores()
	if err != nil {
		return err
	}
	if st.closer != nil {
		undo = append(undo, func() { st.closer.Close() })
	}
	trans, err := n.listen()
	if err != nil {
		return err
	}
	// Closed in reverse: the mux (and its listener) first, as before.
	undo = append(undo, func() { trans.Close() }, func() { n.mux.close() })
	n.mux.start()
	hasState, err := raft.HasExistingState(st.logs, st.stable, st.snaps)
	n.hasState = hasState
	if err != nil {
		return err
	}
	if !hasState && n.cfg.Bootstrap {
		// bootstrap.go: the configuration and the cluster id in one write.
		id, err := n.bootstrap(rc, st, trans)
		if err != nil {
			return err
		}
		n.localCluster = id
		n.log.Info("bootstrapped a new one-node cluster", "raft", trans.LocalAddr(), "cluster_id", id)
	}
	// asynclog.go: the log is written off raft's loop, synced behind it.
	if st.wal != nil && !n.cfg.NoSync && !n.cfg.NoParallelAppend {
		n.asyncLog = newAsyncLog(st.wal, func(err error) {
			n.log.Error("could not sync the Raft log to disk; this node stops: entries the cluster may count as "+
				"committed are not persisted here", "err", err)
		})
		st.base = n.asyncLog
		undo = append(undo, n.asyncLog.close)
	}
	// disk.go: every write to the stores is watched, below the cache
	// (which flattens its store's errors into text).
	n.disk.log, n.disk.where = n.log, n.storesLabel()
	watched, err := raft.NewLogCache(logCacheSize, watchedLogs{st.base, &n.disk})
	if err != nil {
		return err
	}
	machine := nodeFSM{Machine: n.machine, durable: n.asyncLog}
	if n.cfg.RaftStores == nil { // snapshots.go
		if err := dropStaleSnapshots(n.cfg.DataDir, st.snaps, n.log); err != nil {
			return err
		}
		machine.onStale = func() {
			if err := dropStaleSnapshots(n.cfg.DataDir, st.snaps, n.log); err != nil {
				n.log.Error("could not remove a snapshot this node refused", "err", err)
			}
		}
	}
	if !n.cfg.NoCommitNotices { // notice.go
		n.notices = newCommitNotices(trans, rc, n.log, n.stop, &n.wg)
		machine.c = n.notices
		if n.asyncLog != nil { // durable notices: only a leader that syncs behind its replication sends them
			n.notices.disk, n.notices.post = n.asyncLog, n.postDurable
			synced := n.notices.synced
			n.asyncLog.onDurable.Store(&synced)
		}
	}
	if n.cfg.TakesFollowerCommits() { // followercommit.go
		n.commits = newFollowerCommits(rc.LocalID, n.cfg.FollowerCommitsNeedDurable())
	}
	var rtrans raft.Transport
	if rtrans, n.gate = raftTransport(guardedTransport{trans, &n.beats}, n.notices, n.asyncLog, n.commits); n.gate != nil {
		undo = append(undo, n.gate.close)
	}
	r, err := raft.NewRaft(rc, machine, watched, watchedStable{st.stable, &n.disk},
		timedSnapshots{st.snaps, &n.stats}, rtrans) // stats.go: snapshots timed
	if err != nil {
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft, n.transport, n.stores = r, trans, st
	if n.notices != nil {
		n.notices.raft.Store(r)
	}
	if n.commits != nil {
		n.commits.raft.Store(r)
		if n.cfg.Members != nil { // a leader sends this node no commit notices it would not need
			durable := n.commits.needDurable
			if err := n.cfg.Members.UpdateMeta(func(m *gossip.Meta) { m.FollowerCommits, m.DurableCommits = !durable, durable }); err != nil {
				n.log.Warn("could not advertise follower commits; the leader will announce this node's commits", "err", err)
			}
		}
	}
	n.observeLeaders() // stats.go
	if hasState {
		// Known before the log replays: raft restored the latest snapshot
		// (if any) into the FSM already; otherwise the cluster-init entry
		// is near the start of the log. Gossip must advertise it before
		// joining, or a leader could take this node for a fresh one.
		n.localCluster = n.machine.Epoch()
		if n.localCluster == "" {
			n.localCluster = scanClusterID(st.logs)
		}
	}

	if n.cfg.Members != nil {
		n.wg.Add(1)
		go n.advertiseLoop()
	}
	if h := n.disk.hook; h != nil {
		n.log.Warn("TEST HOOK: this node's disk writes can be made to fail (" + DiskFailFileEnv + "); for tests only")
		n.wg.Add(1)
		go func() { defer n.wg.Done(); h.watch(n.stop, n.log) }()
	}
	if n.clock.hooked() {
		n.log.Warn("TEST HOOK: this node's clock is offset (" + ClockOffsetEnv + ", " + ClockFileEnv + "); for tests only")
		if n.clock.file != "" {
			n.wg.Add(1)
			go func() { defer n.wg.Done(); n.clock.watch(n.stop, n.log) }()
		}
	}
	n.wg.Add(6)
	go n.watchNewest() // clock.go
	go n.probeDisk()   // disk.go
	go n.batchLoop()
	go n.resolveLoop()
	go n.monitorLeadership()
	go n.serveRPC(n.mux.subs[muxRPC])
	return nil
}

// raftConfig is hashicorp/raft's configuration of this node.
func (n *Node) raftConfig() (*raft.Config, error) {
	installRaftTimings() // stages.go
	rc := raft.DefaultConfig()
	rc.NoLegacyTelemetry = true // the labelled timings only, not a copy per peer
	rc.LocalID = raft.ServerID(n.cfg.NodeID)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.MaxAppendEntries = n.cfg.MaxAppendEntries
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.TrailingLogs = n.cfg.TrailingLogs
	rc.NotifyCh = n.notifyCh
	rc.ShutdownOnRemove = false
	rc.Logger = newHCLog(n.log, "raft")
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("cluster: raft config: %w", err)
	}
	return rc, nil
}

// nodeStores are the Raft stores a node runs on: its own in DataDir, or
// the injected ones (Config.RaftStores).
type nodeStores struct {
	logs   raft.LogStore // for reading at open (HasExistingState, scanClusterID)
	base   raft.LogStore // what Raft's log cache writes through (disk.go watches it)
	stable raft.StableStore
	snaps  raft.SnapshotStore
	closer io.Closer // wal/ and raft.db; nil for injected stores: their caller closes them
	wal    *wal.Log  // the log in wal/ (Stats); nil for injected stores
}

// openStores opens the stores in DataDir as the offline recovery and
// restore open them (recover.go), or takes the injected ones.
func (n *Node) openStores() (nodeStores, error) {
	if s := n.cfg.RaftStores; s != nil {
		return nodeStores{logs: s.Logs, base: s.Logs, stable: s.Stable, snaps: s.Snaps}, nil
	}
	if err := os.MkdirAll(n.cfg.DataDir, 0o750); err != nil {
		return nodeStores{}, fmt.Errorf("cluster: data dir: %w", err)
	}
	st, err := OpenStores(n.cfg.DataDir, n.cfg.NoSync, n.log)
	if err != nil {
		return nodeStores{}, err
	}
	// Raft gets its own cache over the bare store (disk.go says why).
	return nodeStores{logs: st.Logs, base: st.WAL, stable: st.Bolt, snaps: st.Snaps, closer: st, wal: st.WAL}, nil
}

// storesLabel names the node's stores in logs and errors.
func (n *Node) storesLabel() string {
	if n.cfg.RaftStores != nil {
		return "injected stores"
	}
	return n.cfg.DataDir
}

// listen binds the Raft port on the node's Network, puts the mux on it (n.mux, not started) and
// builds Raft's transport on the mux, advertising RaftAdvertise (with the
// real port when RaftBind's is 0). When it fails, nothing is left open.
func (n *Node) listen() (*raft.NetworkTransport, error) {
	adv, err := net.ResolveTCPAddr("tcp", n.cfg.RaftAdvertise)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft advertise address %q: %w", n.cfg.RaftAdvertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("cluster: raft advertise address %q must name a reachable IP", n.cfg.RaftAdvertise)
	}
	ln, err := n.cfg.network().Listen(n.cfg.RaftBind)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listen on %s: %w", n.cfg.RaftBind, err)
	}
	if adv.Port == 0 { // listening on port 0 (tests): advertise the real port
		// By the address's text, not its type: a Network other than TCP
		// may report another net.Addr.
		_, port, err := net.SplitHostPort(ln.Addr().String())
		if adv.Port, _ = strconv.Atoi(port); err != nil || adv.Port <= 0 {
			ln.Close()
			return nil, fmt.Errorf("cluster: raft listener on %s reports address %q, with no port to advertise", n.cfg.RaftBind, ln.Addr())
		}
	}
	n.mux = newMux(ln, n.cfg.network(), n.log, n.cfg.ServerTLS, n.cfg.ClientTLS)
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  advertisedListener{muxListener: n.mux.subs[muxRaft], adv: adv},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  newHCLog(n.log, "raft-net"),
	}), nil
}

// LocalClusterID returns the cluster id found in this node's data when it
// opened ("" for a fresh node).
func (n *Node) LocalClusterID() string {
	if e := n.machine.Epoch(); e != "" {
		return e
	}
	return n.localCluster
}

// scanClusterID looks for the cluster-init command at the start of the log.
func scanClusterID(logs raft.LogStore) string {
	first, err1 := logs.FirstIndex()
	last, err2 := logs.LastIndex()
	if err1 != nil || err2 != nil || last == 0 {
		return ""
	}
	for i := first; i <= last && i < first+1024; i++ {
		var l raft.Log
		if logs.GetLog(i, &l) != nil || l.Type != raft.LogCommand {
			continue
		}
		cmds, err := fsm.DecodeBatch(l.Data)
		if err != nil {
			continue
		}
		for _, c := range cmds {
			if c.Kind == fsm.KindClusterInit {
				return c.ClusterID
			}
		}
	}
	return ""
}

// HadState reports whether the node found Raft state on disk when it opened
// (a restart), as opposed to starting fresh.
func (n *Node) HadState() bool { return n.hasState }

func (n *Node) isLeader() bool { return n.raft.State() == raft.Leader }

// RaftAddr returns the address Raft listens on (useful with port 0).
func (n *Node) RaftAddr() string { return string(n.transport.LocalAddr()) }

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// WaitReady blocks until the stream has an epoch (the cluster-init entry is
// applied on this node), or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	for {
		ch := n.machine.Changed()
		if n.machine.Epoch() != "" {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w: %w", ErrNotReady, fsm.ErrNoEpoch, ctx.Err())
		case <-n.stop:
			return ErrClosed
		}
	}
}

// monitorLeadership reacts to leadership changes from raft's NotifyCh, which,
// unlike LeaderCh, never drops a transition: it runs one leader loop per
// term of leadership and stops it when leadership is lost.
func (n *Node) monitorLeadership() {
	defer n.wg.Done()
	var (
		stop chan struct{}
		done chan struct{}
	)
	end := func() {
		if stop != nil {
			close(stop)
			<-done
			stop, done = nil, nil
		}
	}
	defer end()
	for {
		select {
		case <-n.stop:
			return
		case isLeader := <-n.notifyCh:
			if !isLeader {
				n.log.Info("lost leadership")
				end()
				continue
			}
			if stop != nil {
				continue
			}
			n.log.Info("gained leadership", "term", n.raft.Stats()["term"])
			stop, done = make(chan struct{}), make(chan struct{})
			go func(stop <-chan struct{}, done chan<- struct{}) {
				defer close(done)
				n.leaderLoop(stop)
			}(stop, done)
		}
	}
}

// initCluster writes the cluster-init entry that names the stream, for a
// leader whose log has none: data bootstrapped by a build that wrote it
// after the election (a bootstrap now writes it with the configuration:
// bootstrap.go).
func (n *Node) initCluster() {
	cmd, err := newClusterInit(n.stamp())
	if err != nil {
		n.log.Error("cluster init", "err", err)
		return
	}
	f := n.raft.Apply(fsm.EncodeBatch([]fsm.Command{cmd}), n.cfg.ApplyTimeout)
	if err := n.await(f); err != nil {
		n.log.Warn("writing cluster id failed", "err", err)
		return
	}
	n.log.Info("cluster initialised", "cluster_id", n.machine.Epoch())
}

// Status reports the node's Raft state.
func (n *Node) Status() status.Node {
	st := n.raft.Stats()
	num := func(k string) uint64 { v, _ := strconv.ParseUint(st[k], 10, 64); return v }
	addr, id := n.raft.LeaderWithID()
	return status.Node{
		NodeID:       n.cfg.NodeID,
		RaftAddr:     string(n.transport.LocalAddr()),
		State:        n.raft.State().String(),
		Term:         num("term"),
		LeaderID:     string(id),
		LeaderAddr:   string(addr),
		CommitIndex:  num("commit_index"),
		AppliedIndex: num("applied_index"),
		LastLogIndex: num("last_log_index"),
		LastContact:  st["last_contact"],

		PeerTLS:         n.cfg.ServerTLS != nil,
		PeerTLSFailures: n.PeerTLSFailures(),
		RejectedEntries: n.machine.Rejected(),
	}
}

// Close stops the node: submissions fail with ErrClosed, Raft shuts down and
// the stores close. It is idempotent and returns ctx.Err() if the shutdown
// outlives ctx.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		done := make(chan error, 1)
		go func() {
			close(n.stop)
			n.endLife()
			var errs []error
			if n.raft != nil {
				// Shutting raft down first fails its pending futures, which
				// unblocks the resolver and a leader duty stuck in Apply.
				errs = append(errs, n.raft.Shutdown().Error())
			}
			n.beats.close() // heartbeat.go: none still writing when the stores close
			if n.mux != nil {
				_ = n.mux.close()
			}
			n.closeRPC()
			n.wg.Wait()
			if n.asyncLog != nil { // after raft: its FSM may wait for the syncer
				n.asyncLog.close() // a last sync; then nothing waits for one
			}
			if n.gate != nil {
				n.gate.close()
			}
			if n.transport != nil {
				// Close alone leaves the pooled outbound connections open,
				// and each peer's handler for one blocks reading forever.
				n.transport.CloseStreams()
				errs = append(errs, n.transport.Close())
			}
			if n.stores.closer != nil {
				errs = append(errs, n.stores.closer.Close())
			}
			done <- errors.Join(errs...)
		}()
		select {
		case n.closeErr = <-done:
		case <-ctx.Done():
			n.closeErr = ctx.Err()
		}
	})
	return n.closeErr
}
