package hub

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Test keys, made once: RSA key generation is slow under -race.
var (
	testRSA1 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testRSA2 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testEC1  = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	testEC2  = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	testEC3  = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P384()) })
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// idpClaims are claims as an identity provider issues them.
type idpClaims struct {
	iss string
	aud []string
	sub string
	exp time.Duration // from now; 0: none
	nbf time.Duration // from now; 0: none
	iat time.Duration // from now; 0: none
}

func (c idpClaims) registered() jwt.RegisteredClaims {
	now := time.Now()
	r := jwt.RegisteredClaims{Issuer: c.iss, Subject: c.sub, Audience: c.aud}
	if c.exp != 0 {
		r.ExpiresAt = jwt.NewNumericDate(now.Add(c.exp))
	}
	if c.nbf != 0 {
		r.NotBefore = jwt.NewNumericDate(now.Add(c.nbf))
	}
	if c.iat != 0 {
		r.IssuedAt = jwt.NewNumericDate(now.Add(c.iat))
	}
	return r
}

// signKid signs claims with method and key, with a kid header when kid is
// not empty.
func signKid(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing JWT: %v", err)
	}
	return s
}

func pemOf(t testing.TB, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkixPEM(t testing.TB, k crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PUBLIC KEY", der)
}

// certPEM is a self-signed certificate for key, as identity providers
// publish their signing keys.
func certPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "CERTIFICATE", der)
}

func TestLoadJWTPublicKeys(t *testing.T) {
	t.Parallel()
	rsaPub, ecPub := &testRSA1().PublicKey, &testEC1().PublicKey
	p521 := mustEC(elliptic.P521())
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ecPriv, err := x509.MarshalECPrivateKey(testEC1())
	if err != nil {
		t.Fatal(err)
	}
	weak := mustRSA(1024)
	tests := []struct {
		name string
		pem  []byte
		want []crypto.PublicKey
		err  string
	}{
		{name: "RSA PUBLIC KEY (PKIX)", pem: pkixPEM(t, rsaPub), want: []crypto.PublicKey{rsaPub}},
		{name: "EC PUBLIC KEY (PKIX)", pem: pkixPEM(t, ecPub), want: []crypto.PublicKey{ecPub}},
		{name: "PKCS1", pem: pemOf(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(rsaPub)), want: []crypto.PublicKey{rsaPub}},
		{name: "certificate", pem: certPEM(t, testEC1()), want: []crypto.PublicKey{ecPub}},
		{name: "several blocks with text around", pem: append(append([]byte("issuer: idp\n"), pkixPEM(t, rsaPub)...), certPEM(t, testEC1())...),
			want: []crypto.PublicKey{rsaPub, ecPub}},
		{name: "private key", pem: pemOf(t, "EC PRIVATE KEY", ecPriv), err: "give the public key"},
		{name: "other block", pem: pemOf(t, "CERTIFICATE REQUEST", []byte{1}), err: "is not PUBLIC KEY"},
		{name: "RSA 1024", pem: pkixPEM(t, &weak.PublicKey), err: "RSA key of 1024 bits"},
		{name: "P-521", pem: pkixPEM(t, &p521.PublicKey), err: "curve P-521"},
		{name: "ed25519", pem: pkixPEM(t, edPub), err: "want RSA or ECDSA"},
		{name: "corrupt DER", pem: pemOf(t, "PUBLIC KEY", []byte{0x30, 1, 2}), err: "PEM block 1"},
		{name: "no PEM", pem: []byte("not pem"), err: "no PEM block"},
		{name: "empty", err: "no PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadJWTPublicKeys(tt.pem)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d keys, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !got[i].(interface{ Equal(crypto.PublicKey) bool }).Equal(tt.want[i]) {
					t.Errorf("key %d differs", i)
				}
			}
		})
	}
}

// jwkOf returns the JWK of a public key, as a provider publishes it.
func jwkOf(kid, alg string, k crypto.PublicKey) map[string]any {
	enc := base64.RawURLEncoding.EncodeToString
	m := map[string]any{"kid": kid, "use": "sig"}
	if alg != "" {
		m["alg"] = alg
	}
	switch k := k.(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", enc(k.N.Bytes()), enc(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		pt, err := k.Bytes() // 0x04 || x || y, each full length
		if err != nil {
			panic(err)
		}
		size := (len(pt) - 1) / 2
		m["kty"], m["crv"] = "EC", k.Curve.Params().Name
		m["x"], m["y"] = enc(pt[1:1+size]), enc(pt[1+size:])
	}
	return m
}

func jwksJSON(t testing.TB, keys ...map[string]any) []byte {
	t.Helper()
	if keys == nil {
		keys = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// with returns a copy of m with the given members set (nil: removed).
func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestParseJWKS(t *testing.T) {
	t.Parallel()
	rsaJWK := jwkOf("r1", "RS256", &testRSA1().PublicKey)
	ecJWK := jwkOf("e1", "ES256", &testEC1().PublicKey)
	weak := mustRSA(1024)
	tests := []struct {
		name    string
		doc     []byte
		kids    []string // of the keys kept, in order
		skipped int
		err     string
	}{
		{name: "RSA and EC", doc: jwksJSON(t, rsaJWK, ecJWK), kids: []string{"r1", "e1"}},
		{name: "P-384", doc: jwksJSON(t, jwkOf("e3", "ES384", &testEC3().PublicKey)), kids: []string{"e3"}},
		{name: "no use, no alg", doc: jwksJSON(t, with(rsaJWK, "use", nil, "alg", nil)), kids: []string{"r1"}},
		{name: "padded base64", doc: jwksJSON(t, with(rsaJWK, "e", "AQAB==")), kids: []string{"r1"}},
		{name: "encryption key skipped", doc: jwksJSON(t, with(rsaJWK, "kid", "enc", "use", "enc"), ecJWK), kids: []string{"e1"}, skipped: 1},
		{name: "key_ops without verify skipped", doc: jwksJSON(t, with(rsaJWK, "key_ops", []string{"encrypt"}), ecJWK), kids: []string{"e1"}, skipped: 1},
		{name: "oct and OKP skipped", doc: jwksJSON(t, map[string]any{"kty": "oct", "k": "c2VjcmV0"},
			map[string]any{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, ecJWK), kids: []string{"e1"}, skipped: 2},
		{name: "HS256 alg skipped", doc: jwksJSON(t, with(rsaJWK, "alg", "HS256"), ecJWK), kids: []string{"e1"}, skipped: 1},
		{name: "alg none skipped", doc: jwksJSON(t, with(rsaJWK, "alg", "none"), ecJWK), kids: []string{"e1"}, skipped: 1},
		{name: "alg that does not fit the key skipped", doc: jwksJSON(t, with(rsaJWK, "alg", "ES256"), ecJWK), kids: []string{"e1"}, skipped: 1},
		{name: "ES384 alg on a P-256 key skipped", doc: jwksJSON(t, with(ecJWK, "alg", "ES384"), rsaJWK), kids: []string{"r1"}, skipped: 1},
		{name: "weak RSA skipped", doc: jwksJSON(t, jwkOf("w", "", &weak.PublicKey), ecJWK), kids: []string{"e1"}, skipped: 1},
		{name: "even exponent skipped", doc: jwksJSON(t, with(rsaJWK, "e", "Ag"), ecJWK), kids: []string{"e1"}, skipped: 1},
		{name: "huge exponent skipped", doc: jwksJSON(t, with(rsaJWK, "e", "AQAAAAAB"), ecJWK), kids: []string{"e1"}, skipped: 1},
		{name: "bad base64 skipped", doc: jwksJSON(t, with(rsaJWK, "n", "!!"), ecJWK), kids: []string{"e1"}, skipped: 1},
		{name: "EC point off the curve skipped", doc: jwksJSON(t, with(ecJWK, "y", ecJWK["x"]), rsaJWK), kids: []string{"r1"}, skipped: 1},
		{name: "EC short coordinate skipped", doc: jwksJSON(t, with(ecJWK, "x", "AAAA"), rsaJWK), kids: []string{"r1"}, skipped: 1},
		{name: "P-521 skipped", doc: jwksJSON(t, with(ecJWK, "crv", "P-521"), rsaJWK), kids: []string{"r1"}, skipped: 1},
		{name: "key not an object skipped", doc: []byte(`{"keys":[7,` + string(mustJSON(t, rsaJWK)) + `]}`), kids: []string{"r1"}, skipped: 1},
		{name: "every key skipped", doc: jwksJSON(t, with(rsaJWK, "use", "enc")), err: "no usable signing key"},
		{name: "empty set", doc: jwksJSON(t), err: "no usable signing key"},
		{name: "no keys member", doc: []byte(`{"issuer":"x"}`), err: `no "keys"`},
		{name: "keys not an array", doc: []byte(`{"keys":{}}`), err: "bad JWKS"},
		{name: "not JSON", doc: []byte(`<html>`), err: "bad JWKS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, skipped, err := parseJWKS(tt.doc)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrBadJWKS) {
					t.Fatalf("err %v, want ErrBadJWKS mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kids []string
			for _, k := range keys {
				kids = append(kids, k.kid)
				if err := checkPublicKey(k.key); err != nil {
					t.Errorf("kid %s: %v", k.kid, err)
				}
			}
			if fmt.Sprint(kids) != fmt.Sprint(tt.kids) || len(skipped) != tt.skipped {
				t.Fatalf("kids %v skipped %q, want kids %v and %d skipped", kids, skipped, tt.kids, tt.skipped)
			}
		})
	}
	// The parsed keys are the keys.
	keys, _, err := parseJWKS(jwksJSON(t, rsaJWK, ecJWK))
	if err != nil {
		t.Fatal(err)
	}
	if !testRSA1().PublicKey.Equal(keys[0].key) || !testEC1().PublicKey.Equal(keys[1].key) {
		t.Fatal("parsed keys differ from the published ones")
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParseJWKS(f *testing.F) {
	f.Add(jwksJSON(f, jwkOf("r1", "RS256", &testRSA1().PublicKey), jwkOf("e1", "ES256", &testEC1().PublicKey)))
	f.Add(jwksJSON(f, jwkOf("e3", "", &testEC3().PublicKey)))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","e":"=","n":"=="}]}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, doc []byte) {
		keys, _, err := parseJWKS(doc)
		if (err == nil) != (len(keys) > 0) {
			t.Fatalf("err %v with %d keys", err, len(keys))
		}
		for _, k := range keys {
			if err := checkPublicKey(k.key); err != nil {
				t.Fatalf("kept an unusable key: %v", err)
			}
			if k.alg != "" && !keyFits(k.alg, k.key) {
				t.Fatalf("kept alg %s with a %T", k.alg, k.key)
			}
		}
	})
}

func TestConfig_ValidateJWT(t *testing.T) {
	t.Parallel()
	weak := mustRSA(1024)
	tests := []struct {
		name string
		edit func(*Config)
		err  string // "" valid
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "https JWKS", edit: func(c *Config) { c.JWKSURL = "https://idp.example.com/certs" }},
		{name: "http JWKS on loopback", edit: func(c *Config) { c.JWKSURL = "http://127.0.0.1:8080/certs" }},
		{name: "http JWKS on localhost", edit: func(c *Config) { c.JWKSURL = "http://localhost:8080/certs" }},
		{name: "http JWKS elsewhere", edit: func(c *Config) { c.JWKSURL = "http://idp.example.com/certs" }, err: "use https"},
		{name: "relative JWKS", edit: func(c *Config) { c.JWKSURL = "/certs" }, err: "not an absolute URL"},
		{name: "ftp JWKS", edit: func(c *Config) { c.JWKSURL = "ftp://idp/certs" }, err: "scheme must be https"},
		{name: "min refresh 0", edit: func(c *Config) { c.JWKSURL = "https://idp/certs"; c.JWKSMinRefresh = 0 }, err: "JWKSMinRefresh (0s)"},
		{name: "refresh below min", edit: func(c *Config) { c.JWKSURL = "https://idp/certs"; c.JWKSRefresh = time.Second }, err: "JWKSRefresh (1s)"},
		{name: "timeout 0", edit: func(c *Config) { c.JWKSURL = "https://idp/certs"; c.JWKSTimeout = 0 }, err: "JWKSTimeout"},
		{name: "max bytes tiny", edit: func(c *Config) { c.JWKSURL = "https://idp/certs"; c.JWKSMaxBytes = 10 }, err: "JWKSMaxBytes (10)"},
		{name: "negative leeway", edit: func(c *Config) { c.JWTLeeway = -time.Second }, err: "JWTLeeway (-1s)"},
		{name: "huge leeway", edit: func(c *Config) { c.JWTLeeway = time.Hour }, err: "JWTLeeway (1h0m0s)"},
		{name: "issuer without key", edit: func(c *Config) { c.JWTIssuer = "https://idp" }, err: "need a JWT key"},
		{name: "empty audience", edit: func(c *Config) { c.JWTKey = testJWTKey; c.JWTAudience = []string{""} }, err: "empty audience"},
		{name: "weak public key", edit: func(c *Config) { c.JWTPublicKeys = []crypto.PublicKey{&weak.PublicKey} }, err: "JWTPublicKeys[0]"},
		{name: "ed25519 key", edit: func(c *Config) { c.JWTPublicKeys = []crypto.PublicKey{ed25519.PublicKey(make([]byte, 32))} }, err: "want RSA or ECDSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t)
			tt.edit(&c)
			err := c.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want one mentioning %q", err, tt.err)
			}
		})
	}
}

// TestJWTAuth_Verify: the keys, algorithms and claims checks, on tokens as
// identity providers sign them.
func TestJWTAuth_Verify(t *testing.T) {
	t.Parallel()
	const iss, aud = "https://idp.example.com/realms/r", "raftplane"
	cfg := testConfig(t)
	cfg.JWTKey = testJWTKey
	cfg.JWTPublicKeys = []crypto.PublicKey{&testRSA1().PublicKey, &testEC1().PublicKey, &testEC3().PublicKey}
	cfg.JWTIssuer, cfg.JWTAudience = iss, []string{aud}
	cfg.JWTLeeway = time.Minute
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := newJWTAuth(cfg, newTestLogger(t))

	// Public keys only: no HMAC at all.
	pubOnly := testConfig(t)
	pubOnly.JWTPublicKeys = []crypto.PublicKey{&testRSA1().PublicKey}
	b := newJWTAuth(pubOnly, newTestLogger(t))

	good := idpClaims{iss: iss, aud: []string{aud}, sub: "alice", exp: time.Hour}
	claims := func(edit func(*idpClaims)) jwt.Claims {
		c := good
		edit(&c)
		return c.registered()
	}
	rsaPEM := pkixPEM(t, &testRSA1().PublicKey)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&testRSA1().PublicKey)
	hs256 := jwt.SigningMethodHS256
	tests := []struct {
		name string
		auth *jwtAuth
		tok  string
		err  string // "" accepted as alice
	}{
		{name: "RS256", tok: signKid(t, jwt.SigningMethodRS256, testRSA1(), "", good.registered())},
		{name: "RS512 with a kid", tok: signKid(t, jwt.SigningMethodRS512, testRSA1(), "some-kid", good.registered())},
		{name: "PS256", tok: signKid(t, jwt.SigningMethodPS256, testRSA1(), "", good.registered())},
		{name: "ES256", tok: signKid(t, jwt.SigningMethodES256, testEC1(), "", good.registered())},
		{name: "ES384", tok: signKid(t, jwt.SigningMethodES384, testEC3(), "", good.registered())},
		{name: "HS256 shared key", tok: signKid(t, hs256, testJWTKey, "", good.registered())},
		{name: "audience among several", tok: signKid(t, jwt.SigningMethodRS256, testRSA1(), "",
			claims(func(c *idpClaims) { c.aud = []string{"account", aud} }))},
		{name: "expired within leeway", tok: signKid(t, jwt.SigningMethodES256, testEC1(), "",
			claims(func(c *idpClaims) { c.exp = -30 * time.Second }))},
		{name: "not before within leeway", tok: signKid(t, jwt.SigningMethodES256, testEC1(), "",
			claims(func(c *idpClaims) { c.nbf = 30 * time.Second }))},

		{name: "RS256 by another key", tok: signKid(t, jwt.SigningMethodRS256, testRSA2(), "", good.registered()), err: "signature is invalid"},
		{name: "ES256 by another key", tok: signKid(t, jwt.SigningMethodES256, testEC2(), "", good.registered()), err: "signature is invalid"},
		{name: "ES384 header on a P-256 signature", tok: resign(t, jwt.SigningMethodES256, testEC1(), "ES384", good.registered()),
			err: "signature is invalid"},
		{name: "wrong issuer", tok: signKid(t, jwt.SigningMethodRS256, testRSA1(), "",
			claims(func(c *idpClaims) { c.iss = "https://evil.example.com" })), err: "issuer"},
		{name: "no issuer", tok: signKid(t, jwt.SigningMethodRS256, testRSA1(), "",
			claims(func(c *idpClaims) { c.iss = "" })), err: "iss claim is required"},
		{name: "wrong audience", tok: signKid(t, jwt.SigningMethodRS256, testRSA1(), "",
			claims(func(c *idpClaims) { c.aud = []string{"another-api"} })), err: "audience"},
		{name: "no audience", tok: signKid(t, jwt.SigningMethodRS256, testRSA1(), "",
			claims(func(c *idpClaims) { c.aud = nil })), err: "aud claim is required"},
		{name: "expired beyond leeway", tok: signKid(t, jwt.SigningMethodRS256, testRSA1(), "",
			claims(func(c *idpClaims) { c.exp = -2 * time.Minute })), err: "expired"},
		{name: "not before beyond leeway", tok: signKid(t, jwt.SigningMethodRS256, testRSA1(), "",
			claims(func(c *idpClaims) { c.nbf = 2 * time.Minute })), err: "not valid yet"},
		{name: "issued in the future", tok: signKid(t, jwt.SigningMethodRS256, testRSA1(), "",
			claims(func(c *idpClaims) { c.iat = 2 * time.Minute })), err: "used before issued"},
		{name: "alg none", tok: signKid(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", good.registered()), err: "signing method none is invalid"},
		{name: "HS512", tok: signKid(t, jwt.SigningMethodHS512, testJWTKey, "", good.registered()), err: "signing method HS512 is invalid"},
		{name: "non-string kid", tok: resignHeader(t, jwt.SigningMethodRS256, testRSA1(), map[string]any{"kid": 7}, good.registered()), err: "kid"},

		// Algorithm confusion: an HS256 token whose HMAC key is the public
		// key, as an attacker who knows the public key can make.
		{name: "HS256 keyed with the RSA public key PEM", tok: signKid(t, hs256, rsaPEM, "", good.registered()), err: "signature is invalid"},
		{name: "HS256 keyed with the RSA public key DER", tok: signKid(t, hs256, rsaDER, "", good.registered()), err: "signature is invalid"},
		{name: "HS256 keyed with the public key, no shared key", auth: b, tok: signKid(t, hs256, rsaPEM, "", good.registered()),
			err: "signing method HS256 is invalid"},
		{name: "public keys only: RS256", auth: b, tok: signKid(t, jwt.SigningMethodRS256, testRSA1(), "", good.registered())},
		{name: "public keys only: ES256 has no key", auth: b, tok: signKid(t, jwt.SigningMethodES256, testEC1(), "", good.registered()),
			err: "no key for this token: no ES256 key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			au := a
			if tt.auth != nil {
				au = tt.auth
			}
			id, err := au.verify(context.Background(), tt.tok)
			if tt.err == "" {
				if err != nil || id.user != "alice" {
					t.Fatalf("verify: %q, %v; want alice", id.user, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("verify: %q, %v; want an error mentioning %q", id.user, err, tt.err)
			}
		})
	}
}

// resign signs claims with method and key but names alg in the header: a
// token whose header lies about its algorithm.
func resign(t testing.TB, method jwt.SigningMethod, key any, alg string, claims jwt.Claims) string {
	t.Helper()
	return resignHeader(t, method, key, map[string]any{"alg": alg}, claims)
}

// resignHeader signs claims with method and key under a header with the
// given members set.
func resignHeader(t testing.TB, method jwt.SigningMethod, key any, hdr map[string]any, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range hdr {
		tok.Header[k] = v
	}
	unsigned, err := tok.SigningString()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := method.Sign(unsigned, key)
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// fakeIdP serves a JWKS whose contents and availability a test changes.
type fakeIdP struct {
	t       testing.TB
	ts      *httptest.Server
	mu      sync.Mutex
	doc     []byte
	status  int // 0: 200
	fetches atomic.Int64
}

func newFakeIdP(t testing.TB, keys ...map[string]any) *fakeIdP {
	p := &fakeIdP{t: t}
	p.set(keys...)
	p.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		doc, st := p.doc, p.status
		p.mu.Unlock()
		if st != 0 {
			http.Error(w, "down", st)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(p.ts.Close)
	return p
}

func (p *fakeIdP) set(keys ...map[string]any) {
	doc := jwksJSON(p.t, keys...)
	p.mu.Lock()
	p.doc, p.status = doc, 0
	p.mu.Unlock()
}

func (p *fakeIdP) setDown(status int) {
	p.mu.Lock()
	p.status = status
	p.mu.Unlock()
}

func (p *fakeIdP) setRaw(doc string) {
	p.mu.Lock()
	p.doc, p.status = []byte(doc), 0
	p.mu.Unlock()
}

// jwksHub starts a hub that takes its keys from idp.
func jwksHub(t *testing.T, idp *fakeIdP, minRefresh, refresh time.Duration) *testHub {
	return newTestHub(t, func(c *Config) {
		c.JWKSURL = idp.ts.URL + "/realms/r/protocol/openid-connect/certs"
		c.JWKSMinRefresh, c.JWKSRefresh = minRefresh, refresh
	})
}

// negotiateAs negotiates with tok and returns the status and the 401
// message, if any.
func (h *testHub) negotiateAs(tok string) (int, string) {
	h.t.Helper()
	st, body := h.negotiate(testHubName, "negotiateVersion=1", bearerHeader(tok))
	if st == http.StatusUnauthorized {
		return st, restError(h.t, body).Message
	}
	return st, ""
}

func rsToken(t testing.TB, key *rsa.PrivateKey, kid, sub string) string {
	return signKid(t, jwt.SigningMethodRS256, key, kid, idpClaims{sub: sub, exp: time.Hour}.registered())
}

func TestJWKS_RotationAndConnect(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t, jwkOf("k1", "RS256", &testRSA1().PublicKey))
	// Any refresh is allowed at once: this test is about rotation.
	h := jwksHub(t, idp, time.Nanosecond, time.Hour)

	waitFor(t, "the JWKS to load", func() bool { st, _ := h.negotiateAs(rsToken(t, testRSA1(), "k1", "alice")); return st == 200 })
	if st, msg := h.negotiateAs(rsToken(t, testRSA2(), "k2", "alice")); st != 401 || !strings.Contains(msg, `kid "k2"`) {
		t.Fatalf("token with a kid the JWKS lacks: %d %q", st, msg)
	}

	// The provider rotates: k2 appears. A token with it makes us refresh.
	idp.set(jwkOf("k1", "RS256", &testRSA1().PublicKey), jwkOf("k2", "RS256", &testRSA2().PublicKey))
	before := idp.fetches.Load()
	if st, msg := h.negotiateAs(rsToken(t, testRSA2(), "k2", "alice")); st != 200 {
		t.Fatalf("token with the new kid after rotation: %d %q", st, msg)
	}
	if idp.fetches.Load() <= before {
		t.Fatal("the new kid was accepted without a fetch")
	}
	// A kid names its key: k2's token claiming k1 is refused.
	if st, _ := h.negotiateAs(rsToken(t, testRSA2(), "k1", "alice")); st != 401 {
		t.Fatalf("token signed by k2 under kid k1: %d, want 401", st)
	}

	// With JWKS keys only, connect still checks the user against the
	// negotiated connection's.
	n := h.negotiateOK(testHubName, "negotiateVersion=1", bearerHeader(rsToken(t, testRSA1(), "k1", "alice")))
	q := url.Values{"id": {*n.ConnectionToken}}.Encode()
	if c, st, err := h.dial(testHubName, q, bearerHeader(rsToken(t, testRSA1(), "k1", "mallory"))); err == nil || st != http.StatusForbidden {
		if c != nil {
			c.close()
		}
		t.Fatalf("connect with another user's JWT: status %d err %v, want 403", st, err)
	}
	c, st, err := h.dial(testHubName, q, bearerHeader(rsToken(t, testRSA2(), "k2", "alice")))
	if err != nil {
		t.Fatalf("connect as alice: %d %v", st, err)
	}
	c.connID = n.ConnectionID
	c.handshakeOK()
	if ci, ok := h.m.Connection(testHubName, c.connID); !ok || ci.User != "alice" {
		t.Fatalf("registry has %+v (found %v), want user alice", ci, ok)
	}
}

func TestJWKS_UnknownKidIsRateLimited(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t, jwkOf("k1", "RS256", &testRSA1().PublicKey))
	h := jwksHub(t, idp, time.Hour, time.Hour)
	waitFor(t, "the JWKS to load", func() bool { st, _ := h.negotiateAs(rsToken(t, testRSA1(), "k1", "alice")); return st == 200 })
	fetched := idp.fetches.Load()
	for i := range 20 {
		if st, _ := h.negotiateAs(rsToken(t, testRSA2(), fmt.Sprintf("unknown-%d", i), "alice")); st != 401 {
			t.Fatalf("unknown kid %d: status %d", i, st)
		}
	}
	if got := idp.fetches.Load(); got != fetched {
		t.Fatalf("20 unknown kids made %d fetches within JWKSMinRefresh, want 0", got-fetched)
	}
	if st, _ := h.negotiateAs(rsToken(t, testRSA1(), "k1", "alice")); st != 200 {
		t.Fatalf("known kid after the unknown ones: %d", st)
	}
}

func TestJWKS_DownAtStart(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t, jwkOf("k1", "RS256", &testRSA1().PublicKey))
	idp.setDown(http.StatusServiceUnavailable)
	h := jwksHub(t, idp, 10*time.Millisecond, time.Hour)

	// The node runs; tokens are refused, saying why.
	waitFor(t, "a fetch attempt", func() bool { return idp.fetches.Load() > 0 })
	if st, msg := h.negotiateAs(rsToken(t, testRSA1(), "k1", "alice")); st != 401 || !strings.Contains(msg, "not loaded yet") {
		t.Fatalf("with the JWKS down: %d %q, want 401 keys not loaded yet", st, msg)
	}
	if st, _, body := h.do("GET", "/healthz", "", nil); st != 200 {
		t.Fatalf("healthz with the JWKS down: %d %s", st, body)
	}

	idp.set(jwkOf("k1", "RS256", &testRSA1().PublicKey))
	waitFor(t, "tokens accepted once the JWKS answers", func() bool {
		st, _ := h.negotiateAs(rsToken(t, testRSA1(), "k1", "alice"))
		return st == 200
	})
}

func TestJWKS_FailedRefreshKeepsKeys(t *testing.T) {
	t.Parallel()
	for _, bad := range []struct {
		name string
		set  func(*fakeIdP)
	}{
		{"down", func(p *fakeIdP) { p.setDown(http.StatusBadGateway) }},
		{"not JSON", func(p *fakeIdP) { p.setRaw("<html>maintenance</html>") }},
		{"no usable key", func(p *fakeIdP) { p.set(with(jwkOf("k9", "", &testRSA2().PublicKey), "use", "enc")) }},
		{"too large", func(p *fakeIdP) { p.setRaw(`{"keys":[],"pad":"` + strings.Repeat("x", DefaultJWKSMaxBytes) + `"}`) }},
	} {
		t.Run(bad.name, func(t *testing.T) {
			t.Parallel()
			idp := newFakeIdP(t, jwkOf("k1", "RS256", &testRSA1().PublicKey))
			h := jwksHub(t, idp, time.Nanosecond, time.Hour)
			waitFor(t, "the JWKS to load", func() bool { st, _ := h.negotiateAs(rsToken(t, testRSA1(), "k1", "alice")); return st == 200 })

			bad.set(idp)
			before := idp.fetches.Load()
			if st, _ := h.negotiateAs(rsToken(t, testRSA2(), "k2", "alice")); st != 401 {
				t.Fatalf("unknown kid: %d", st)
			}
			if idp.fetches.Load() == before {
				t.Fatal("the unknown kid did not make us refresh")
			}
			if st, msg := h.negotiateAs(rsToken(t, testRSA1(), "k1", "alice")); st != 200 {
				t.Fatalf("k1 after a failed refresh: %d %q, want the last good keys kept", st, msg)
			}
		})
	}
}

func TestJWKS_PeriodicRefreshDropsRetiredKeys(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t, jwkOf("k1", "ES256", &testEC1().PublicKey))
	h := jwksHub(t, idp, 10*time.Millisecond, 10*time.Millisecond)
	es := func(key *ecdsa.PrivateKey, kid string) string {
		return signKid(t, jwt.SigningMethodES256, key, kid, idpClaims{sub: "alice", exp: time.Hour}.registered())
	}
	waitFor(t, "the JWKS to load", func() bool { st, _ := h.negotiateAs(es(testEC1(), "k1")); return st == 200 })
	// k1 is retired. Its tokens name a kid we know, so only the periodic
	// refresh can notice.
	idp.set(jwkOf("k2", "ES256", &testEC2().PublicKey))
	waitFor(t, "the retired key to be dropped", func() bool { st, _ := h.negotiateAs(es(testEC1(), "k1")); return st == 401 })
	if st, msg := h.negotiateAs(es(testEC2(), "k2")); st != 200 {
		t.Fatalf("k2: %d %q", st, msg)
	}
}

// TestJWKS_CloseStopsTheLoop: Close joins the refresh loop, and a waiter
// does not hang on a loop that is gone.
func TestJWKS_CloseStopsTheLoop(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t)
	idp.setDown(http.StatusServiceUnavailable)
	cfg := testConfig(t)
	cfg.JWKSURL = idp.ts.URL
	m := newTestMachine(t)
	srv, err := New(cfg, newFakePublisher(t, m, true), m)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a fetch attempt", func() bool { return idp.fetches.Load() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-srv.jwt.jwks.loopEnded:
	default:
		t.Fatal("Close returned with the JWKS loop running")
	}
	// After Close a token is refused at once, without a fetch.
	n := idp.fetches.Load()
	if _, err := srv.jwt.verify(ctx, rsToken(t, testRSA1(), "k1", "alice")); !errors.Is(err, ErrJWKSNotLoaded) {
		t.Fatalf("verify after Close: %v, want ErrJWKSNotLoaded", err)
	}
	if idp.fetches.Load() != n {
		t.Fatal("a fetch after Close")
	}
}
