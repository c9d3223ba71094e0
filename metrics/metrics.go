package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/hub"
)

// HubSource is what the metrics read from the hub side of a node;
// *hub.Server implements it. Stats may be called from many goroutines.
type HubSource interface {
	Stats() hub.Stats
}

// ClusterSource is what the metrics read from the Raft side of a node;
// *cluster.Node implements it. Stats may be called from many goroutines
// and must not block on the network.
type ClusterSource interface {
	Stats() cluster.Stats
}

var (
	_ HubSource     = (*hub.Server)(nil)
	_ ClusterSource = (*cluster.Node)(nil)
)

// OtherHubs is the hub label under which the connections of the hubs past
// Config.MaxHubLabels are summed. No hub can have this name.
const OtherHubs = "(other)"

// Config says where the metrics come from.
type Config struct {
	// Hub is required.
	Hub HubSource
	// Cluster is optional: without it the raftplane_raft_* and forward
	// metrics are absent (a hub over a bare fsm.Machine, in tests).
	Cluster ClusterSource
	// MaxHubLabels bounds the hub label of raftplane_connections: the hubs
	// with the most connections keep their name, the others are summed
	// under OtherHubs. Hub names come from clients (any name is a hub in
	// development mode), so without a bound they could grow the series
	// without end. At least 1.
	MaxHubLabels int
	// MaxScrapes bounds the scrapes served at once; more get 503. Each
	// walks every local connection. At least 1.
	MaxScrapes int
	// Logger receives scrape errors; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the default limits and no sources.
func DefaultConfig() Config {
	return Config{MaxHubLabels: 100, MaxScrapes: 4}
}

// Validate checks the limits, naming the fields. (The sources are
// checked by New: a program validates its configuration before it has
// built them.)
func (c Config) Validate() error {
	var errs []error
	if c.MaxHubLabels < 1 {
		errs = append(errs, fmt.Errorf("metrics: MaxHubLabels (%d) must be at least 1", c.MaxHubLabels))
	}
	if c.MaxScrapes < 1 {
		errs = append(errs, fmt.Errorf("metrics: MaxScrapes (%d) must be at least 1", c.MaxScrapes))
	}
	return errors.Join(errs...)
}

// Metrics is a node's registry and its handler.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler
}

// New builds the registry: the Go runtime and process collectors and the
// raftplane collector over cfg's sources. It starts nothing.
func New(cfg Config) (*Metrics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Hub == nil {
		return nil, errors.New("metrics: Hub is nil")
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	if err := reg.Register(newCollector(cfg)); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(lg.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: cfg.MaxScrapes,
	})
	return &Metrics{reg: reg, handler: h}, nil
}

// Handler serves the metrics in the Prometheus text format (or
// OpenMetrics, protobuf, compressed, as the scraper asks). It does not
// check the method or any credential: mount it behind the checks you want.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Registry is the registry the handler serves, for a program that adds
// its own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }
