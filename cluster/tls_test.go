package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/certs"
	"github.com/raftplane/raftplane/fsm"
)

// testPKI is a cluster CA in a directory, and the certificate files made
// with it, named as `raftplane certs` names them.
type testPKI struct {
	t             *testing.T
	dir           string
	caCert, caKey []byte
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	caCert, caKey, err := certs.NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{t: t, dir: t.TempDir(), caCert: caCert, caKey: caKey}
	writeAtomic(t, filepath.Join(p.dir, "ca.pem"), caCert)
	return p
}

// issue (re)writes name's certificate and key, renaming them into place as
// a careful rotation does, and returns the files and the new certificate.
func (p *testPKI) issue(name string) (certs.Files, *x509.Certificate) {
	p.t.Helper()
	return p.issueFor(name, net.IPv4(127, 0, 0, 1))
}

// issueFor is issue for a certificate naming ips.
func (p *testPKI) issueFor(name string, ips ...net.IP) (certs.Files, *x509.Certificate) {
	p.t.Helper()
	cert, key, err := certs.NewNodeCert(p.caCert, p.caKey, name, ips, nil, 24*time.Hour)
	if err != nil {
		p.t.Fatal(err)
	}
	f := certs.Files{Cert: filepath.Join(p.dir, name+".pem"), Key: filepath.Join(p.dir, name+"-key.pem"), CA: filepath.Join(p.dir, "ca.pem")}
	writeAtomic(p.t, f.Key, key)
	writeAtomic(p.t, f.Cert, cert)
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		p.t.Fatal(err)
	}
	return f, pair.Leaf
}

// reloader loads name's files, checking them at every handshake so a
// rotation shows at the next one.
func (p *testPKI) reloader(f certs.Files) *certs.Reloader {
	p.t.Helper()
	c := certs.DefaultReloaderConfig(f)
	c.ReloadCheck = 0
	r, err := certs.NewReloaderConfig(c)
	if err != nil {
		p.t.Fatal(err)
	}
	return r
}

// tweak returns the nodeOpts.tweak that puts a node behind peer TLS with
// r's files, as cmd/raftplane wires it.
func peerTLS(r *certs.Reloader) func(*Config) {
	return func(c *Config) {
		c.ServerTLS, c.ClientTLS = r.ServerConfig(), r.ClientConfig()
	}
}

func writeAtomic(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		t.Fatal(err)
	}
}

// startTLSCluster starts three nodes with peer TLS from pki and waits for
// three voters and the epoch everywhere.
func startTLSCluster(t *testing.T, pki *testPKI) []*testNode {
	t.Helper()
	var nodes []*testNode
	for i, id := range []string{"n1", "n2", "n3"} {
		f, _ := pki.issue(id)
		o := nodeOpts{id: id, tweak: peerTLS(pki.reloader(f))}
		if i > 0 {
			o.seeds = []string{nodes[0].gossipAddr}
		}
		nodes = append(nodes, startNode(t, o))
	}
	waitMembership(t, nodes, 3, 0)
	waitReady(t, nodes...)
	return nodes
}

// rpcForwardBytes is an internal RPC forward request for one publish with
// id, framed as cluster/rpc.go's writeFrame does, written out here so the
// stranger does not depend on the package's own encoder.
func rpcForwardBytes(id string) []byte {
	body := fsm.EncodeBatch([]fsm.Command{testCommand(id)})
	reqID := binary.AppendUvarint(nil, 1)
	b := binary.AppendUvarint(nil, uint64(1+len(reqID)+len(body)))
	b = append(b, rpcForward)
	b = append(b, reqID...)
	return append(b, body...)
}

// strangerSend dials addr (through TLS with cfg if it is not nil), writes
// the service byte and payload, and returns what came back before the
// connection ended: the whole answer of a node that took the stranger for a
// peer, nothing from one that did not.
func strangerSend(t *testing.T, addr string, cfg *tls.Config, service byte, payload []byte) (got []byte, handshakeErr error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Bounded by the mux's header timeout at worst; a refused handshake ends
	// the connection at once.
	_ = raw.SetDeadline(time.Now().Add(2 * muxHeaderTimeout))
	var c net.Conn = raw
	if cfg != nil {
		tc := tls.Client(raw, cfg)
		// With TLS 1.3 the client's side of the handshake may end before the
		// server has looked at the client's certificate: the refusal then
		// comes as an alert on the first read.
		handshakeErr = tc.Handshake()
		c = tc
	}
	if handshakeErr == nil {
		_, _ = c.Write(append([]byte{service}, payload...))
	}
	got, _ = io.ReadAll(c)
	return got, handshakeErr
}

// strangerStream is the stream layer a stranger builds to talk Raft to a
// node's port with hashicorp/raft's own transport: it names the Raft service
// like a peer, over plaintext or TLS with cfg.
type strangerStream struct {
	cfg    *tls.Config
	closed chan struct{}
	once   sync.Once
}

func (s *strangerStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	var c net.Conn = raw
	if s.cfg != nil {
		tc := tls.Client(raw, s.cfg)
		_ = raw.SetDeadline(time.Now().Add(timeout))
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, err
		}
		_ = raw.SetDeadline(time.Time{})
		c = tc
	}
	if _, err := c.Write([]byte{muxRaft}); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

func (s *strangerStream) Accept() (net.Conn, error) { <-s.closed; return nil, net.ErrClosed }
func (s *strangerStream) Close() error              { s.once.Do(func() { close(s.closed) }); return nil }
func (s *strangerStream) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// strangerRaft sends, as a peer would, an AppendEntries with term MaxUint64
// carrying a publish with id, and a RequestVote with term MaxUint64, to
// target; it returns the errors.
func strangerRaft(t *testing.T, target *testNode, cfg *tls.Config, id string) []error {
	t.Helper()
	st := &strangerStream{cfg: cfg, closed: make(chan struct{})}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: st, MaxPool: 1, Timeout: 5 * time.Second,
		Logger: newHCLog(slog.New(slog.DiscardHandler), "stranger"),
	})
	defer trans.Close()
	addr := raft.ServerAddress(target.raftAddr)
	var errs []error
	status := target.node.Status()
	ae := raft.AppendEntriesRequest{
		RPCHeader:    raft.RPCHeader{ID: []byte("stranger"), Addr: []byte("127.0.0.1:1")},
		Term:         ^uint64(0),
		PrevLogEntry: status.LastLogIndex, PrevLogTerm: status.Term,
		Entries: []*raft.Log{{Index: status.LastLogIndex + 1, Term: ^uint64(0), Type: raft.LogCommand,
			Data: fsm.EncodeBatch([]fsm.Command{testCommand(id)})}},
		LeaderCommitIndex: status.LastLogIndex + 1,
	}
	var aer raft.AppendEntriesResponse
	errs = append(errs, trans.AppendEntries(raft.ServerID(target.id), addr, &ae, &aer))
	rv := raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("stranger"), Addr: []byte("127.0.0.1:1")},
		Term:      ^uint64(0), LastLogIndex: ^uint64(0), LastLogTerm: ^uint64(0),
	}
	var rvr raft.RequestVoteResponse
	errs = append(errs, trans.RequestVote(raft.ServerID(target.id), addr, &rv, &rvr))
	return errs
}

// TestPeerTLS_ClusterWorksAndStrangersGetNothing: three nodes with peer TLS
// elect, commit and forward from a follower; strangers without a cluster
// certificate (plaintext, no certificate, another CA's, a self-made one)
// get not one byte from the Raft port and change nothing.
func TestPeerTLS_ClusterWorksAndStrangersGetNothing(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	pki := newTestPKI(t, "cluster CA")
	nodes := startTLSCluster(t, pki)
	l := waitLeader(t, nodes)
	f := followers(nodes, l)[0]
	cur := mustPublish(t, f, "from-follower")
	waitApplied(t, nodes, cur)

	other := newTestPKI(t, "another CA")
	otherFiles, _ := other.issue("stranger")
	foreign, err := tls.LoadX509KeyPair(otherFiles.Cert, otherFiles.Key)
	if err != nil {
		t.Fatal(err)
	}
	strangers := []struct {
		name string
		cfg  *tls.Config // nil: plaintext
	}{
		{"plaintext", nil},
		{"TLS without a certificate", &tls.Config{InsecureSkipVerify: true}},
		// The stranger does not check the node (it would refuse it, the
		// node's certificate being from a CA it does not know): the node
		// must refuse the stranger.
		{"another CA's certificate", &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{foreign}}},
		{"another CA's client config", other.reloader(otherFiles).ClientConfig()},
	}
	for i, s := range strangers {
		for _, target := range []*testNode{l, f} {
			before := target.node.PeerTLSFailures()
			forwardID := fmt.Sprintf("stranger-forward-%d", i)
			got, herr := strangerSend(t, target.raftAddr, s.cfg, muxRPC, rpcForwardBytes(forwardID))
			if len(got) > 0 {
				t.Errorf("%s to %s: got %d bytes back (%q); want none", s.name, target.id, len(got), got)
			}
			// Two stats requests: with the service byte, more than a TLS
			// record header, so a plaintext try fails at once.
			got, _ = strangerSend(t, target.raftAddr, s.cfg, muxRPC, []byte{2, rpcStats, 1, 2, rpcStats, 2})
			if len(got) > 0 {
				t.Errorf("%s stats request to %s: got %d bytes back; want none", s.name, target.id, len(got))
			}
			appendID := fmt.Sprintf("stranger-append-%d", i)
			for j, err := range strangerRaft(t, target, s.cfg, appendID) {
				if err == nil {
					t.Errorf("%s: raft RPC %d to %s succeeded", s.name, j, target.id)
				}
			}
			// Four connections, each refused in the handshake. A stranger
			// that refuses the node's certificate first may be done before
			// the node has counted, hence the wait.
			waitFor(t, fmt.Sprintf("%s: 4 handshake failures counted on %s", s.name, target.id), func() error {
				if n := target.node.PeerTLSFailures() - before; n != 4 {
					return fmt.Errorf("%d counted (handshake error on the stranger's side: %v)", n, herr)
				}
				if st := target.node.Status(); !st.PeerTLS || st.PeerTLSFailures < 4 {
					return fmt.Errorf("status: peer_tls %t, peer_tls_failures %d", st.PeerTLS, st.PeerTLSFailures)
				}
				return nil
			})
		}
	}

	// Nothing changed: a publish after the attacks lands right after the
	// first one on every node (no stranger entry between), and no term went
	// to MaxUint64.
	cur2 := mustPublish(t, f, "after-strangers")
	entries := waitApplied(t, nodes, cur2)
	var ids []string
	for _, e := range entries {
		if e.Kind == fsm.KindPublish {
			ids = append(ids, e.ID)
		}
	}
	if !slices.Equal(ids, []string{"from-follower", "after-strangers"}) {
		t.Errorf("published ids %q, want only from-follower and after-strangers", ids)
	}
	for _, n := range nodes {
		if st := n.node.Status(); st.Term > 1<<32 {
			t.Errorf("%s: term %d: a stranger's vote or heartbeat got in", n.id, st.Term)
		}
	}
	if got := waitLeader(t, nodes); got != l {
		t.Logf("leader changed from %s to %s during the test (not the strangers: their RPCs never got past TLS)", l.id, got.id)
	}
}

// TestPeerTLS_Rotation rewrites every node's certificate files (same CA,
// new certificates) while publishes run: no publish is lost, no peer link
// fails, and new handshakes, both ways, use the new certificates.
func TestPeerTLS_Rotation(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	pki := newTestPKI(t, "cluster CA")
	nodes := startTLSCluster(t, pki)
	l := waitLeader(t, nodes)
	termBefore := l.node.Status().Term

	// A member's view from outside: a certificate from the cluster CA,
	// used to see which certificate each node serves.
	probeFiles, _ := pki.issue("probe")
	probe := pki.reloader(probeFiles)
	served := func(n *testNode) *x509.Certificate {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.raftAddr, probe.ClientConfig())
		if err != nil {
			t.Fatalf("probe to %s: %v", n.id, err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	// And a probe server, to see which certificate a node dials with.
	presented := probeServer(t, probe)

	var (
		mu        sync.Mutex
		published []string
		pubErr    error
		stop      = make(chan struct{})
		done      = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("p-%d", i)
			if _, err := publishRetrying(t, nodes, i, id); err != nil {
				mu.Lock()
				pubErr = err
				mu.Unlock()
				return
			}
			mu.Lock()
			published = append(published, id)
			mu.Unlock()
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		if pubErr != nil {
			t.Fatal(pubErr)
		}
		return len(published)
	}
	waitAtLeast := func(n int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d publishes", n), func() error {
			if c := count(); c < n {
				return fmt.Errorf("%d so far", c)
			}
			return nil
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()

	waitAtLeast(10)
	for _, n := range nodes {
		old := served(n)
		_, fresh := pki.issue(n.id)
		if old.SerialNumber.Cmp(fresh.SerialNumber) == 0 {
			t.Fatal("the new certificate has the old serial")
		}
		if got := served(n); got.SerialNumber.Cmp(fresh.SerialNumber) != 0 {
			t.Errorf("%s serves serial %s after rotation, want the new %s", n.id, got.SerialNumber, fresh.SerialNumber)
		}
		conn, err := n.node.mux.dial(presented.addr, muxRPC, 5*time.Second)
		if err != nil {
			t.Fatalf("%s dialling the probe: %v", n.id, err)
		}
		conn.Close()
		// With TLS 1.3 the dial may return before the probe has read the
		// certificate.
		waitFor(t, n.id+" to dial with its new certificate", func() error {
			if got := presented.last(); got == nil || got.SerialNumber.Cmp(fresh.SerialNumber) != 0 {
				return fmt.Errorf("the probe saw %v, want serial %s", got, fresh.SerialNumber)
			}
			return nil
		})
		waitAtLeast(count() + 10)
	}
	close(stop)
	<-done
	if pubErr != nil {
		t.Fatal(pubErr)
	}

	// Every publish is in every node's stream, once.
	last := mustPublish(t, l, "last")
	entries := waitApplied(t, nodes, last)
	seen := map[string]int{}
	for _, e := range entries {
		if e.Kind == fsm.KindPublish {
			seen[e.ID]++
		}
	}
	for _, id := range published {
		if seen[id] != 1 {
			t.Errorf("publish %s is in the stream %d times, want 1", id, seen[id])
		}
	}
	t.Logf("%d publishes across the rotation of 3 nodes", len(published))

	// No peer link failed: raft logs every failed replication to a peer,
	// and the leader never changed.
	for _, n := range nodes {
		for _, what := range []string{"failed to appendEntries to", "failed to heartbeat to", "failed to pipeline appendEntries"} {
			if lines := n.logs.matching(what); len(lines) > 0 {
				t.Errorf("%s: a peer link failed across the rotation:\n%s", n.id, strings.Join(lines, "\n"))
			}
		}
	}
	// Nor did any TLS handshake between members: each accepted the others'
	// rotated certificates.
	for _, n := range nodes {
		if f := n.node.PeerTLSFailures(); f != 0 {
			t.Errorf("%s: %d TLS handshakes failed across the rotation", n.id, f)
		}
	}
	// A leader change is not a failure of the rotation: on a starved
	// machine a follower can miss heartbeats and call an election with
	// every link sound (CI saw it once), which the checks above tell apart.
	if l2 := waitLeader(t, nodes); l2 != l || l2.node.Status().Term != termBefore {
		t.Logf("leader %s term %d after the rotation; was %s term %d (no link or handshake failed)", l2.id, l2.node.Status().Term, l.id, termBefore)
	}
}

// publishRetrying publishes id through nodes[i%len(nodes)], and on a failure
// retries the very same id through the next node, as a client would, until
// waitTimeout has passed. A starved machine can call elections with every
// link sound (CI once froze all three nodes for 2.4 s and then split the
// vote until the hold time ran out); the rotation test is about links and
// handshakes, which it checks on its own, and the FSM's duplicate window
// makes a retry of a command that did commit a no-op, which the test's
// "once in the stream" check holds it to.
func publishRetrying(t *testing.T, nodes []*testNode, i int, id string) (fsm.Cursor, error) {
	deadline := time.Now().Add(waitTimeout)
	for attempt := 0; ; attempt++ {
		n := nodes[(i+attempt)%len(nodes)]
		cur, err := publish(n, id)
		if err == nil {
			return cur, nil
		}
		if errors.Is(err, ErrClosed) || time.Now().After(deadline) {
			return fsm.Cursor{}, fmt.Errorf("publish %s through %s (attempt %d): %w", id, n.id, attempt+1, err)
		}
		t.Logf("publish %s through %s: %v; retrying through the next node", id, n.id, err)
		time.Sleep(pollEvery) // a pause between attempts, as a client's backoff
	}
}

// certProbe is a TLS server that records the client certificate of each
// connection.
type certProbe struct {
	addr string
	mu   sync.Mutex
	cert *x509.Certificate
}

func (p *certProbe) last() *x509.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cert
}

// probeServer serves TLS with r's server config and records the client
// certificate of each connection.
func probeServer(t *testing.T, r *certs.Reloader) *certProbe {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &certProbe{addr: ln.Addr().String()}
	cfg := r.ServerConfig()
	inner := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 {
			p.mu.Lock()
			p.cert = cs.PeerCertificates[0]
			p.mu.Unlock()
		}
		return inner(cs)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// The client's handshake completes only after the server has
			// read its certificate (TLS 1.3 sends it with the client's
			// Finished); handshake here so the server side runs.
			tc := tls.Server(c, cfg)
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			_ = tc.Handshake()
			_, _ = io.Copy(io.Discard, tc)
			tc.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return p
}

func TestConfig_ValidateTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "ca")
	f, _ := pki.issue("n1")
	r := pki.reloader(f)
	base := DefaultConfig()
	base.NodeID, base.DataDir = "n1", t.TempDir()
	verifyAny := func(tls.ConnectionState) error { return nil }
	for _, tc := range []struct {
		name           string
		server, client *tls.Config
		want           string // "" valid
	}{
		{"neither", nil, nil, ""},
		{"reloader", r.ServerConfig(), r.ClientConfig(), ""},
		{"server only", r.ServerConfig(), nil, "must be set together"},
		{"client only", nil, r.ClientConfig(), "must be set together"},
		{"server does not ask for client certificates", &tls.Config{GetCertificate: r.ServerConfig().GetCertificate}, r.ClientConfig(),
			"must require and verify client certificates"},
		{"server asks but does not verify", &tls.Config{ClientAuth: tls.RequireAnyClientCert, GetCertificate: r.ServerConfig().GetCertificate}, r.ClientConfig(),
			"must require and verify client certificates"},
		{"server without a certificate", &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}, r.ClientConfig(), "ServerTLS has no certificate"},
		{"client skips verification", r.ServerConfig(), &tls.Config{InsecureSkipVerify: true, GetClientCertificate: r.ClientConfig().GetClientCertificate},
			"peers would go unverified"},
		{"client without a certificate", r.ServerConfig(), &tls.Config{InsecureSkipVerify: true, VerifyConnection: verifyAny}, "ClientTLS has no client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.ServerTLS, c.ClientTLS = tc.server, tc.client
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestMux_PlainDialerToTLSPortGetsNothing checks the mux alone, without
// Raft: a TLS port refuses a plaintext service byte and counts it, and a
// member's dial goes through to the named service.
func TestMux_PlainDialerToTLSPortGetsNothing(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "ca")
	f, _ := pki.issue("n1")
	r := pki.reloader(f)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newMux(ln, tcpNetwork{}, slog.New(slog.DiscardHandler), r.ServerConfig(), r.ClientConfig())
	m.start()
	defer m.close()

	got, _ := strangerSend(t, ln.Addr().String(), nil, muxRPC, rpcForwardBytes("x"))
	if len(got) > 0 {
		t.Errorf("plaintext dialer got %q", got)
	}
	if n := m.tlsFailures.Load(); n != 1 {
		t.Errorf("%d TLS failures counted, want 1", n)
	}

	// A member reaches the RPC service, inside TLS.
	c, err := m.dial(ln.Addr().String(), muxRPC, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*tls.Conn); !ok {
		t.Fatalf("dial returned a %T, want a *tls.Conn", c)
	}
	accepted, err := m.subs[muxRPC].Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	_ = accepted.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(accepted, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v; want hi", buf, err)
	}

	// A dial to a port whose certificate is from another CA fails, and
	// says it was the handshake.
	other := newTestPKI(t, "other")
	of, _ := other.issue("n9")
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	om := newMux(oln, tcpNetwork{}, slog.New(slog.DiscardHandler), other.reloader(of).ServerConfig(), other.reloader(of).ClientConfig())
	om.start()
	defer om.close()
	if c, err := m.dial(oln.Addr().String(), muxRPC, 5*time.Second); err == nil || !errors.Is(err, certs.ErrUntrusted) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial to another CA's port: %v, want a handshake error wrapping certs.ErrUntrusted", err)
	}
}
