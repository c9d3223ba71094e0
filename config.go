package raftplane

import (
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/raftplane/raftplane/metrics"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/gossip"
	"github.com/raftplane/raftplane/hub"
)

// Config configures a Node. Start from DefaultConfig. Every setting an
// operator gives cmd/raftplane as a flag, an environment variable or a key
// of its configuration file is a field here; Options ties each name to its
// field.
//
// The node-level fields (the flat ones) are the node's identity, its
// addresses, its secrets and its files. Hub, Cluster and FSM hold the
// tuning of each part. New fills the parts' own identity fields from the
// node-level ones, which win when set: Cluster.NodeID, DataDir, RaftBind,
// RaftAdvertise, Bootstrap (true without Join), Members, Logger, ServerTLS
// and ClientTLS; Hub.NodeID, APIKey, JWTKey, TokenSecret (from Secret; the
// cluster secret replicated in the log when neither is set), JWTPublicKeys
// (from JWTPublicKeyFile), ForwardTLS (with CertFile), Logger, and the
// ports: Cluster, Readiness, Snapshot, Leadership, Liveness and Peers;
// FSM.Logger.
type Config struct {
	// DataDir holds the Raft log and snapshots, the node id and the gossip
	// addresses of the peers seen last (a restart without Join finds its
	// cluster through them). One node per folder.
	DataDir string
	// NodeID is the node's id in Raft and gossip. Empty: generated once
	// and kept in DataDir/node-id.
	NodeID string
	// HTTPAddr is where Start listens for SignalR clients and the REST API
	// (port 0: any free port; HTTPAddr() tells which). Empty: Start serves
	// nothing, and the program serves Handler() on its own server; set
	// HTTPAdvertise then, or SSE and long-polling requests cannot be
	// forwarded to this node.
	HTTPAddr string
	// HTTPAdvertise is the HTTP address other nodes forward SSE and
	// long-polling requests for this node's connections to. Empty:
	// Advertise with HTTPAddr's port, else HTTPAddr.
	HTTPAdvertise string
	// ShutdownTimeout bounds Close.
	ShutdownTimeout time.Duration
	// HTTPReadHeaderTimeout bounds the reading of a request's headers on
	// HTTPAddr; HTTPIdleTimeout closes an idle keep-alive connection (a
	// client's negotiate, say), which holds net/http's buffers until then
	// (Kestrel: 130 s).
	HTTPReadHeaderTimeout time.Duration
	HTTPIdleTimeout       time.Duration

	// RaftAddr is the listen address of the cluster port (Raft and the
	// nodes' RPC). Port 0 picks a free port (RaftAddr() tells which).
	RaftAddr string
	// RaftAdvertise is the Raft address other nodes dial. Empty: Advertise
	// with RaftAddr's port, else RaftAddr.
	RaftAdvertise string
	// ReadyTimeout is how long Start waits for the cluster id to be
	// applied before it serves anyway; clients get 503 until the node is
	// ready.
	ReadyTimeout time.Duration

	// GossipAddr is the gossip listen address, UDP and TCP (an IP and a
	// port; port 0 picks a free one, GossipAddr() tells which).
	GossipAddr string
	// Advertise is the IP or host other nodes reach this one at, with the
	// ports of GossipAddr, RaftAddr and HTTPAddr; needed when they listen
	// on every interface.
	Advertise string
	// Join lists the gossip addresses (host:port) of nodes of an existing
	// cluster: the node joins it instead of starting a new one. Empty: a
	// restart joins the peers it saw last, a first start bootstraps a
	// one-node cluster.
	Join []string
	// JoinTimeout is how long Start waits for a seed to answer before it
	// goes on; the node keeps trying in the background.
	JoinTimeout time.Duration
	// GossipKey is the base64 AES key (16, 24 or 32 bytes) that encrypts
	// gossip, the same on every node; GossipKeyFile names a file holding
	// it instead (out of ps).
	GossipKey     string
	GossipKeyFile string
	// GossipLeaveTimeout is how long Close waits for its leave to reach
	// the other nodes.
	GossipLeaveTimeout time.Duration

	// APIKey, when set, is required as "Authorization: Bearer <key>" on the
	// REST API; APIKeyFile names a file holding it.
	APIKey     string
	APIKeyFile string
	// JWTKey, when set, is the HS256 key of client JWTs; JWTKeyFile names a
	// file holding it. JWTPublicKeyFile is a PEM file of RSA or ECDSA
	// public keys for RS/PS/ES tokens (see Hub for the JWKS settings).
	JWTKey           string
	JWTKeyFile       string
	JWTPublicKeyFile string
	// Secret signs connection tokens, the same on every node. Empty: the
	// cluster secret generated at bootstrap and replicated in the log.
	Secret string
	// PeerCertFile, PeerKeyFile and PeerCAFile put the cluster port behind
	// mutual TLS (all three or none), re-read when the files change.
	PeerCertFile string
	PeerKeyFile  string
	PeerCAFile   string
	// CertFile and KeyFile serve HTTPS and WSS on HTTPAddr, re-read when
	// they change; with ClientCAFile clients must present a certificate
	// from that CA. ForwardCAFile verifies the other nodes' certificates
	// when requests are forwarded to them (default: the system's roots).
	CertFile      string
	KeyFile       string
	ClientCAFile  string
	ForwardCAFile string
	// Insecure allows the Raft and gossip ports to listen beyond loopback
	// without peer TLS and a gossip key: only on a network trusted
	// entirely. Without it New refuses such a node.
	Insecure bool
	// MetricsPublic serves GET /metrics without the API key, for a
	// Prometheus on a private network; by default it needs the key as the
	// REST API does. Metrics bounds the metrics' labels and scrapes.
	MetricsPublic bool
	Metrics       metrics.Config

	// LogLevel (debug, info, warn, error) and LogFormat (text, json) shape
	// the logger New makes when Logger is nil, writing to LogOutput
	// (nil: os.Stderr).
	LogLevel  string
	LogFormat string
	LogOutput io.Writer
	// Logger, when set, receives the node's logs instead.
	Logger *slog.Logger
	// DebugAddr, when set, serves Go's profiling endpoints (/debug/pprof/)
	// on their own listener. Keep it private: profiles show memory.
	DebugAddr string

	// Hub tunes the SignalR side: timeouts, limits, transports, JWT.
	Hub hub.Config
	// Cluster tunes Raft, batching and membership.
	Cluster cluster.Config
	// FSM bounds the message cache.
	FSM fsm.Config
}

// DefaultConfig returns the one-node default: data in ./raftplane-data,
// clients on 127.0.0.1:5000, Raft on 127.0.0.1:7000, gossip on
// 127.0.0.1:7946, no authentication (dev mode).
func DefaultConfig() Config {
	return Config{
		DataDir:               "raftplane-data",
		HTTPAddr:              "127.0.0.1:5000",
		RaftAddr:              "127.0.0.1:7000",
		GossipAddr:            gossip.DefaultBindAddr,
		ShutdownTimeout:       15 * time.Second,
		HTTPReadHeaderTimeout: 10 * time.Second,
		HTTPIdleTimeout:       2 * time.Minute,
		ReadyTimeout:          30 * time.Second,
		JoinTimeout:           5 * time.Second,
		GossipLeaveTimeout:    2 * time.Second,
		LogLevel:              "info",
		LogFormat:             "text",
		Hub:                   hub.DefaultConfig(),
		Cluster:               cluster.DefaultConfig(),
		FSM:                   fsm.DefaultConfig(),
		Metrics:               metrics.DefaultConfig(),
	}
}

// OptionError is a problem with one setting, named by its option: the
// flag without its dash, which is also the key of the configuration file.
// Validate's errors are OptionErrors where a setting is to blame.
type OptionError struct {
	Option string
	Err    error
}

func (e *OptionError) Error() string {
	msg := e.Err.Error()
	if strings.HasPrefix(msg, "-"+e.Option+" ") {
		return msg // the message names the option itself ("-a and -b go together")
	}
	return "-" + e.Option + ": " + msg
}

// Unwrap returns the problem.
func (e *OptionError) Unwrap() error { return e.Err }

func optErr(option, format string, args ...any) error {
	return &OptionError{Option: option, Err: fmt.Errorf(format, args...)}
}

// Validate checks the settings and their relations without touching the
// network or the files: every problem at once, each an *OptionError naming
// the flag to fix where one is to blame ("-voters: 2 must be odd, from 1
// to 7"), joined with errors.Join. New runs it first.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, c.validateNode()...)
	errs = append(errs, c.validateSecrets()...)
	if err := checkPeerSecurity(c.peerSecurity()); err != nil {
		errs = append(errs, err)
	}
	p, perrs := c.derive(c.NodeID, nil)
	errs = append(errs, perrs...)
	// The parts' own checks, their field names turned into flags.
	errs = append(errs, nameOptions(p.hub.Validate(), "Hub.")...)
	errs = append(errs, nameOptions(p.cluster.Validate(), "Cluster.")...)
	errs = append(errs, nameOptions(p.fsm.Validate(), "FSM.")...)
	errs = append(errs, nameOptions(c.Metrics.Validate(), "Metrics.")...)
	if perrs == nil {
		// Gossip's addresses come from the ones just derived: without
		// them its errors would repeat the ones above.
		errs = append(errs, nameGossip(p.gossip.Validate())...)
	}
	return errors.Join(errs...)
}

// validateNode checks the node-level fields.
func (c Config) validateNode() []error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, optErr("data", "must name a folder"))
	}
	if c.RaftAddr == "" {
		errs = append(errs, optErr("raft", "must be a host:port to listen on"))
	}
	if c.GossipAddr == "" {
		errs = append(errs, optErr("gossip", "must be an ip:port to listen on"))
	}
	for _, s := range c.Join {
		if _, _, err := net.SplitHostPort(s); err != nil {
			errs = append(errs, optErr("join", "%q is not host:port", s))
		}
	}
	for _, d := range []struct {
		option string
		v      time.Duration
		zeroOK bool
	}{
		{"shutdown-timeout", c.ShutdownTimeout, false},
		{"http-read-header-timeout", c.HTTPReadHeaderTimeout, false},
		{"http-idle-timeout", c.HTTPIdleTimeout, false},
		{"ready-timeout", c.ReadyTimeout, true},
		{"join-timeout", c.JoinTimeout, true},
		{"gossip-leave-timeout", c.GossipLeaveTimeout, false},
	} {
		switch {
		case d.v < 0 && d.zeroOK:
			errs = append(errs, optErr(d.option, "%s must not be negative", d.v))
		case d.v <= 0 && !d.zeroOK:
			errs = append(errs, optErr(d.option, "%s must be positive", d.v))
		}
	}
	if c.Logger == nil {
		if _, err := parseLevel(c.LogLevel); err != nil {
			errs = append(errs, optErr("log-level", "%w", err))
		}
		if c.LogFormat != "text" && c.LogFormat != "json" {
			errs = append(errs, optErr("log-format", "%q: want text or json", c.LogFormat))
		}
	}
	return errs
}

// validateSecrets checks the secrets and files that go together, without
// reading the files.
func (c Config) validateSecrets() []error {
	var errs []error
	for _, s := range []struct{ value, file, option string }{
		{c.APIKey, c.APIKeyFile, "api-key"},
		{c.JWTKey, c.JWTKeyFile, "jwt-key"},
		{c.GossipKey, c.GossipKeyFile, "gossip-key"},
	} {
		if s.value != "" && s.file != "" {
			// One would silently win.
			errs = append(errs, optErr(s.option+"-file", "-%s and -%s-file are both set: use one", s.option, s.option))
		}
	}
	if c.GossipKey != "" {
		if _, err := decodeGossipKey(c.GossipKey); err != nil {
			errs = append(errs, optErr("gossip-key", "%w", err))
		}
	}
	if n := countSet(c.PeerCertFile, c.PeerKeyFile, c.PeerCAFile); n != 0 && n != 3 {
		errs = append(errs, optErr("peer-cert-file", "-peer-cert-file, -peer-key-file and -peer-ca-file go together: set all three"))
	}
	if err := checkClientTLSFiles(c.CertFile, c.KeyFile, c.ClientCAFile, c.ForwardCAFile); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func countSet(s ...string) int {
	n := 0
	for _, v := range s {
		if v != "" {
			n++
		}
	}
	return n
}

// decodeGossipKey decodes a -gossip-key; gossip checks its length.
func decodeGossipKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	switch len(b) {
	case 16, 24, 32:
		return b, nil
	}
	return nil, fmt.Errorf("%d bytes once decoded; an AES key is 16, 24 or 32 (make one with: openssl rand -base64 32)", len(b))
}

// peerSecurity is what checkPeerSecurity looks at, the files counting as
// set before they are read.
func (c Config) peerSecurity() peerSecurity {
	return peerSecurity{
		raftBind: c.RaftAddr, gossipBind: c.GossipAddr,
		peerTLS:   countSet(c.PeerCertFile, c.PeerKeyFile, c.PeerCAFile) > 0,
		gossipKey: c.GossipKey != "" || c.GossipKeyFile != "",
		insecure:  c.Insecure,
	}
}

// parts are the configurations of a node's parts, derived from a Config.
type parts struct {
	httpAdv, raftAdv string
	seeds            []string
	hub              hub.Config
	cluster          cluster.Config
	fsm              fsm.Config
	gossip           gossip.Config
}

// validationID stands in for a node id Validate does not know yet (New
// generates it in the data folder).
const validationID = "node-id-not-chosen-yet"

// derive computes the parts' configurations from the node-level fields:
// the advertised addresses, and the identity fields of each part. secret,
// when set, is the cluster secret from the log, used when Secret and
// Hub.TokenSecret are empty. It reads no file: New reads the secret files
// first; Validate, which does not, gets stand-ins so that the parts' own
// checks see a key where a file will give one.
func (c Config) derive(nodeID string, secret func() []byte) (parts, []error) {
	var p parts
	var errs []error
	if nodeID == "" {
		nodeID = validationID
	}
	var err error
	switch {
	case c.HTTPAdvertise != "":
		p.httpAdv = c.HTTPAdvertise
	case c.HTTPAddr != "":
		if p.httpAdv, err = advertised(c.HTTPAddr, c.Advertise); err != nil {
			errs = append(errs, optErr("http", "%w", err))
		}
	}
	p.raftAdv = c.RaftAdvertise
	if p.raftAdv == "" && c.RaftAddr != "" {
		if p.raftAdv, err = advertised(c.RaftAddr, c.Advertise); err != nil {
			errs = append(errs, optErr("raft", "%w", err))
		}
	}
	gossipAdv := ""
	if c.GossipAddr != "" {
		if gossipAdv, err = advertised(c.GossipAddr, c.Advertise); err != nil {
			errs = append(errs, optErr("gossip", "%w", err))
		}
	}
	p.seeds = append([]string(nil), c.Join...)

	p.fsm = c.FSM

	p.cluster = c.Cluster
	p.cluster.NodeID, p.cluster.DataDir = nodeID, c.DataDir
	p.cluster.RaftBind, p.cluster.RaftAdvertise = c.RaftAddr, p.raftAdv
	p.cluster.Bootstrap = len(c.Join) == 0

	h := c.Hub
	h.NodeID = nodeID
	if c.APIKey != "" {
		h.APIKey = c.APIKey
	}
	if c.JWTKey != "" {
		h.JWTKey = []byte(c.JWTKey)
	}
	if secret == nil && len(h.JWTKey) == 0 && (c.JWTKeyFile != "" || c.JWTPublicKeyFile != "") {
		// Validate: a key will come from the file.
		h.JWTKey = []byte("stand-in for a key file")
	}
	if c.Secret != "" {
		h.TokenSecret = []byte(c.Secret)
	}
	if len(h.TokenSecret) == 0 && h.TokenSecretFunc == nil {
		// The cluster secret from the log: every node has the same one,
		// so a client may negotiate on one node and connect on another.
		h.TokenSecretFunc = secret
		if secret == nil {
			h.TokenSecretFunc = func() []byte { return nil }
		}
	}
	p.hub = h

	g := gossip.DefaultConfig()
	g.BindAddr, g.AdvertiseAddr = c.GossipAddr, gossipAdv
	g.Meta = gossip.Meta{ID: nodeID, RaftAddr: p.raftAdv, HTTPAddr: p.httpAdv, Version: 1,
		// From the first message: a leader holds out a member that says less.
		LogFormat: fsm.LogFormat}
	g.Label = "raftplane"
	if c.GossipKey != "" {
		g.SecretKey, _ = decodeGossipKey(c.GossipKey) // checked by validateSecrets
	}
	p.gossip = g
	return p, errs
}

// advertised returns the address other nodes should use for a listen
// address: the Advertise host with the listen port, or the listen address
// itself when it names a specific IP.
func advertised(listen, host string) (string, error) {
	h, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if host != "" {
		return net.JoinHostPort(host, port), nil
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		return "", fmt.Errorf("%s listens on all interfaces: set -advertise to the address other nodes use", listen)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return "", fmt.Errorf("bad port in %s", listen)
	}
	return listen, nil // port 0 is resolved by the listener
}
