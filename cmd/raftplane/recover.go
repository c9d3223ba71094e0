package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/cluster"
)

const recoverUsage = `usage: raftplane recover -data DIR [-peers id=host:port,...] [-peers-file FILE] [-node-id ID] [-raft-advertise host:port] [-index-gap N] [-dry-run]

Disaster recovery, when a majority of the voters is lost for good: run it on
ONE surviving node, with that node stopped. It rewrites the Raft configuration
in DIR so that the node starts as the only voter (or with the voters of -peers
or -peers-file, which must include it), keeping its whole history and cluster
id. Then start the node without -join: it elects itself; add new nodes with
empty data folders and -join. Wipe the data of every other old node before it
comes back. See the README, "Disaster recovery runbook".

`

// runRecover is `raftplane recover`: hashicorp/raft's RecoverCluster on a
// stopped node's data, as Consul's peers.json outage recovery does.
func runRecover(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("raftplane recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, recoverUsage)
		fs.PrintDefaults()
	}
	data := fs.String("data", os.Getenv("RAFTPLANE_DATA"), "the stopped survivor's data folder (required)")
	nodeID := fs.String("node-id", os.Getenv("RAFTPLANE_NODE_ID"), "the survivor's node id (default: <data>/node-id)")
	peers := fs.String("peers", "", "the new voters, id=host:port (Raft addresses), comma-separated, this node included (default: this node alone)")
	peersFile := fs.String("peers-file", "", "the new voters as hashicorp/raft's peers.json: [{\"id\": ..., \"address\": ..., \"non_voter\": false}] (not <data>/peers.json, which lists gossip seeds)")
	raftAdv := fs.String("raft-advertise", "", "this node's Raft address in the new configuration, when it is alone (default: its address in the data's configuration)")
	gap := fs.Uint64("index-gap", cluster.DefaultIndexGap, "continue the log this many entries past the survivor's last, so that no cursor the lost voters handed out names a new message (0: right after it)")
	dryRun := fs.Bool("dry-run", false, "print the current and the new configuration, change nothing")
	logLevel := fs.String("log-level", "warn", "log level of the recovery's own lines: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("recover: unexpected argument %q (see -help)", fs.Arg(0))
	}
	if *data == "" {
		return errors.New("recover: -data is required (the stopped survivor's data folder)")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level %q: want debug, info, warn or error", *logLevel)
	}
	lg := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	id := *nodeID
	if id == "" {
		b, err := os.ReadFile(filepath.Join(*data, "node-id"))
		if err != nil {
			return fmt.Errorf("recover: no -node-id, and reading it from the data folder failed: %w", err)
		}
		id = strings.TrimSpace(string(b))
	}
	o := cluster.RecoverOptions{DataDir: *data, NodeID: id, RaftAdvertise: *raftAdv, IndexGap: *gap, Logger: lg}
	switch {
	case *peers != "" && *peersFile != "":
		return errors.New("recover: give -peers or -peers-file, not both")
	case *peers != "":
		servers, err := cluster.ParseServers(*peers)
		if err != nil {
			return fmt.Errorf("-peers: %w", err)
		}
		o.Servers = servers
	case *peersFile != "":
		cfg, err := raft.ReadConfigJSON(*peersFile)
		if err != nil {
			return fmt.Errorf("-peers-file %s: %w", *peersFile, err)
		}
		o.Servers = cfg.Servers
	}
	if *dryRun {
		return recoverDryRun(stdout, o)
	}
	res, err := cluster.Recover(o)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "recovered\t%s (node %s)\n", *data, id)
	fmt.Fprintf(tw, "old voters\t%s\n", cluster.FormatServers(res.Old.Servers))
	fmt.Fprintf(tw, "new voters\t%s\n", cluster.FormatServers(res.New.Servers))
	s := res.Stream
	fmt.Fprintf(tw, "cluster id\t%s\n", s.Epoch)
	fmt.Fprintf(tw, "history\t%d messages cached, last %s (log index %d)\n", s.Entries, cursorText(s.Epoch, s.Last), res.LastIndex)
	fmt.Fprintf(tw, "connections\t%d\n", res.Connections)
	fmt.Fprintf(tw, "log continues at\t%d\n", res.Index+1)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nStart this node now, without -join. Every other old node must have its data folder wiped before it comes back.")
	return nil
}

// recoverDryRun prints what recover would write.
func recoverDryRun(stdout io.Writer, o cluster.RecoverOptions) error {
	p, err := cluster.PlanRecovery(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "last log index: %d\ncurrent voters: %s\nwould write:    %s\n(dry run: nothing changed)\n",
		p.LastIndex, cluster.FormatServers(p.Old.Servers), cluster.FormatServers(p.New.Servers))
	return nil
}
