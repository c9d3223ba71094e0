package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/raftplane/raftplane"
	"github.com/raftplane/raftplane/certs"
)

// Defaults of `raftplane certs`, as Consul's `tls ca create` (5 years) and
// `tls cert create` (1 year).
const (
	defaultCADays   = 1825
	defaultCertDays = 365
	defaultCAName   = "raftplane CA"
)

const certsUsage = `usage:
  raftplane certs ca   [-dir DIR] [-days N] [-name CN]
      writes DIR/ca.pem and DIR/ca-key.pem, a new cluster CA
  raftplane certs node -name N [-ip A,B] [-host H,H] [-dir DIR] [-ca DIR/ca.pem] [-ca-key DIR/ca-key.pem] [-days N] [-force]
      writes DIR/N.pem and DIR/N-key.pem, a certificate for node N signed by the CA

Every certificate the CA signs is a cluster member: keep ca-key.pem off the nodes.
Give each node -peer-cert-file N.pem -peer-key-file N-key.pem -peer-ca-file ca.pem.
`

// runCerts is `raftplane certs ca|node`: it makes the cluster CA and node
// certificates for peer TLS, like `consul tls ca create` and `consul tls
// cert create`.
func runCerts(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, certsUsage)
		return errors.New("certs: say ca or node")
	}
	var err error
	switch args[0] {
	case "ca":
		err = runCertsCA(args[1:], stdout, stderr)
	case "node":
		err = runCertsNode(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, certsUsage)
		return nil
	default:
		fmt.Fprint(stderr, certsUsage)
		return fmt.Errorf("certs: unknown subcommand %q (want ca or node)", args[0])
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func runCertsCA(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("raftplane certs ca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "folder to write ca.pem and ca-key.pem into (created if missing)")
	days := fs.Int("days", defaultCADays, "days the CA is valid")
	name := fs.String("name", defaultCAName, "the CA's common name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("certs ca: unexpected argument %q", fs.Arg(0))
	}
	if *days < 1 {
		return fmt.Errorf("certs ca: -days (%d) must be at least 1", *days)
	}
	certPEM, keyPEM, err := certs.NewCA(*name, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	certFile, keyFile := filepath.Join(*dir, "ca.pem"), filepath.Join(*dir, "ca-key.pem")
	if err := writePair(*dir, certFile, certPEM, keyFile, keyPEM, false); err != nil {
		return fmt.Errorf("certs ca: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (the CA certificate: give it to every node as -peer-ca-file)\nwrote %s (the CA key: keep it off the nodes, it makes members)\n", certFile, keyFile)
	return nil
}

func runCertsNode(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("raftplane certs node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "the node's name: the certificate's common name and a DNS name, and the file names (required)")
	ipList := fs.String("ip", "", "comma-separated IP addresses the certificate is for (the node's HTTPS address, for client TLS)")
	hostList := fs.String("host", "", "comma-separated DNS names the certificate is for, besides -name")
	dir := fs.String("dir", ".", "folder to write NAME.pem and NAME-key.pem into (created if missing)")
	caFile := fs.String("ca", "", "the CA certificate (default DIR/ca.pem)")
	caKeyFile := fs.String("ca-key", "", "the CA key (default DIR/ca-key.pem)")
	days := fs.Int("days", defaultCertDays, "days the certificate is valid (at most until the CA expires)")
	force := fs.Bool("force", false, "replace existing NAME.pem and NAME-key.pem (for rotation; each file is replaced by a rename)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("certs node: unexpected argument %q", fs.Arg(0))
	}
	if *name == "" {
		return errors.New("certs node: -name is required")
	}
	if *days < 1 {
		return fmt.Errorf("certs node: -days (%d) must be at least 1", *days)
	}
	var ips []net.IP
	for _, s := range raftplane.SplitList(*ipList) {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("certs node: -ip %q is not an IP address", s)
		}
		ips = append(ips, ip)
	}
	if *caFile == "" {
		*caFile = filepath.Join(*dir, "ca.pem")
	}
	if *caKeyFile == "" {
		*caKeyFile = filepath.Join(*dir, "ca-key.pem")
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		return fmt.Errorf("certs node: CA certificate (make one with `raftplane certs ca`): %w", err)
	}
	caKeyPEM, err := os.ReadFile(*caKeyFile)
	if err != nil {
		return fmt.Errorf("certs node: CA key: %w", err)
	}
	certPEM, keyPEM, err := certs.NewNodeCert(caPEM, caKeyPEM, *name, ips, raftplane.SplitList(*hostList), time.Duration(*days)*24*time.Hour)
	if err != nil {
		return fmt.Errorf("certs node: %w", err)
	}
	certFile, keyFile := filepath.Join(*dir, *name+".pem"), filepath.Join(*dir, *name+"-key.pem")
	if err := writePair(*dir, certFile, certPEM, keyFile, keyPEM, *force); err != nil {
		return fmt.Errorf("certs node: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s and %s (node %s): -peer-cert-file %s -peer-key-file %s -peer-ca-file %s\n",
		certFile, keyFile, *name, certFile, keyFile, *caFile)
	return nil
}

// writePair writes a certificate (0644) and its key (0600). Without replace
// it refuses if either file exists and writes neither; with replace each
// file is written beside its name and renamed over it, so a node reloading
// them never reads half a file (it may briefly see the new certificate with
// the old key, which it refuses, keeping the old pair until the key
// follows).
func writePair(dir, certFile string, certPEM []byte, keyFile string, keyPEM []byte, replace bool) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if !replace {
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Lstat(f); err == nil {
				return fmt.Errorf("%s exists; not overwriting it", f)
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if err := writeNew(keyFile, keyPEM, 0o600); err != nil {
			return err
		}
		if err := writeNew(certFile, certPEM, 0o644); err != nil {
			os.Remove(keyFile)
			return err
		}
		return nil
	}
	if err := replaceFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return replaceFile(certFile, certPEM, 0o644)
}

// writeNew creates name, failing if it exists (O_EXCL: no race with another
// writer between the check and the write).
func writeNew(name string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(name)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return err
	}
	return nil
}

// replaceFile writes data to a new file beside name and renames it over
// name.
func replaceFile(name string, data []byte, mode os.FileMode) error {
	tmp := name + ".new"
	os.Remove(tmp) // a leftover of an interrupted run
	if err := writeNew(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
