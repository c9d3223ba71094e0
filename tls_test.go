package raftplane

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/certs"
)

// tlsFiles writes a CA, a node certificate signed by it (server and client
// use, for 127.0.0.1) and a second CA, and returns their file names.
type tlsFiles struct {
	ca, cert, key, otherCA string
	caPool                 *x509.CertPool
	clientCert             tls.Certificate // signed by ca, for client auth
	strangerCert           tls.Certificate // signed by otherCA
}

func writeTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	caPEM, caKey, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, otherKey, err := certs.NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node := func(ca, key []byte, name string) ([]byte, []byte, tls.Certificate) {
		c, k, err := certs.NewNodeCert(ca, key, name, []net.IP{net.IPv4(127, 0, 0, 1)}, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		kp, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return c, k, kp
	}
	certPEM, keyPEM, _ := node(caPEM, caKey, "node1")
	_, _, client := node(caPEM, caKey, "client")
	_, _, stranger := node(otherPEM, otherKey, "stranger")
	f := tlsFiles{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "node.pem"), key: filepath.Join(dir, "node-key.pem"),
		otherCA: filepath.Join(dir, "other-ca.pem"), caPool: x509.NewCertPool(), clientCert: client, strangerCert: stranger}
	f.caPool.AppendCertsFromPEM(caPEM)
	for name, data := range map[string][]byte{f.ca: caPEM, f.cert: certPEM, f.key: keyPEM, f.otherCA: otherPEM} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestClientTLSConfigs_Errors(t *testing.T) {
	f := writeTLSFiles(t)
	lg := slog.New(slog.DiscardHandler)
	tests := []struct {
		name                           string
		cert, key, clientCA, forwardCA string
		wantErr                        string // "" no error
		wantNil                        bool
	}{
		{name: "nothing set: plain http", wantNil: true},
		{name: "cert without key", cert: f.cert, wantErr: "go together"},
		{name: "key without cert", key: f.key, wantErr: "go together"},
		{name: "client CA without cert", clientCA: f.ca, wantErr: "need -cert-file"},
		{name: "forward CA without cert", forwardCA: f.ca, wantErr: "need -cert-file"},
		{name: "missing cert file", cert: f.cert + ".missing", key: f.key, wantErr: "node.pem.missing"},
		{name: "key of another certificate", cert: f.cert, key: f.cert, wantErr: "-cert-file/-key-file"},
		{name: "missing forward CA", cert: f.cert, key: f.key, forwardCA: f.ca + ".missing", wantErr: "-forward-ca-file"},
		{name: "forward CA is not PEM", cert: f.cert, key: f.key, forwardCA: f.key, wantErr: "holds no PEM certificate"},
		{name: "cert and key", cert: f.cert, key: f.key},
		{name: "everything", cert: f.cert, key: f.key, clientCA: f.ca, forwardCA: f.ca},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, fwd, err := clientTLSConfigs(tt.cert, tt.key, tt.clientCA, tt.forwardCA, lg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (srv == nil) != tt.wantNil || (fwd == nil) != tt.wantNil {
				t.Fatalf("server %v forward %v, want nil: %v", srv != nil, fwd != nil, tt.wantNil)
			}
			if srv != nil && strings.Join(srv.NextProtos, ",") != "http/1.1" {
				t.Errorf("NextProtos %q, want http/1.1 only (WebSockets need it)", srv.NextProtos)
			}
		})
	}
}

// serveTLS serves a handler that answers "ok" over TLS on loopback and
// returns its address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ErrorLog: log.New(io.Discard, "", 0)} // refused handshakes are the point
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func get(cfg *tls.Config, addr string) error {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(b) != "ok" {
		return errors.New("body " + string(b))
	}
	return nil
}

// TestClientTLS_Serves: the -http listener serves HTTPS that a client
// trusting the CA accepts; with -client-ca-file only clients with a
// certificate from that CA get an answer; the forwarding config verifies
// the other node and presents this node's certificate.
func TestClientTLS_Serves(t *testing.T) {
	f := writeTLSFiles(t)
	lg := slog.New(slog.DiscardHandler)

	t.Run("https", func(t *testing.T) {
		srv, err := clientTLS(f.cert, f.key, "", lg)
		if err != nil {
			t.Fatal(err)
		}
		addr := serveTLS(t, srv)
		if err := get(&tls.Config{RootCAs: f.caPool}, addr); err != nil {
			t.Fatalf("client trusting the CA: %v", err)
		}
		if err := get(&tls.Config{}, addr); err == nil {
			t.Fatal("a client trusting only the system roots accepted the test CA's certificate")
		}
	})

	t.Run("client certificates", func(t *testing.T) {
		srv, fwd, err := clientTLSConfigs(f.cert, f.key, f.ca, f.ca, lg)
		if err != nil {
			t.Fatal(err)
		}
		addr := serveTLS(t, srv)
		cases := []struct {
			name string
			cfg  *tls.Config
			ok   bool
		}{
			{"no certificate", &tls.Config{RootCAs: f.caPool}, false},
			{"certificate from another CA", &tls.Config{RootCAs: f.caPool, Certificates: []tls.Certificate{f.strangerCert}}, false},
			{"certificate from the client CA", &tls.Config{RootCAs: f.caPool, Certificates: []tls.Certificate{f.clientCert}}, true},
		}
		for _, c := range cases {
			if err := get(c.cfg, addr); (err == nil) != c.ok {
				t.Errorf("%s: err %v, want ok %v", c.name, err, c.ok)
			}
		}
		// What a node forwards with: verifies the other node for the name
		// (the hub sets ServerName per request) and presents its own
		// certificate, which the other node's client CA accepts.
		fc := fwd.Clone()
		fc.ServerName = "127.0.0.1"
		if err := get(fc, addr); err != nil {
			t.Fatalf("forwarding config: %v", err)
		}
	})

	t.Run("forward config without -forward-ca-file uses the system roots", func(t *testing.T) {
		srv, fwd, err := clientTLSConfigs(f.cert, f.key, "", "", lg)
		if err != nil {
			t.Fatal(err)
		}
		if fwd.RootCAs != nil || fwd.GetClientCertificate != nil {
			t.Fatalf("forward config: RootCAs %v, client certificate %v; want system roots and none", fwd.RootCAs != nil, fwd.GetClientCertificate != nil)
		}
		addr := serveTLS(t, srv)
		fc := fwd.Clone()
		fc.ServerName = "127.0.0.1"
		if err := get(fc, addr); err == nil {
			t.Fatal("the system roots trusted the test CA")
		}
	})
}
