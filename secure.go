package raftplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// Secure by default (CockroachDB's rule): the ports that carry the log and
// gossip let whoever reaches them read every message and the cluster secret,
// and write into the log. A node that would listen for peers beyond this
// machine must therefore authenticate them (peer TLS) and encrypt gossip
// (a gossip key), unless the operator says the network is trusted with
// -insecure. The one-node default, on loopback, needs neither.

// peerSecurity is what checkPeerSecurity looks at.
type peerSecurity struct {
	raftBind, gossipBind string
	peerTLS              bool // -peer-cert-file, -peer-key-file and -peer-ca-file set
	gossipKey            bool
	insecure             bool
}

// checkPeerSecurity refuses a node that exposes its peer ports without peer
// TLS and a gossip key, saying how to fix it.
func checkPeerSecurity(p peerSecurity) error {
	if p.peerTLS && !p.gossipKey {
		// Gossip carries every member's Raft address and cluster id: with
		// it in clear, a stranger can join the member list and learn them,
		// even though it cannot talk Raft.
		return errors.New("-peer-cert-file is set but gossip is not encrypted: set -gossip-key (or -gossip-key-file) too, the same on every node (make one with: openssl rand -base64 32)")
	}
	if p.insecure || (p.peerTLS && p.gossipKey) {
		return nil
	}
	var exposed []string
	for _, b := range []struct{ flag, addr string }{{"-raft", p.raftBind}, {"-gossip", p.gossipBind}} {
		if !loopbackOnly(b.addr) {
			exposed = append(exposed, fmt.Sprintf("%s %s", b.flag, b.addr))
		}
	}
	if len(exposed) == 0 {
		return nil
	}
	var missing []string
	if !p.peerTLS {
		missing = append(missing, "peer TLS (-peer-cert-file, -peer-key-file, -peer-ca-file; make them with `raftplane certs ca` and `raftplane certs node`)")
	}
	if !p.gossipKey {
		missing = append(missing, "a gossip key (-gossip-key-file or -gossip-key; make one with: openssl rand -base64 32)")
	}
	return fmt.Errorf("refusing to start: %s listens beyond this machine without %s. Anyone who reaches those ports could read every message and write into the log. Set them up as the README's production section says, or, only on a network you trust entirely, pass -insecure",
		strings.Join(exposed, " and "), strings.Join(missing, " and "))
}

// loopbackOnly reports whether a listen address is reachable from this
// machine only: a loopback IP, or "localhost". An empty host or an
// unspecified IP listens on every interface; any other name may resolve to
// anything, so it counts as exposed.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readSecretFile returns the content of a file holding a secret, without
// surrounding white space (editors and `echo` add a newline). Secrets on the
// command line are visible to every user of the machine in ps; in a file
// with mode 0600 they are not.
func readSecretFile(flagName, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", flagName, path)
	}
	return s, nil
}

// SecretFromFile fills *value from the file named by path, as the
// -*-key-file options do, when path is set: the file's content without
// surrounding white space; an error naming flagName when the file is
// missing or empty, or when *value is set too (one would silently win).
func SecretFromFile(value *string, path, flagName string) error {
	if path == "" {
		return nil
	}
	if *value != "" {
		base := strings.TrimSuffix(flagName, "-file")
		return fmt.Errorf("%s and %s are both set: use one", base, flagName)
	}
	s, err := readSecretFile(flagName, path)
	if err != nil {
		return err
	}
	*value = s
	return nil
}
