package hub

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

var hubNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// validHub checks the {hub} path segment.
func validHub(name string) error {
	if !hubNameRE.MatchString(name) {
		return fmt.Errorf("invalid hub name %q: use 1-%d letters, digits, '_', '.' or '-'", name, maxHubLen)
	}
	return nil
}

type transportInfo struct {
	Transport       string   `json:"transport"`
	TransferFormats []string `json:"transferFormats"`
}

type negotiateResponse struct {
	ConnectionID        string          `json:"connectionId"`
	ConnectionToken     string          `json:"connectionToken,omitempty"`
	NegotiateVersion    int             `json:"negotiateVersion"`
	AvailableTransports []transportInfo `json:"availableTransports"`
	// UseStatefulReconnect answers a client that asked for it (and may use
	// WebSockets): see stateful.go.
	UseStatefulReconnect bool `json:"useStatefulReconnect,omitempty"`
}

// handleNegotiate answers POST /hubs/{hub}/negotiate.
func (s *Server) handleNegotiate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "negotiate takes POST")
		return
	}
	hub := r.PathValue("hub")
	if err := validHub(hub); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	version := 0
	if v := queryValue(r, "negotiateVersion"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			// The .NET server answers a bad version with 200 and an error field.
			writeJSON(w, http.StatusOK, map[string]string{"error": fmt.Sprintf("Invalid negotiation version %q.", v)})
			return
		}
		version = min(n, 1)
	}
	user, err := s.authenticate(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	if err := s.accepting(); err != nil {
		writeUnavailable(w, err)
		return
	}
	// Refused early, with a status the clients report; the transport's
	// claim checks again and binds (limits.go).
	if le := s.checkAdmission(s.admissionFor(r, hub, user, false)); le != nil {
		writeLimit(w, le)
		return
	}
	id := newConnectionID()
	stateful := version >= 1 && equalFold(queryValue(r, "useStatefulReconnect"), "true") &&
		!s.cfg.DisableStatefulReconnect && !s.cfg.DisableWebSockets
	tok := s.signToken(connToken{V0: version == 0, Stateful: stateful, ID: id, Hub: hub, User: user, Node: s.cfg.NodeID, Issued: time.Now()})
	resp := negotiateResponse{
		ConnectionID:        id,
		NegotiateVersion:    version,
		AvailableTransports: s.availableTransports(), // sse.go
	}
	if version >= 1 {
		resp.ConnectionToken = tok
		resp.UseStatefulReconnect = stateful
	} else {
		// Version 0 has no separate token: the id is what the client sends
		// back, so it is the signed token itself, and the connection goes
		// by it everywhere (REST, SendToConnection).
		resp.ConnectionID = tok
	}
	writeJSON(w, http.StatusOK, resp)
}

// queryValue reads a query parameter case-insensitively, as ASP.NET does.
func queryValue(r *http.Request, key string) string {
	q := r.URL.Query()
	if v := q.Get(key); v != "" {
		return v
	}
	for k, vs := range q {
		if len(vs) > 0 && equalFold(k, key) {
			return vs[0]
		}
	}
	return ""
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Why accepting refuses new clients. What the client reads is made at the
// edge, by unavailableText.
var (
	errShuttingDown = errors.New("hub: shutting down")
	errNotReady     = fmt.Errorf("hub: not ready: %w", fsm.ErrNoEpoch)
)

// unavailableText is the message of a 503 answer for err (accepting's or
// ready's): wire text for the client, which says what to do. Other errors
// (the Readiness port's reasons, for the prober) go as they are.
func unavailableText(err error) string {
	switch {
	case errors.Is(err, errShuttingDown):
		return "server is shutting down; connect to another node"
	case errors.Is(err, errNotReady):
		return "cluster not ready yet (no cluster id applied); retry shortly"
	}
	return err.Error()
}

// writeUnavailable answers 503 for err, a refusal of accepting or ready.
func writeUnavailable(w http.ResponseWriter, err error) {
	writeError(w, http.StatusServiceUnavailable, unavailableText(err))
}

// accepting reports why new connections are refused, if they are.
func (s *Server) accepting() error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return errShuttingDown
	}
	if s.stream.Epoch() == "" || s.secret() == nil {
		return errNotReady
	}
	return nil
}
