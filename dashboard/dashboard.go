package dashboard

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/hub"
	"github.com/raftplane/raftplane/status"
)

//go:embed static/index.html
var static embed.FS

// Hub is what the dashboard reads of this node's hub; *hub.Server
// implements it. Stats may be called from many goroutines.
type Hub interface {
	Stats() hub.Stats
}

// Cluster is what the dashboard reads of this node's Raft side;
// *cluster.Node implements it. Both may be called from many goroutines;
// ClusterStatus asks the members for their applied index and returns
// within its context.
type Cluster interface {
	Stats() cluster.Stats
	ClusterStatus(ctx context.Context) []status.Member
}

var (
	_ Hub     = (*hub.Server)(nil)
	_ Cluster = (*cluster.Node)(nil)
)

// Config configures a Dashboard.
type Config struct {
	// Hub is required. Cluster is optional: without it the page shows this
	// node alone.
	Hub     Hub
	Cluster Cluster
	// Protect wraps the JSON endpoints (the page itself holds no data):
	// raftplane passes the REST API's key check, hub.Server.RequireAPIKey.
	// nil leaves them open.
	Protect func(http.Handler) http.Handler
	// SampleInterval is how often the sampler reads the counters; History
	// how many samples it keeps (300 at 1 s: the last five minutes).
	SampleInterval time.Duration
	History        int
	// PeerTimeout bounds the fetch of one member's report (and the whole
	// state request's wait for them).
	PeerTimeout time.Duration
	// PeerScheme is how members serve their HTTP address: "http" or
	// "https". PeerClient fetches their reports (set its TLS
	// configuration for https); nil: a client of its own.
	PeerScheme string
	PeerClient *http.Client
	// MaxPeerBytes bounds a member's report read.
	MaxPeerBytes int64
	// Logger receives the sampler's and fetches' problems; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the defaults and no sources.
func DefaultConfig() Config {
	return Config{
		SampleInterval: time.Second,
		History:        300,
		PeerTimeout:    time.Second,
		PeerScheme:     "http",
		MaxPeerBytes:   1 << 20,
	}
}

// Validate checks the settings, naming the fields. (New checks the
// sources.)
func (c Config) Validate() error {
	var errs []error
	if c.SampleInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("dashboard: SampleInterval (%s) must be at least 10ms", c.SampleInterval))
	}
	if c.History < 2 || c.History > 100_000 {
		errs = append(errs, fmt.Errorf("dashboard: History (%d) must be 2 to 100000 samples", c.History))
	}
	if c.PeerTimeout <= 0 {
		errs = append(errs, fmt.Errorf("dashboard: PeerTimeout (%s) must be positive", c.PeerTimeout))
	}
	if c.PeerScheme != "http" && c.PeerScheme != "https" {
		errs = append(errs, fmt.Errorf("dashboard: PeerScheme (%q) must be http or https", c.PeerScheme))
	}
	if c.MaxPeerBytes < 1024 {
		errs = append(errs, fmt.Errorf("dashboard: MaxPeerBytes (%d) must be at least 1024", c.MaxPeerBytes))
	}
	return errors.Join(errs...)
}

// Dashboard serves the page and its JSON, and keeps this node's history.
type Dashboard struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	mux    *http.ServeMux

	mu      sync.Mutex
	ring    []Sample // History long; next is where the next sample goes
	next    int
	filled  bool
	started bool
	stop    chan struct{}
	done    chan struct{}
}

// New validates cfg and builds the dashboard; it starts nothing.
func New(cfg Config) (*Dashboard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Hub == nil {
		return nil, errors.New("dashboard: Hub is nil")
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	client := cfg.PeerClient
	if client == nil {
		// No redirects: a report comes from the member asked, and the key
		// goes nowhere else.
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	d := &Dashboard{cfg: cfg, log: lg, client: client, ring: make([]Sample, cfg.History),
		stop: make(chan struct{}), done: make(chan struct{})}
	protect := cfg.Protect
	if protect == nil {
		protect = func(h http.Handler) http.Handler { return h }
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /dashboard", d.servePage)
	m.HandleFunc("GET /dashboard/{$}", d.servePage)
	m.Handle("GET /dashboard/api/state", protect(http.HandlerFunc(d.serveState)))
	m.Handle("GET /dashboard/api/node", protect(http.HandlerFunc(d.serveNode)))
	d.mux = m
	return d, nil
}

// Handler serves GET /dashboard and GET /dashboard/api/{state,node}; mount
// it at "/dashboard" and "/dashboard/".
func (d *Dashboard) Handler() http.Handler { return d.mux }

// Start begins sampling. It is idempotent.
func (d *Dashboard) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return
	}
	d.started = true
	go d.sampleLoop()
}

// Close stops the sampler and waits for it, or returns ctx.Err(). It is
// idempotent, and a Close without Start returns at once.
func (d *Dashboard) Close(ctx context.Context) error {
	d.mu.Lock()
	started := d.started
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	d.mu.Unlock()
	if !started {
		return nil
	}
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Dashboard) sampleLoop() {
	defer close(d.done)
	t := time.NewTicker(d.cfg.SampleInterval)
	defer t.Stop()
	var s sampler
	s.take(d.cfg.Hub.Stats(), time.Now()) // the baseline
	for {
		select {
		case <-d.stop:
			return
		case now := <-t.C:
			if smp, ok := s.take(d.cfg.Hub.Stats(), now); ok {
				d.record(smp)
			}
		}
	}
}

// record keeps a sample, dropping the oldest once the ring is full.
func (d *Dashboard) record(smp Sample) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ring[d.next] = smp
	d.next = (d.next + 1) % len(d.ring)
	d.filled = d.filled || d.next == 0
}

// history returns the samples kept, oldest first.
func (d *Dashboard) history() []Sample {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.filled {
		return append([]Sample{}, d.ring[:d.next]...)
	}
	out := make([]Sample, 0, len(d.ring))
	out = append(out, d.ring[d.next:]...)
	return append(out, d.ring[:d.next]...)
}

// page is the dashboard page and its Content-Security-Policy: only its own
// inline script and style (by hash) run, and it talks to its own origin
// only.
var page, pageCSP = func() ([]byte, string) {
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	hash := func(open, close string) string {
		s := string(b)
		i := strings.Index(s, open)
		j := strings.Index(s, close)
		if i < 0 || j < i {
			panic("dashboard: static/index.html has no " + open)
		}
		sum := sha256.Sum256([]byte(s[i+len(open) : j]))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	return b, "default-src 'none'; script-src " + hash("<script>", "</script>") +
		"; style-src " + hash("<style>", "</style>") +
		"; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}()

func (d *Dashboard) servePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(page)
}

func (d *Dashboard) serveNode(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, d.nodeView())
}

func (d *Dashboard) serveState(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), d.cfg.PeerTimeout)
	defer cancel()
	writeJSON(w, d.state(ctx, r.Header.Get("Authorization")))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// fetchNode asks a member at addr (host:port) for its report, with the
// caller's credentials.
func (d *Dashboard) fetchNode(ctx context.Context, addr, auth string) (*NodeView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.cfg.PeerScheme+"://"+addr+"/dashboard/api/node", nil)
	if err != nil {
		return nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, d.cfg.MaxPeerBytes+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", addr, resp.Status)
	}
	if int64(len(body)) > d.cfg.MaxPeerBytes {
		return nil, fmt.Errorf("%s: report larger than %d bytes", addr, d.cfg.MaxPeerBytes)
	}
	var nv NodeView
	if err := json.Unmarshal(body, &nv); err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return &nv, nil
}

// sortBehind orders connections by bytes queued, most first, and keeps n.
func sortBehind(b []BehindConnection, n int) []BehindConnection {
	sort.SliceStable(b, func(i, j int) bool { return b[i].Bytes > b[j].Bytes })
	if len(b) > n {
		b = b[:n]
	}
	return b
}
