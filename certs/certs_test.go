package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const day = 24 * time.Hour

func mustCA(t *testing.T, cn string) (cert, key []byte) {
	t.Helper()
	cert, key, err := NewCA(cn, 365*day)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return cert, key
}

func mustNode(t *testing.T, caCert, caKey []byte, name string, validFor time.Duration) (cert, key []byte) {
	t.Helper()
	cert, key, err := NewNodeCert(caCert, caKey, name, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}, validFor)
	if err != nil {
		t.Fatalf("NewNodeCert(%s): %v", name, err)
	}
	return cert, key
}

func mustParse(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	c, err := parseCert(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGenerateRoundTrip(t *testing.T) {
	caCert, caKey := mustCA(t, "raftplane test CA")
	ca := mustParse(t, caCert)
	if !ca.IsCA || ca.Subject.CommonName != "raftplane test CA" || !ca.MaxPathLenZero {
		t.Fatalf("CA: IsCA %v CN %q MaxPathLenZero %v", ca.IsCA, ca.Subject.CommonName, ca.MaxPathLenZero)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("CA is not self-signed: %v", err)
	}
	if _, err := tls.X509KeyPair(caCert, caKey); err != nil {
		t.Fatalf("CA key does not match: %v", err)
	}

	ips := []net.IP{net.ParseIP("10.0.0.7"), net.ParseIP("::1")}
	cert, key, err := NewNodeCert(caCert, caKey, "node1", ips, []string{"node1.example", "node1"}, 30*day)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatalf("node key does not match: %v", err)
	}
	leaf := mustParse(t, cert)
	if leaf.Subject.CommonName != "node1" {
		t.Errorf("CN %q", leaf.Subject.CommonName)
	}
	if got := strings.Join(leaf.DNSNames, ","); got != "node1,node1.example" {
		t.Errorf("DNS SANs %q, want node1,node1.example (name first, no duplicate)", got)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(ips[0]) || !leaf.IPAddresses[1].Equal(ips[1]) {
		t.Errorf("IP SANs %v, want %v", leaf.IPAddresses, ips)
	}
	if leaf.IsCA {
		t.Error("node certificate is a CA")
	}
	if left := time.Until(leaf.NotAfter); left > 30*day || left < 29*day {
		t.Errorf("NotAfter %s, want about 30 days from now", leaf.NotAfter)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}, DNSName: "node1.example"}); err != nil {
			t.Errorf("verify for usage %v: %v", u, err)
		}
	}
	if _, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("key type %T, want ECDSA", pair.PrivateKey)
	}

	// A node certificate cannot sign: path length 0 on the CA.
	mid, midKey, err := NewNodeCert(cert, key, "evil", nil, nil, day)
	if err == nil {
		t.Fatalf("a node certificate signed another: %s %s", mid, midKey)
	}
}

func TestNodeCertValidityCappedByCA(t *testing.T) {
	caCert, caKey, err := NewCA("short CA", 2*day)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := mustNode(t, caCert, caKey, "n", 365*day)
	if got, ca := mustParse(t, cert).NotAfter, mustParse(t, caCert).NotAfter; !got.Equal(ca) {
		t.Errorf("NotAfter %s, want the CA's %s", got, ca)
	}
}

func TestGenerateRefusesBadInput(t *testing.T) {
	caCert, caKey := mustCA(t, "ca")
	otherCert, otherKey := mustCA(t, "other")
	nodeCert, nodeKey := mustNode(t, caCert, caKey, "n1", day)
	if _, _, err := NewCA("", day); err == nil {
		t.Error("NewCA with no name succeeded")
	}
	if _, _, err := NewCA("x", 0); err == nil {
		t.Error("NewCA with zero validity succeeded")
	}
	for _, tc := range []struct {
		name           string
		caCert, caKey  []byte
		node           string
		ips            []net.IP
		hosts          []string
		validFor       time.Duration
		wantErrContain string
	}{
		{"empty name", caCert, caKey, "", nil, nil, day, "name is empty"},
		{"slash in name", caCert, caKey, "../x", nil, nil, day, "must not start"},
		{"space in name", caCert, caKey, "a b", nil, nil, day, "only letters"},
		{"bad host", caCert, caKey, "n", nil, []string{"a/b"}, day, "host"},
		{"bad ip", caCert, caKey, "n", []net.IP{{1, 2}}, nil, day, "invalid IP"},
		{"no validity", caCert, caKey, "n", nil, nil, 0, "must be positive"},
		{"ca not pem", []byte("junk"), caKey, "n", nil, nil, day, "CA certificate"},
		{"key not pem", caCert, []byte("junk"), "n", nil, nil, day, "CA key"},
		{"key of another CA", caCert, otherKey, "n", nil, nil, day, "does not belong"},
		{"leaf as CA", nodeCert, nodeKey, "n", nil, nil, day, "not a CA"},
		{"other CA with this key", otherCert, caKey, "n", nil, nil, day, "does not belong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := NewNodeCert(tc.caCert, tc.caKey, tc.node, tc.ips, tc.hosts, tc.validFor)
			if err == nil || !strings.Contains(err.Error(), tc.wantErrContain) {
				t.Fatalf("err %v, want one containing %q", err, tc.wantErrContain)
			}
		})
	}
}

// selfSigned makes a self-signed leaf usable as client and server: what a
// stranger can make without the CA.
func selfSigned(t *testing.T, name string) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(day),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := encodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM
}

// writeFiles writes a certificate, key and (if caCert is not nil) CA into
// dir under prefix and returns their names.
func writeFiles(t *testing.T, dir, prefix string, cert, key, caCert []byte) Files {
	t.Helper()
	f := Files{Cert: filepath.Join(dir, prefix+".pem"), Key: filepath.Join(dir, prefix+"-key.pem")}
	writeFile(t, f.Cert, cert)
	writeFile(t, f.Key, key)
	if caCert != nil {
		f.CA = filepath.Join(dir, prefix+"-ca.pem")
		writeFile(t, f.CA, caCert)
	}
	return f
}

// writeFile replaces name by renaming a new file into place, as a careful
// rotation does; the new inode makes the change visible whatever the
// file system's time resolution.
func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

func mustReloader(t *testing.T, f Files) *Reloader {
	t.Helper()
	c := DefaultReloaderConfig(f)
	c.ReloadCheck = 0 // look at the files on every handshake
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := NewReloaderConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// handshake runs one TLS connection over loopback TCP: the server writes
// "ok" after its handshake, the client reads it. With TLS 1.3 the client's
// Handshake returns before the server has checked the client certificate,
// so only the read tells whether the server accepted it. It returns both
// sides' errors and the certificate the client saw.
func handshake(t *testing.T, server, client *tls.Config) (seen *x509.Certificate, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			serverErr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		if serverErr = tc.Handshake(); serverErr != nil {
			return
		}
		_, serverErr = tc.Write([]byte("ok"))
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, client)
	clientErr = tc.Handshake()
	if clientErr == nil {
		if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
			seen = pc[0]
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(tc, buf); err != nil {
			clientErr = err
		} else if string(buf) != "ok" {
			clientErr = errors.New("read " + string(buf))
		}
	}
	tc.Close()
	wg.Wait()
	return seen, serverErr, clientErr
}

func TestVerification(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := mustCA(t, "cluster")
	otherCA, otherKey := mustCA(t, "other")
	goodCert, goodKey := mustNode(t, caCert, caKey, "good", day)
	peerCert, peerKey := mustNode(t, caCert, caKey, "peer", day)
	foreignCert, foreignKey := mustNode(t, otherCA, otherKey, "foreign", day)
	selfCert, selfKey := selfSigned(t, "self")
	expCert, expKey := mustNode(t, caCert, caKey, "expired", time.Nanosecond)
	if !time.Now().After(mustParse(t, expCert).NotAfter) {
		t.Fatal("the expired certificate is not expired yet")
	}

	// The member under test, verifying with the cluster CA.
	member := mustReloader(t, writeFiles(t, dir, "good", goodCert, goodKey, caCert))
	for _, tc := range []struct {
		name       string
		cert, key  []byte
		ca         []byte // the other side's CA file
		wantOK     bool
		wantReject string // which side must refuse: "member" (the one under test) or "" if OK
	}{
		{"same CA", peerCert, peerKey, caCert, true, ""},
		{"other CA", foreignCert, foreignKey, caCert, false, "member"},
		{"self-signed", selfCert, selfKey, caCert, false, "member"},
		{"expired", expCert, expKey, caCert, false, "member"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := mustReloader(t, writeFiles(t, dir, strings.ReplaceAll(tc.name, " ", "_"), tc.cert, tc.key, tc.ca))
			// The other side trusts the cluster CA too, so any refusal is
			// the member's.
			t.Run("member serves", func(t *testing.T) {
				_, serr, cerr := handshake(t, member.ServerConfig(), other.ClientConfig())
				if tc.wantOK {
					if serr != nil || cerr != nil {
						t.Fatalf("server %v, client %v; want success", serr, cerr)
					}
					return
				}
				if !errors.Is(serr, ErrUntrusted) || cerr == nil {
					t.Fatalf("server %v, client %v; want the server to refuse with ErrUntrusted and the client to fail", serr, cerr)
				}
			})
			t.Run("member dials", func(t *testing.T) {
				_, serr, cerr := handshake(t, other.ServerConfig(), member.ClientConfig())
				if tc.wantOK {
					if serr != nil || cerr != nil {
						t.Fatalf("server %v, client %v; want success", serr, cerr)
					}
					return
				}
				if !errors.Is(cerr, ErrUntrusted) || serr == nil {
					t.Fatalf("server %v, client %v; want the client to refuse with ErrUntrusted", serr, cerr)
				}
			})
		})
	}

	t.Run("client without certificate", func(t *testing.T) {
		_, serr, cerr := handshake(t, member.ServerConfig(), &tls.Config{InsecureSkipVerify: true})
		if serr == nil || cerr == nil {
			t.Fatalf("server %v, client %v; want both to fail", serr, cerr)
		}
	})
	t.Run("client with no CA file", func(t *testing.T) {
		noCA := mustReloader(t, writeFiles(t, dir, "noca", peerCert, peerKey, nil))
		_, _, cerr := handshake(t, member.ServerConfig(), noCA.ClientConfig())
		if !errors.Is(cerr, ErrNoCA) {
			t.Fatalf("client %v, want ErrNoCA", cerr)
		}
		// A server without a CA file asks for no client certificate.
		_, serr, cerr := handshake(t, noCA.ServerConfig(), member.ClientConfig())
		if serr != nil || cerr != nil {
			t.Fatalf("server %v, client %v; want success", serr, cerr)
		}
	})
}

func TestNewReloaderErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := mustCA(t, "ca")
	cert, key := mustNode(t, caCert, caKey, "n", day)
	_, otherKey := mustNode(t, caCert, caKey, "m", day)
	good := writeFiles(t, dir, "good", cert, key, caCert)
	junk := filepath.Join(dir, "junk.pem")
	writeFile(t, junk, []byte("not pem"))
	mismatched := filepath.Join(dir, "other-key.pem")
	writeFile(t, mismatched, otherKey)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		f    Files
		want string
	}{
		{"no cert", Files{Key: good.Key}, "must both be set"},
		{"missing cert", Files{Cert: missing, Key: good.Key}, missing},
		{"junk cert", Files{Cert: junk, Key: good.Key}, junk},
		{"junk key", Files{Cert: good.Cert, Key: junk}, junk},
		{"key of another cert", Files{Cert: good.Cert, Key: mismatched}, mismatched},
		{"junk CA", Files{Cert: good.Cert, Key: good.Key, CA: junk}, junk},
		{"missing CA", Files{Cert: good.Cert, Key: good.Key, CA: missing}, missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReloader(tc.f, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
	c := DefaultReloaderConfig(good)
	c.ReloadCheck = -time.Second
	if _, err := NewReloaderConfig(c); err == nil || !strings.Contains(err.Error(), "ReloadCheck (-1s)") {
		t.Fatalf("negative ReloadCheck: %v", err)
	}
	if _, err := NewReloader(good, nil); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer collects log output written from handshake goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := mustCA(t, "ca")
	c1, k1 := mustNode(t, caCert, caKey, "first", day)
	c2, k2 := mustNode(t, caCert, caKey, "second", day)
	c3, k3 := mustNode(t, caCert, caKey, "third", day)
	f := writeFiles(t, dir, "node", c1, k1, caCert)
	var logs lockedBuffer
	cfg := DefaultReloaderConfig(f)
	cfg.ReloadCheck = 0
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	srv, err := NewReloaderConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cli := mustReloader(t, writeFiles(t, dir, "client", c3, k3, caCert))
	served := func() string {
		t.Helper()
		seen, serr, cerr := handshake(t, srv.ServerConfig(), cli.ClientConfig())
		if serr != nil || cerr != nil {
			t.Fatalf("handshake: server %v, client %v", serr, cerr)
		}
		return seen.Subject.CommonName
	}
	if got := served(); got != "first" {
		t.Fatalf("serves %q, want first", got)
	}

	// A rotation: the next handshake uses the new certificate.
	writeFile(t, f.Cert, c2)
	writeFile(t, f.Key, k2)
	if got := served(); got != "second" {
		t.Fatalf("after rotation serves %q, want second", got)
	}

	// Half a rotation: a certificate whose key is not there yet keeps the
	// old pair, with one warning.
	writeFile(t, f.Cert, c3)
	if got := served(); got != "second" {
		t.Fatalf("with a mismatched key serves %q, want second", got)
	}
	served()
	if n := strings.Count(logs.String(), "reload failed"); n != 1 {
		t.Fatalf("%d reload failure warnings, want 1:\n%s", n, logs.String())
	}
	writeFile(t, f.Key, k3)
	if got := served(); got != "third" {
		t.Fatalf("once the key is there serves %q, want third", got)
	}

	// A corrupt (half-written) certificate keeps the old one.
	writeFile(t, f.Cert, c1[:len(c1)/2])
	if got := served(); got != "third" {
		t.Fatalf("with a truncated certificate serves %q, want third", got)
	}
	// A CA file rewritten with junk keeps the old pool: members still
	// connect.
	writeFile(t, f.CA, []byte("junk"))
	writeFile(t, f.Cert, c3)
	if got := served(); got != "third" {
		t.Fatalf("with a junk CA serves %q, want third", got)
	}

	// Rotating the CA: the new pool is used at once, and a member of the
	// old CA is refused.
	newCA, newCAKey := mustCA(t, "new ca")
	c4, k4 := mustNode(t, newCA, newCAKey, "fourth", day)
	writeFile(t, f.CA, newCA)
	writeFile(t, f.Cert, c4)
	writeFile(t, f.Key, k4)
	_, serr, cerr := handshake(t, srv.ServerConfig(), cli.ClientConfig())
	if serr == nil || !errors.Is(cerr, ErrUntrusted) {
		t.Fatalf("old-CA client against new-CA server: server %v, client %v; want the client to refuse with ErrUntrusted", serr, cerr)
	}
	// The same client, not checking the server: now the server refuses it.
	pair, err := tls.X509KeyPair(c3, k3)
	if err != nil {
		t.Fatal(err)
	}
	_, serr, cerr = handshake(t, srv.ServerConfig(), &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}})
	if !errors.Is(serr, ErrUntrusted) || cerr == nil {
		t.Fatalf("old-CA certificate against new-CA server: server %v, client %v; want the server to refuse with ErrUntrusted", serr, cerr)
	}
	if got := srv.Leaf().Subject.CommonName; got != "fourth" {
		t.Fatalf("Leaf %q, want fourth", got)
	}
}

// TestReloadCheckInterval: with the default interval, a rewrite is not
// picked up by a handshake within the interval (no disk access per
// handshake), and is once it has passed.
func TestReloadCheckInterval(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := mustCA(t, "ca")
	c1, k1 := mustNode(t, caCert, caKey, "first", day)
	c2, k2 := mustNode(t, caCert, caKey, "second", day)
	f := writeFiles(t, dir, "node", c1, k1, caCert)
	cfg := DefaultReloaderConfig(f)
	cfg.ReloadCheck = time.Hour
	r, err := NewReloaderConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f.Cert, c2)
	writeFile(t, f.Key, k2)
	if got := r.Leaf().Subject.CommonName; got != "first" {
		t.Fatalf("within the interval: %q, want first", got)
	}
	r.nextCheck.Store(0) // the hour has passed
	if got := r.Leaf().Subject.CommonName; got != "second" {
		t.Fatalf("after the interval: %q, want second", got)
	}
}
