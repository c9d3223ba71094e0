package raftplane_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/raftplane/raftplane"
)

// A one-node cluster embedded in a program: it serves SignalR clients and
// the REST API on its own port until the program stops it.
func Example() {
	dir, err := os.MkdirTemp("", "raftplane-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	cfg := raftplane.DefaultConfig()
	cfg.DataDir = dir
	// Port 0: any free port (a real program keeps the defaults, or says
	// which it wants).
	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)

	node, err := raftplane.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer node.Close(context.Background())

	// Clients connect to http://<node.HTTPAddr()>/hubs/<hub>; the
	// application publishes with POST /api/v1/hubs/<hub>.
	fmt.Println(node.Status().State)
	// Output: Leader
}

// A node whose HTTP API the program serves on its own server, beside its
// own routes. Other nodes forward SSE and long-polling requests to
// HTTPAdvertise.
func ExampleNode_Handler() {
	cfg := raftplane.DefaultConfig()
	cfg.DataDir = "/var/lib/myapp/raftplane"
	cfg.HTTPAddr = "" // the program serves Handler itself
	cfg.HTTPAdvertise = "10.0.0.5:8080"
	cfg.Advertise = "10.0.0.5"
	cfg.RaftAddr, cfg.GossipAddr = "0.0.0.0:7000", "0.0.0.0:7946"
	cfg.Join = []string{"10.0.0.6:7946", "10.0.0.7:7946"}
	cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerCAFile = "node.pem", "node-key.pem", "ca.pem"
	cfg.GossipKeyFile = "gossip.key"
	cfg.APIKeyFile, cfg.JWTKeyFile = "api.key", "jwt.key"

	node, err := raftplane.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", node.Handler()) // /hubs/..., /api/v1/..., /healthz, /readyz
	mux.HandleFunc("/app/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "my application") })
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := node.Start(ctx); err != nil {
		log.Fatal(err)
	}
	select {
	case <-ctx.Done(): // the signal
	case <-node.Done(): // the node stopped on its own
	}
	// The node first, so that its clients are told to reconnect elsewhere
	// while the server still carries the message.
	if err := node.Close(context.Background()); err != nil {
		log.Print(err)
	}
	_ = srv.Shutdown(context.Background())
}
