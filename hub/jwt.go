package hub

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWT verification for tokens from real identity providers (Keycloak, Auth0,
// Entra ID): RSA and ECDSA public keys from PEM files or a JWKS URL, besides
// the HS256 shared key. The algorithm decides the key family before any key
// is looked at, so a token can never pick how its signature is checked
// (algorithm confusion: an HS256 token "signed" with a public key's bytes
// finds no HMAC key, or only the shared one).

// Errors of JWT verification, wrapped in the 401 messages.
var (
	// ErrJWKSNotLoaded: a JWKS URL is configured but no fetch has succeeded
	// yet, and no PEM key fits the token.
	ErrJWKSNotLoaded = errors.New("signing keys not loaded yet (the JWKS URL has not answered)")
	// ErrNoJWTKey: no configured key fits the token's algorithm and kid.
	ErrNoJWTKey = errors.New("no key for this token")
	// ErrBadJWKS: a JWKS document that cannot be used.
	ErrBadJWKS = errors.New("bad JWKS")
	// ErrBadPublicKey: a public key that is not RSA (2048 bits or more) or
	// ECDSA on P-256 or P-384.
	ErrBadPublicKey = errors.New("unsupported public key")
)

// Defaults of the JWT fields of Config.
const (
	DefaultJWTLeeway      = 5 * time.Second
	DefaultJWKSRefresh    = 15 * time.Minute
	DefaultJWKSMinRefresh = time.Minute
	DefaultJWKSTimeout    = 10 * time.Second
	DefaultJWKSMaxBytes   = 1 << 20
)

// Bounds on keys, here and in JWKS documents.
const (
	minRSABits = 2048  // NIST's floor; smaller keys are refused
	maxRSABits = 16384 // so a JWKS cannot make each verification arbitrarily slow
	maxLeeway  = 10 * time.Minute
)

// The algorithms accepted for each kind of key. "none" is in none of them.
var (
	hmacAlgs   = []string{"HS256"}
	publicAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"}
)

// jwtRequired reports whether clients must present a JWT: then the user of
// a connection token must also match the JWT's on every later request.
func (s *Server) jwtRequired() bool { return s.jwt != nil }

// LoadJWTPublicKeys parses the PEM blocks of a -jwt-public-key-file: PUBLIC
// KEY (PKIX), RSA PUBLIC KEY (PKCS #1) or CERTIFICATE (its key is used; its
// validity and chain are not checked: the file is the trust). Every block
// must hold an RSA key of at least 2048 bits or an ECDSA key on P-256 or
// P-384; a private key block is an error, so a misplaced private key is
// noticed rather than read.
func LoadJWTPublicKeys(pemBytes []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	rest := pemBytes
	for n := 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var (
			k   crypto.PublicKey
			err error
		)
		switch b.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(b.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(b.Bytes); err == nil {
				k = c.PublicKey
			}
		default:
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("PEM block %d is a %s: give the public key (openssl pkey -pubout) or the certificate", n, b.Type)
			}
			return nil, fmt.Errorf("PEM block %d: type %q is not PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", n, b.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, b.Type, err)
		}
		if err := checkPublicKey(k); err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, b.Type, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block found: want PUBLIC KEY or CERTIFICATE blocks")
	}
	return keys, nil
}

// checkPublicKey accepts the keys the accepted algorithms can use.
func checkPublicKey(k crypto.PublicKey) error {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return fmt.Errorf("%w: RSA key of %d bits, want %d to %d", ErrBadPublicKey, n, minRSABits, maxRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ECDSA curve %s, want P-256 (ES256) or P-384 (ES384)", ErrBadPublicKey, k.Curve.Params().Name)
		}
		return nil
	default:
		return fmt.Errorf("%w: %T, want RSA or ECDSA", ErrBadPublicKey, k)
	}
}

// keyFits reports whether key k can verify a token of algorithm alg.
func keyFits(alg string, k crypto.PublicKey) bool {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return alg == "ES256" && k.Curve == elliptic.P256() || alg == "ES384" && k.Curve == elliptic.P384()
	}
	return false
}

// jwk is one usable key of a JWKS.
type jwk struct {
	kid string
	alg string // empty: any algorithm that fits the key
	key crypto.PublicKey
}

// rawJWK is a JSON Web Key (RFC 7517, 7518) as far as we read it.
type rawJWK struct {
	Kty    string   `json:"kty"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Alg    string   `json:"alg"`
	Kid    string   `json:"kid"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	Crv    string   `json:"crv"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
}

// parseJWKS reads a JWK Set. Keys we cannot or must not use for verifying
// signatures (another "use", an unknown kty or curve, an algorithm we do not
// accept, a malformed or weak key) are skipped, and skipped says which and
// why; a document that is not a JWK Set, or that has no usable key, is an
// error, so that a refresh returning one keeps the keys we have.
func parseJWKS(data []byte) (keys []jwk, skipped []string, err error) {
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadJWKS, err)
	}
	if doc.Keys == nil {
		return nil, nil, fmt.Errorf(`%w: no "keys" member`, ErrBadJWKS)
	}
	for i, raw := range *doc.Keys {
		var r rawJWK
		if err := json.Unmarshal(raw, &r); err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		k, err := r.parse()
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): %v", i, r.Kid, err))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("%w: no usable signing key (%d skipped: %s)", ErrBadJWKS, len(skipped), strings.Join(skipped, "; "))
	}
	return keys, skipped, nil
}

// parse decodes one JWK into a key. It is a codec, one branch per key type
// and curve (RFC 7517/7518), each field checked, hence its branches.
func (r rawJWK) parse() (jwk, error) {
	if r.Use != "" && r.Use != "sig" {
		return jwk{}, fmt.Errorf("use %q is not sig", r.Use)
	}
	if r.KeyOps != nil && !slices.Contains(r.KeyOps, "verify") {
		return jwk{}, fmt.Errorf("key_ops %q do not include verify", r.KeyOps)
	}
	if r.Alg != "" && !slices.Contains(publicAlgs, r.Alg) {
		return jwk{}, fmt.Errorf("alg %q is not accepted", r.Alg)
	}
	k := jwk{kid: r.Kid, alg: r.Alg}
	switch r.Kty {
	case "RSA":
		n, err1 := b64Field(r.N)
		e, err2 := b64Field(r.E)
		if err := errors.Join(err1, err2); err != nil {
			return jwk{}, err
		}
		if len(n) == 0 || n[0] == 0 || len(e) == 0 || len(e) > 4 || e[0] == 0 {
			return jwk{}, errors.New("malformed RSA n or e")
		}
		ev := new(big.Int).SetBytes(e).Int64()
		if ev < 3 || ev%2 == 0 || ev > 1<<31-1 {
			return jwk{}, fmt.Errorf("RSA exponent %d is not an odd number from 3 to 2^31-1", ev)
		}
		k.key = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ev)}
	case "EC":
		var curve elliptic.Curve
		switch r.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		default:
			return jwk{}, fmt.Errorf("curve %q is not P-256 or P-384", r.Crv)
		}
		x, err1 := b64Field(r.X)
		y, err2 := b64Field(r.Y)
		if err := errors.Join(err1, err2); err != nil {
			return jwk{}, err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size { // RFC 7518 6.2.1.2: full length
			return jwk{}, fmt.Errorf("EC x and y must be %d bytes each", size)
		}
		pk, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return jwk{}, err
		}
		k.key = pk
	default:
		return jwk{}, fmt.Errorf("kty %q is not RSA or EC", r.Kty)
	}
	if err := checkPublicKey(k.key); err != nil {
		return jwk{}, err
	}
	if k.alg != "" && !keyFits(k.alg, k.key) {
		return jwk{}, fmt.Errorf("alg %s does not fit a %s key", k.alg, r.Kty)
	}
	return k, nil
}

// b64Field decodes a base64url JWK member; some providers pad it.
func b64Field(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("bad base64url: %w", err)
	}
	return b, nil
}

// checkJWKSURL accepts https URLs, and http to a loopback host only: keys
// fetched in clear text from elsewhere could be anyone's.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q is http to a non-loopback host: use https (keys fetched in clear text could be anyone's)", raw)
	}
	return fmt.Errorf("%q: scheme must be https", raw)
}

// jwtAuth verifies client JWTs. It is nil on a Server without JWT config.
type jwtAuth struct {
	hmacKey []byte
	static  []crypto.PublicKey
	jwks    *jwksCache // nil without a JWKS URL
	parser  *jwt.Parser
}

// newJWTAuth returns nil when cfg configures no JWT key source.
func newJWTAuth(cfg Config, lg *slog.Logger) *jwtAuth {
	if len(cfg.JWTKey) == 0 && len(cfg.JWTPublicKeys) == 0 && cfg.JWKSURL == "" {
		return nil
	}
	var algs []string
	if len(cfg.JWTKey) > 0 {
		algs = append(algs, hmacAlgs...)
	}
	if len(cfg.JWTPublicKeys) > 0 || cfg.JWKSURL != "" {
		algs = append(algs, publicAlgs...)
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithLeeway(cfg.JWTLeeway), jwt.WithIssuedAt()}
	if !cfg.JWTAllowNoExp {
		// A token without exp would keep its connections open for ever:
		// nothing would close them (authz.go closes each at its exp).
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if cfg.JWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.JWTIssuer))
	}
	if len(cfg.JWTAudience) > 0 {
		opts = append(opts, jwt.WithAudience(cfg.JWTAudience...))
	}
	a := &jwtAuth{hmacKey: cfg.JWTKey, static: cfg.JWTPublicKeys, parser: jwt.NewParser(opts...)}
	if cfg.JWKSURL != "" {
		a.jwks = newJWKSCache(cfg, lg)
	}
	return a
}

// verify checks a JWT and returns the identity it carries: its subject,
// claims and expiry. ctx bounds a wait for a JWKS refresh when the token
// names a kid we do not know.
func (a *jwtAuth) verify(ctx context.Context, raw string) (identity, error) {
	claims := jwt.MapClaims{}
	_, err := a.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) { return a.keysFor(ctx, t) })
	if err != nil {
		return identity{}, err
	}
	sub, err := claims.GetSubject()
	if err != nil {
		return identity{}, err
	}
	id := identity{user: sub, claims: claims}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.expires = exp.Time
	}
	return id, nil
}

// keysFor picks the keys that may have signed t, by its algorithm (already
// one of the accepted ones: the parser checks it before asking) and kid.
func (a *jwtAuth) keysFor(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if slices.Contains(hmacAlgs, alg) {
		if len(a.hmacKey) == 0 { // not reached: HS256 is accepted only with a key
			return nil, ErrNoJWTKey
		}
		return a.hmacKey, nil
	}
	kid := ""
	if v, ok := t.Header["kid"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, errors.New(`"kid" header is not a string`)
		}
		kid = s
	}
	var set jwt.VerificationKeySet
	for _, k := range a.static {
		if keyFits(alg, k) {
			set.Keys = append(set.Keys, k)
		}
	}
	if a.jwks != nil {
		ks, loaded := a.jwks.lookup(alg, kid)
		if !loaded || (kid != "" && len(ks) == 0) {
			// Not loaded yet, or a kid we have not seen: the provider may
			// have rotated. refresh is rate-limited, so an unknown kid
			// costs the provider at most one fetch per JWKSMinRefresh.
			a.jwks.refresh(ctx)
			ks, loaded = a.jwks.lookup(alg, kid)
		}
		for _, k := range ks {
			set.Keys = append(set.Keys, k)
		}
		if !loaded && len(set.Keys) == 0 {
			return nil, ErrJWKSNotLoaded
		}
	}
	if len(set.Keys) == 0 {
		if kid != "" {
			return nil, fmt.Errorf("%w: no %s key with kid %q", ErrNoJWTKey, alg, kid)
		}
		return nil, fmt.Errorf("%w: no %s key", ErrNoJWTKey, alg)
	}
	return set, nil
}

// jwksCache holds the keys of a JWKS URL. Its loop (run, owned by the
// Server: started by Start, stopped by Close) fetches at start, every
// Refresh, and when a token with an unknown kid asks, never more than once
// per MinRefresh. A failed fetch keeps the last good keys.
type jwksCache struct {
	url        string
	client     *http.Client
	refreshInt time.Duration
	minRefresh time.Duration
	timeout    time.Duration
	maxBytes   int64
	log        *slog.Logger

	kick chan struct{} // a waiter wants a fetch; buffered 1

	mu        sync.Mutex
	keys      []jwk
	loaded    bool
	running   bool          // the loop runs: refresh may wait for it
	lastTry   time.Time     // the last fetch attempt, good or bad
	round     chan struct{} // closed at the end of the next round to begin
	loopEnded chan struct{} // closed when the loop returns
}

func newJWKSCache(cfg Config, lg *slog.Logger) *jwksCache {
	client := cfg.JWKSHTTPClient
	if client == nil {
		client = &http.Client{
			// A redirect may not take us from https to clear text.
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return errors.New("too many redirects")
				}
				if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
					return fmt.Errorf("redirect from https to %s refused", req.URL.Scheme)
				}
				return nil
			},
		}
	}
	return &jwksCache{
		url:        cfg.JWKSURL,
		client:     client,
		refreshInt: cfg.JWKSRefresh,
		minRefresh: cfg.JWKSMinRefresh,
		timeout:    cfg.JWKSTimeout,
		maxBytes:   cfg.JWKSMaxBytes,
		log:        lg.With("jwks", cfg.JWKSURL),
		kick:       make(chan struct{}, 1),
		round:      make(chan struct{}),
		loopEnded:  make(chan struct{}),
	}
}

// startJWKS starts the JWKS loop, if there is one, as a goroutine of s.
// Called by Start under s.mu.
func (s *Server) startJWKS() {
	if s.jwt == nil || s.jwt.jwks == nil {
		return
	}
	c := s.jwt.jwks
	c.mu.Lock()
	c.running = true
	c.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.run(s.life, s.stop)
	}()
}

// lookup returns the keys that fit alg and kid (every fitting key when kid
// is empty), and whether any fetch has succeeded yet.
func (c *jwksCache) lookup(alg, kid string) ([]crypto.PublicKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []crypto.PublicKey
	for _, k := range c.keys {
		if (kid == "" || k.kid == kid) && (k.alg == "" || k.alg == alg) && keyFits(alg, k.key) {
			out = append(out, k.key)
		}
	}
	return out, c.loaded
}

// refresh asks the loop for a fetch and waits for its round to end, unless
// the last attempt was less than MinRefresh ago (then it returns at once),
// the loop does not run, or ctx ends.
func (c *jwksCache) refresh(ctx context.Context) {
	c.mu.Lock()
	if !c.running || !c.lastTry.IsZero() && time.Since(c.lastTry) < c.minRefresh {
		c.mu.Unlock()
		return
	}
	round := c.round
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default: // a kick is pending already
	}
	select {
	case <-round:
	case <-ctx.Done():
	case <-c.loopEnded:
	}
}

// run is the loop: a fetch now, then one every refresh interval (every
// MinRefresh until one succeeds) or when kicked, rate-limited.
func (c *jwksCache) run(life context.Context, stop <-chan struct{}) {
	defer func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
		close(c.loopEnded)
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case <-timer.C:
		case <-c.kick:
		}
		// This round answers the waiters that asked before it began; who
		// asks during its fetch waits for the next one, which sees any
		// change the provider made meanwhile (or is rate-limited).
		c.mu.Lock()
		waiters := c.round
		c.round = make(chan struct{})
		due := c.lastTry.IsZero() || time.Since(c.lastTry) >= c.minRefresh
		if due {
			c.lastTry = time.Now()
		}
		c.mu.Unlock()
		if due {
			c.fetchOnce(life)
		}
		close(waiters) // fetched or not
		if !due {      // kicked too soon: the timer still runs
			continue
		}
		c.mu.Lock()
		wait := c.refreshInt
		if !c.loaded {
			wait = c.minRefresh
		}
		c.mu.Unlock()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// fetchOnce fetches and parses the JWKS; on success it replaces the keys,
// on failure it logs and keeps them.
func (c *jwksCache) fetchOnce(life context.Context) {
	keys, skipped, err := c.fetch(life)
	if err != nil {
		c.mu.Lock()
		loaded := c.loaded
		c.mu.Unlock()
		if loaded {
			c.log.Warn("JWKS refresh failed; keeping the keys from the last good fetch", "err", err)
		} else {
			c.log.Error("JWKS fetch failed; tokens signed with its keys are refused until it succeeds", "err", err, "retry_in", c.minRefresh)
		}
		return
	}
	if len(skipped) > 0 {
		c.log.Debug("JWKS keys skipped", "skipped", skipped)
	}
	kids := make([]string, len(keys))
	for i, k := range keys {
		kids[i] = k.kid
	}
	c.mu.Lock()
	changed := !c.loaded || !sameKeys(c.keys, keys)
	c.keys, c.loaded = keys, true
	c.mu.Unlock()
	if changed {
		c.log.Info("JWKS keys loaded", "kids", kids, "skipped", len(skipped))
	}
}

func sameKeys(a, b []jwk) bool {
	return slices.EqualFunc(a, b, func(x, y jwk) bool {
		type equaler interface{ Equal(crypto.PublicKey) bool }
		e, ok := x.key.(equaler)
		return x.kid == y.kid && x.alg == y.alg && ok && e.Equal(y.key)
	})
}

func (c *jwksCache) fetch(life context.Context) ([]jwk, []string, error) {
	ctx, cancel := context.WithTimeout(life, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s", c.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", c.url, err)
	}
	if int64(len(body)) > c.maxBytes {
		return nil, nil, fmt.Errorf("%w: larger than JWKSMaxBytes (%d)", ErrBadJWKS, c.maxBytes)
	}
	return parseJWKS(bytes.TrimSpace(body))
}

// validateJWT checks the JWT fields of c.
func (c Config) validateJWT() []error {
	var errs []error
	for i, k := range c.JWTPublicKeys {
		if err := checkPublicKey(k); err != nil {
			errs = append(errs, fmt.Errorf("JWTPublicKeys[%d]: %w", i, err))
		}
	}
	if c.JWTLeeway < 0 || c.JWTLeeway > maxLeeway {
		errs = append(errs, fmt.Errorf("JWTLeeway (%s) must be between 0 and %s", c.JWTLeeway, maxLeeway))
	}
	on := len(c.JWTKey) > 0 || len(c.JWTPublicKeys) > 0 || c.JWKSURL != ""
	if !on && (c.JWTIssuer != "" || len(c.JWTAudience) > 0) {
		errs = append(errs, errors.New("JWTIssuer and JWTAudience need a JWT key: JWTKey, JWTPublicKeys or JWKSURL"))
	}
	if slices.Contains(c.JWTAudience, "") {
		errs = append(errs, errors.New("JWTAudience holds an empty audience"))
	}
	if c.JWKSURL == "" {
		return errs
	}
	if err := checkJWKSURL(c.JWKSURL); err != nil {
		errs = append(errs, fmt.Errorf("JWKSURL: %w", err))
	}
	if c.JWKSMinRefresh <= 0 || c.JWKSRefresh < c.JWKSMinRefresh {
		errs = append(errs, fmt.Errorf("JWKSMinRefresh (%s) must be positive and JWKSRefresh (%s) at least as long",
			c.JWKSMinRefresh, c.JWKSRefresh))
	}
	if c.JWKSTimeout <= 0 {
		errs = append(errs, fmt.Errorf("JWKSTimeout (%s) must be positive", c.JWKSTimeout))
	}
	if c.JWKSMaxBytes < 64 {
		errs = append(errs, fmt.Errorf("JWKSMaxBytes (%d) must be at least 64", c.JWKSMaxBytes))
	}
	return errs
}
