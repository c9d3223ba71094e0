// Command raftplane runs a raftplane node: a SignalR-compatible hub whose
// every message goes through a Raft log. With no flags it is a complete
// one-node cluster with its data in ./raftplane-data.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"strings"
	"syscall"
	"time"

	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/fsm"
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
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "raftplane:", err)
		os.Exit(1)
	}
}

// options holds every flag; each has a RAFTPLANE_* environment variable.
type options struct {
	data, httpAddr, raftAddr, raftAdvertise, nodeID, logLevel string
	jwtKey, apiKey, secret                                    string
	shutdownTimeout                                           time.Duration
	hub                                                       hub.Config
	fsm                                                       fsm.Config
	cluster                                                   cluster.Config
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{hub: hub.DefaultConfig(), fsm: fsm.DefaultConfig(), cluster: cluster.DefaultConfig()}
	fs := flag.NewFlagSet("raftplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: raftplane [flags]\n\nEvery flag can also be set with an environment variable: -http is RAFTPLANE_HTTP,\n-max-message-size is RAFTPLANE_MAX_MESSAGE_SIZE, and so on. A flag on the command line wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.data, "data", "raftplane-data", "data folder: Raft log, snapshots, node id, token secret")
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:5000", "listen address for SignalR clients and the REST API")
	fs.StringVar(&o.raftAddr, "raft", "127.0.0.1:7000", "listen address for Raft traffic between nodes")
	fs.StringVar(&o.raftAdvertise, "raft-advertise", "", "Raft address other nodes dial (default: -raft)")
	fs.StringVar(&o.nodeID, "node-id", "", "node id (default: generated once and kept in <data>/node-id)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.jwtKey, "jwt-key", "", "HS256 key; when set, clients need a JWT whose sub is their user id")
	fs.StringVar(&o.apiKey, "api-key", "", "when set, the REST API needs Authorization: Bearer <api-key>")
	fs.StringVar(&o.secret, "secret", "", "secret that signs connection tokens; all nodes of a cluster need the same (default: generated once and kept in <data>/secret)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown may take")

	h := &o.hub
	fs.DurationVar(&h.KeepAliveInterval, "keepalive", h.KeepAliveInterval, "send a Ping when nothing was sent for this long")
	fs.DurationVar(&h.ClientTimeout, "client-timeout", h.ClientTimeout, "close a connection that sent nothing for this long")
	fs.DurationVar(&h.HandshakeTimeout, "handshake-timeout", h.HandshakeTimeout, "how long a client may take to send its handshake")
	fs.IntVar(&h.MaxMessageSize, "max-message-size", h.MaxMessageSize, "largest hub message a client may send, in bytes")
	fs.IntVar(&h.MaxQueuedMessages, "max-queued-messages", h.MaxQueuedMessages, "per-connection send queue; a client further behind is closed with allowReconnect")
	fs.DurationVar(&h.SendTimeout, "send-timeout", h.SendTimeout, "longest a single write to a client may take")
	fs.DurationVar(&h.PublishTimeout, "publish-timeout", h.PublishTimeout, "longest a hub method or REST call waits for its commit")
	fs.DurationVar(&h.NegotiateTTL, "negotiate-ttl", h.NegotiateTTL, "how long a negotiated connection token waits for its transport")
	fs.Int64Var(&h.MaxBodySize, "max-body-size", h.MaxBodySize, "largest REST request body, in bytes")

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
	fs.DurationVar(&c.HoldTimeout, "hold-timeout", c.HoldTimeout, "how long a command waits for a leader before failing")
	fs.BoolVar(&c.NoSync, "no-sync", false, "do not fsync the Raft log (unsafe; benchmarks only)")

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
	lg, err := newLogger(o.logLevel, stderr)
	if err != nil {
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
	secret := o.secret
	if secret == "" {
		if secret, err = persisted(o.data, "secret", randomHex(32)); err != nil {
			return fmt.Errorf("token secret: %w", err)
		}
	}
	lg = lg.With("node", o.nodeID)

	o.fsm.Logger = lg.With("component", "fsm")
	machine, err := fsm.New(o.fsm)
	if err != nil {
		return err
	}
	o.cluster.NodeID, o.cluster.DataDir, o.cluster.RaftBind, o.cluster.RaftAdvertise = o.nodeID, o.data, o.raftAddr, o.raftAdvertise
	o.cluster.Logger = lg.With("component", "cluster")
	node, err := cluster.New(o.cluster, machine)
	if err != nil {
		return err
	}

	o.hub.NodeID, o.hub.TokenSecret, o.hub.APIKey = o.nodeID, []byte(secret), o.apiKey
	o.hub.JWTKey = []byte(o.jwtKey)
	o.hub.Logger = lg.With("component", "hub")
	o.hub.Status = func() any { return node.Status() }
	srv, err := hub.New(o.hub, node, machine)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	if err := node.Open(); err != nil {
		ln.Close()
		return err
	}
	if o.jwtKey == "" {
		lg.Warn("DEV MODE: no -jwt-key, clients are not authenticated and pick their user id with ?user=")
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
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(lg.Handler(), slog.LevelWarn)}
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
	if err := srv.Close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("hub: %w", err))
	}
	if err := hs.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	if err := node.Close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("raft: %w", err))
	}
	lg.Info("stopped")
	return errors.Join(errs...)
}
