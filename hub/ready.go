package hub

import "net/http"

// handleReady serves GET /readyz: 200 when this node can commit (the
// Readiness port: a leader heard from within ReadyMaxContact, the cluster
// id applied) and takes new clients, 503 with the reason otherwise. Like
// /healthz it needs no key, for load balancers and Kubernetes readiness
// probes. /healthz stays the liveness answer: a node without a quorum still
// serves its clients what is already committed, and restarting it would
// not bring the quorum back.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(); err != nil {
		writeUnavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// ready is nil when this node can commit and takes new clients, else the
// reason. Shutting down comes first: the cluster side may still look
// healthy for a moment while the server drains.
func (s *Server) ready() error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return errShuttingDown
	}
	if s.cfg.Readiness != nil {
		if err := s.cfg.Readiness.Ready(s.cfg.ReadyMaxContact); err != nil {
			return err
		}
	}
	return s.accepting()
}
