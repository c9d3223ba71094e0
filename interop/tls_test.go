//go:build unix

package interop

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/certs"
)

// testPKI is a CA and one certificate that every node serves on -http, for
// 127.0.0.1 and localhost (the "public name" clients use), written to files.
type testPKI struct {
	caFile, certFile, keyFile string
	caPEM, caKey              []byte
	pool                      *x509.CertPool
	leaf                      *x509.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caPEM, caKey, err := certs.NewCA("raftplane interop test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &testPKI{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "http.pem"), keyFile: filepath.Join(dir, "http-key.pem"),
		caPEM: caPEM, caKey: caKey, pool: x509.NewCertPool()}
	if !p.pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA PEM")
	}
	writeTestFile(t, p.caFile, caPEM)
	p.issue(t)
	return p
}

// issue makes a new certificate for the nodes and writes it over the
// files: how an operator renews one (rename into place).
func (p *testPKI) issue(t *testing.T) {
	t.Helper()
	certPEM, keyPEM, err := certs.NewNodeCert(p.caPEM, p.caKey, "localhost",
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, []string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, p.keyFile, keyPEM)
	writeTestFile(t, p.certFile, certPEM)
	p.leaf = kp.Leaf
}

func writeTestFile(t *testing.T, name string, data []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// spki is Chromium's --ignore-certificate-errors-spki-list value for the
// current leaf: base64 of the SHA-256 of its SubjectPublicKeyInfo.
func (p *testPKI) spki() string {
	sum := sha256.Sum256(p.leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// client trusts the test CA only.
func (p *testPKI) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12},
	}}
}

// flags are the TLS flags of every node: the shared certificate, and the
// CA that verifies the other nodes' when forwarding.
func (p *testPKI) flags() []string {
	return []string{"-cert-file", p.certFile, "-key-file", p.keyFile, "-forward-ca-file", p.caFile}
}

// startTLSCluster is startCluster with TLS on -http: it waits for each node
// over https.
func startTLSCluster(t *testing.T, bin string, n int, pki *testPKI, extraArgs ...string) []*server {
	t.Helper()
	args := append(pki.flags(), extraArgs...)
	nodes := make([]*server, n)
	for i := range nodes {
		a := args
		if i > 0 {
			a = append(slices.Clone(args), "-join", nodes[0].Addrs.Gossip)
		}
		nodes[i] = startServerAt(t, bin, fmt.Sprintf("node%d", i+1), nodeAddrs(t), a...)
		nodes[i].URL = "https://" + nodes[i].HTTPAddr
		if i == 0 {
			waitReadyTLS(t, nodes[0], pki.client())
		}
	}
	for _, s := range nodes[1:] {
		waitReadyTLS(t, s, pki.client())
	}
	return nodes
}

// waitReadyTLS is waitReady over https.
func waitReadyTLS(t *testing.T, s *server, client *http.Client) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	var last string
	for {
		req, err := http.NewRequest(http.MethodGet, s.URL+"/api/v1/status", nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+s.APIKey)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if s.hasExited() {
			t.Fatalf("%s: exited while waiting for readiness: %v", s.Name, s.exitErr())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET %s/api/v1/status not 200 within %v (last: %s)", s.Name, s.URL, readyTimeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTLS_OfficialClients runs a three-node cluster serving HTTPS and WSS on
// -http, every node with the same certificate from a test CA, and checks:
// forwarding between nodes over https (SSE and long polling, verified for
// the name the client used), the official JS client in Node over https://
// and wss:// through a TLS-passthrough balancer without affinity (trusting
// the CA with NODE_EXTRA_CA_CERTS), the browser bundle in headless Chromium
// from an https page (trusting the leaf with
// --ignore-certificate-errors-spki-list: verification stays on for
// everything else), and a certificate renewal picked up without a restart.
func TestTLS_OfficialClients(t *testing.T) {
	node := requireNodeClient(t)
	requireMsgpack(t)
	bin := buildServer(t)
	pki := newTestPKI(t)
	key := randomKey(t)

	// The browser page is served over https too, from its own origin, so
	// the nodes must allow it.
	pageLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pageLn.Close() })
	pageOrigin := "https://" + pageLn.Addr().String()
	nodes := startTLSCluster(t, bin, 3, pki, "-api-key", key, "-allowed-origins", pageOrigin)
	client := pki.client()

	t.Run("plain http is refused", func(t *testing.T) {
		resp, err := http.Get("http://" + nodes[0].HTTPAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatal("plain http on the TLS port answered 200")
			}
		}
	})

	t.Run("forwarding over https", func(t *testing.T) {
		// Negotiate on node 1; the long-polling requests go to nodes 2 and
		// 3, which forward them to node 1 over https and verify its
		// certificate for the name the client used.
		tok := negotiateTLS(t, client, nodes[0], "alice")
		if st, body := pollTLS(t, client, http.MethodGet, nodes[1], "localhost", tok, ""); st != http.StatusOK || body != "" {
			t.Fatalf("activation poll through node2 (Host localhost): %d %q", st, body)
		}
		if st, body := pollTLS(t, client, http.MethodPost, nodes[2], "", tok, `{"protocol":"json","version":1}`+"\x1e"); st != http.StatusOK {
			t.Fatalf("handshake through node3 (Host 127.0.0.1:port): %d %q", st, body)
		}
		if st, body := pollTLS(t, client, http.MethodGet, nodes[1], "localhost", tok, ""); st != http.StatusOK || body != "{}\x1e" {
			t.Fatalf("handshake response through node2: %d %q", st, body)
		}
		// A Host the certificate is not for: node 2 refuses to forward.
		if st, body := pollTLS(t, client, http.MethodGet, nodes[1], "evil.example.com", tok, ""); st != http.StatusNotFound {
			t.Fatalf("poll through node2 with Host evil.example.com: %d %q, want 404", st, body)
		}
	})

	t.Run("node", func(t *testing.T) {
		lb := startBalancer(t, nodes[0].HTTPAddr, nodes[1].HTTPAddr, nodes[2].HTTPAddr)
		lbURL := "https://" + lb.ln.Addr().String()
		ctx, cancel := context.WithTimeout(context.Background(), nodeTestTimeout)
		defer cancel()
		out, err := runNode(ctx, node, ".", []string{"RAFTPLANE_URL=" + lbURL, "RAFTPLANE_API_KEY=" + key,
			"NODE_EXTRA_CA_CERTS=" + pki.caFile}, "--test", "tls.test.mjs")
		if err != nil {
			t.Fatalf("node --test tls.test.mjs: %v\n%s", err, out)
		}
		for i := range nodes {
			if lb.perNode[i].Load() == 0 {
				t.Errorf("node%d got no connection through the balancer", i+1)
			}
		}
		t.Logf("tls.test.mjs:\n%s", out)
	})

	t.Run("chromium", func(t *testing.T) {
		if !hasNodePackage("playwright-core") {
			skipOrFail(t, "interop/node_modules/playwright-core missing: run `cd interop && npm ci`")
		}
		chrome := chromiumPath(t)
		page := servePage(t, pageLn, pki)
		var hubs []string
		for _, s := range nodes {
			hubs = append(hubs, s.URL)
		}
		ctx, cancel := context.WithTimeout(context.Background(), nodeTestTimeout)
		defer cancel()
		pageURL := page + "/?" + url.Values{"hubs": {strings.Join(hubs, ",")}}.Encode()
		out, err := runNode(ctx, node, ".", []string{"PAGE_URL=" + pageURL, "CHROMIUM=" + chrome, "SPKI=" + pki.spki()},
			"--test", "tls-browser.test.mjs")
		if err != nil {
			t.Fatalf("node --test tls-browser.test.mjs: %v\n%s", err, out)
		}
		t.Logf("tls-browser.test.mjs:\n%s", out)
	})

	// Last: the browser trusts the first leaf's key only.
	t.Run("certificate renewal without a restart", func(t *testing.T) {
		old := pki.leaf.SerialNumber
		pki.issue(t)
		for i, s := range nodes {
			deadline := time.Now().Add(readyTimeout)
			for {
				serial, err := servedSerial(s.HTTPAddr, pki.pool)
				if err == nil && serial.Cmp(pki.leaf.SerialNumber) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node%d still serves serial %v (err %v), want the renewed %v (was %v)", i+1, serial, err, pki.leaf.SerialNumber, old)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		// And serves clients with it.
		negotiateTLS(t, pki.client(), nodes[1], "bob")
	})
}

// negotiateTLS negotiates on s (as user, open mode) and returns the
// connection token.
func negotiateTLS(t *testing.T, client *http.Client, s *server, user string) string {
	t.Helper()
	resp, err := client.Post(s.URL+"/hubs/tls/negotiate?negotiateVersion=1&user="+user, "text/plain", nil)
	if err != nil {
		t.Fatalf("negotiate on %s: %v", s.Name, err)
	}
	defer resp.Body.Close()
	var n struct {
		ConnectionToken string `json:"connectionToken"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&n); err != nil || resp.StatusCode != http.StatusOK || n.ConnectionToken == "" {
		t.Fatalf("negotiate on %s: %d %v %+v", s.Name, resp.StatusCode, err, n)
	}
	return n.ConnectionToken
}

// pollTLS sends a long-polling request for tok to s with the given Host
// header ("": the address) and returns the status and body.
func pollTLS(t *testing.T, client *http.Client, method string, s *server, host, tok, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+"/hubs/tls?id="+url.QueryEscape(tok), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s through %s: %v", method, s.Name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// servedSerial makes a new TLS connection to addr and returns the serial of
// the certificate it presents, verified against pool.
func servedSerial(addr string, pool *x509.CertPool) (*big.Int, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// servePage serves browser/index.html and the official client's browser
// bundles over https on ln with the nodes' certificate, and returns the
// page's origin.
func servePage(t *testing.T, ln net.Listener, pki *testPKI) string {
	t.Helper()
	bundles := map[string]string{
		"/signalr.js":                  filepath.Join("node_modules", "@microsoft", "signalr", "dist", "browser", "signalr.js"),
		"/signalr-protocol-msgpack.js": filepath.Join("node_modules", "@microsoft", "signalr-protocol-msgpack", "dist", "browser", "signalr-protocol-msgpack.js"),
	}
	mux := http.NewServeMux()
	for path, file := range bundles {
		if _, err := os.Stat(file); err != nil {
			t.Fatalf("browser bundle: %v", err)
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, file) })
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join("browser", "index.html"))
	})
	kp, err := tls.LoadX509KeyPair(pki.certFile, pki.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}
