// Command raftplane runs a raftplane node: a SignalR-compatible hub whose
// every message goes through a Raft log. With no flags it is a complete
// one-node cluster with its data in ./raftplane-data.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/gossip"
	"github.com/raftplane/raftplane/hub"
)

func main() {
	// The first SIGINT/SIGTERM starts a graceful shutdown; a second one
	// exits at once.
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "raftplane: second signal, exiting now")
		os.Exit(2)
	}()
	if len(os.Args) > 1 && os.Args[1] == "certs" {
		if err := runCerts(os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "raftplane:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "version" {
		if err := runVersion(os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "raftplane:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "status" {
		if err := runStatus(ctx, os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "raftplane:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "raftplane:", err)
		os.Exit(1)
	}
}

// options holds every flag; each has a RAFTPLANE_* environment variable.
type options struct {
	data, httpAddr, raftAddr, raftAdvertise, nodeID, logLevel string
	jwtKey, apiKey, secret                                    string
	gossipAddr, advertise, join, gossipKey                    string
	debugAddr                                                 string
	// Secrets from files (not visible in ps), and peer TLS.
	jwtKeyFile, apiKeyFile, gossipKeyFile string
	jwtPublicKeyFile                      string
	peerCertFile, peerKeyFile, peerCAFile string
	insecure                              bool
	version                               bool // -version: print it and exit (version.go)
	shutdownTimeout                       time.Duration
	hub                                   hub.Config
	fsm                                   fsm.Config
	cluster                               cluster.Config

	// TLS on -http (tls.go).
	certFile, keyFile, clientCAFile, forwardCAFile string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{hub: hub.DefaultConfig(), fsm: fsm.DefaultConfig(), cluster: cluster.DefaultConfig()}
	fs := flag.NewFlagSet("raftplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: raftplane [flags]       run a node\n       raftplane status [-http host:port] [-api-key key]   print a node's view of the cluster\n       raftplane version   print the version, commit and Go version\n\nEvery flag can also be set with an environment variable: -http is RAFTPLANE_HTTP,\n-max-message-size is RAFTPLANE_MAX_MESSAGE_SIZE, and so on. A flag on the command line wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.data, "data", "raftplane-data", "data folder: Raft log, snapshots, node id, token secret")
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:5000", "listen address for SignalR clients and the REST API")
	fs.StringVar(&o.raftAddr, "raft", "127.0.0.1:7000", "listen address for Raft traffic between nodes")
	fs.StringVar(&o.raftAdvertise, "raft-advertise", "", "Raft address other nodes dial (default: -advertise with -raft's port, else -raft)")
	fs.StringVar(&o.gossipAddr, "gossip", "127.0.0.1:7946", "listen address (UDP and TCP) for gossip between nodes")
	fs.StringVar(&o.advertise, "advertise", "", "IP or host other nodes use to reach this one (gossip, Raft and HTTP ports stay those of -gossip, -raft, -http); needed when binding 0.0.0.0")
	fs.StringVar(&o.join, "join", "", "gossip address(es) of any existing node, host:port[,host:port]: join that cluster instead of starting a new one")
	fs.StringVar(&o.gossipKey, "gossip-key", "", "base64 AES key (16, 24 or 32 bytes) that encrypts gossip; all nodes need the same")
	fs.StringVar(&o.nodeID, "node-id", "", "node id (default: generated once and kept in <data>/node-id)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.jwtKey, "jwt-key", "", "HS256 key; when set, clients need a JWT whose sub is their user id")
	fs.StringVar(&o.apiKey, "api-key", "", "when set, the REST API needs Authorization: Bearer <api-key>")
	fs.StringVar(&o.secret, "secret", "", "secret that signs connection tokens, the same on every node (default: the cluster secret generated at bootstrap and replicated in the log)")
	fs.StringVar(&o.jwtPublicKeyFile, "jwt-public-key-file", "", "PEM file of RSA or ECDSA public keys (PUBLIC KEY or CERTIFICATE blocks): clients need a JWT signed by one (RS256/384/512, PS256/384/512, ES256/384)")
	fs.StringVar(&o.hub.JWKSURL, "jwks-url", "", "https URL of the identity provider's JWKS (Keycloak, Auth0, Entra ID): clients need a JWT signed by one of its keys, found by kid")
	fs.StringVar(&o.hub.JWTIssuer, "jwt-issuer", "", "when set, a client JWT's iss must equal it")
	fs.Func("jwt-audience", "comma-separated audiences; when set, a client JWT's aud must hold one of them", func(v string) error {
		o.hub.JWTAudience = splitList(v)
		return nil
	})
	fs.DurationVar(&o.hub.JWTLeeway, "jwt-leeway", o.hub.JWTLeeway, "clock skew allowed on a JWT's exp, nbf and iat")
	fs.DurationVar(&o.hub.JWKSRefresh, "jwks-refresh", o.hub.JWKSRefresh, "how often the JWKS is fetched again")
	fs.DurationVar(&o.hub.JWKSMinRefresh, "jwks-min-refresh", o.hub.JWKSMinRefresh, "fetch the JWKS at most this often when tokens name an unknown kid")
	fs.StringVar(&o.jwtKeyFile, "jwt-key-file", "", "file holding the -jwt-key (keeps it out of ps)")
	fs.StringVar(&o.apiKeyFile, "api-key-file", "", "file holding the -api-key (keeps it out of ps)")
	fs.StringVar(&o.gossipKeyFile, "gossip-key-file", "", "file holding the -gossip-key (keeps it out of ps)")
	fs.StringVar(&o.peerCertFile, "peer-cert-file", "", "PEM certificate this node presents to its peers on the Raft port (mutual TLS; make one with `raftplane certs node`); reloaded when the file changes")
	fs.StringVar(&o.peerKeyFile, "peer-key-file", "", "PEM private key of -peer-cert-file")
	fs.StringVar(&o.peerCAFile, "peer-ca-file", "", "PEM CA certificate(s) a peer's certificate must chain to; a peer without one gets nothing")
	fs.StringVar(&o.certFile, "cert-file", "", "PEM certificate (chain) for -http: serve HTTPS and WSS to clients and the REST API; reloaded when the file changes")
	fs.StringVar(&o.keyFile, "key-file", "", "PEM private key of -cert-file")
	fs.StringVar(&o.clientCAFile, "client-ca-file", "", "PEM CA certificate(s): clients of -http must present a certificate that chains to one (mutual TLS); reloaded when the file changes")
	fs.StringVar(&o.forwardCAFile, "forward-ca-file", "", "PEM CA certificate(s) that verify another node's -cert-file when SSE and long-polling requests are forwarded to it (default: the system's roots)")
	fs.BoolVar(&o.insecure, "insecure", false, "allow the Raft and gossip ports to listen beyond loopback without peer TLS and a gossip key: only on a network you trust entirely")
	fs.StringVar(&o.debugAddr, "debug-http", "", "listen address for Go's profiling endpoints (/debug/pprof/); off when empty. Keep it private: profiles show memory contents")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown may take")
	fs.BoolVar(&o.version, "version", false, "print the version, commit and Go version, and exit (also: raftplane version)")

	h := &o.hub
	fs.DurationVar(&h.KeepAliveInterval, "keepalive", h.KeepAliveInterval, "send a Ping when nothing was sent for this long")
	fs.DurationVar(&h.ClientTimeout, "client-timeout", h.ClientTimeout, "close a connection that sent nothing for this long")
	fs.DurationVar(&h.HandshakeTimeout, "handshake-timeout", h.HandshakeTimeout, "how long a client may take to send its handshake")
	fs.IntVar(&h.MaxMessageSize, "max-message-size", h.MaxMessageSize, "largest hub message a client may send, in bytes")
	fs.IntVar(&h.MaxQueuedMessages, "max-queued-messages", h.MaxQueuedMessages, "per-connection send queue; a client further behind is closed with allowReconnect")
	fs.IntVar(&h.MaxConnections, "max-connections", h.MaxConnections, "client connections this node holds at most; 0: from the file-descriptor limit, keeping a reserve for Raft, gossip and REST; -1: no limit")
	fs.IntVar(&h.MaxConnectionsPerUser, "max-connections-per-user", h.MaxConnectionsPerUser, "connections one user may hold in one hub, across the cluster; 0: no limit")
	fs.IntVar(&h.MaxConnectionsPerIP, "max-connections-per-ip", h.MaxConnectionsPerIP, "connections one client IP (an IPv6 /64) may hold on this node; 0: no limit. Behind a reverse proxy every client shares its address")
	fs.IntVar(&h.MaxGroupsPerConnection, "max-groups-per-connection", h.MaxGroupsPerConnection, "groups one connection may be in; 0: no limit")
	fs.IntVar(&h.MaxGroupMembers, "max-group-members", h.MaxGroupMembers, "connections one group may hold; 0: no limit")
	fs.IntVar(&h.MaxQueuedBytes, "max-queued-bytes", h.MaxQueuedBytes, "per-connection send queue in bytes; a client further behind is closed with allowReconnect; 0: no limit")
	fs.IntVar(&h.MaxParallelInvocations, "max-parallel-invocations", h.MaxParallelInvocations, "hub method invocations of one connection that may run at once (ASP.NET Core's MaximumParallelInvocationsPerClient); above 1 they may complete in any order; stateful-reconnect connections stay at 1")
	fs.DurationVar(&h.WriteDelay, "write-delay", h.WriteDelay, "space a busy connection's writes this far apart so that messages share frames (fewer writes at high fan-out, up to this much more latency); 0: write at once")
	fs.IntVar(&h.WSReadBufferSize, "ws-read-buffer", h.WSReadBufferSize, "bytes of read buffer each WebSocket keeps for its whole life (most of an idle connection's memory); larger messages are read past it")
	fs.IntVar(&h.WSWriteBufferSize, "ws-write-buffer", h.WSWriteBufferSize, "bytes of WebSocket write buffer, lent per write: coalesced messages up to this size go out as one frame")
	fs.DurationVar(&h.SendTimeout, "send-timeout", h.SendTimeout, "longest a single write to a client may take")
	fs.DurationVar(&h.PublishTimeout, "publish-timeout", h.PublishTimeout, "longest a hub method or REST call waits for its commit")
	fs.DurationVar(&h.NegotiateTTL, "negotiate-ttl", h.NegotiateTTL, "how long a negotiated connection token waits for its transport")
	fs.Int64Var(&h.MaxBodySize, "max-body-size", h.MaxBodySize, "largest REST request body, in bytes")
	fs.DurationVar(&h.PollTimeout, "poll-timeout", h.PollTimeout, "long polling: how long a poll waits for data before an empty 200")
	fs.DurationVar(&h.ReadyMaxContact, "ready-max-contact", h.ReadyMaxContact, "GET /readyz answers 503 on a follower that has not heard from the Raft leader for longer than this")
	fs.Func("stateful-reconnect", "grant the official clients' stateful reconnect (withStatefulReconnect), continued on any node: true or false (default true)", func(v string) error {
		b, err := strconv.ParseBool(v)
		h.DisableStatefulReconnect = !b
		return err
	})
	fs.Func("transports", "comma-separated transports to offer: websockets, sse, longpolling (default all three)", func(v string) error {
		h.DisableWebSockets, h.DisableServerSentEvents, h.DisableLongPolling = true, true, true
		for _, t := range strings.Split(v, ",") {
			switch strings.ToLower(strings.TrimSpace(t)) {
			case "websockets", "websocket", "ws":
				h.DisableWebSockets = false
			case "sse", "serversentevents":
				h.DisableServerSentEvents = false
			case "longpolling", "lp":
				h.DisableLongPolling = false
			default:
				return fmt.Errorf("unknown transport %q: want websockets, sse or longpolling", t)
			}
		}
		return nil
	})
	fs.Func("allowed-origins", `comma-separated browser origins (https://app.example.com) allowed cross-origin access, with credentials; "*" allows any (default: same-origin only)`, func(v string) error {
		h.AllowedOrigins = nil
		for _, o := range strings.Split(v, ",") {
			if o = strings.TrimSpace(o); o != "" {
				h.AllowedOrigins = append(h.AllowedOrigins, o)
			}
		}
		return nil
	})

	f := &o.fsm
	fs.IntVar(&f.CacheMaxEntries, "cache-entries", f.CacheMaxEntries, "message cache: most entries kept")
	fs.Int64Var(&f.CacheMaxBytes, "cache-bytes", f.CacheMaxBytes, "message cache: most bytes kept")
	fs.DurationVar(&f.CacheMaxAge, "cache-age", f.CacheMaxAge, "message cache: oldest entry kept")

	c := &o.cluster
	fs.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", c.HeartbeatTimeout, "Raft heartbeat timeout")
	fs.DurationVar(&c.ElectionTimeout, "election-timeout", c.ElectionTimeout, "Raft election timeout")
	fs.DurationVar(&c.LeaderLeaseTimeout, "leader-lease-timeout", c.LeaderLeaseTimeout, "Raft leader lease timeout")
	fs.DurationVar(&c.CommitTimeout, "commit-timeout", c.CommitTimeout, "Raft commit timeout (how soon followers learn a commit when idle)")
	fs.IntVar(&c.MaxAppendEntries, "max-append-entries", c.MaxAppendEntries, "Raft entries per AppendEntries RPC")
	fs.DurationVar(&c.SnapshotInterval, "snapshot-interval", c.SnapshotInterval, "how often Raft checks whether to snapshot")
	fs.Uint64Var(&c.SnapshotThreshold, "snapshot-threshold", c.SnapshotThreshold, "entries since the last snapshot that trigger one")
	fs.Uint64Var(&c.TrailingLogs, "trailing-logs", c.TrailingLogs, "entries kept in the log after a snapshot")
	fs.IntVar(&c.MaxBatch, "max-batch", c.MaxBatch, "most commands packed into one log entry")
	fs.IntVar(&c.MaxInflight, "max-inflight", c.MaxInflight, "log entries a node may have on their way to the log at once; under load, what arrives meanwhile shares the next entry (at least 2)")
	fs.DurationVar(&c.MaxClockSkew, "max-clock-skew", c.MaxClockSkew, "how far ahead of the leader's clock a forwarded command's time stamp may be; a later one is clamped to the leader's clock (at most 5s)")
	fs.DurationVar(&c.HoldTimeout, "hold-timeout", c.HoldTimeout, "how long a command waits for a leader before failing")
	fs.BoolVar(&c.NoSync, "no-sync", false, "do not fsync the Raft log (unsafe; benchmarks only)")
	fs.IntVar(&c.MaxVoters, "voters", c.MaxVoters, "how many nodes vote in Raft (odd: 1, 3, 5, 7); the others replicate without voting")
	fs.DurationVar(&c.ReapAfter, "reap-after", c.ReapAfter, "remove a node that gossip has seen dead for this long")
	fs.DurationVar(&c.DisconnectTimeout, "disconnect-timeout", c.DisconnectTimeout, "how long a dropped connection stays registered so its client can resume it on any node (also: how long the connections of a gone node stay)")

	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "version" {
			// RAFTPLANE_VERSION often holds an image's release tag: it
			// must neither fail the start nor turn a node into a printer.
			return
		}
		env := "RAFTPLANE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && !set[f.Name] {
			if err := fs.Set(f.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", env, v, err)
			}
		}
	})
	return o, envErr
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv})), nil
}

// persisted returns the value of a small file in the data folder, creating it
// with gen() on first start.
func persisted(dir, name string, gen func() string) (string, error) {
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	v := gen()
	if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
		return "", err
	}
	return v, nil
}

func randomHex(n int) func() string {
	return func() string {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			panic(err)
		}
		return hex.EncodeToString(b)
	}
}

// run runs a node until ctx ends, then shuts it down in order. onReady, if
// set, gets the HTTP address once clients can connect.
func run(ctx context.Context, args []string, stderr io.Writer, onReady func(httpAddr string)) error {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if o.version {
		_, err := io.WriteString(os.Stdout, readVersion().String())
		return err
	}
	lg, err := newLogger(o.logLevel, stderr)
	if err != nil {
		return err
	}
	if err := o.loadSecrets(); err != nil {
		return err
	}
	if err := checkPeerSecurity(peerSecurity{
		raftBind: o.raftAddr, gossipBind: o.gossipAddr,
		peerTLS:   o.peerCertFile != "" || o.peerKeyFile != "" || o.peerCAFile != "",
		gossipKey: o.gossipKey != "", insecure: o.insecure,
	}); err != nil {
		return err
	}
	if err := os.MkdirAll(o.data, 0o750); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	if o.nodeID == "" {
		if o.nodeID, err = persisted(o.data, "node-id", randomHex(8)); err != nil {
			return fmt.Errorf("node id: %w", err)
		}
	}
	lg = lg.With("node", o.nodeID)

	o.fsm.Logger = lg.With("component", "fsm")
	machine, err := fsm.New(o.fsm)
	if err != nil {
		return err
	}

	seeds := splitList(o.join)
	httpAdv, err := advertised(o.httpAddr, o.advertise)
	if err != nil {
		return fmt.Errorf("-http: %w", err)
	}
	raftAdv := o.raftAdvertise
	if raftAdv == "" {
		if raftAdv, err = advertised(o.raftAddr, o.advertise); err != nil {
			return fmt.Errorf("-raft: %w", err)
		}
	}
	gossipAdv, err := advertised(o.gossipAddr, o.advertise)
	if err != nil {
		return fmt.Errorf("-gossip: %w", err)
	}
	gc := gossip.DefaultConfig()
	gc.BindAddr, gc.AdvertiseAddr = o.gossipAddr, gossipAdv
	gc.Meta = gossip.Meta{ID: o.nodeID, RaftAddr: raftAdv, HTTPAddr: httpAdv, Version: 1}
	gc.Label = "raftplane"
	gc.Logger = lg.With("component", "gossip")
	if o.gossipKey != "" {
		if gc.SecretKey, err = base64.StdEncoding.DecodeString(o.gossipKey); err != nil {
			return fmt.Errorf("-gossip-key: not base64: %w", err)
		}
	}
	agent, err := gossip.New(gc)
	if err != nil {
		return err
	}

	o.cluster.NodeID, o.cluster.DataDir, o.cluster.RaftBind, o.cluster.RaftAdvertise = o.nodeID, o.data, o.raftAddr, raftAdv
	o.cluster.Bootstrap = len(seeds) == 0
	o.cluster.Members = agent
	o.cluster.Logger = lg.With("component", "cluster")
	if o.cluster.ServerTLS, o.cluster.ClientTLS, err = peerTLS(o, lg); err != nil {
		return err
	}
	node, err := cluster.New(o.cluster, machine)
	if err != nil {
		return err
	}

	o.hub.NodeID, o.hub.APIKey = o.nodeID, o.apiKey
	o.hub.DisconnectTimeout = o.cluster.DisconnectTimeout
	if o.secret != "" {
		o.hub.TokenSecret = []byte(o.secret)
	} else {
		// The cluster secret from the log: every node has the same one, so
		// a client may negotiate on one node and connect on another.
		o.hub.TokenSecretFunc = machine.Secret
	}
	o.hub.JWTKey = []byte(o.jwtKey)
	if o.jwtPublicKeyFile != "" {
		pem, err := os.ReadFile(o.jwtPublicKeyFile)
		if err != nil {
			return fmt.Errorf("-jwt-public-key-file: %w", err)
		}
		if o.hub.JWTPublicKeys, err = hub.LoadJWTPublicKeys(pem); err != nil {
			return fmt.Errorf("-jwt-public-key-file %s: %w", o.jwtPublicKeyFile, err)
		}
	}
	o.hub.Logger = lg.With("component", "hub")
	o.hub.Status = func() any { return node.Status() }
	o.hub.Readiness = node // GET /readyz
	o.hub.NodeHTTPAddr = func(id string) (string, bool) {
		for _, m := range agent.Members() {
			if m.ID == id && m.State == gossip.StateAlive && m.HTTPAddr != "" {
				return m.HTTPAddr, true
			}
		}
		return "", false
	}
	o.hub.Cluster = func(ctx context.Context) any { return node.ClusterStatus(ctx) }
	httpTLS, forwardTLS, err := clientTLSConfigs(o.certFile, o.keyFile, o.clientCAFile, o.forwardCAFile, lg)
	if err != nil {
		return err
	}
	o.hub.ForwardTLS = forwardTLS
	srv, err := hub.New(o.hub, node, machine)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	if httpTLS != nil {
		ln = tls.NewListener(ln, httpTLS)
	}
	if err := node.Open(); err != nil {
		ln.Close()
		return err
	}
	// Say which cluster this data belongs to (and the real ports, when
	// listening on port 0) before anyone can see us.
	{
		id, hasData, raftReal, httpReal := node.LocalClusterID(), node.HadState(), node.RaftAddr(), ln.Addr().String()
		if err := agent.UpdateMeta(func(m *gossip.Meta) {
			m.ClusterID, m.HasData = id, hasData
			if strings.HasSuffix(m.RaftAddr, ":0") {
				m.RaftAddr = raftReal
			}
			if strings.HasSuffix(m.HTTPAddr, ":0") {
				m.HTTPAddr = httpReal
			}
		}); err != nil {
			ln.Close()
			node.Close(context.Background())
			return err
		}
	}
	if err := agent.Start(); err != nil {
		ln.Close()
		node.Close(context.Background())
		return err
	}
	if len(seeds) == 0 {
		// A restart without -join finds its cluster through the peers it
		// saw last time.
		seeds = loadPeers(o.data)
	}
	if len(seeds) > 0 {
		lg.Info("joining", "seeds", seeds)
		agent.Join(seeds)
		select {
		case <-agent.Joined():
			if err := node.CheckPeers(agent.Members()); err != nil {
				ln.Close()
				agent.Close()
				node.Close(context.Background())
				return err
			}
		case <-time.After(5 * time.Second):
			lg.Warn("no seed answered yet; still trying in the background", "seeds", seeds)
		case <-ctx.Done():
		}
	}
	peersDone := make(chan struct{})
	peersStop := make(chan struct{})
	go func() {
		defer close(peersDone)
		savePeersLoop(o.data, agent, peersStop, lg)
	}()
	if o.jwtKey == "" && o.jwtPublicKeyFile == "" && o.hub.JWKSURL == "" {
		lg.Warn("DEV MODE: no -jwt-key, -jwt-public-key-file or -jwks-url, clients are not authenticated and pick their user id with ?user=")
	}
	if o.apiKey == "" {
		lg.Warn("DEV MODE: no -api-key, anyone who reaches the HTTP port can use the REST API")
	}

	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := node.WaitReady(readyCtx); err != nil {
		lg.Warn("cluster not ready yet; serving anyway, clients get 503 until it is", "err", err)
	}
	cancel()
	srv.Start()
	_, stopDebug, err := serveDebug(o.debugAddr, lg)
	if err != nil {
		lg.Error("-debug-http", "err", err)
	}
	defer stopDebug()
	// IdleTimeout: an idle keep-alive connection (a client's negotiate,
	// say) holds net/http's buffers until it closes (Kestrel: 130 s).
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(lg.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	lg.Info("raftplane listening", "http", ln.Addr().String(), "raft", node.RaftAddr(), "data", o.data,
		"cluster_id", machine.Epoch())
	if onReady != nil {
		onReady(ln.Addr().String())
	}

	select {
	case <-ctx.Done():
		lg.Info("shutting down; a second signal forces exit")
	case err := <-serveErr:
		lg.Error("http server failed", "err", err)
	}

	sctx, scancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer scancel()
	var errs []error
	// Idle keep-alive connections would carry a client's next request back
	// here (a reconnect right after "Server is shutting down."); without
	// keep-alives they close and the balancer picks a live node.
	hs.SetKeepAlivesEnabled(false)
	if err := srv.Close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("hub: %w", err))
	}
	if err := node.Leave(sctx); err != nil {
		lg.Warn("leaving the raft configuration", "err", err)
	}
	close(peersStop)
	<-peersDone
	if err := agent.Leave(2 * time.Second); err != nil {
		lg.Warn("leaving gossip", "err", err)
	}
	if err := hs.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	if err := node.Close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("raft: %w", err))
	}
	if err := agent.Close(); err != nil {
		errs = append(errs, fmt.Errorf("gossip: %w", err))
	}
	lg.Info("stopped")
	return errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// advertised returns the address other nodes should use for a listen
// address: the -advertise host with the listen port, or the listen address
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
	if port == "0" {
		return listen, nil // resolved by the listener (tests)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return "", fmt.Errorf("bad port in %s", listen)
	}
	return listen, nil
}

const peersFile = "peers.json"

// loadPeers returns the gossip addresses saved by savePeersLoop.
func loadPeers(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, peersFile))
	if err != nil {
		return nil
	}
	var peers []string
	if json.Unmarshal(b, &peers) != nil {
		return nil
	}
	return peers
}

// savePeersLoop keeps <data>/peers.json up to date with the gossip addresses
// of the other live members, so a restart without -join can rejoin.
func savePeersLoop(dir string, agent *gossip.Agent, stop <-chan struct{}, lg *slog.Logger) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	var last string
	for {
		var peers []string
		self := agent.Local().ID
		for _, m := range agent.Members() {
			if m.ID != self && m.State == gossip.StateAlive && !m.Leaving {
				peers = append(peers, m.Addr)
			}
		}
		if len(peers) > 0 {
			b, _ := json.Marshal(peers)
			if string(b) != last {
				tmp := filepath.Join(dir, peersFile+".tmp")
				err := os.WriteFile(tmp, b, 0o600)
				if err == nil {
					err = os.Rename(tmp, filepath.Join(dir, peersFile))
				}
				if err != nil {
					// Not remembered as written: the next tick tries again.
					lg.Warn("saving the peers for the next start", "err", err)
				} else {
					last = string(b)
				}
			}
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}
