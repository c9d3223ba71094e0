package hub

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/status"
)

// Server is the SignalR endpoint and REST API of one node. It is an
// http.Handler; Start begins delivery and Close ends it.
type Server struct {
	cfg    Config
	log    *slog.Logger
	pub    Publisher
	stream Log      // the entries, delivered from (dispatch.go)
	reg    Registry // connections, groups, users
	mux    *http.ServeMux
	ws     websocket.Upgrader
	// readBufs lends WebSocket read buffers of WSReadBufferSize bytes
	// (wsidle.go: lentReader).
	readBufs sync.Pool
	// pings hands the keep-alive sweep's connections to the ping workers
	// (conn.go); unbuffered, so none is left in it when they stop.
	pings chan *conn
	// writers hands a connection to drain to a writer waiting for one
	// (writers.go); unbuffered, so a handoff is to a writer, never a queue.
	writers chan *conn
	// writersStarted counts the writer goroutines startDrain started.
	writersStarted atomic.Uint64
	// connBufs lends connectionStats its list of connections (*[]*conn).
	connBufs sync.Pool
	// jsonSplits and msgpackSplits hold resting splitters (inbox.go).
	jsonSplits, msgpackSplits sync.Pool
	// idlePoll is where idle WebSocket readers park (wspark.go); nil: they
	// wait in their sockets. Set by Start; a handler may run before it.
	idlePoll atomic.Pointer[poller]

	mu       sync.Mutex
	conns    map[string]*conn       // local connections by id, from handshake to cleanup
	detached map[string]*time.Timer // ended without goodbye, waiting to resume or expire
	closing  bool
	lim      limits     // limits.go; its counts under mu
	jwt      *jwtAuth   // jwt.go; nil: no JWT configured (dev mode)
	fwd      forwarders // forward.go: TLS transports to other nodes

	// idx is the dispatcher's view of local connections; only the
	// dispatcher goroutine touches it.
	idx map[string]*localHub

	dispMu  sync.Mutex
	dispPos fsm.Cursor    // the dispatcher has queued everything up to here
	touched []*conn       // queued on in this batch, writers not started; the dispatcher's
	dispCh  chan struct{} // made by a waiter, closed (and dropped) when dispPos moves

	stop     chan struct{}
	life     context.Context // ends with stop, for waits that take a context
	endLife  context.CancelFunc
	sessions sync.Map // connection id → *httpSession: SSE and long polling (sse.go)
	stopOnce sync.Once
	wg       sync.WaitGroup // dispatcher, connection cleanups
	connWG   sync.WaitGroup // connection handlers
	started  bool

	apps          map[string]*app // handlers.go: written by Handle before Start only
	expiredTokens atomic.Uint64   // connections closed at their token's exp (authz.go)
	up            *upstream       // upstream.go: nil without Config.Upstream
	ev            events          // events.go: the connection events runner's state
	stats         serverStats     // stats.go: the counters Stats reports
	sub           Submitter       // the Publisher's, if it has one (pipeline.go)
	ordered       atomic.Bool     // the log is at fsm.FormatOrdered (pipeline.go)
}

// New validates cfg and builds a server; it starts nothing.
func New(cfg Config, pub Publisher, stream Stream) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pub == nil || stream == nil {
		return nil, errors.New("hub: nil Publisher or Stream")
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:      cfg,
		log:      lg,
		pub:      pub,
		stream:   stream,
		reg:      stream,
		conns:    map[string]*conn{},
		detached: map[string]*time.Timer{},
		idx:      map[string]*localHub{},
		apps:     map[string]*app{},
		stop:     make(chan struct{}),
		pings:    make(chan *conn),
		writers:  make(chan *conn),
		ws: websocket.Upgrader{
			ReadBufferSize:  upgraderReadBuffer(cfg.WSReadBufferSize),
			WriteBufferSize: cfg.WSWriteBufferSize,
			// Write buffers are lent for the length of a write: an idle
			// connection holds none.
			WriteBufferPool: &sync.Pool{},
		},
	}
	s.readBufs.New = func() any { b := make([]byte, cfg.WSReadBufferSize); return &b }
	s.connBufs.New = func() any { return new([]*conn) }
	s.jsonSplits.New = func() any { return newSplitter(jsonProtocol{}.name(), cfg.MaxMessageSize) }
	s.msgpackSplits.New = func() any { return newSplitter(msgpackProtocol{}.name(), cfg.MaxMessageSize) }
	s.lim.init(cfg, lg)
	s.pub = timedPublisher{Publisher: pub, st: &s.stats} // stats.go: every commit counted and timed
	s.sub, _ = pub.(Submitter)                           // pipeline.go (counted there)
	s.jwt = newJWTAuth(cfg, lg)
	s.up = newUpstream(cfg)            // upstream.go
	s.ws.CheckOrigin = s.originAllowed // cors.go: -allowed-origins
	s.life, s.endLife = context.WithCancel(context.Background())
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("/hubs/{hub}/negotiate", s.handleNegotiate)
	m.HandleFunc("/hubs/{hub}", s.handleConnect)
	m.HandleFunc("GET /healthz", s.handleHealth)
	m.HandleFunc("GET /readyz", s.handleReady) // ready.go
	m.HandleFunc("GET /api/v1/status", s.api(s.handleStatus))
	m.HandleFunc("GET /api/v1/cluster", s.api(s.handleCluster))
	m.HandleFunc("GET /api/v1/snapshot", s.api(s.handleSnapshot)) // backup.go
	m.HandleFunc("POST /api/v1/hubs/{hub}", s.api(s.handleSendAll))
	m.HandleFunc("POST /api/v1/hubs/{hub}/groups/{group}", s.api(s.handleSendGroup))
	m.HandleFunc("POST /api/v1/hubs/{hub}/users/{user}", s.api(s.handleSendUser))
	m.HandleFunc("POST /api/v1/hubs/{hub}/connections/{id}", s.api(s.handleSendConnection))
	m.HandleFunc("PUT /api/v1/hubs/{hub}/groups/{group}/connections/{id}", s.api(s.handleGroupAdd))
	m.HandleFunc("DELETE /api/v1/hubs/{hub}/groups/{group}/connections/{id}", s.api(s.handleGroupRemove))
	m.HandleFunc("DELETE /api/v1/hubs/{hub}/connections/{id}", s.api(s.handleCloseConnection))
	m.HandleFunc("GET /api/v1/hubs/{hub}/connections/{id}", s.api(s.handleGetConnection))
	m.HandleFunc("GET /api/v1/hubs/{hub}/groups/{group}", s.api(s.handleGetGroup))
	m.HandleFunc("GET /api/v1/hubs/{hub}/groups/{group}/messages", s.api(s.handleGroupHistory))
	m.HandleFunc("GET /api/v1/hubs/{hub}/users/{user}", s.api(s.handleGetUser))
	s.mux = m
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serveCORS(w, r, http.HandlerFunc(s.serveRoutes)) // errors.go: JSON 404 and 405
}

// ErrClosed is returned by Start on a server that was closed.
var ErrClosed = errors.New("hub: server closed")

// Start begins delivering applied entries to local connections, from the
// stream's current end, and starts the server's background work (reap.go,
// jwt.go, events.go). Nothing in it waits, so it takes no context; it is
// idempotent, and fails with ErrClosed after Close.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrClosed
	}
	if s.started {
		return nil
	}
	s.started = true
	from := s.stream.Position().Last
	s.wg.Add(4 + pingWorkers)
	for range pingWorkers {
		go s.pingWorker() // conn.go
	}
	if !s.cfg.NoReaderParking && canPeek {
		p, err := newPoller(s, parkTick(s.cfg.ClientTimeout))
		if err != nil {
			s.log.Warn("idle WebSocket readers wait in their sockets", "err", err)
		} else {
			s.idlePoll.Store(p)
			s.wg.Add(1)
			go p.run() // wspark_linux.go
		}
	}
	go s.dispatch(from)
	go s.reapLoop()                                                   // reap.go
	go s.everyTick(statefulAckInterval, s.sweeper(s.checkpointSweep)) // stateful.go
	go s.everyTick(s.keepAliveEvery(), s.sweeper(s.keepAliveSweep))   // conn.go
	s.startJWKS()                                                     // jwt.go
	s.startEvents()                                                   // events.go: after every Handle
	return nil
}

// everyTick runs fn every d until the server stops. It is a Server
// goroutine: its starter adds it to s.wg.
func (s *Server) everyTick(d time.Duration, fn func()) {
	defer s.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			fn()
		}
	}
}

// liveConns returns the local connections past their claim (s.conns holds
// nil for a connection claimed and not yet serving).
func (s *Server) liveConns() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appendLiveLocked(make([]*conn, 0, len(s.conns)))
}

// appendLiveLocked appends liveConns to dst; s.mu is held.
func (s *Server) appendLiveLocked(dst []*conn) []*conn {
	for _, c := range s.conns {
		if c != nil {
			dst = append(dst, c)
		}
	}
	return dst
}

// sweeper returns, for everyTick, a tick that hands fn the live
// connections in a slice it keeps from tick to tick: the sweeps run every
// second or so over every connection, and a fresh copy of the list each
// time was most of what an idle node allocated.
func (s *Server) sweeper(fn func(conns []*conn)) func() {
	var buf []*conn
	return func() {
		s.mu.Lock()
		buf = s.appendLiveLocked(buf[:0])
		s.mu.Unlock()
		fn(buf)
		clear(buf) // keeps no connection alive between ticks
	}
}

// Close stops accepting clients, closes every connection with a Close
// message that allows reconnecting, waits for their handlers and for the
// log entries that record their departure, then stops the dispatcher.
// It returns ctx.Err() if that takes longer than ctx allows.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for id, t := range s.detached {
		t.Stop()
		delete(s.detached, id)
	}
	conns := s.appendLiveLocked(nil) // with closing set, under one lock
	s.mu.Unlock()
	for _, c := range conns {
		if c.handshaking.Load() {
			c.cancel() // no writer yet: ending the context closes the transport
			continue
		}
		if c.sr != nil {
			// A stateful-reconnect client continues on another node by
			// itself when its socket just drops; a Close message would end
			// its connection instead.
			c.dropAfterFlush()
			continue
		}
		c.close(disconnect{reason: "Server is shutting down.", allowReconnect: true, flush: true})
	}
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		s.stopOnce.Do(s.end)
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.stopOnce.Do(s.end)
		return ctx.Err()
	}
}

// end signals the server's goroutines to stop.
func (s *Server) end() {
	close(s.stop)
	if p := s.idlePoll.Load(); p != nil {
		p.close()
	}
	s.endLife()
	s.fwd.closeIdle()
}

// LocalConnections returns the number of connections this node holds.
func (s *Server) LocalConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// handleHealth is an unauthenticated check for load balancers: 200 while
// this node takes new clients, 503 (with the reason) while it does not.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if err := s.accepting(); err != nil {
		writeUnavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	p := s.stream.Position()
	out := map[string]any{
		"stream": status.Stream{
			Epoch:        p.Epoch,
			AppliedIndex: p.Applied,
			FirstCursor:  cursorOrEmpty(p.Epoch, p.First),
			LastCursor:   cursorOrEmpty(p.Epoch, p.Last),
			FloorCursor:  cursorOrEmpty(p.Epoch, p.Floor),
			Cached:       p.Entries,
			CachedBytes:  p.Bytes,
			Digest:       strconv.FormatUint(p.Digest, 16),
		},
		"hub": s.hubStatus(), // limits.go
	}
	if st := s.UpstreamStats(); st.Enabled || st.Events.Leading || st.Events.Marks > 0 {
		out["upstream"] = st // upstream.go, events.go
	}
	if s.cfg.Cluster != nil {
		out["node"] = s.cfg.Cluster.Status()
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cluster == nil {
		writeError(w, http.StatusNotFound, "this node runs without cluster membership")
		return
	}
	members := s.cfg.Cluster.ClusterStatus(r.Context())
	if members == nil {
		members = []status.Member{} // [], not null
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": members})
}

func cursorOrEmpty(epoch string, c fsm.Cursor) string {
	if c.IsZero() || epoch == "" {
		return ""
	}
	return c.Format(epoch)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// apiError is the JSON error body of every REST and negotiate failure.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	code := errorCode(status) // errors.go
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, apiError{Code: code, Message: msg})
}
