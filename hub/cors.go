package hub

// CORS for browser clients on negotiate and the transports (/hubs/...).
// Config.AllowedOrigins lists the origins allowed cross-origin access ("*":
// any). Requests without an Origin (Node, native clients) and same-origin
// requests always pass; any other Origin gets 403. An allowed foreign origin
// is echoed with credentials allowed, since the browser clients send
// cookies (withCredentials defaults to true).

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// corsListed reports whether origin is in AllowedOrigins (or "*" is).
func (s *Server) corsListed(origin string) bool {
	for _, o := range s.cfg.AllowedOrigins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// sameOrigin reports whether origin names the host the request was sent to.
// The scheme is not compared: TLS may end at a proxy in front of the node.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// originAllowed is the Origin check for negotiate, the HTTP transports and
// WebSocket upgrades (the upgrader's CheckOrigin).
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	return origin == "" || sameOrigin(origin, r) || s.corsListed(origin)
}

// serveCORS applies the origin policy to /hubs/ requests, answers CORS
// preflights for allowed origins, and passes the rest to next.
func (s *Server) serveCORS(w http.ResponseWriter, r *http.Request, next http.Handler) {
	origin := r.Header.Get("Origin")
	if origin == "" || !strings.HasPrefix(r.URL.Path, "/hubs/") {
		next.ServeHTTP(w, r)
		return
	}
	if !s.originAllowed(r) {
		writeError(w, http.StatusForbidden,
			fmt.Sprintf("origin %q is not allowed: the server allows cross-origin requests only from its -allowed-origins", origin))
		return
	}
	if !s.corsListed(origin) {
		next.ServeHTTP(w, r) // same-origin: no CORS headers needed
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
		if rh := r.Header.Values("Access-Control-Request-Headers"); len(rh) > 0 {
			h.Set("Access-Control-Allow-Headers", strings.Join(rh, ", "))
		}
		h.Set("Access-Control-Max-Age", "600")
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	next.ServeHTTP(w, r)
}
