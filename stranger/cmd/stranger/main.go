// Command stranger runs the attacks of package stranger against one
// raftplane node from a separate process, as the security review did, and
// prints one JSON line per attack with what it observed.
//
//	stranger -raft 127.0.0.1:7000 -http http://127.0.0.1:5000 -gossip 127.0.0.1:7946 \
//	    -tls nocert -attacks stats,forward,append
//
// -tls picks what the stranger brings to the Raft port: none (plaintext),
// nocert (TLS without a client certificate) or cert (TLS with -cert-file and
// -key-file, e.g. a certificate from another CA). The stranger never
// verifies the node's certificate: it wants to talk, not to be safe.
//
// The exit status is 0 when every attack ran, whatever it observed, and 2
// for bad flags.
package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/raftplane/raftplane/stranger"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// TLS variants of -tls.
const (
	tlsNone   = "none"
	tlsNoCert = "nocert"
	tlsCert   = "cert"
)

type options struct {
	raft, httpURL, apiKey, gossip, gossipKey string
	gossipID, gossipRaft                     string
	attacks                                  string
	tlsMode, certFile, keyFile               string
	hub, method                              string
	timeout                                  time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("stranger", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.raft, "raft", "", "the node's Raft address (host:port), target of the Raft and internal RPC attacks")
	fs.StringVar(&o.httpURL, "http", "", "the node's HTTP base URL (http://host:port): the append and install-snapshot attacks read its term, last index and id from GET /api/v1/status")
	fs.StringVar(&o.apiKey, "api-key", "", "API key for GET /api/v1/status, if the node has one")
	fs.StringVar(&o.gossip, "gossip", "", "the node's gossip address (host:port), target of gossip-join")
	fs.StringVar(&o.gossipKey, "gossip-key", "", "base64 gossip key the stranger uses (default: none)")
	fs.StringVar(&o.gossipID, "gossip-id", "stranger", "member name (and Raft server id) gossip-join claims")
	fs.StringVar(&o.gossipRaft, "gossip-raft", "127.0.0.1:1", "Raft address gossip-join advertises (where a leader would send the log)")
	fs.StringVar(&o.attacks, "attacks", "", "comma-separated attacks (default: every Raft attack, then gossip-join when -gossip is set): "+
		strings.Join(append(slices.Clone(stranger.RaftAttacks), stranger.AttackGossipJoin), ", "))
	fs.StringVar(&o.tlsMode, "tls", tlsNone, "what the stranger brings to the Raft port: none (plaintext), nocert (TLS, no client certificate) or cert (TLS with -cert-file and -key-file)")
	fs.StringVar(&o.certFile, "cert-file", "", "PEM client certificate for -tls cert")
	fs.StringVar(&o.keyFile, "key-file", "", "PEM key of -cert-file")
	fs.StringVar(&o.hub, "hub", "chat", "hub of the forwarded broadcast")
	fs.StringVar(&o.method, "method", "stranger", "client method the forwarded broadcast calls")
	fs.DurationVar(&o.timeout, "timeout", stranger.DefaultTimeout, "how long each attack may take")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("-timeout (%s) must be positive", o.timeout)
	}
	return o, nil
}

// tlsConfig builds the stranger's client TLS for o.tlsMode.
func tlsConfig(o *options) (*tls.Config, error) {
	switch o.tlsMode {
	case tlsNone:
		if o.certFile != "" || o.keyFile != "" {
			return nil, errors.New("-cert-file and -key-file need -tls cert")
		}
		return nil, nil
	case tlsNoCert:
		if o.certFile != "" || o.keyFile != "" {
			return nil, errors.New("-cert-file and -key-file need -tls cert")
		}
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil //nolint:gosec // a stranger trusts anything
	case tlsCert:
		if o.certFile == "" || o.keyFile == "" {
			return nil, errors.New("-tls cert needs -cert-file and -key-file")
		}
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("-cert-file/-key-file: %w", err)
		}
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil //nolint:gosec // a stranger trusts anything
	}
	return nil, fmt.Errorf("-tls %q: want none, nocert or cert", o.tlsMode)
}

func attackList(o *options) ([]string, error) {
	known := append(slices.Clone(stranger.RaftAttacks), stranger.AttackGossipJoin)
	var list []string
	if o.attacks == "" {
		if o.raft != "" {
			list = slices.Clone(stranger.RaftAttacks)
		}
		if o.gossip != "" {
			list = append(list, stranger.AttackGossipJoin)
		}
	} else {
		for _, a := range strings.Split(o.attacks, ",") {
			if a = strings.TrimSpace(a); a != "" {
				list = append(list, a)
			}
		}
	}
	if len(list) == 0 {
		return nil, errors.New("nothing to attack: set -raft and/or -gossip")
	}
	for _, a := range list {
		switch {
		case !slices.Contains(known, a):
			return nil, fmt.Errorf("-attacks: unknown attack %q (known: %s)", a, strings.Join(known, ", "))
		case a == stranger.AttackGossipJoin && o.gossip == "":
			return nil, errors.New("gossip-join needs -gossip")
		case a != stranger.AttackGossipJoin && o.raft == "":
			return nil, fmt.Errorf("%s needs -raft", a)
		case (a == stranger.AttackAppend || a == stranger.AttackInstallSnapshot) && o.httpURL == "":
			return nil, fmt.Errorf("%s needs -http (it reads the node's term and last index)", a)
		}
	}
	return list, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "stranger:", err)
		return 2
	}
	tlsConf, err := tlsConfig(o)
	if err != nil {
		fmt.Fprintln(stderr, "stranger:", err)
		return 2
	}
	list, err := attackList(o)
	if err != nil {
		fmt.Fprintln(stderr, "stranger:", err)
		return 2
	}
	var key []byte
	if o.gossipKey != "" {
		if key, err = base64.StdEncoding.DecodeString(o.gossipKey); err != nil {
			fmt.Fprintln(stderr, "stranger: -gossip-key: not base64:", err)
			return 2
		}
	}
	enc := json.NewEncoder(stdout)
	for _, a := range list {
		if ctx.Err() != nil {
			return 1
		}
		actx, cancel := context.WithTimeout(ctx, o.timeout)
		res := attack(actx, o, a, tlsConf, key)
		cancel()
		if a != stranger.AttackGossipJoin {
			res.TLS = o.tlsMode
		}
		if err := enc.Encode(res); err != nil {
			fmt.Fprintln(stderr, "stranger:", err)
			return 1
		}
	}
	return 0
}

// attack runs one attack. The ones that forge around the node's state read
// it first from the public HTTP port.
func attack(ctx context.Context, o *options, name string, tlsConf *tls.Config, key []byte) stranger.Result {
	switch name {
	case stranger.AttackStats:
		return stranger.Stats(ctx, o.raft, tlsConf)
	case stranger.AttackForward:
		return stranger.Forward(ctx, o.raft, tlsConf, o.hub, o.method)
	case stranger.AttackForwardPoison:
		return stranger.ForwardPoison(ctx, o.raft, tlsConf)
	case stranger.AttackTimeoutNow:
		return stranger.TimeoutNow(ctx, o.raft, tlsConf)
	case stranger.AttackMaxTermAppend:
		return stranger.MaxTermAppend(ctx, o.raft, tlsConf)
	case stranger.AttackMaxTermVote:
		return stranger.MaxTermVote(ctx, o.raft, tlsConf)
	case stranger.AttackAppend, stranger.AttackInstallSnapshot:
		full, err := stranger.FetchStatus(ctx, o.httpURL, o.apiKey)
		st := full.Node
		if err != nil {
			return stranger.Result{Attack: name, Target: o.raft, Err: "learning the term: " + err.Error()}
		}
		if name == stranger.AttackAppend {
			return stranger.Append(ctx, o.raft, tlsConf, st)
		}
		return stranger.InstallSnapshot(ctx, o.raft, tlsConf, st)
	case stranger.AttackGossipJoin:
		return stranger.GossipJoin(ctx, o.gossip, key, o.gossipID, o.gossipRaft)
	}
	return stranger.Result{Attack: name, Err: "unknown attack"}
}
