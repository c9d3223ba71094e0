package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUntrusted means a peer's certificate does not chain to the current CA
// pool, has expired, or is not for the role it was presented in. Handshake
// errors from a Reloader's configs wrap it.
var ErrUntrusted = errors.New("certs: peer certificate not trusted")

// ErrNoCA means a configuration that must verify peers has no CA file.
var ErrNoCA = errors.New("certs: no CA file to verify peers with")

// Files names PEM files on disk. CA may be empty where no peer verification
// is wanted.
type Files struct{ Cert, Key, CA string }

// ReloaderConfig configures a Reloader. Start from DefaultReloaderConfig.
type ReloaderConfig struct {
	Files Files
	// ReloadCheck is how often, at most, a handshake looks at the files'
	// modification time and size; 0 looks at every handshake.
	ReloadCheck time.Duration
	// Logger receives reloads (Info) and failed reloads (Warn).
	Logger *slog.Logger
}

// DefaultReloadCheck is ReloadCheck's default: a rotated certificate is in
// use within a second, and a busy port stats its files once a second.
const DefaultReloadCheck = time.Second

// DefaultReloaderConfig returns the defaults for the given files.
func DefaultReloaderConfig(f Files) ReloaderConfig {
	return ReloaderConfig{Files: f, ReloadCheck: DefaultReloadCheck}
}

// Validate checks the config, naming the values.
func (c ReloaderConfig) Validate() error {
	var errs []error
	if c.Files.Cert == "" || c.Files.Key == "" {
		errs = append(errs, fmt.Errorf("certificate file (%q) and key file (%q) must both be set", c.Files.Cert, c.Files.Key))
	}
	if c.ReloadCheck < 0 {
		errs = append(errs, fmt.Errorf("ReloadCheck (%s) must not be negative", c.ReloadCheck))
	}
	if len(errs) > 0 {
		return fmt.Errorf("certs: %w", errors.Join(errs...))
	}
	return nil
}

// Reloader serves TLS configs whose certificate and CA pool follow the files
// on disk: it re-reads them when their modification time, size or identity
// (a file renamed into place) changes, checked at most once per ReloadCheck
// during handshakes, so it needs no goroutine. When a reload fails (a
// half-written file, a key that does not match the certificate yet) it keeps
// the last good ones, logs that once, and tries again when the files change
// again.
//
// Rotate by writing the new files (renaming them into place is safest); the
// next handshake after ReloadCheck uses them. Connections already open keep
// the certificate they were made with.
type Reloader struct {
	cfg ReloaderConfig
	log *slog.Logger

	cur       atomic.Pointer[loaded]
	nextCheck atomic.Int64 // unix nanoseconds; the next handshake after it checks the files

	mu   sync.Mutex // one reload at a time
	seen stamps     // the files' stamps at the last attempt, good or bad; guarded by mu
}

// loaded is one consistent set of what the files held.
type loaded struct {
	cert *tls.Certificate
	pool *x509.CertPool // nil without a CA file
	leaf *x509.Certificate
}

// stamp identifies one version of a file without reading it.
type stamp struct {
	fi os.FileInfo
}

func (s stamp) same(o stamp) bool {
	if s.fi == nil || o.fi == nil {
		return s.fi == nil && o.fi == nil
	}
	return os.SameFile(s.fi, o.fi) && s.fi.ModTime().Equal(o.fi.ModTime()) && s.fi.Size() == o.fi.Size()
}

type stamps struct{ cert, key, ca stamp }

func (s stamps) same(o stamps) bool {
	return s.cert.same(o.cert) && s.key.same(o.key) && s.ca.same(o.ca)
}

// NewReloader loads the files once now with the default ReloadCheck; a bad
// file is an error naming it.
func NewReloader(f Files, lg *slog.Logger) (*Reloader, error) {
	c := DefaultReloaderConfig(f)
	c.Logger = lg
	return NewReloaderConfig(c)
}

// NewReloaderConfig is NewReloader with every setting.
func NewReloaderConfig(c ReloaderConfig) (*Reloader, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	lg := c.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{cfg: c, log: lg}
	st, err := r.stat()
	if err != nil {
		return nil, err
	}
	l, err := r.load()
	if err != nil {
		return nil, err
	}
	r.seen = st
	r.cur.Store(l)
	r.nextCheck.Store(time.Now().Add(c.ReloadCheck).UnixNano())
	return r, nil
}

// stat stamps the files.
func (r *Reloader) stat() (stamps, error) {
	var st stamps
	for _, f := range []struct {
		name string
		into *stamp
	}{{r.cfg.Files.Cert, &st.cert}, {r.cfg.Files.Key, &st.key}, {r.cfg.Files.CA, &st.ca}} {
		if f.name == "" {
			continue
		}
		fi, err := os.Stat(f.name)
		if err != nil {
			return st, fmt.Errorf("certs: %w", err)
		}
		f.into.fi = fi
	}
	return st, nil
}

// load reads and checks the files.
func (r *Reloader) load() (*loaded, error) {
	f := r.cfg.Files
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	leaf := cert.Leaf
	if leaf == nil { // set by X509KeyPair since Go 1.23; parse if not
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certs: certificate %s: %w", f.Cert, err)
		}
	}
	l := &loaded{cert: &cert, leaf: leaf}
	if f.CA == "" {
		return l, nil
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	l.pool = x509.NewCertPool()
	if !l.pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("certs: CA file %s holds no PEM certificate", f.CA)
	}
	return l, nil
}

// current returns what to use for this handshake, reloading first when the
// check is due and the files changed.
func (r *Reloader) current() *loaded {
	now := time.Now()
	if now.UnixNano() < r.nextCheck.Load() {
		return r.cur.Load()
	}
	// Another handshake is checking: use what we have rather than wait on
	// its disk reads.
	if !r.mu.TryLock() {
		return r.cur.Load()
	}
	defer r.mu.Unlock()
	r.nextCheck.Store(now.Add(r.cfg.ReloadCheck).UnixNano())
	st, err := r.stat()
	if err != nil {
		if !st.same(r.seen) {
			r.seen = st
			r.log.Warn("TLS certificate files unreadable; keeping the previous certificate", "err", err)
		}
		return r.cur.Load()
	}
	if st.same(r.seen) {
		return r.cur.Load()
	}
	r.seen = st
	l, err := r.load()
	if err != nil {
		r.log.Warn("TLS certificate reload failed; keeping the previous certificate until the files change again", "err", err)
		return r.cur.Load()
	}
	r.cur.Store(l)
	r.log.Info("TLS certificate reloaded", "cert", r.cfg.Files.Cert, "subject", l.leaf.Subject.CommonName,
		"not_after", l.leaf.NotAfter, "ca", r.cfg.Files.CA)
	return l
}

// Leaf returns the certificate currently served (after a reload check).
func (r *Reloader) Leaf() *x509.Certificate { return r.current().leaf }

// ServerConfig returns a config for a TLS server: TLS 1.2+, the current
// certificate, and, when the CA file is set, clients must present a
// certificate for client authentication that chains to the *current* CA
// pool (tls.RequireAndVerifyClientCert semantics; the chain is checked in
// VerifyConnection because tls.Config's own ClientCAs cannot be reloaded).
// Session tickets are off, so every connection is verified against the
// current pool: a resumed session would skip that after a CA rotation.
//
// The caller may set fields the config leaves empty (NextProtos, for one).
func (r *Reloader) ServerConfig() *tls.Config {
	c := &tls.Config{
		MinVersion:             tls.VersionTLS12,
		SessionTicketsDisabled: true,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.current().cert, nil
		},
	}
	if r.cfg.Files.CA != "" {
		// RequireAnyClientCert makes the client send one; VerifyConnection
		// then does what RequireAndVerifyClientCert would, with today's pool.
		c.ClientAuth = tls.RequireAnyClientCert
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			return verify(r.cur.Load().pool, cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
		}
	}
	return c
}

// ClientConfig returns a config for a TLS client: TLS 1.2+, presents the
// current certificate and verifies the server's chain against the current
// CA pool. It does not check the host name: peers dial the IPs gossip gives
// them, and any certificate the cluster CA signed for server use is a
// member, so the CA must sign nothing else. It requires the CA file: without
// one every handshake fails with ErrNoCA.
func (r *Reloader) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The standard verification needs a host name and a fixed pool;
		// VerifyConnection does the chain check instead, so this is not
		// "insecure".
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.current().cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			// current, not cur.Load: a client may dial before anything
			// asked for its certificate, and should see a rotated CA.
			pool := r.current().pool
			if pool == nil {
				return ErrNoCA
			}
			return verify(pool, cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
		},
	}
}

// verify checks that certs[0] chains to pool through certs[1:], is valid
// now and allows usage.
func verify(pool *x509.CertPool, certs []*x509.Certificate, usage x509.ExtKeyUsage) error {
	if pool == nil {
		return ErrNoCA
	}
	if len(certs) == 0 {
		return fmt.Errorf("%w: no certificate presented", ErrUntrusted)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrUntrusted, certs[0].Subject.CommonName, err)
	}
	return nil
}
