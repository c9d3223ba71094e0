package main

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftplane/raftplane/certs"
)

func TestCertsCommand(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := runCerts(args, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	if out, err := run("ca", "-dir", dir, "-days", "30", "-name", "test CA"); err != nil {
		t.Fatalf("certs ca: %v\n%s", err, out)
	}
	for _, n := range []string{"n1", "n2"} {
		if out, err := run("node", "-dir", dir, "-name", n, "-ip", "127.0.0.1, ::1", "-host", n+".example"); err != nil {
			t.Fatalf("certs node %s: %v\n%s", n, err, out)
		}
	}
	for name, want := range map[string]os.FileMode{"ca.pem": 0o644, "ca-key.pem": 0o600, "n1.pem": 0o644, "n1-key.pem": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", name, got, want)
		}
	}

	// The files work as peer TLS: n1 serves, n2 dials, each verifies the
	// other against the CA.
	load := func(n string) *certs.Reloader {
		t.Helper()
		r, err := certs.NewReloader(certs.Files{
			Cert: filepath.Join(dir, n+".pem"), Key: filepath.Join(dir, n+"-key.pem"), CA: filepath.Join(dir, "ca.pem"),
		}, nil)
		if err != nil {
			t.Fatalf("NewReloader(%s): %v", n, err)
		}
		return r
	}
	n1, n2 := load("n1"), load("n2")
	leaf := n1.Leaf()
	if leaf.Subject.CommonName != "n1" || len(leaf.IPAddresses) != 2 || !strings.Contains(strings.Join(leaf.DNSNames, ","), "n1.example") {
		t.Errorf("n1's certificate: CN %q IPs %v DNS %v", leaf.Subject.CommonName, leaf.IPAddresses, leaf.DNSNames)
	}
	if left := time.Until(leaf.NotAfter); left > 31*24*time.Hour {
		t.Errorf("n1's certificate is valid for %s, beyond the 30-day CA", left)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", n1.ServerConfig())
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
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write([]byte("ok"))
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), n2.ClientConfig())
	if err != nil {
		t.Fatalf("n2 dialling n1: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("n2 read %q, %v from n1", buf, err)
	}
	c.Close()
	wg.Wait()

	// Refusals, each leaving the files as they were.
	caBefore, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ca", "-dir", dir}, "exists"},
		{[]string{"node", "-dir", dir, "-name", "n1"}, "exists"},
		{[]string{"node", "-dir", dir}, "-name is required"},
		{[]string{"node", "-dir", dir, "-name", "n3", "-ip", "nope"}, `-ip "nope"`},
		{[]string{"node", "-dir", dir, "-name", "../n3"}, "must not start"},
		{[]string{"node", "-dir", t.TempDir(), "-name", "n3"}, "CA certificate"},
		{[]string{"ca", "-dir", dir, "-days", "0"}, "-days (0)"},
		{[]string{"frob"}, "unknown subcommand"},
		{nil, "say ca or node"},
	} {
		if out, err := run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("certs %q: %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem")); !bytes.Equal(after, caBefore) {
		t.Error("a refused command changed ca-key.pem")
	}
	if _, err := os.Stat(filepath.Join(dir, "n3.pem")); !os.IsNotExist(err) {
		t.Errorf("a refused command left n3.pem: %v", err)
	}

	// -force rotates a node's certificate, and a reloader sees it.
	old := n1.Leaf().SerialNumber
	if out, err := run("node", "-dir", dir, "-name", "n1", "-force"); err != nil {
		t.Fatalf("certs node -force: %v\n%s", err, out)
	}
	r := load("n1")
	if r.Leaf().SerialNumber.Cmp(old) == 0 {
		t.Error("-force left the old certificate")
	}
	if _, err := os.Stat(filepath.Join(dir, "n1.pem.new")); !os.IsNotExist(err) {
		t.Errorf("-force left a temporary file: %v", err)
	}
}
