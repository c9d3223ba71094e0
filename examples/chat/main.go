// Command chat is a chat server built on raftplane: a Go program that embeds
// a whole raftplane node and gives its "chat" hub methods of its own
// (chat.go), plus a page that uses the official SignalR client in the
// browser (static/index.html).
//
// It takes every raftplane flag (-http, -data, -join, ...: see raftplane
// -help) and a few of its own:
//
//	go run ./examples/chat -data chat1 -http 127.0.0.1:5001 -raft 127.0.0.1:7001 -gossip 127.0.0.1:7946
//	go run ./examples/chat -data chat2 -http 127.0.0.1:5002 -raft 127.0.0.1:7002 -gossip 127.0.0.1:7947 -join 127.0.0.1:7946
//
// then open http://127.0.0.1:5001/?user=alice and http://127.0.0.1:5002/?user=bob.
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/raftplane/raftplane"
)

//go:embed static
var static embed.FS

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg := raftplane.DefaultConfig()
	cfg.DataDir = "chat-data"
	// Clients listen; the application decides: no built-in method (no
	// Broadcast to everyone, no joining any group) is open to them.
	cfg.Hub.ClientMethods = []string{}
	fset := flag.NewFlagSet("chat", flag.ContinueOnError)
	for _, o := range raftplane.Options() {
		fset.Var(o.Value(&cfg), o.Name, o.Usage)
	}
	maxText := fset.Int("chat-max-text", 500, "longest message, in characters")
	burst := fset.Int("chat-burst", 5, "messages a user may send at once (per node)")
	every := fset.Duration("chat-every", 2*time.Second, "one more message allowed per this interval")
	signalrJS := fset.String("signalr-js", defaultSignalRJS(), "the official client's browser bundle (signalr.js) to serve to the page; empty: the page loads it from a CDN")
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *maxText < 1 || *burst < 1 || *every <= 0 {
		return errors.New("-chat-max-text and -chat-burst must be at least 1, -chat-every positive")
	}
	// Serve the page beside raftplane's API on one server: the node's
	// handler keeps its paths (/hubs/, /api/v1/, /healthz, /readyz).
	listen := cfg.HTTPAddr
	cfg.HTTPAddr = ""
	if cfg.HTTPAdvertise == "" {
		cfg.HTTPAdvertise = listen // where other nodes forward SSE and long polls
	}
	node, err := raftplane.New(cfg)
	if err != nil {
		return err
	}
	app := newChat(*maxText, *burst, *every)
	if err := node.Handle("chat", app.handlers()); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	mux := http.NewServeMux()
	page, _ := fs.Sub(static, "static")
	mux.Handle("GET /{$}", http.FileServerFS(page))
	mux.HandleFunc("GET /signalr.js", func(w http.ResponseWriter, r *http.Request) {
		if *signalrJS == "" {
			http.NotFound(w, r) // the page falls back to the CDN
			return
		}
		http.ServeFile(w, r, *signalrJS)
	})
	mux.Handle("/", node.Handler())
	// Clients come once the node has joined and the cluster id is applied:
	// before, every request would be refused as not ready.
	if err := node.Start(ctx); err != nil {
		return err
	}
	hs := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- hs.ListenAndServe() }()
	fmt.Fprintf(os.Stderr, "chat: listening on http://%s (open /?user=<name>)\n", listen)
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	hs.SetKeepAlivesEnabled(false)
	cerr := node.Close(sctx) // the hub says goodbye to its clients first
	_ = hs.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, cerr)
}

// defaultSignalRJS finds the browser bundle of an `npm install
// @microsoft/signalr` in the working directory or in this repository's
// interop folder.
func defaultSignalRJS() string {
	for _, dir := range []string{".", "interop", filepath.Join("..", "..", "interop")} {
		p := filepath.Join(dir, "node_modules", "@microsoft", "signalr", "dist", "browser", "signalr.min.js")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}
