package hub

import (
	"net/http"
	"net/http/httputil"
	"net/url"
)

// forwardedHeader marks an SSE or long-polling request that one node passed
// to the node holding its connection; a forwarded request is never passed
// on again.
const forwardedHeader = "X-Raftplane-Forwarded"

// corsHeaders are set by the node that received the request before it
// forwards it; the holder's copies are dropped so each appears once.
var corsHeaders = []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Vary"}

// forwardToOwner passes an SSE or long-polling request (the event stream,
// a poll, a send, the goodbye) to the node that negotiated its connection,
// which serves the connection from its first request to its last: behind a
// balancer that spreads requests these transports need no sticky sessions.
// It reports whether it answered. If that node is gone, the connection is
// too (404): its client negotiates again, as after any lost node.
func (s *Server) forwardToOwner(w http.ResponseWriter, r *http.Request, tok connToken) bool {
	if s.cfg.NodeHTTPAddr == nil || r.Header.Get(forwardedHeader) != "" || tok.Node == "" || tok.Node == s.cfg.NodeID {
		return false
	}
	addr, ok := s.cfg.NodeHTTPAddr(tok.Node)
	if !ok {
		writeError(w, http.StatusNotFound, "No Connection with that ID: the node that negotiated it is gone; negotiate again")
		return true
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: addr})
			pr.Out.Host = pr.In.Host // the holder checks the origin against the address the client used
			pr.Out.Header.Set(forwardedHeader, s.cfg.NodeID)
		},
		FlushInterval: -1, // an event stream and long polls go through as they are written
		ModifyResponse: func(resp *http.Response) error {
			for _, k := range corsHeaders {
				resp.Header.Del(k)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Debug("forwarding a transport request failed", "node", tok.Node, "err", err)
			writeError(w, http.StatusNotFound, "No Connection with that ID: the node that holds it did not answer")
		},
	}
	proxy.ServeHTTP(w, r)
	return true
}
