package hub

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Identity limits, so a token or query parameter cannot make ids unbounded.
const (
	maxUserLen   = 256
	maxHubLen    = 128
	maxGroupLen  = 1024
	maxTargetLen = 1024
)

var b64 = base64.RawURLEncoding.Strict() // Strict: a token has one spelling

// newConnectionID returns 16 random bytes, base64url: 22 characters, as the
// .NET server makes them.
func newConnectionID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return b64.EncodeToString(b[:])
}

// connToken is what a connection token carries. The token is signed with the
// cluster's secret, so a node verifies it without having seen the negotiate.
type connToken struct {
	V0 bool // negotiate version 0: the token itself is the connection id
	// Stateful: negotiated with useStatefulReconnect, so a WebSocket with
	// this token after the connection dropped continues it (stateful.go).
	Stateful bool
	ID       string
	Hub      string
	User     string
	// Node is the node that negotiated it: SSE and long-polling requests
	// with this token are served there, wherever they land (forward.go).
	Node   string
	Issued time.Time
}

// Token format versions: tokenVersion for negotiate version 1 tokens,
// tokenVersionV0 for version 0 ones (whose token is also the id).
const (
	tokenVersion         = 1
	tokenVersionV0       = 2
	tokenVersionStateful = 3 // a version 1 token with stateful reconnect
)

// secret returns the key that signs tokens, or nil while it is unknown.
func (s *Server) secret() []byte {
	if s.cfg.TokenSecretFunc != nil {
		if k := s.cfg.TokenSecretFunc(); len(k) >= 16 {
			return k
		}
		return nil
	}
	return s.cfg.TokenSecret
}

func (s *Server) signToken(t connToken) string {
	var p []byte
	switch {
	case t.V0:
		p = append(p, tokenVersionV0)
	case t.Stateful:
		p = append(p, tokenVersionStateful)
	default:
		p = append(p, tokenVersion)
	}
	p = binary.AppendVarint(p, t.Issued.UnixMilli())
	for _, f := range []string{t.ID, t.Hub, t.User, t.Node} {
		p = binary.AppendUvarint(p, uint64(len(f)))
		p = append(p, f...)
	}
	mac := hmac.New(sha256.New, s.secret())
	mac.Write(p)
	return b64.EncodeToString(p) + "." + b64.EncodeToString(mac.Sum(nil)[:18])
}

var errBadToken = errors.New("invalid connection token")

func (s *Server) parseToken(tok string) (connToken, error) {
	payload, sig, ok := strings.Cut(tok, ".")
	if !ok || len(tok) > 4096 || !tokenChars(tok) {
		return connToken{}, errBadToken
	}
	p, err1 := b64.DecodeString(payload)
	got, err2 := b64.DecodeString(sig)
	if err1 != nil || err2 != nil {
		return connToken{}, errBadToken
	}
	key := s.secret()
	if key == nil {
		return connToken{}, errBadToken
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(p)
	if !hmac.Equal(got, mac.Sum(nil)[:18]) {
		return connToken{}, errBadToken
	}
	if len(p) < 1 || (p[0] != tokenVersion && p[0] != tokenVersionV0 && p[0] != tokenVersionStateful) {
		return connToken{}, errBadToken
	}
	v0, stateful := p[0] == tokenVersionV0, p[0] == tokenVersionStateful
	p = p[1:]
	ms, n := binary.Varint(p)
	if n <= 0 {
		return connToken{}, errBadToken
	}
	p = p[n:]
	// Every release (v0.1.0 on) writes all four fields, so all four are
	// required: a token has one spelling, and a signed token from before the
	// node field existed is refused rather than read with no node.
	var fields [4]string
	for i := range fields {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return connToken{}, errBadToken
		}
		fields[i] = string(p[n : n+int(l)])
		p = p[n+int(l):]
	}
	if len(p) != 0 {
		return connToken{}, errBadToken
	}
	return connToken{V0: v0, Stateful: stateful, ID: fields[0], Hub: fields[1], User: fields[2], Node: fields[3], Issued: time.UnixMilli(ms)}, nil
}

// authError is a 401 with a body that says what is wrong.
type authError struct{ msg string }

func (e *authError) Error() string { return e.msg }

// bearer returns the token from "Authorization: Bearer" or, for browsers and
// SSE, the access_token query parameter.
func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return r.URL.Query().Get("access_token")
}

// identity is who a client request comes from.
type identity struct {
	user    string
	claims  map[string]any // nil in dev mode
	expires time.Time      // the JWT's exp; zero: none
}

// authenticate returns the user id of a client request: what the hub's
// Authenticate handler says when it has one, else the JWT's "sub" when a JWT
// key source is configured (jwt.go), else the optional "user" query
// parameter.
func (s *Server) authenticate(r *http.Request) (string, error) {
	id, err := s.identify(r, r.PathValue("hub"))
	return id.user, err
}

// identify returns the identity of a client request to a hub.
func (s *Server) identify(r *http.Request, hub string) (identity, error) {
	if a := s.appFor(hub); a != nil && a.h.Authenticate != nil {
		user, claims, err := a.h.Authenticate(r)
		if err != nil {
			return identity{}, &authError{err.Error()}
		}
		if len(user) > maxUserLen {
			return identity{}, &authError{fmt.Sprintf("user id longer than %d bytes", maxUserLen)}
		}
		return identity{user: user, claims: claims}, nil
	}
	if s.jwt == nil {
		u := r.URL.Query().Get("user")
		if len(u) > maxUserLen {
			return identity{}, &authError{fmt.Sprintf("user id longer than %d bytes", maxUserLen)}
		}
		return identity{user: u}, nil
	}
	raw := bearer(r)
	if raw == "" {
		return identity{}, &authError{"missing access token: send Authorization: Bearer <jwt> or access_token=<jwt>"}
	}
	id, err := s.jwt.verify(r.Context(), raw)
	if err != nil {
		return identity{}, &authError{"invalid access token: " + err.Error()}
	}
	if id.user == "" {
		return identity{}, &authError{`invalid access token: no "sub" claim`}
	}
	if len(id.user) > maxUserLen {
		return identity{}, &authError{fmt.Sprintf(`invalid access token: "sub" longer than %d bytes`, maxUserLen)}
	}
	return id, nil
}

// checkAPIKey guards the REST API.
func (s *Server) checkAPIKey(r *http.Request) error {
	if s.cfg.APIKey == "" {
		return nil
	}
	h := r.Header.Get("Authorization")
	t, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return &authError{"missing API key: send Authorization: Bearer <api key>"}
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(t)), []byte(s.cfg.APIKey)) != 1 {
		return &authError{"invalid API key"}
	}
	return nil
}

// tokenChars reports whether s holds only base64url characters and dots:
// the decoder skips CR and LF, which would give one token many spellings.
func tokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
