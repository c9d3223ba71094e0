package hub

// The limits a public service needs: connections per node, per user and
// per client address; groups per connection and members per group; the
// send queue in bytes (conn.go). Each refusal is a clear error to the
// client and a count in /api/v1/status (hub.refused), which can become a
// metric.
//
// Connection limits are checked twice: at negotiate, so that a client
// learns early and with a status its client library reports (the official
// clients show the body of a failed negotiate), and when a transport
// claims its connection id on this node (claim), which every transport
// goes through, negotiate-less WebSockets and reconnects included. The
// claim is the binding check: it counts under Server.mu, so concurrent
// connects to one node cannot pass a per-node, per-address or (on this
// node) per-user limit.

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
)

// FDReserve is how many file descriptors the automatic MaxConnections
// leaves for everything else a node does: Raft and the internal RPC, gossip,
// the REST API, the data folder's files, negotiate requests in flight.
const FDReserve = 512

// limitKind names one limit; its name is the status counter's key and
// the lower-case form of its Config field.
type limitKind int

const (
	limitConnections limitKind = iota
	limitConnectionsPerUser
	limitConnectionsPerIP
	limitGroupsPerConnection
	limitGroupMembers
	limitQueuedMessages
	limitQueuedBytes
	numLimits
)

var limitNames = [numLimits]string{
	limitConnections:         "max_connections",
	limitConnectionsPerUser:  "max_connections_per_user",
	limitConnectionsPerIP:    "max_connections_per_ip",
	limitGroupsPerConnection: "max_groups_per_connection",
	limitGroupMembers:        "max_group_members",
	limitQueuedMessages:      "max_queued_messages",
	limitQueuedBytes:         "max_queued_bytes",
}

// errLimit is what every limit refusal wraps.
var errLimit = errors.New("limit reached")

// limitError is a refusal by one limit.
type limitError struct {
	kind  limitKind
	value int // the limit's value
	msg   string
}

func (e *limitError) Error() string { return e.msg }
func (e *limitError) Unwrap() error { return errLimit }

// status is the HTTP status of the refusal: 503 when this node is full
// (another node may take the client; load balancers know 503), 429 when
// the client itself holds too many, 409 when a group or a connection's
// group list is full.
func (e *limitError) status() int {
	switch e.kind {
	case limitConnections:
		return http.StatusServiceUnavailable
	case limitConnectionsPerUser, limitConnectionsPerIP:
		return http.StatusTooManyRequests
	}
	return http.StatusConflict
}

// limitBody is the JSON body of a refusal: apiError plus which limit and
// its value.
type limitBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Limit   string `json:"limit"`
	Value   int    `json:"value"`
}

// writeLimit answers a limit refusal.
func writeLimit(w http.ResponseWriter, e *limitError) {
	st := e.status()
	if st == http.StatusServiceUnavailable || st == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, st, limitBody{Code: errorCode(st), Message: e.msg, Limit: limitNames[e.kind], Value: e.value})
}

// writeClaimError answers a failed claim: a limit, a shutdown or an id
// already in use.
func writeClaimError(w http.ResponseWriter, err error) {
	var le *limitError
	switch {
	case errors.As(err, &le):
		writeLimit(w, le)
	case errors.Is(err, errShuttingDown):
		writeUnavailable(w, err)
	default:
		writeError(w, http.StatusConflict, err.Error())
	}
}

// validateLimits checks the limit fields of a Config.
func (c Config) validateLimits() []error {
	var errs []error
	if c.MaxConnections < -1 {
		errs = append(errs, fmt.Errorf("MaxConnections (%d) must be -1 (no limit), 0 (automatic) or positive", c.MaxConnections))
	}
	if c.MaxConnectionsPerUser < 0 || c.MaxConnectionsPerIP < 0 || c.MaxGroupsPerConnection < 0 || c.MaxGroupMembers < 0 {
		errs = append(errs, fmt.Errorf("MaxConnectionsPerUser (%d), MaxConnectionsPerIP (%d), MaxGroupsPerConnection (%d) and MaxGroupMembers (%d) must be 0 (no limit) or positive",
			c.MaxConnectionsPerUser, c.MaxConnectionsPerIP, c.MaxGroupsPerConnection, c.MaxGroupMembers))
	}
	if c.MaxQueuedBytes < 0 || (c.MaxQueuedBytes > 0 && c.MaxQueuedBytes < c.MaxMessageSize) {
		// Smaller than one message, it would close a connection for the
		// second message of any burst.
		errs = append(errs, fmt.Errorf("MaxQueuedBytes (%d) must be 0 (no limit) or at least MaxMessageSize (%d)", c.MaxQueuedBytes, c.MaxMessageSize))
	}
	return errs
}

// autoMaxConnections derives MaxConnections from a descriptor limit:
// FDReserve less, or half when the limit is at most twice the reserve.
// 0 means no limit (the limit is unknown or infinite).
func autoMaxConnections(nofile uint64, known bool) int {
	if !known || nofile == 0 || nofile >= math.MaxInt32 {
		return 0
	}
	n := int(nofile)
	if n > 2*FDReserve {
		return n - FDReserve
	}
	return max(n/2, 1)
}

// userKey is a user of a hub.
type userKey struct{ hub, user string }

// held is what a claimed connection counts against, so unclaim can undo it.
type held struct {
	ip   netip.Addr // zero: not counted per address
	user userKey    // user "": not counted per user
}

// limits is a Server's limit state. The counts are guarded by Server.mu,
// the refusal counters are atomic.
type limits struct {
	maxConns int // MaxConnections resolved; 0: no limit
	refused  [numLimits]atomic.Uint64

	perIP   map[netip.Addr]int
	perUser map[userKey]int
	held    map[string]held // by connection id, while claimed
}

// init resolves the automatic MaxConnections.
func (l *limits) init(cfg Config, log *slog.Logger) {
	l.perIP = map[netip.Addr]int{}
	l.perUser = map[userKey]int{}
	l.held = map[string]held{}
	switch {
	case cfg.MaxConnections > 0:
		l.maxConns = cfg.MaxConnections
	case cfg.MaxConnections == 0:
		nofile, known := fileLimit()
		l.maxConns = autoMaxConnections(nofile, known)
		log.Info("connection limit derived from the file descriptor limit",
			"max_connections", l.maxConns, "rlimit_nofile", nofile, "reserve", FDReserve)
	}
}

// refuse counts a refusal and returns it.
func (l *limits) refuse(k limitKind, value int, format string, args ...any) *limitError {
	l.refused[k].Add(1)
	return &limitError{kind: k, value: value, msg: fmt.Sprintf(format, args...)}
}

// status is the hub.limits and hub.refused of /api/v1/status.
func (s *Server) limitStatus() (values, refused map[string]int64) {
	values = map[string]int64{
		limitNames[limitConnections]:         int64(s.lim.maxConns),
		limitNames[limitConnectionsPerUser]:  int64(s.cfg.MaxConnectionsPerUser),
		limitNames[limitConnectionsPerIP]:    int64(s.cfg.MaxConnectionsPerIP),
		limitNames[limitGroupsPerConnection]: int64(s.cfg.MaxGroupsPerConnection),
		limitNames[limitGroupMembers]:        int64(s.cfg.MaxGroupMembers),
		limitNames[limitQueuedMessages]:      int64(s.cfg.MaxQueuedMessages),
		limitNames[limitQueuedBytes]:         int64(s.cfg.MaxQueuedBytes),
	}
	refused = make(map[string]int64, numLimits)
	for k := range numLimits {
		refused[limitNames[k]] = int64(s.lim.refused[k].Load())
	}
	return values, refused
}

// admission is what a new transport counts against.
type admission struct {
	hub, user string
	ip        netip.Addr
	// resume: the connection is already in the registry (a cursor resume,
	// a stateful reconnect), so it is already counted for its user.
	resume bool
}

// admissionFor builds the admission of a request.
func (s *Server) admissionFor(r *http.Request, hub, user string, resume bool) admission {
	return admission{hub: hub, user: user, ip: s.clientIP(r), resume: resume}
}

// clientIP returns the address a connection counts against for
// MaxConnectionsPerIP: the TCP peer, an IPv6 peer by its /64 (one
// subscriber's prefix). A request another node forwarded (forward.go)
// counts by the last X-Forwarded-For address when the peer is that node,
// and not at all when it sends none: the forwarding node's own address
// would count every client it forwards. The zero Addr is not counted.
func (s *Server) clientIP(r *http.Request) netip.Addr {
	if s.cfg.MaxConnectionsPerIP == 0 {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if from := r.Header.Get(forwardedHeader); from != "" && s.isNode(from, ip) {
		ip = netip.Addr{}
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				ip = a.Unmap()
			}
		}
	}
	return ipKey(ip)
}

// isNode reports whether ip is the address of node id: a request that
// says another node forwarded it is believed only from that node.
func (s *Server) isNode(id string, ip netip.Addr) bool {
	if s.cfg.Peers == nil {
		return false
	}
	addr, ok := s.cfg.Peers.HTTPAddr(id)
	if !ok {
		return false
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap() == ip
}

// ipKey maps an address to what it counts as: IPv6 by its /64.
func ipKey(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		p, err := ip.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return ip
}

// registryCounts is the allocation-free side of the registry that
// *fsm.Machine has (fsm/counts.go); any other Registry is counted through
// its lists.
type registryCounts interface {
	GroupSize(hub, group string) int
	UserConnectionCount(hub, user string) int
	ConnectionGroupCount(hub, id, group string) (n int, member, ok bool)
}

// userConnections counts a user's connections to a hub on every node.
func (s *Server) userConnections(hub, user string) int {
	if rc, ok := s.reg.(registryCounts); ok {
		return rc.UserConnectionCount(hub, user)
	}
	return len(s.reg.UserConnections(hub, user))
}

// checkAdmission checks the connection limits for a new connection; with
// claiming, s.mu is held and a connection about to be claimed is checked
// (so it is counted in none of the counts yet). users is the user's
// connection count in the registry, read before s.mu is taken.
func (s *Server) checkAdmissionLocked(a admission, users int) *limitError {
	l := &s.lim
	if l.maxConns > 0 && len(s.conns) >= l.maxConns {
		return l.refuse(limitConnections, l.maxConns,
			"connection refused: this node holds %d connections, its limit (max_connections) is %d; connect to another node",
			len(s.conns), l.maxConns)
	}
	if m := s.cfg.MaxConnectionsPerIP; m > 0 && a.ip.IsValid() && l.perIP[a.ip] >= m {
		return l.refuse(limitConnectionsPerIP, m,
			"connection refused: %d connections from %s, the limit (max_connections_per_ip) is %d",
			l.perIP[a.ip], a.ip, m)
	}
	if m := s.cfg.MaxConnectionsPerUser; m > 0 && a.user != "" && !a.resume {
		// The registry counts the user's connections on every node; this
		// node's claimed ones are in it once opened, and counted here
		// before that, so a burst on one node cannot pass the limit.
		n := max(users, l.perUser[userKey{a.hub, a.user}])
		if n >= m {
			return l.refuse(limitConnectionsPerUser, m,
				"connection refused: user %q has %d connections to hub %q, the limit (max_connections_per_user) is %d",
				a.user, n, a.hub, m)
		}
	}
	return nil
}

// checkAdmission is the negotiate-time check: nothing is reserved.
func (s *Server) checkAdmission(a admission) *limitError {
	users := 0
	if s.cfg.MaxConnectionsPerUser > 0 && a.user != "" {
		users = s.userConnections(a.hub, a.user)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkAdmissionLocked(a, users)
}

// holdLocked counts a claimed connection; s.mu is held.
func (s *Server) holdLocked(id string, a admission) {
	l := &s.lim
	var h held
	if s.cfg.MaxConnectionsPerIP > 0 && a.ip.IsValid() {
		h.ip = a.ip
		l.perIP[a.ip]++
	}
	if s.cfg.MaxConnectionsPerUser > 0 && a.user != "" {
		// Copies, as in newConn: the count keeps them for the
		// connection's life, and they may be substrings of the request line.
		h.user = userKey{strings.Clone(a.hub), strings.Clone(a.user)}
		l.perUser[h.user]++
	}
	if h.ip.IsValid() || h.user.user != "" {
		l.held[id] = h
	}
}

// unholdLocked undoes holdLocked; s.mu is held.
func (s *Server) unholdLocked(id string) {
	l := &s.lim
	h, ok := l.held[id]
	if !ok {
		return
	}
	delete(l.held, id)
	if h.ip.IsValid() {
		if l.perIP[h.ip]--; l.perIP[h.ip] <= 0 {
			delete(l.perIP, h.ip)
		}
	}
	if h.user.user != "" {
		if l.perUser[h.user]--; l.perUser[h.user] <= 0 {
			delete(l.perUser, h.user)
		}
	}
}

// checkJoin checks MaxGroupsPerConnection and MaxGroupMembers for a join
// of connection id to group, against the registry as this node has
// applied it. A join the connection already has is never refused, nor is
// one of an unknown connection (the log answers that). Joins in flight
// at the same time are not counted: each may pass a limit by their
// number. (A check in the FSM, deterministic on every replica, would need
// the limits in the log: future work.)
func (s *Server) checkJoin(hub, id, group string) *limitError {
	mg, mm := s.cfg.MaxGroupsPerConnection, s.cfg.MaxGroupMembers
	if mg == 0 && mm == 0 {
		return nil
	}
	var n, size int
	if rc, ok := s.reg.(registryCounts); ok {
		var member, known bool
		n, member, known = rc.ConnectionGroupCount(hub, id, group)
		if !known || member {
			return nil
		}
		if mm > 0 {
			size = rc.GroupSize(hub, group)
		}
	} else {
		ci, known := s.reg.Connection(hub, id)
		if !known {
			return nil
		}
		for _, g := range ci.Groups {
			if g == group {
				return nil
			}
		}
		n = len(ci.Groups)
		if mm > 0 {
			size = len(s.reg.GroupConnections(hub, group))
		}
	}
	l := &s.lim
	if mg > 0 && n >= mg {
		return l.refuse(limitGroupsPerConnection, mg,
			"connection %s is in %d groups, the limit (max_groups_per_connection) is %d", id, n, mg)
	}
	if mm > 0 && size >= mm {
		return l.refuse(limitGroupMembers, mm,
			"group %q has %d members, the limit (max_group_members) is %d", group, size, mm)
	}
	return nil
}

// hubStatus is the "hub" object of /api/v1/status: the local connection
// count, every limit's value (max_connections resolved; 0: no limit) and
// how many times each refused.
func (s *Server) hubStatus() map[string]any {
	values, refused := s.limitStatus()
	return map[string]any{"local_connections": s.LocalConnections(), "limits": values, "refused": refused}
}
