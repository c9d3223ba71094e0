package hub

import (
	"crypto/hmac"
	"crypto/sha256"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/raftplane/raftplane/fsm"
)

var testJWTKey = []byte("jwt-signing-key-for-tests-0123456789")

// signJWT signs claims with method and key, failing the test on error.
func signJWT(t testing.TB, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("signing JWT: %v", err)
	}
	return s
}

// userJWT is a valid HS256 token for sub, good for an hour.
func userJWT(t testing.TB, sub string) string {
	return signJWT(t, jwt.SigningMethodHS256, testJWTKey, jwt.RegisteredClaims{
		Subject:   sub,
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	})
}

func TestServer_JWT(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.JWTKey = testJWTKey })
	hour := time.Hour

	t.Run("negotiate", func(t *testing.T) {
		tests := []struct {
			name  string
			hdr   http.Header
			query url.Values
			want  int
			msg   string // in the 401 body
		}{
			{name: "no token", want: 401, msg: "missing access token"},
			{name: "empty bearer", hdr: http.Header{"Authorization": {"Bearer "}}, want: 401, msg: "missing access token"},
			{name: "garbage", hdr: bearerHeader("not.a.jwt"), want: 401, msg: "invalid access token"},
			{name: "expired", hdr: bearerHeader(signJWT(t, jwt.SigningMethodHS256, testJWTKey, jwt.RegisteredClaims{
				Subject: "u1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-hour))})), want: 401, msg: "expired"},
			{name: "not valid yet", hdr: bearerHeader(signJWT(t, jwt.SigningMethodHS256, testJWTKey, jwt.RegisteredClaims{
				Subject: "u1", NotBefore: jwt.NewNumericDate(time.Now().Add(hour))})), want: 401, msg: "invalid access token"},
			{name: "another key", hdr: bearerHeader(signJWT(t, jwt.SigningMethodHS256, []byte("some-other-key-0123456789abcdef"), jwt.RegisteredClaims{
				Subject: "u1"})), want: 401, msg: "signature"},
			{name: "alg none", hdr: bearerHeader(signJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.RegisteredClaims{
				Subject: "u1"})), want: 401, msg: "invalid access token"},
			{name: "HS512 with the right key", hdr: bearerHeader(signJWT(t, jwt.SigningMethodHS512, testJWTKey, jwt.RegisteredClaims{
				Subject: "u1"})), want: 401, msg: "invalid access token"},
			{name: "no sub", hdr: bearerHeader(signJWT(t, jwt.SigningMethodHS256, testJWTKey, jwt.RegisteredClaims{
				ExpiresAt: jwt.NewNumericDate(time.Now().Add(hour))})), want: 401, msg: `"sub"`},
			{name: "sub too long", hdr: bearerHeader(userJWT(t, strings.Repeat("u", maxUserLen+1))), want: 401, msg: `"sub"`},
			{name: "valid in header", hdr: bearerHeader(userJWT(t, "u1")), want: 200},
			{name: "valid in access_token", query: url.Values{"access_token": {userJWT(t, "u1")}}, want: 200},
			{name: "without exp (refused: -jwt-allow-no-exp)", hdr: bearerHeader(signJWT(t, jwt.SigningMethodHS256, testJWTKey, jwt.RegisteredClaims{Subject: "u1"})), want: 401, msg: "exp claim is required"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				q := url.Values{"negotiateVersion": {"1"}}
				for k, v := range tt.query {
					q[k] = v
				}
				st, body := h.negotiate(testHubName, q.Encode(), tt.hdr)
				if st != tt.want {
					t.Fatalf("status %d, want %d; body %s", st, tt.want, body)
				}
				if st == 401 {
					e := restError(t, body)
					if !strings.Contains(e.Message, tt.msg) {
						t.Errorf("401 message %q, want it to mention %q", e.Message, tt.msg)
					}
				}
			})
		}
	})

	registryUser := func(t *testing.T, c *wsClient) string {
		t.Helper()
		ci, ok := h.m.Connection(testHubName, c.connID)
		if !ok {
			t.Fatalf("connection %s not in the registry", c.connID)
		}
		return ci.User
	}
	sender := h.connectWith(testHubName, url.Values{"negotiateVersion": {"1"}}, bearerHeader(userJWT(t, "sender")))

	t.Run("header token sets the user", func(t *testing.T) {
		c := h.connectWith(testHubName, url.Values{"negotiateVersion": {"1"}, "user": {"mallory"}}, bearerHeader(userJWT(t, "u1")))
		if u := registryUser(t, c); u != "u1" {
			t.Fatalf("user %q, want u1 (the JWT's sub, not ?user=)", u)
		}
		sender.callOK("SendToUser", "u1", "to-u1", "hi")
		c.waitInvocations("to-u1", 1)
		sender.callOK("SendToUser", "mallory", "to-mallory")
		h.fence(testHubName, c)
		if n := len(c.invocations("to-mallory")); n != 0 {
			t.Fatalf("?user= was honoured with a JWT key set")
		}
	})

	t.Run("access_token query sets the user", func(t *testing.T) {
		c := h.connectWith(testHubName, url.Values{"negotiateVersion": {"1"}, "access_token": {userJWT(t, "u2")}}, nil)
		if u := registryUser(t, c); u != "u2" {
			t.Fatalf("user %q, want u2", u)
		}
		sender.callOK("SendToUser", "u2", "to-u2")
		c.waitInvocations("to-u2", 1)
	})

	t.Run("connect", func(t *testing.T) {
		tok := func(t *testing.T) string {
			n := h.negotiateOK(testHubName, "negotiateVersion=1", bearerHeader(userJWT(t, "u1")))
			return *n.ConnectionToken
		}
		tests := []struct {
			name  string
			hdr   http.Header
			query url.Values
			want  int
		}{
			{name: "another user's JWT", hdr: bearerHeader(userJWT(t, "u2")), want: 403},
			{name: "another user's JWT in the query", query: url.Values{"access_token": {userJWT(t, "u2")}}, want: 403},
			{name: "no JWT", want: 401},
			{name: "expired JWT", hdr: bearerHeader(signJWT(t, jwt.SigningMethodHS256, testJWTKey, jwt.RegisteredClaims{
				Subject: "u1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-hour))})), want: 401},
			{name: "same user's JWT", hdr: bearerHeader(userJWT(t, "u1")), want: 101},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				q := url.Values{"id": {tok(t)}}
				for k, v := range tt.query {
					q[k] = v
				}
				c, st, err := h.dial(testHubName, q.Encode(), tt.hdr)
				if tt.want == 101 {
					if err != nil {
						t.Fatalf("dial (status %d): %v", st, err)
					}
					c.handshakeOK()
					return
				}
				if err == nil {
					c.close()
					t.Fatalf("connect succeeded, want %d", tt.want)
				}
				if st != tt.want {
					t.Fatalf("status %d, want %d (%v)", st, tt.want, err)
				}
			})
		}
	})

	t.Run("skipNegotiation takes the user from the JWT", func(t *testing.T) {
		c, st, err := h.dial(testHubName, "user=mallory", bearerHeader(userJWT(t, "u3")))
		if err != nil {
			t.Fatalf("dial (status %d): %v", st, err)
		}
		c.handshakeOK()
		sender.callOK("SendToUser", "u3", "to-u3")
		c.waitInvocations("to-u3", 1)
		if conns := h.m.UserConnections(testHubName, "mallory"); len(conns) != 0 {
			t.Fatalf("?user= created user mallory: %v", conns)
		}
	})
}

func TestServer_ParseToken(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	issued := time.UnixMilli(1_700_000_000_123)
	tests := []connToken{
		{ID: newConnectionID(), Hub: "chat", User: "alice", Issued: issued},
		{ID: "x", Hub: "h", Issued: issued},
		{ID: newConnectionID(), Hub: strings.Repeat("h", maxHubLen), User: strings.Repeat("ü", maxUserLen/2), Issued: time.UnixMilli(0)},
		{ID: "neg", Hub: "h", User: "u", Issued: time.UnixMilli(-5)},
	}
	for i, want := range tests {
		t.Run(want.ID, func(t *testing.T) {
			tok := h.srv.signToken(want)
			got, err := h.srv.parseToken(tok)
			if err != nil {
				t.Fatalf("token %d: parseToken(%q): %v", i, tok, err)
			}
			if got.ID != want.ID || got.Hub != want.Hub || got.User != want.User || !got.Issued.Equal(want.Issued) {
				t.Fatalf("round trip %+v -> %+v", want, got)
			}
			if strings.ContainsAny(tok, "?&=#/+ ") {
				t.Errorf("token %q needs escaping in a query", tok)
			}
		})
	}
}

// newFuzzServer builds an unstarted server signing with secret.
func newFuzzServer(f testing.TB, secret string) *Server {
	cfg := DefaultConfig()
	cfg.NodeID = "fuzz"
	cfg.TokenSecret = []byte(secret)
	m, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	srv, err := New(cfg, newFakePublisher(f, m, true), m)
	if err != nil {
		f.Fatal(err)
	}
	return srv
}

// flipLowBit changes the last character of a base64url segment to the one
// whose 6-bit value differs in the lowest bit.
func flipLowBit(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[i^1])
}

func FuzzParseToken(f *testing.F) {
	srv := newFuzzServer(f, "0123456789abcdef-fuzz-secret")
	other := newFuzzServer(f, "another-secret-for-the-fuzzer")

	issued := time.UnixMilli(1_700_000_000_000)
	good := srv.signToken(connToken{ID: "AAAAAAAAAAAAAAAAAAAAAA", Hub: "chat", User: "alice", Issued: issued})
	f.Add(good)
	f.Add(srv.signToken(connToken{ID: "i", Hub: "h", Issued: issued}))
	f.Add(srv.signToken(connToken{}))
	f.Add(other.signToken(connToken{ID: "AAAAAAAAAAAAAAAAAAAAAA", Hub: "chat", User: "alice", Issued: issued}))
	f.Add(good[:len(good)-1])
	f.Add(good + "A")
	f.Add(good + "." + good)
	f.Add(strings.Replace(good, ".", "", 1))
	f.Add("." + good)
	f.Add("")
	f.Add(".")
	f.Add("a.b")
	f.Add(strings.Repeat("A", 5000) + ".AAAA")
	payload, sig, _ := strings.Cut(good, ".")
	f.Add(payload + "=." + sig)
	f.Add(payload + "." + sig + "==")
	f.Add(flipLowBit(payload) + "." + sig) // same bytes if the last character carries padding bits
	f.Add(srv.signedWithoutNode(good))     // correctly signed, but the node field missing

	f.Fuzz(func(t *testing.T, s string) {
		ct, err := srv.parseToken(s)
		if err != nil {
			if ct != (connToken{}) {
				t.Fatalf("parseToken(%q) failed (%v) but returned %+v", s, err, ct)
			}
			return
		}
		// Only signToken's own output is accepted, byte for byte.
		if again := srv.signToken(ct); again != s {
			t.Fatalf("parseToken accepted %q, which signToken does not produce (it gives %q for %+v)", s, again, ct)
		}
	})
}

// signedWithoutNode re-signs tok (a signToken output with an empty node)
// without its last field, as tokens were written before the node field
// existed: such a token is refused, though its signature is good.
func (s *Server) signedWithoutNode(tok string) string {
	payload, _, _ := strings.Cut(tok, ".")
	p, err := b64.DecodeString(payload)
	if err != nil || len(p) == 0 || p[len(p)-1] != 0 {
		panic("signedWithoutNode: not a token with an empty node")
	}
	p = p[:len(p)-1]
	mac := hmac.New(sha256.New, s.secret())
	mac.Write(p)
	return b64.EncodeToString(p) + "." + b64.EncodeToString(mac.Sum(nil)[:18])
}

func TestParseToken_NodeFieldRequired(t *testing.T) {
	srv := newFuzzServer(t, "0123456789abcdef-fuzz-secret")
	good := srv.signToken(connToken{ID: "AAAAAAAAAAAAAAAAAAAAAA", Hub: "chat", User: "alice", Issued: time.UnixMilli(1_700_000_000_000)})
	if _, err := srv.parseToken(good); err != nil {
		t.Fatalf("own token refused: %v", err)
	}
	if ct, err := srv.parseToken(srv.signedWithoutNode(good)); err == nil {
		t.Fatalf("a token without the node field was accepted as %+v", ct)
	}
}
