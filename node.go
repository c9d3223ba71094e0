package raftplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftplane/raftplane/certs"
	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/dashboard"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/gossip"
	"github.com/raftplane/raftplane/hub"
	"github.com/raftplane/raftplane/metrics"
	"github.com/raftplane/raftplane/status"
)

// ErrClosed is returned by Start on a node that was closed.
var ErrClosed = errors.New("raftplane: node closed")

// Node is one whole raftplane node: the log's state machine (fsm), gossip
// membership, the Raft node (cluster) and the SignalR hub server (hub),
// wired together as cmd/raftplane runs them. New builds it, Start opens it,
// Close shuts it down in order. Its methods are safe for concurrent use,
// except that Start and Close must not run at the same time: end Start
// early by ending its context.
type Node struct {
	cfg     Config // as given, with the secret files read and NodeID chosen
	log     *slog.Logger
	machine *fsm.Machine
	agent   *gossip.Agent
	raft    *cluster.Node
	// srv is the hub server; the application-logic API (Handle, Clients)
	// reaches it.
	srv     *hub.Server
	dash    *dashboard.Dashboard // GET /dashboard (dashboard package)
	handler *http.ServeMux
	httpTLS *tls.Config // nil: plain HTTP on HTTPAddr

	// opened is set once Raft is open: before, the hub's status callbacks
	// must not touch it (an embedder may serve Handler before Start).
	opened atomic.Bool

	// Written by Start, read by Close (which never runs at the same time).
	ln        net.Listener
	hs        *http.Server
	serveDone chan struct{} // closed when hs.Serve has returned
	gossipUp  bool
	peersStop chan struct{}
	peersDone chan struct{}
	lateStop  chan struct{} // ends checkLateJoin
	lateDone  chan struct{}
	stopDebug func()

	mu      sync.Mutex
	started bool
	closed  bool
	httpAt  string // the bound HTTP address
	err     error  // why the node stopped serving on its own

	done      chan struct{} // closed when the node stops serving
	doneOnce  sync.Once
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg (see Config.Validate), reads the files it names (secrets,
// TLS certificates, JWT public keys), creates DataDir and chooses the node
// id, and builds the node's parts. It listens on nothing and starts no
// goroutine: Start does.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg, err := cfg.logger()
	if err != nil {
		return nil, err
	}
	if err := cfg.readSecretFiles(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, &OptionError{Option: "data", Err: err}
	}
	if cfg.NodeID == "" {
		if cfg.NodeID, err = persistedID(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("raftplane: node id: %w", err)
		}
	}
	lg = lg.With("node", cfg.NodeID)
	n := &Node{cfg: cfg, log: lg, done: make(chan struct{})}

	fc := cfg.FSM
	fc.Logger = lg.With("component", "fsm")
	if n.machine, err = fsm.New(fc); err != nil {
		return nil, err
	}
	p, errs := cfg.derive(cfg.NodeID, n.machine.Secret)
	if err := errors.Join(errs...); err != nil {
		return nil, err // Validate saw these already; kept for safety
	}

	gc := p.gossip
	gc.Logger = lg.With("component", "gossip")
	if n.agent, err = gossip.New(gc); err != nil {
		return nil, err
	}

	cc := p.cluster
	cc.Members = n.agent
	cc.Logger = lg.With("component", "cluster")
	if cc.ServerTLS, cc.ClientTLS, err = peerTLS(cfg, lg); err != nil {
		return nil, err
	}
	if n.raft, err = cluster.New(cc, n.machine); err != nil {
		return nil, err
	}

	forwardTLS, err := n.newHub(p.hub)
	if err != nil {
		return nil, err
	}
	n.handler = http.NewServeMux()
	n.handler.Handle("/", n.srv)
	if err := n.newOps(forwardTLS); err != nil {
		return nil, err
	}
	return n, nil
}

// newHub builds the hub server (n.srv) from its derived config: the JWT
// public keys read, the HTTP TLS (n.httpTLS) and the TLS of forwards to
// other nodes, which it returns, and its views of the node (wireHub).
func (n *Node) newHub(hc hub.Config) (forwardTLS *tls.Config, err error) {
	cfg := n.cfg
	hc.Logger = n.log.With("component", "hub")
	if cfg.JWTPublicKeyFile != "" {
		pem, err := os.ReadFile(cfg.JWTPublicKeyFile)
		if err != nil {
			return nil, &OptionError{Option: "jwt-public-key-file", Err: err}
		}
		if hc.JWTPublicKeys, err = hub.LoadJWTPublicKeys(pem); err != nil {
			return nil, &OptionError{Option: "jwt-public-key-file", Err: fmt.Errorf("%s: %w", cfg.JWTPublicKeyFile, err)}
		}
	}
	if n.httpTLS, forwardTLS, err = clientTLSConfigs(cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile, cfg.ForwardCAFile, n.log); err != nil {
		return nil, err
	}
	if forwardTLS != nil {
		hc.ForwardTLS = forwardTLS
	}
	n.wireHub(&hc)
	if n.srv, err = hub.New(hc, publisher{n.raft}, n.machine); err != nil {
		return nil, err
	}
	return forwardTLS, nil
}

// newOps builds what operators read, on n.handler: GET /metrics (metrics
// package; behind the API key unless MetricsPublic) and the live dashboard
// (its page is public, since it holds no data; its JSON needs the API key;
// it fetches the other members' reports over their HTTP address, with TLS
// as the hub forwards to them).
func (n *Node) newOps(forwardTLS *tls.Config) error {
	mc := n.cfg.Metrics
	mc.Hub, mc.Cluster, mc.Logger = n.srv, clusterView{n}, n.log.With("component", "metrics")
	m, err := metrics.New(mc)
	if err != nil {
		return err
	}
	var mh http.Handler = m.Handler()
	if !n.cfg.MetricsPublic {
		mh = n.srv.RequireAPIKey(mh)
	}
	n.handler.Handle("GET /metrics", mh)

	dc := dashboard.DefaultConfig()
	dc.Hub, dc.Cluster, dc.Protect, dc.Logger = n.srv, clusterView{n}, n.srv.RequireAPIKey, n.log.With("component", "dashboard")
	if n.httpTLS != nil {
		dc.PeerScheme = "https"
		dc.PeerClient = &http.Client{
			Transport:     &http.Transport{TLSClientConfig: forwardTLS},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if n.dash, err = dashboard.New(dc); err != nil {
		return err
	}
	n.handler.Handle("/dashboard", n.dash.Handler())
	n.handler.Handle("/dashboard/", n.dash.Handler())
	return nil
}

// clusterView is the Raft side the hub, the metrics and the dashboard
// read: empty until Raft is open (an embedder may serve Handler before
// Start).
type clusterView struct{ n *Node }

var (
	_ hub.ClusterView = clusterView{}
	_ hub.ClusterView = (*cluster.Node)(nil)
	_ hub.Readiness   = (*cluster.Node)(nil)
	_ hub.Leadership  = (*cluster.Node)(nil)
	_ hub.Liveness    = (*cluster.Node)(nil)
	_ hub.Publisher   = (*cluster.Node)(nil)
	_ hub.Submitter   = publisher{}
)

// publisher is the cluster node as the hub's Publisher and Submitter (its
// Submit returns the cluster's own type).
type publisher struct{ *cluster.Node }

func (p publisher) Submit(ctx context.Context, cmds []fsm.Command) (hub.Pending, error) {
	s, err := p.Node.Submit(ctx, cmds)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return s, nil
}

func (c clusterView) Stats() cluster.Stats {
	if !c.n.opened.Load() {
		return cluster.Stats{NodeID: c.n.cfg.NodeID, LastContact: -1}
	}
	return c.n.raft.Stats()
}

// Status is the node's Raft view (Node.Status).
func (c clusterView) Status() status.Node { return c.n.Status() }

func (c clusterView) ClusterStatus(ctx context.Context) []status.Member {
	if !c.n.opened.Load() {
		return nil
	}
	return c.n.raft.ClusterStatus(ctx)
}

// readSecretFiles reads the secrets given as files into their fields.
func (c *Config) readSecretFiles() error {
	for _, f := range []struct {
		value      *string
		path, flag string
	}{
		{&c.JWTKey, c.JWTKeyFile, "-jwt-key-file"},
		{&c.APIKey, c.APIKeyFile, "-api-key-file"},
		{&c.GossipKey, c.GossipKeyFile, "-gossip-key-file"},
	} {
		if err := SecretFromFile(f.value, f.path, f.flag); err != nil {
			return err
		}
	}
	if c.GossipKeyFile != "" {
		if _, err := decodeGossipKey(c.GossipKey); err != nil {
			return &OptionError{Option: "gossip-key-file", Err: err}
		}
	}
	return nil
}

// peerTLS builds the cluster port's mutual TLS from the -peer-* files, or
// returns nils when none is set. The certificate and CA are re-read when
// their files change, so they rotate without a restart.
func peerTLS(c Config, lg *slog.Logger) (server, client *tls.Config, err error) {
	if c.PeerCertFile == "" {
		return nil, nil, nil // Validate checked that the three go together
	}
	r, err := certs.NewReloader(certs.Files{Cert: c.PeerCertFile, Key: c.PeerKeyFile, CA: c.PeerCAFile}, lg.With("component", "peer-tls"))
	if err != nil {
		return nil, nil, fmt.Errorf("peer TLS: %w", err)
	}
	return r.ServerConfig(), r.ClientConfig(), nil
}

// wireHub gives the hub its views of the rest of the node. They go through
// the Node, not straight to cluster, so that they answer sensibly before
// Start: an embedder may serve Handler before the node opens.
func (n *Node) wireHub(hc *hub.Config) {
	hc.Cluster = clusterView{n}   // GET /api/v1/status "node", GET /api/v1/cluster
	hc.Readiness = readiness{n}   // GET /readyz
	hc.Snapshot = n.backup        // GET /api/v1/snapshot (backup.go)
	hc.Leadership = leadership{n} // connection events, reaping
	hc.Liveness = liveness{n}     // reaping a gone node's connections
	hc.Peers = peers{n}           // forwarding SSE and long polling
}

// peers is the hub's Peers port, read from gossip.
type peers struct{ n *Node }

func (p peers) HTTPAddr(id string) (string, bool) {
	for _, m := range p.n.agent.Members() {
		if m.ID == id && m.State == gossip.StateAlive && m.HTTPAddr != "" {
			return m.HTTPAddr, true
		}
	}
	return "", false
}

// liveness is the hub's Liveness port: before Start, every node counts as
// alive (nothing is reaped; the hub reaps only while this node leads).
type liveness struct{ n *Node }

func (l liveness) Alive(id string) bool { return !l.n.opened.Load() || l.n.raft.Alive(id) }

// readiness is the hub's Readiness port: not ready before Start.
type readiness struct{ n *Node }

func (r readiness) Ready(maxContact time.Duration) error {
	if !r.n.opened.Load() {
		return fmt.Errorf("%w: the node has not started", cluster.ErrNotReady)
	}
	return r.n.raft.Ready(maxContact)
}

// leadership is the hub's Leadership port (only the leader runs the
// connection events): no leader before Start.
type leadership struct{ n *Node }

func (l leadership) IsLeader() bool { return l.n.opened.Load() && l.n.raft.IsLeader() }

// Handler returns the node's HTTP API: negotiate and the SignalR
// transports under /hubs/, the REST API under /api/v1/, /healthz and
// /readyz. Start serves it on HTTPAddr; with HTTPAddr empty, serve it on
// your own server (it may be mounted beside your routes, at the root of
// the URL space, since clients and other nodes use these paths as they
// are), and set HTTPAdvertise to where the other nodes reach it.
func (n *Node) Handler() http.Handler { return n.handler }

// Start opens the node: it listens on HTTPAddr (unless empty), opens Raft,
// starts gossip, joins the cluster (waiting up to JoinTimeout for a seed to
// answer), waits up to ReadyTimeout for the cluster id to be applied, and
// then serves clients. ctx bounds the waits: when it ends, Start stops
// what it started and returns ctx.Err(). On any error Start leaves nothing
// running (it closes the node, so Close then does nothing). The node runs
// until Close.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	switch {
	case n.closed:
		n.mu.Unlock()
		return ErrClosed
	case n.started:
		n.mu.Unlock()
		return errors.New("raftplane: Start called twice")
	}
	n.started = true
	n.mu.Unlock()
	if err := n.start(ctx); err != nil {
		// One cleanup path: Close undoes whatever start got to.
		if cerr := n.Close(context.Background()); cerr != nil {
			n.log.Warn("closing after a failed start", "err", cerr)
		}
		if n.opened.Load() && !n.gossipUp {
			// A first start that failed before any other node could see
			// this one leaves nothing behind: a bootstrap left in the data
			// folder would be a cluster of its own at the next start
			// (issue 15, the split-off node). A restart keeps its data
			// (cluster.ErrNotFresh).
			if derr := n.raft.DiscardFresh(); derr != nil && !errors.Is(derr, cluster.ErrNotFresh) {
				n.log.Warn("removing what the failed first start wrote", "err", derr)
			}
		}
		return err
	}
	return nil
}

func (n *Node) start(ctx context.Context) error {
	if n.cfg.DebugAddr != "" {
		// Every listener is bound before Raft opens (and may bootstrap),
		// so a taken port fails before anything is written.
		_, stop, err := serveDebug(n.cfg.DebugAddr, n.log)
		if err != nil {
			return &OptionError{Option: "debug-http", Err: err}
		}
		n.stopDebug = stop
	}
	if n.cfg.HTTPAddr != "" {
		// Bound before anything else, so that a taken port fails at once.
		ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
		if err != nil {
			return &OptionError{Option: "http", Err: err}
		}
		if n.httpTLS != nil {
			ln = tls.NewListener(ln, n.httpTLS)
		}
		n.ln = ln
		n.mu.Lock()
		n.httpAt = ln.Addr().String()
		n.mu.Unlock()
	}
	if err := n.raft.Open(); err != nil {
		return err
	}
	n.opened.Store(true)
	// Say which cluster this data belongs to (and the real ports, when
	// listening on port 0) before anyone can see us.
	id, hasData, raftAt := n.raft.LocalClusterID(), n.raft.HadState(), n.raft.RaftAddr()
	if err := n.agent.UpdateMeta(func(m *gossip.Meta) {
		m.ClusterID, m.HasData = id, hasData
		if strings.HasSuffix(m.RaftAddr, ":0") {
			m.RaftAddr = raftAt
		}
		if strings.HasSuffix(m.HTTPAddr, ":0") && n.ln != nil {
			m.HTTPAddr = n.ln.Addr().String()
		}
	}); err != nil {
		return err
	}
	if err := n.agent.Start(); err != nil {
		return &OptionError{Option: "gossip", Err: err}
	}
	n.gossipUp = true
	if err := n.join(ctx); err != nil {
		return err
	}
	n.peersStop, n.peersDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(n.peersDone)
		savePeersLoop(n.cfg.DataDir, n.agent, n.peersStop, n.log)
	}()
	n.warnDevMode()
	if err := n.waitReady(ctx); err != nil {
		return err
	}
	if err := n.srv.Start(); err != nil {
		return err
	}
	n.dash.Start()
	if n.ln != nil {
		n.hs = &http.Server{
			Handler:           n.handler,
			ReadHeaderTimeout: n.cfg.HTTPReadHeaderTimeout,
			IdleTimeout:       n.cfg.HTTPIdleTimeout,
			ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		}
		n.serveDone = make(chan struct{})
		go n.serve(n.hs, n.ln, n.serveDone)
	}
	n.log.Info("raftplane listening", "http", n.HTTPAddr(), "raft", n.raft.RaftAddr(), "gossip", n.agent.LocalAddr(),
		"data", n.cfg.DataDir, "cluster_id", n.machine.Epoch())
	return nil
}

// join joins the seeds of Join, or else the peers saved at the last run,
// and checks that they are this node's cluster.
func (n *Node) join(ctx context.Context) error {
	seeds := n.cfg.Join
	if len(seeds) == 0 {
		// A restart without Join finds its cluster through the peers it
		// saw last time.
		seeds = loadPeers(n.cfg.DataDir)
	}
	if len(seeds) == 0 {
		return nil
	}
	n.log.Info("joining", "seeds", seeds)
	n.agent.Join(seeds)
	wait := time.NewTimer(n.cfg.JoinTimeout)
	defer wait.Stop()
	select {
	case <-n.agent.Joined():
		return n.raft.CheckPeers(n.agent.Members())
	case <-wait.C:
		n.log.Warn("no seed answered yet; still trying in the background", "seeds", seeds)
		n.lateStop, n.lateDone = make(chan struct{}), make(chan struct{})
		go n.checkLateJoin(n.lateStop, n.lateDone)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkLateJoin makes the check join makes at Start for a join that
// succeeds only later: a node whose data belongs to another cluster than
// its seeds' stops (Done, Err) with the error naming both cluster ids,
// rather than serve beside them as a cluster of its own. Only the joining
// node checks, once, against what its seeds told it: the others see a
// foreign member and refuse it, never stop.
func (n *Node) checkLateJoin(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	select {
	case <-stop:
		return
	case <-n.agent.Joined():
	}
	if err := n.raft.CheckPeers(n.agent.Members()); err != nil {
		n.log.Error("stopping: joined a cluster this node's data does not belong to", "err", err)
		n.stopped(err)
	}
}

// waitReady waits up to ReadyTimeout for the cluster id; only the end of
// ctx is an error, since a node that is not ready yet still serves (its
// clients get 503 until it is).
func (n *Node) waitReady(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, n.cfg.ReadyTimeout)
	defer cancel()
	err := n.raft.WaitReady(rctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	n.log.Warn("cluster not ready yet; serving anyway, clients get 503 until it is", "err", err)
	return nil
}

func (n *Node) warnDevMode() {
	if n.cfg.JWTKey == "" && n.cfg.JWTPublicKeyFile == "" && n.cfg.Hub.JWKSURL == "" && len(n.cfg.Hub.JWTKey) == 0 && len(n.cfg.Hub.JWTPublicKeys) == 0 {
		n.log.Warn("DEV MODE: no -jwt-key, -jwt-public-key-file or -jwks-url, clients are not authenticated and pick their user id with ?user=")
	}
	if n.cfg.APIKey == "" && n.cfg.Hub.APIKey == "" {
		n.log.Warn("DEV MODE: no -api-key, anyone who reaches the HTTP port can use the REST API")
	}
	if n.cfg.HTTPAddr == "" && n.cfg.HTTPAdvertise == "" {
		n.log.Warn("HTTPAddr and HTTPAdvertise are empty: other nodes cannot forward SSE and long-polling requests for this node's connections to it")
	}
}

// serve runs the HTTP server until Close shuts it down; any other end
// stops the node (Done, Err).
func (n *Node) serve(hs *http.Server, ln net.Listener, done chan<- struct{}) {
	defer close(done)
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		n.log.Error("http server failed", "err", err)
		n.stopped(fmt.Errorf("raftplane: http server: %w", err))
	}
}

// stopped records why the node stopped serving and closes Done.
func (n *Node) stopped(err error) {
	n.doneOnce.Do(func() {
		n.mu.Lock()
		n.err = err
		n.mu.Unlock()
		close(n.done)
	})
}

// Done returns a channel closed when the node stops serving: Close was
// called, or its HTTP server failed (Err says why). A program that runs a
// node waits on it beside its own signals, then calls Close.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns why the node stopped serving on its own, or nil.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// Close shuts the node down in order: the hub closes its clients'
// connections (with allowReconnect, so they move to another node) and
// records their departure in the log; the node leaves the Raft
// configuration (handing leadership over first) and gossip; the HTTP
// server, Raft and gossip stop. It waits at most ShutdownTimeout (and
// ctx), is idempotent, and returns the first call's error.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		n.closeErr = n.shutdown(ctx)
		n.stopped(nil)
	})
	return n.closeErr
}

// shutdown stops whatever Start got to, each step skipped when its part
// never started.
func (n *Node) shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if n.hs != nil {
		// Idle keep-alive connections would carry a client's next request
		// back here (a reconnect right after "Server is shutting down.");
		// without keep-alives they close and the balancer picks a live
		// node.
		n.hs.SetKeepAlivesEnabled(false)
	}
	if err := n.srv.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("hub: %w", err))
	}
	if err := n.dash.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("dashboard: %w", err))
	}
	if n.opened.Load() {
		if err := n.raft.Leave(ctx); err != nil {
			n.log.Warn("leaving the raft configuration", "err", err)
		}
	}
	if n.peersStop != nil {
		close(n.peersStop)
		<-n.peersDone
	}
	if n.lateStop != nil {
		close(n.lateStop)
		<-n.lateDone
	}
	if n.gossipUp {
		if err := n.agent.Leave(n.cfg.GossipLeaveTimeout); err != nil {
			n.log.Warn("leaving gossip", "err", err)
		}
	}
	if n.hs != nil {
		if err := n.hs.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
			_ = n.hs.Close() // past the deadline: cut what is left
		}
		<-n.serveDone
	} else if n.ln != nil {
		_ = n.ln.Close() // Start failed before serving
	}
	if err := n.raft.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("raft: %w", err))
	}
	if err := n.agent.Close(); err != nil {
		errs = append(errs, fmt.Errorf("gossip: %w", err))
	}
	if n.stopDebug != nil {
		n.stopDebug()
	}
	n.log.Info("stopped")
	return errors.Join(errs...)
}

// HTTPAddr returns the address Start listens on for clients (the real
// port when HTTPAddr had port 0), or "" before Start or without HTTPAddr.
func (n *Node) HTTPAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.httpAt
}

// RaftAddr returns the address the cluster port listens on, or "" before
// Start.
func (n *Node) RaftAddr() string {
	if !n.opened.Load() {
		return ""
	}
	return n.raft.RaftAddr()
}

// GossipAddr returns the gossip address other nodes Join, or "" before
// Start.
func (n *Node) GossipAddr() string { return n.agent.LocalAddr() }

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// ClusterID returns the id of the cluster this node's log belongs to, ""
// until its first entry is applied.
func (n *Node) ClusterID() string { return n.machine.Epoch() }

// Status returns this node's Raft view (state, term, leader, indexes).
// Before Start, State is "NotStarted".
func (n *Node) Status() status.Node {
	if !n.opened.Load() {
		return status.Node{NodeID: n.cfg.NodeID, State: "NotStarted"}
	}
	return n.raft.Status()
}
