package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/certs"
	"github.com/raftplane/raftplane/fsm"
)

// publicName is the name clients use for the cluster, behind a balancer.
const publicName = "chat.example.com"

// testPKI is a CA and a certificate for the public name (and 127.0.0.1, so
// the test clients can dial the nodes directly), as every node serves it.
type testPKI struct {
	pool *x509.CertPool
	cert tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	caCert, caKey, err := certs.NewCA("test client CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := certs.NewNodeCert(caCert, caKey, "node", []net.IP{net.IPv4(127, 0, 0, 1)}, []string{publicName}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caCert) {
		t.Fatal("CA PEM")
	}
	return testPKI{pool: pool, cert: cert}
}

// startTLSTestHub is startTestHub serving HTTPS with cert.
func startTLSTestHub(t *testing.T, cfg Config, m *fsm.Machine, pub *fakePublisher, cert tls.Certificate) *testHub {
	t.Helper()
	// A poll that was wrongly forwarded returns (empty) soon, not in 90 s.
	cfg.PollTimeout = 2 * time.Second
	srv, err := New(cfg, pub, m)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	h := &testHub{t: t, cfg: cfg, srv: srv, ts: ts, m: m, pub: pub}
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("Server.Close: %v", err)
		}
	})
	return h
}

// pollHost is pollOnce with the Host header the client used.
func (h *testHub) pollHost(tok, host string) (int, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.ts.URL+hubPath(tok), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Host = host
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		h.t.Fatalf("poll: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("poll body: %v", err)
	}
	return resp.StatusCode, string(b)
}

// TestForwardOverTLS: with TLS on the client port, node 2 forwards a long
// poll to node 1 over https, verifying node 1's certificate for the name
// the client used; a node whose certificate does not verify gets nothing.
func TestForwardOverTLS(t *testing.T) {
	pki := newTestPKI(t)
	m := newTestMachine(t)
	pub := newFakePublisher(t, m, true)
	a := startTLSTestHub(t, testConfig(t), m, pub, pki.cert)
	addrA := strings.TrimPrefix(a.ts.URL, "https://")

	node2 := func(forward *tls.Config) *testHub {
		cfg := testConfig(t)
		cfg.NodeID = "node-2"
		cfg.Peers = peersFunc(func(id string) (string, bool) { return addrA, id == "node-1" })
		cfg.ForwardTLS = forward
		return startTLSTestHub(t, cfg, m, pub, pki.cert)
	}
	b := node2(&tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12})

	tok, id := a.negotiateToken("alice")
	if r := b.pollOnce(tok); r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("activation poll through node 2 (Host 127.0.0.1): %d %q", r.status, r.body)
	}
	if st := b.post(tok, `{"protocol":"json","version":1}`+"\x1e"); st != http.StatusOK {
		t.Fatalf("handshake POST through node 2: %d", st)
	}
	if st, body := b.pollHost(tok, publicName); st != http.StatusOK || body != "{}\x1e" {
		t.Fatalf("handshake response through node 2 (Host %s): %d %q", publicName, st, body)
	}
	if a.srv.session(id) == nil || b.srv.session(id) != nil {
		t.Fatalf("the connection should live on node 1 only")
	}

	t.Run("a Host the certificate is not for", func(t *testing.T) {
		if st, body := b.pollHost(tok, "evil.example.com"); st != http.StatusNotFound || !strings.Contains(body, "did not answer") {
			t.Fatalf("poll with Host evil.example.com: %d %q, want 404: node 1's certificate is not for that name", st, body)
		}
	})
	t.Run("a holder whose certificate is from another CA", func(t *testing.T) {
		other := newTestPKI(t)
		c := node2(&tls.Config{RootCAs: other.pool, MinVersion: tls.VersionTLS12})
		if st, body := c.pollHost(tok, publicName); st != http.StatusNotFound {
			t.Fatalf("forward to an untrusted certificate: %d %q, want 404", st, body)
		}
	})
	t.Run("plain http forwarding to a TLS node fails", func(t *testing.T) {
		c := node2(nil)
		if st, body := c.pollHost(tok, publicName); st == http.StatusOK {
			t.Fatalf("plain http forward to a TLS port answered 200 %q", body)
		}
	})
	t.Run("a fixed ServerName replaces the Host", func(t *testing.T) {
		c := node2(&tls.Config{RootCAs: pki.pool, ServerName: publicName, MinVersion: tls.VersionTLS12})
		if st, _, body := a.do("POST", "/api/v1/hubs/"+testHubName, `{"target":"hello","arguments":[1]}`, nil); st != 200 {
			t.Fatalf("REST send: %d %s", st, body)
		}
		if st, body := c.pollHost(tok, "another.example.com"); st != http.StatusOK || !strings.Contains(body, `"target":"hello"`) {
			t.Fatalf("poll with a fixed ServerName: %d %q", st, body)
		}
	})
}

// TestForwarders_Bounded: transports are kept per server name, at most
// maxForwardNames of them, and a name gets its own.
func TestForwarders_Bounded(t *testing.T) {
	t.Parallel()
	var f forwarders
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	first := f.transport(base, "a.example.com:443")
	if got := first.TLSClientConfig.ServerName; got != "a.example.com" {
		t.Fatalf("ServerName %q, want a.example.com", got)
	}
	if f.transport(base, "a.example.com") != first {
		t.Fatal("the same name (without a port) got another transport")
	}
	if base.ServerName != "" {
		t.Fatal("the base config was changed")
	}
	for i := range 3 * maxForwardNames {
		f.transport(base, string(rune('b'+i%20))+".example.com:443")
	}
	if n := len(f.byName); n > maxForwardNames || len(f.order) != n {
		t.Fatalf("%d transports (%d in order), want at most %d", n, len(f.order), maxForwardNames)
	}
	if ip := f.transport(base, "[::1]:8443").TLSClientConfig.ServerName; ip != "::1" {
		t.Fatalf("ServerName for an IPv6 Host: %q", ip)
	}
}
