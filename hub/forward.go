package hub

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
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
	if s.cfg.Peers == nil || r.Header.Get(forwardedHeader) != "" || tok.Node == "" || tok.Node == s.cfg.NodeID {
		return false
	}
	addr, ok := s.cfg.Peers.HTTPAddr(tok.Node)
	if !ok {
		writeError(w, http.StatusNotFound, "No Connection with that ID: the node that negotiated it is gone; negotiate again")
		return true
	}
	scheme, transport := "http", http.RoundTripper(nil) // nil: http.DefaultTransport
	if s.cfg.ForwardTLS != nil {
		scheme, transport = "https", s.fwd.transport(s.cfg.ForwardTLS, r.Host)
	}
	proxy := &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: scheme, Host: addr})
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

// maxForwardNames bounds the TLS transports kept for forwarding, one per
// server name: the name comes from the client's Host header, so a client
// could otherwise make us keep any number. Past it the oldest is dropped
// (its idle connections closed); the cost is a new handshake.
const maxForwardNames = 8

// forwarders holds the transports that forward over TLS. Each verifies the
// holder's certificate for one server name and has its own connection pool:
// a connection verified for one name is never reused for a request that
// came in under another.
type forwarders struct {
	mu     sync.Mutex
	byName map[string]*http.Transport
	order  []string // oldest first
}

// transport returns the transport for requests the client sent to host
// (the Host header, port and all): unless base names a ServerName, the
// holder must present a certificate valid for host's name, as every node
// behind the balancer serves the public name's certificate.
func (f *forwarders) transport(base *tls.Config, host string) *http.Transport {
	name := base.ServerName
	if name == "" {
		name = host
		if h, _, err := net.SplitHostPort(host); err == nil {
			name = h
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.byName[name]; ok {
		return t
	}
	if f.byName == nil {
		f.byName = map[string]*http.Transport{}
	}
	if len(f.order) >= maxForwardNames {
		old := f.order[0]
		f.order = f.order[1:]
		f.byName[old].CloseIdleConnections()
		delete(f.byName, old)
	}
	cfg := base.Clone()
	cfg.ServerName = name
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	f.byName[name] = t
	f.order = append(f.order, name)
	return t
}

// closeIdle closes the idle forwarding connections, at shutdown.
func (f *forwarders) closeIdle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.byName {
		t.CloseIdleConnections()
	}
}
