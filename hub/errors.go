package hub

import (
	"net/http"
	"strings"
	"unicode"
)

// errorCode is the code of a JSON error body: the status text without
// spaces or punctuation ("BadRequest", "NotFound", "TooManyRequests"), the
// form the README documents and Azure SignalR Service's REST API uses.
func errorCode(status int) string {
	text := http.StatusText(status)
	if text == "" {
		return "Error"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return r
		}
		return -1
	}, text)
}

// serveRoutes routes r through the mux. The mux's own answers, 404 for an
// unknown path and 405 for a known path with another method, are plain
// text; they become JSON errors like every other REST failure, keeping
// the Allow header of a 405. Routed requests get w itself, so WebSocket
// upgrades and SSE flushes see the server's writer.
func (s *Server) serveRoutes(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		// Through the mux again, which sets r.Pattern and the path values
		// the handlers read.
		s.mux.ServeHTTP(w, r)
		return
	}
	h.ServeHTTP(&muxErrorWriter{ResponseWriter: w, r: r}, r)
}

// muxErrorWriter turns an error status written by the mux's fallback
// handlers into a JSON error, dropping their text body. Anything below 400
// (a redirect to the cleaned path) passes through.
type muxErrorWriter struct {
	http.ResponseWriter
	r       *http.Request
	swallow bool
}

func (m *muxErrorWriter) WriteHeader(status int) {
	if status < 400 {
		m.ResponseWriter.WriteHeader(status)
		return
	}
	m.swallow = true
	msg := http.StatusText(status)
	switch status {
	case http.StatusNotFound:
		msg = "no such endpoint: " + m.r.URL.Path
	case http.StatusMethodNotAllowed:
		msg = "method " + m.r.Method + " not allowed on " + m.r.URL.Path + "; allowed: " + m.Header().Get("Allow")
	}
	writeError(m.ResponseWriter, status, msg)
}

func (m *muxErrorWriter) Write(b []byte) (int, error) {
	if m.swallow {
		return len(b), nil
	}
	return m.ResponseWriter.Write(b)
}
