//go:build unix

package stranger_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/certs"
	"github.com/raftplane/raftplane/stranger"
)

const (
	testHub    = "chat"
	testMethod = "strangerSays"
)

// quietBound is how long the tests watch for a change after the stranger
// process has exited. Any effect an attack can have shows well within it:
// a node changes its term, leader or log while handling the RPC, before it
// answers (and the stranger waited for every answer or for the connection
// to fail); a forwarded command commits within a commit timeout (5ms) plus
// a round trip and reaches clients right after; the other nodes learn of a
// new term or leader within one heartbeat timeout (500ms by default).
// Four heartbeat timeouts leave room for a loaded machine.
const quietBound = 2 * time.Second

// TestControlPlaintext shows that the attacks are real: against a cluster
// started as before peer TLS existed, the stranger reads the node's stats,
// broadcasts to clients, moves leadership, joins gossip and raises the
// term to MaxUint64 (last, since it leaves the cluster leaderless). Without
// this, "the stranger got nothing" under TLS would prove nothing.
func TestControlPlaintext(t *testing.T) {
	bin, strangerBin := binaries(t)
	nodes := startCluster(t, bin)
	watchers := make([]*watcher, len(nodes))
	for i, n := range nodes {
		watchers[i] = watch(t, n, testHub, fmt.Sprintf("watcher%d", i+1))
	}
	vs := waitStable(t, nodes)
	leader, followers := leaderOf(t, nodes, vs)
	term := vs[0].Term

	t.Run("stats answers", func(t *testing.T) {
		r := one(t, runStranger(t, strangerBin, "-raft", leader.raft, "-attacks", stranger.AttackStats))
		var resp stranger.RPCResponse
		decode(t, r, &resp)
		if !r.Answered || resp.Type != "stats-ok" || resp.LastLogIndex == 0 || r.AppBytes == 0 {
			t.Fatalf("stats did not answer the stranger: %+v", r)
		}
	})

	t.Run("forwarded broadcast reaches every client", func(t *testing.T) {
		r := one(t, runStranger(t, strangerBin, "-raft", leader.raft, "-attacks", stranger.AttackForward,
			"-hub", testHub, "-method", testMethod))
		var resp stranger.RPCResponse
		decode(t, r, &resp)
		if !r.Answered || resp.Type != "forward-ok" || len(resp.Indexes) != 1 {
			t.Fatalf("the leader did not commit the forwarded broadcast: %+v", r)
		}
		for _, w := range watchers {
			m, err := w.waitMessage(testMethod, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Arguments) != 1 || string(m.Arguments[0]) != `"x"` {
				t.Errorf("%s received %s(%s), want %s(\"x\")", w.name, m.Target, m.Arguments, testMethod)
			}
		}
	})

	t.Run("timeout-now moves leadership", func(t *testing.T) {
		target := followers[0]
		r := one(t, runStranger(t, strangerBin, "-raft", target.raft, "-attacks", stranger.AttackTimeoutNow))
		if !r.Answered {
			t.Fatalf("timeout-now was not answered: %+v", r)
		}
		poll(t, target.name+" becomes leader", stableTimeout, nodes, func() error {
			st, err := target.status()
			if err != nil {
				return err
			}
			if st.Node.State != "Leader" || st.Node.Term <= term {
				return fmt.Errorf("%s: %v", target.name, viewOf(st))
			}
			term = st.Node.Term
			return nil
		})
	})

	t.Run("gossip join without a key is accepted", func(t *testing.T) {
		r := one(t, runStranger(t, strangerBin, "-gossip", nodes[0].gossip, "-gossip-id", "stranger-gossip"))
		var resp stranger.GossipResponse
		decode(t, r, &resp)
		if !r.Answered || !slices.Contains(resp.Members, nodes[1].name) {
			t.Fatalf("gossip did not let the stranger in: %+v", r)
		}
		poll(t, "the stranger listed as a member", stableTimeout, nodes, func() error {
			ms, err := nodes[0].members()
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.ID == "stranger-gossip" {
					return nil
				}
			}
			return fmt.Errorf("not in %+v", ms)
		})
	})

	t.Run("max-term heartbeat raises the term", func(t *testing.T) {
		// Against the node that is not leader now.
		st, err := nodes[0].status()
		if err != nil {
			t.Fatal(err)
		}
		var target *node
		for _, n := range nodes {
			if n.name != st.Node.LeaderID {
				target = n
				break
			}
		}
		r := one(t, runStranger(t, strangerBin, "-raft", target.raft, "-attacks", stranger.AttackMaxTermAppend))
		if !r.Answered {
			t.Fatalf("the heartbeat was not answered: %+v", r)
		}
		poll(t, target.name+" at term MaxUint64", stableTimeout, nodes, func() error {
			st, err := target.status()
			if err != nil {
				return err
			}
			if st.Node.Term != math.MaxUint64 {
				return fmt.Errorf("term %d", st.Node.Term)
			}
			return nil
		})
	})
}

// TestStrangerGetsNothingWithPeerTLS runs every attack, from a stranger
// without a certificate, with a certificate from another CA and in
// plaintext, against every node of a cluster with peer mutual TLS and a
// gossip key. The stranger must receive no byte of application data and no
// answer, and no node may change: the same term, leader, log position and
// digest, no client message, no new member.
func TestStrangerGetsNothingWithPeerTLS(t *testing.T) {
	bin, strangerBin := binaries(t)
	if missing := helpMentions(t, bin, "peer-cert-file", "peer-key-file", "peer-ca-file", "gossip-key"); len(missing) > 0 {
		t.Skipf("raftplane has no %s flag yet: peer TLS has not landed", strings.Join(missing, ", "))
	}
	dir := t.TempDir()
	caCert, caKey, err := certs.NewCA("raftplane test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := writeFile(t, dir, "ca.pem", caCert)
	var peerFlags [][]string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("node%d", i)
		cert, key, err := certs.NewNodeCert(caCert, caKey, name, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		peerFlags = append(peerFlags, []string{
			"-peer-cert-file", writeFile(t, dir, name+".pem", cert),
			"-peer-key-file", writeFile(t, dir, name+"-key.pem", key),
			"-peer-ca-file", caFile,
		})
	}
	// The stranger's certificate is a good one, for the right name and IP,
	// from another CA.
	otherCA, otherKey, err := certs.NewCA("raftplane test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sCert, sKey, err := certs.NewNodeCert(otherCA, otherKey, "node1", []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sCertFile, sKeyFile := writeFile(t, dir, "stranger.pem", sCert), writeFile(t, dir, "stranger-key.pem", sKey)
	gossipKey := make([]byte, 32)
	if _, err := rand.Read(gossipKey); err != nil {
		t.Fatal(err)
	}

	nodes := []*node{startNode(t, bin, "node1", append(peerFlags[0], "-gossip-key", base64.StdEncoding.EncodeToString(gossipKey))...)}
	nodes[0].waitReady(t)
	for i := 1; i < 3; i++ {
		args := append(slices.Clone(peerFlags[i]), "-gossip-key", base64.StdEncoding.EncodeToString(gossipKey), "-join", nodes[0].gossip)
		nodes = append(nodes, startNode(t, bin, fmt.Sprintf("node%d", i+1), args...))
	}
	for _, n := range nodes[1:] {
		n.waitReady(t)
	}
	watchers := make([]*watcher, len(nodes))
	for i, n := range nodes {
		watchers[i] = watch(t, n, testHub, fmt.Sprintf("watcher%d", i+1))
	}
	before := waitStable(t, nodes)
	t.Logf("before: %v", before)

	variants := []struct {
		name string
		args []string
	}{
		{"no certificate", []string{"-tls", "nocert"}},
		{"certificate from another CA", []string{"-tls", "cert", "-cert-file", sCertFile, "-key-file", sKeyFile}},
		{"plaintext", []string{"-tls", "none"}},
	}
	for _, v := range variants {
		for _, n := range nodes {
			args := append([]string{"-raft", n.raft, "-http", n.url, "-hub", testHub, "-method", testMethod}, v.args...)
			results := runStranger(t, strangerBin, args...)
			if len(results) != len(stranger.RaftAttacks) {
				t.Fatalf("%s against %s: %d results, want one per attack (%d)", v.name, n.name, len(results), len(stranger.RaftAttacks))
			}
			for _, r := range results {
				if !r.Connected || r.Err == "" || r.Answered || r.AppBytes != 0 {
					t.Errorf("%s against %s: %s: want a connection that fails with no byte of application data, got %+v",
						v.name, n.name, r.Attack, r)
				}
			}
		}
	}
	// Gossip: without the key, and with a wrong one.
	wrongKey := make([]byte, 32)
	if _, err := rand.Read(wrongKey); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", base64.StdEncoding.EncodeToString(wrongKey)} {
		for _, n := range nodes {
			r := one(t, runStranger(t, strangerBin, "-gossip", n.gossip, "-gossip-id", "stranger-gossip", "-gossip-key", key))
			if r.Answered || r.Connected || r.Err == "" {
				t.Errorf("gossip join of %s (key set: %v) was let in: %+v", n.name, key != "", r)
			}
		}
	}

	// Nothing changed. Watch for quietBound: a change would show within it
	// (see quietBound), and fail at once.
	end := time.Now().Add(quietBound)
	for {
		after, err := views(nodes)
		if err != nil {
			t.Fatal(err)
		}
		for i := range nodes {
			if after[i] != before[i] {
				t.Fatalf("%s changed:\nbefore %v\nafter  %v", nodes[i].name, before[i], after[i])
			}
		}
		for _, w := range watchers {
			if got := w.received(); len(got) > 0 {
				t.Fatalf("%s received %d message(s), the first %s(%s)", w.name, len(got), got[0].Target, got[0].Arguments)
			}
		}
		for _, n := range nodes {
			ms, err := n.members()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if m.ID == "stranger-gossip" || m.ID == stranger.StrangerID || !slices.ContainsFunc(nodes, func(x *node) bool { return x.name == m.ID }) {
					t.Fatalf("%s lists a member that is not a node: %+v", n.name, m)
				}
			}
			if len(ms) != len(nodes) {
				t.Fatalf("%s lists %d members: %+v", n.name, len(ms), ms)
			}
		}
		if time.Now().After(end) {
			break
		}
		time.Sleep(pollInterval)
	}
	t.Logf("after %v: no change on any node, no client message, no new member", quietBound)
}

// TestRefusesExposedPortsWithoutTLS: a node told to listen for peers beyond
// loopback without peer TLS and a gossip key, and without -insecure,
// refuses to start and says how to fix it.
func TestRefusesExposedPortsWithoutTLS(t *testing.T) {
	bin, _ := binaries(t)
	if missing := helpMentions(t, bin, "insecure"); len(missing) > 0 {
		t.Skip("raftplane has no -insecure flag yet: the start-up refusal has not landed")
	}
	out, err := runToExit(t, bin, 30*time.Second, "-data", t.TempDir(), "-http", freeAddr(t),
		"-raft", "0.0.0.0:0", "-advertise", "127.0.0.2", "-gossip", freeAddr(t))
	t.Logf("raftplane: %s", out)
	if err == nil {
		t.Fatal("a node with its Raft port on 0.0.0.0 and no peer TLS started (exit 0)")
	}
	for _, want := range []string{"-raft 0.0.0.0:0", "-peer-cert-file", "-insecure"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not mention %q", want)
		}
	}
}

// one returns the only result of a stranger run.
func one(t *testing.T, rs []stranger.Result) stranger.Result {
	t.Helper()
	if len(rs) != 1 {
		t.Fatalf("%d results, want 1: %+v", len(rs), rs)
	}
	return rs[0]
}

// decode turns a result's response (a JSON object after the round trip
// through the stranger's output) into out.
func decode(t *testing.T, r stranger.Result, out any) {
	t.Helper()
	if r.Response == nil {
		return
	}
	b, err := json.Marshal(r.Response)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("response %s: %v", b, err)
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
