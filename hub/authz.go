package hub

import (
	"context"
	"fmt"
	"github.com/raftplane/raftplane/fsm"
	"net/http"
	"path"
	"strings"
	"time"
)

// Authorization of what a client may do with the built-in methods, and the
// end of a connection whose token expires.
//
//   - Config.ClientMethods lists the built-ins clients may call; nil allows
//     them all, an empty list none (the "clients listen, the application
//     decides" set-up: only the hub's own methods remain).
//   - Config.GroupClaim names the JWT claim (or Authenticate claim) listing
//     the groups a user may join, leave and send to with the built-ins:
//     names, or patterns with '*' and '?' (path.Match: '*' does not cross
//     '/'). A token without it may use any group, unless
//     Config.GroupClaimRequired. The application's methods are not checked:
//     they decide for themselves.
//   - A connection authenticated by a JWT with "exp" is closed at that time
//     (plus JWTLeeway) with allowReconnect, so the official clients connect
//     again with a fresh token (ASP.NET Core's
//     CloseOnAuthenticationExpiration).

// identKey carries a request's identity from the transport handler to
// newConn.
type identKey struct{}

func withIdentity(r *http.Request, id identity) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), identKey{}, id))
}

func identityOf(r *http.Request) identity {
	if r == nil {
		return identity{}
	}
	id, _ := r.Context().Value(identKey{}).(identity)
	return id
}

// builtinNames are the built-in hub methods, as -client-methods names them.
var builtinNames = []string{"JoinGroup", "LeaveGroup", "Broadcast", "SendToOthers", "SendToGroup", "SendToUser", "SendToConnection"}

// validateClientMethods checks Config.ClientMethods names built-ins.
func validateClientMethods(names []string) error {
	for _, n := range names {
		found := false
		for _, b := range builtinNames {
			if strings.EqualFold(n, b) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("ClientMethods: %q is not a built-in method (%s)", n, strings.Join(builtinNames, ", "))
		}
	}
	return nil
}

// builtinAllowed reports whether clients may call the built-in name.
func (s *Server) builtinAllowed(name string) bool {
	if s.cfg.ClientMethods == nil {
		return true
	}
	for _, n := range s.cfg.ClientMethods {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// groupAllowed checks a group a built-in names against the connection's
// group claim; the error is the Completion's text.
func (c *conn) groupAllowed(method, group string) error {
	claim := c.srv.cfg.GroupClaim
	if claim == "" {
		return nil
	}
	v, ok := c.claims[claim]
	if !ok {
		if c.srv.cfg.GroupClaimRequired {
			return fmt.Errorf("%s: not allowed: your token has no %q claim listing the groups you may use", method, claim)
		}
		return nil
	}
	for _, p := range claimList(v) {
		if p == group {
			return nil
		}
		if ok, err := path.Match(p, group); err == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("%s: not allowed: group '%s' is not in your token's %q claim", method, abbreviate([]byte(group)), claim)
}

// claimList reads a claim holding a list: a JSON array of strings, or one
// string of names separated by spaces or commas (as "scope" is).
func claimList(v any) []string {
	switch x := v.(type) {
	case string:
		return strings.FieldsFunc(x, func(r rune) bool { return r == ' ' || r == ',' })
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return x
	}
	return nil
}

// armExpiry closes the connection when its token expires, with
// allowReconnect so the client reconnects with a fresh token. The timer is
// stopped when the connection ends.
func (c *conn) armExpiry() {
	if c.expires.IsZero() {
		return
	}
	d := time.Until(c.expires.Add(c.srv.cfg.JWTLeeway))
	t := time.AfterFunc(max(d, 0), func() {
		c.logger().Debug("access token expired; closing the connection")
		c.srv.expiredTokens.Add(1)
		c.close(disconnect{reason: "Connection closed: the access token expired; reconnect with a new one.",
			allowReconnect: true, cause: endTokenExpired})
	})
	context.AfterFunc(c.ctx, func() { t.Stop() })
}

// refusesHeaders reports a client that cannot take headers on the messages
// it receives. ASP.NET Core sends headers only when the application sets
// them; raftplane puts the cursor on every Invocation, and the official
// Java client (9.0.x) throws "Headers not implemented yet." on any message
// that has headers (GsonHubProtocol), ending its WebSocket or losing the
// message over long polling. It says who it is in its User-Agent:
// "Microsoft SignalR/9.0 (9.0.3; Linux; Java; ...)".
func refusesHeaders(r *http.Request) bool {
	if r == nil {
		return false
	}
	ua := r.Header.Get("User-Agent")
	return strings.HasPrefix(ua, "Microsoft SignalR/") && strings.Contains(ua, "; Java;")
}

// cursorHeader is the cursor header value for c's Invocation of the entry
// at cur: "" (no headers) for a client that cannot take them.
func (c *conn) cursorHeader(cur fsm.Cursor, epoch string) string {
	if c.noHeaders {
		return ""
	}
	return cur.Format(epoch)
}
