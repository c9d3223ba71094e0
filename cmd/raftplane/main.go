// Command raftplane runs a raftplane node: a SignalR-compatible hub whose
// every message goes through a Raft log. With no flags it is a complete
// one-node cluster with its data in ./raftplane-data.
//
// It is the package github.com/raftplane/raftplane behind flags: the flags,
// the RAFTPLANE_* environment variables and the -config file fill a
// raftplane.Config (flags.go, configfile.go), then the node is built,
// started, and closed at the first SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/raftplane/raftplane"
)

// command is a subcommand: raftplane NAME args...
type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// subcommands are the first arguments that are not a node's flags; each
// is listed in usage (flags.go) too.
var subcommands = map[string]command{
	"certs":    noContext(runCerts),   // certs.go
	"config":   noContext(runConfig),  // configfile.go
	"recover":  noContext(runRecover), // recover.go
	"snapshot": runSnapshot,           // snapshot.go
	"status":   runStatus,             // status.go
	"version":  noContext(runVersion), // version.go
}

func noContext(f func(args []string, stdout, stderr io.Writer) error) command {
	return func(_ context.Context, args []string, stdout, stderr io.Writer) error { return f(args, stdout, stderr) }
}

func main() {
	// The first SIGINT/SIGTERM starts a graceful shutdown; a second one
	// exits at once.
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "raftplane: shutting down; a second signal exits at once")
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "raftplane: second signal, exiting now")
		os.Exit(2)
	}()
	var err error
	if cmd, ok := subcommands[firstArg(os.Args)]; ok {
		err = cmd(ctx, os.Args[2:], os.Stdout, os.Stderr)
	} else {
		err = run(ctx, os.Args[1:], os.Stderr, nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftplane:", err)
		os.Exit(1)
	}
}

func firstArg(args []string) string {
	if len(args) < 2 {
		return ""
	}
	return args[1]
}

// run runs a node until ctx ends (or the node fails), then shuts it down
// in order. onReady, if set, gets the HTTP address once clients can
// connect.
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
	if err := o.cfg.Validate(); err != nil {
		return o.explain(err)
	}
	o.cfg.LogOutput = stderr
	n, err := raftplane.New(o.cfg)
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while starting; Start stopped what it had started
		}
		return err
	}
	if onReady != nil {
		onReady(n.HTTPAddr())
	}
	select {
	case <-ctx.Done():
	case <-n.Done(): // the HTTP server failed
	}
	// Close is bounded by -shutdown-timeout.
	return errors.Join(n.Err(), n.Close(context.Background()))
}
