package hub

import (
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Config configures a Server. Start from DefaultConfig. The settings are
// documented flags of cmd/raftplane (the root package's option table,
// options.go, names each one's flag); the rest is wiring that the program
// embedding the hub sets: NodeID, TokenSecretFunc, the HTTP clients
// (JWKSHTTPClient, UpstreamHTTPClient), Logger and the ports (Cluster,
// Readiness, Snapshot, Leadership, Liveness, Peers). EventsMarkEvery and
// EventsMarkInterval are tuning kept out of the flags.
type Config struct {
	// NodeID is this node's id, recorded as the owner of its connections.
	NodeID string
	// KeepAliveInterval: a Ping is sent when nothing was sent for this long.
	KeepAliveInterval time.Duration
	// ClientTimeout: a connection that sent nothing for this long is closed.
	ClientTimeout time.Duration
	// HandshakeTimeout bounds the wait for the client's handshake.
	HandshakeTimeout time.Duration
	// MaxMessageSize is the largest hub message a client may send, in bytes.
	MaxMessageSize int
	// MaxQueuedMessages is the per-connection send queue; a client that falls
	// further behind is closed with allowReconnect.
	MaxQueuedMessages int
	// MaxQueuedBytes bounds the same queue in bytes (the messages waiting
	// and the batch being written): a client that falls that far behind is
	// closed with allowReconnect, as for MaxQueuedMessages. One message
	// into an empty queue is always taken, however large. 0: no limit.
	MaxQueuedBytes int
	// SendTimeout bounds one transport write.
	SendTimeout time.Duration
	// MaxParallelInvocations is how many hub method invocations of one
	// connection may run at once (ASP.NET Core's
	// MaximumParallelInvocationsPerClient, default 1). Above 1, a
	// connection's invocations may commit and complete in any order, as
	// in ASP.NET Core; stateful-reconnect connections stay at 1, since
	// their messages are numbered in order.
	MaxParallelInvocations int
	// MaxPipelinedInvocations is how many invocations of built-in methods
	// one connection may have on their way into the log at once, applied
	// and completed in the order the client sent them (pipeline.go); the
	// reader waits while that many are in flight. 1 waits for each commit
	// before reading the next message. It needs a Publisher that is a
	// Submitter and a cluster at log format 3; it does not apply to
	// stateful-reconnect connections or with MaxParallelInvocations above 1.
	MaxPipelinedInvocations int
	// WriteDelay, when positive, spaces a connection's writes at least this
	// far apart while messages keep coming: what arrives meanwhile goes out
	// in the same transport message. A connection that was quiet for
	// WriteDelay is written to at once, so only busy connections wait. It
	// trades up to WriteDelay of latency for far fewer writes (and reads on
	// the client) at high fan-out. 0 writes as soon as possible.
	WriteDelay time.Duration
	// WSReadBufferSize is the WebSocket read buffer: the socket is read in
	// reads of up to this size, larger messages straight past it. From 257
	// bytes it is lent from a pool while it holds unread bytes, and an idle
	// connection keeps only gorilla's minimal 257-byte buffer
	// (wsidle.go); where the reader cannot wait outside gorilla (TLS
	// terminated by raftplane, no MSG_PEEK) it stays lent while the reader
	// waits. Below 257, gorilla keeps a buffer of this size for the
	// connection's life.
	WSReadBufferSize int
	// NoReaderParking keeps a reader goroutine waiting in the socket of
	// every idle WebSocket, as before parking (wspark.go): for a kernel or
	// sandbox that refuses epoll, or to compare. Parking needs Linux and a
	// reader that waits outside gorilla (see WSReadBufferSize); elsewhere
	// readers wait in their sockets anyway.
	NoReaderParking bool
	// ReaderParkAfter: a WebSocket reader whose last message came less than
	// this after the one before waits this long in its socket for the next
	// before it parks, so a busy connection's reader stays (parking and
	// waking cost a few system calls and a goroutine); one whose messages
	// come further apart (an idle connection's Pings) parks at once. 0
	// parks at once always.
	ReaderParkAfter time.Duration
	// WSWriteBufferSize is the WebSocket write buffer, lent from a pool for
	// the length of one write: a transport message (several coalesced hub
	// messages) up to this size goes out as one frame and one write, a
	// larger one as several. A write blocked on a slow client holds its
	// buffer, hence not larger.
	WSWriteBufferSize int
	// Connection and group limits (limits.go). A refusal is an HTTP 429
	// (per user, per IP) or 503 (this node is full) at negotiate and at
	// connect, whose JSON body names the limit and its value; each is
	// counted in /api/v1/status under hub.refused.
	//
	// MaxConnections bounds the connections this node holds. 0 derives it
	// from the process's file descriptor limit (RLIMIT_NOFILE soft limit
	// minus FDReserve, or half the limit when that is small), so that a
	// node full of clients keeps descriptors for Raft, gossip and REST;
	// -1: no limit.
	MaxConnections int
	// MaxConnectionsPerUser bounds a user's connections to one hub, counted
	// on every node through the replicated registry (plus this node's
	// connections not yet registered); connects of one user to several
	// nodes at the same instant may pass it by as many. Anonymous
	// connections have no user and are not counted. A resumed connection
	// is already counted. 0: no limit.
	MaxConnectionsPerUser int
	// MaxConnectionsPerIP bounds the connections this node holds from one
	// client address: the TCP peer (an IPv6 peer by its /64), so behind a
	// reverse proxy all clients share the proxy's address (raise it or
	// set 0). Requests another node forwarded (forward.go) count by the
	// address it forwarded for, or not at all. 0: no limit.
	MaxConnectionsPerIP int
	// MaxGroupsPerConnection bounds the groups one connection is in;
	// MaxGroupMembers the connections in one group. A JoinGroup (hub
	// method or REST) past either is refused before it reaches the log,
	// checked against the registry as this node has applied it: joins in
	// flight at the same time may pass it by as many. 0: no limit.
	MaxGroupsPerConnection int
	MaxGroupMembers        int
	// PublishTimeout bounds one hub method or REST call waiting for commit.
	PublishTimeout time.Duration
	// NegotiateTTL is how long a negotiated connection token may wait for
	// its transport to connect.
	NegotiateTTL time.Duration
	// MaxBodySize bounds REST request bodies, in bytes.
	MaxBodySize int64
	// DisconnectTimeout is how long a connection that dropped without
	// closing stays registered, so its client can resume it on any node.
	DisconnectTimeout time.Duration

	// DisableWebSockets, DisableServerSentEvents and DisableLongPolling turn
	// a transport off: negotiate stops offering it and its requests get 404.
	DisableWebSockets       bool
	DisableServerSentEvents bool
	DisableLongPolling      bool
	// DisableStatefulReconnect stops negotiate from granting the official
	// clients' stateful reconnect (useStatefulReconnect); see stateful.go.
	DisableStatefulReconnect bool
	// PollTimeout is how long a long poll waits for data before it returns
	// an empty 200 (ASP.NET Core: 90 s).
	PollTimeout time.Duration
	// AllowedOrigins lists the browser origins (scheme://host[:port]) allowed
	// cross-origin access to negotiate and the transports; "*" allows any.
	// Empty allows same-origin requests (and clients that send no Origin) only.
	AllowedOrigins []string

	// TokenSecret signs connection tokens (at least 16 bytes). All nodes of
	// a cluster must use the same one so that any node verifies a token
	// another issued.
	TokenSecret []byte
	// TokenSecretFunc, when set, is used instead of TokenSecret: typically
	// the cluster secret replicated in the log. While it returns fewer than
	// 16 bytes the hub refuses new connections as not ready.
	TokenSecretFunc func() []byte
	// JWT authentication (jwt.go). When any of JWTKey, JWTPublicKeys and
	// JWKSURL is set, negotiate and connect require a JWT whose "sub" is the
	// user id, signed with one of those keys; none runs the hub open (dev
	// mode). Several may be set: a token is accepted if any fitting key
	// verifies it.
	//
	// JWTKey is an HS256 shared key; HS256 tokens are accepted only with it.
	JWTKey []byte
	// JWTPublicKeys verify RS256/384/512, PS256/384/512 (RSA keys of 2048
	// bits or more) and ES256/ES384 (ECDSA P-256/P-384) tokens; see
	// LoadJWTPublicKeys to read them from PEM.
	JWTPublicKeys []crypto.PublicKey
	// JWKSURL, when set, is an identity provider's JWK Set (Keycloak:
	// <realm>/protocol/openid-connect/certs, Auth0: /.well-known/jwks.json,
	// Entra ID: the jwks_uri of its OpenID configuration): https, or http
	// to a loopback host only. It is fetched at Start (a failure there is
	// logged, and tokens are refused as "keys not loaded yet" until a
	// fetch succeeds), every JWKSRefresh, and when a token names a kid we
	// do not have (key rotation), never more often than once per
	// JWKSMinRefresh, so clients cannot make us hammer the provider. A
	// failed refresh keeps the last good keys.
	JWKSURL        string
	JWKSRefresh    time.Duration
	JWKSMinRefresh time.Duration
	// JWKSTimeout bounds one fetch; JWKSMaxBytes the document's size.
	JWKSTimeout  time.Duration
	JWKSMaxBytes int64
	// JWKSHTTPClient, when set, fetches JWKSURL (a proxy, a private CA);
	// nil uses a client with the system's roots.
	JWKSHTTPClient *http.Client
	// JWTIssuer, when set, must equal the token's "iss"; JWTAudience, when
	// set, must include one of the token's "aud" values. Set both for a
	// provider that issues tokens for other services too.
	JWTIssuer   string
	JWTAudience []string
	// JWTLeeway is the clock skew allowed on "exp", "nbf" and "iat"
	// (0 to 10 minutes).
	JWTLeeway time.Duration
	// JWTAllowNoExp accepts JWTs without "exp". By default they are
	// refused: a connection is closed when its token expires (authz.go),
	// and a token without exp would keep it open for ever.
	JWTAllowNoExp bool
	// APIKey, when set, is required as "Authorization: Bearer <key>" on the
	// REST API.
	APIKey string

	// Authorization of the built-in methods (authz.go). ClientMethods
	// lists the built-ins clients may call (JoinGroup, LeaveGroup,
	// Broadcast, SendToOthers, SendToGroup, SendToUser, SendToConnection);
	// nil allows all, an empty list none. GroupClaim names the token claim
	// listing the groups (names or path.Match patterns) a user may join,
	// leave and send to with them ("" checks nothing); a token without it
	// may use any group unless GroupClaimRequired.
	ClientMethods      []string
	GroupClaim         string
	GroupClaimRequired bool
	// DetailedErrors adds the text of an application method's error to
	// the "An unexpected error occurred" Completion (an *Error's text is
	// always sent). It may show internals to clients: for development.
	DetailedErrors bool

	// Upstream webhooks (upstream.go; docs/upstream.md), in the shape of
	// Azure SignalR Service's serverless upstream. Upstream is the URL
	// template ({hub}, {category}, {event}) an invocation of a method that
	// no Go handler and no allowed built-in claims is POSTed to, as are the
	// connected and disconnected events; "" sends nothing. Requests are
	// signed with APIKey (X-ASRS-Signature). UpstreamTimeout bounds one call
	// (the caller's Completion says so when it passes; a connected event
	// that times out refuses the connection); it must be less than
	// ClientTimeout, since the connection reads little else meanwhile (at
	// most MaxMessageSize bytes ahead: inbox.go).
	// UpstreamMaxBody bounds the answer read. UpstreamHTTPClient, when set,
	// makes the calls (a proxy, a private CA, client certificates); nil
	// uses a client with the system's roots that verifies TLS and follows
	// no redirects.
	Upstream           string
	UpstreamTimeout    time.Duration
	UpstreamMaxBody    int64
	UpstreamHTTPClient *http.Client
	// Connection events (events.go). Leadership says whether this node
	// leads: only the leader reads the log for closed connections and
	// delivers their disconnected events (upstream and
	// Handlers.OnDisconnected); nil means this node is the only one and
	// always leads. The leader records its progress in the log every
	// EventsMarkEvery events or EventsMarkInterval, whichever comes first,
	// so a new leader redelivers at most about that much.
	Leadership         Leadership
	EventsMarkEvery    int
	EventsMarkInterval time.Duration
	// Liveness, when set, says which nodes are alive: while this node
	// leads, it closes in the log the connections of a node that has not
	// been alive for DisconnectTimeout (reap.go). nil reaps no other
	// node's connections (a node alone has no other).
	Liveness Liveness

	// Peers, when set, gives the client address of a live node by its id:
	// SSE and long-polling requests for a connection held by another node
	// are forwarded there (forward.go). nil forwards nothing.
	Peers Peers
	// ForwardTLS, when set, makes those forwards https: set it when the
	// nodes serve clients over TLS. The holder's certificate is verified
	// against RootCAs (nil: the system's roots) for the name the client
	// used (its Host header), since every node behind the balancer serves
	// the public name's certificate; a ServerName here replaces that name.
	// When the nodes require client certificates, it must present one
	// they accept (Certificates or GetClientCertificate). nil forwards
	// over plain http.
	ForwardTLS *tls.Config

	// Cluster, when set, adds this node's Raft view to /api/v1/status and
	// serves GET /api/v1/cluster: every member as this node sees it.
	Cluster ClusterView
	// Readiness, when set, backs GET /readyz (ready.go): the node is ready
	// when it can commit. nil: ready whenever it takes new clients.
	Readiness Readiness
	// ReadyMaxContact: /readyz answers 503 on a follower that has not heard
	// from the leader for longer than this.
	ReadyMaxContact time.Duration
	// Snapshot, when set, serves GET /api/v1/snapshot (backup.go): a
	// backup of the replicated state (cluster.Node.Backup).
	Snapshot SnapshotFunc
	Logger   *slog.Logger
}

// DefaultGroupClaim is the claim GroupClaim names by default.
const DefaultGroupClaim = "raftplane_groups"

// DefaultConfig returns the SignalR defaults (keep-alive 15 s, client
// timeout 30 s, handshake 15 s, 32 KiB messages).
func DefaultConfig() Config {
	return Config{
		KeepAliveInterval:       15 * time.Second,
		ClientTimeout:           30 * time.Second,
		HandshakeTimeout:        15 * time.Second,
		MaxMessageSize:          32 << 10,
		MaxQueuedMessages:       4096,
		MaxQueuedBytes:          4 << 20,
		MaxConnections:          0, // automatic: see autoMaxConnections
		MaxConnectionsPerUser:   100,
		MaxConnectionsPerIP:     1000,
		MaxGroupsPerConnection:  1000,
		MaxGroupMembers:         100000,
		MaxParallelInvocations:  1,
		MaxPipelinedInvocations: 256,
		SendTimeout:             10 * time.Second,
		WSReadBufferSize:        1024,
		ReaderParkAfter:         time.Second,
		WSWriteBufferSize:       16 << 10,
		PublishTimeout:          10 * time.Second,
		NegotiateTTL:            60 * time.Second,
		MaxBodySize:             64 << 10,
		DisconnectTimeout:       30 * time.Second,
		PollTimeout:             90 * time.Second,
		ReadyMaxContact:         5 * time.Second,
		JWTLeeway:               DefaultJWTLeeway,
		JWKSRefresh:             DefaultJWKSRefresh,
		JWKSMinRefresh:          DefaultJWKSMinRefresh,
		JWKSTimeout:             DefaultJWKSTimeout,
		JWKSMaxBytes:            DefaultJWKSMaxBytes,
		GroupClaim:              DefaultGroupClaim,
		UpstreamTimeout:         DefaultUpstreamTimeout,
		UpstreamMaxBody:         DefaultUpstreamMaxBody,
		EventsMarkEvery:         DefaultEventsMarkEvery,
		EventsMarkInterval:      DefaultEventsMarkInterval,
	}
}

// Validate checks the fields and their relations. (Its length is a list of
// independent checks, one per field or relation, each naming its values;
// the limits', JWT's and upstream's are in their files.)
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("NodeID is empty"))
	}
	if c.KeepAliveInterval <= 0 || c.ClientTimeout <= 0 || c.HandshakeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("KeepAliveInterval (%s), ClientTimeout (%s) and HandshakeTimeout (%s) must be positive",
			c.KeepAliveInterval, c.ClientTimeout, c.HandshakeTimeout))
	}
	if c.KeepAliveInterval >= c.ClientTimeout {
		// Clients use the same pair; a keep-alive slower than the timeout
		// makes every idle connection time out.
		errs = append(errs, fmt.Errorf("KeepAliveInterval (%s) must be less than ClientTimeout (%s)", c.KeepAliveInterval, c.ClientTimeout))
	}
	if c.MaxMessageSize < 256 {
		errs = append(errs, fmt.Errorf("MaxMessageSize (%d) must be at least 256", c.MaxMessageSize))
	}
	if c.ReaderParkAfter < 0 {
		errs = append(errs, fmt.Errorf("ReaderParkAfter (%s) must not be negative", c.ReaderParkAfter))
	}
	if c.WSReadBufferSize < 256 || c.WSWriteBufferSize < 256 {
		errs = append(errs, fmt.Errorf("WSReadBufferSize (%d) and WSWriteBufferSize (%d) must be at least 256", c.WSReadBufferSize, c.WSWriteBufferSize))
	}
	if c.MaxParallelInvocations < 1 || c.MaxParallelInvocations > 1024 {
		errs = append(errs, fmt.Errorf("MaxParallelInvocations (%d) must be between 1 and 1024", c.MaxParallelInvocations))
	}
	if c.MaxPipelinedInvocations < 1 || c.MaxPipelinedInvocations > 65536 {
		errs = append(errs, fmt.Errorf("MaxPipelinedInvocations (%d) must be between 1 and 65536", c.MaxPipelinedInvocations))
	}
	if c.WriteDelay < 0 || c.WriteDelay > time.Second {
		errs = append(errs, fmt.Errorf("WriteDelay (%s) must be between 0 and 1s", c.WriteDelay))
	}
	if c.MaxQueuedMessages < 1 {
		errs = append(errs, fmt.Errorf("MaxQueuedMessages (%d) must be at least 1", c.MaxQueuedMessages))
	}
	errs = append(errs, c.validateLimits()...)   // limits.go
	errs = append(errs, c.validateJWT()...)      // jwt.go
	errs = append(errs, c.validateUpstream()...) // upstream.go
	if c.SendTimeout <= 0 || c.PublishTimeout <= 0 || c.NegotiateTTL <= 0 {
		errs = append(errs, fmt.Errorf("SendTimeout (%s), PublishTimeout (%s) and NegotiateTTL (%s) must be positive",
			c.SendTimeout, c.PublishTimeout, c.NegotiateTTL))
	}
	if c.DisconnectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("DisconnectTimeout (%s) must be positive", c.DisconnectTimeout))
	}
	if c.PollTimeout <= 0 {
		errs = append(errs, fmt.Errorf("PollTimeout (%s) must be positive", c.PollTimeout))
	}
	if c.ReadyMaxContact <= 0 {
		errs = append(errs, fmt.Errorf("ReadyMaxContact (%s) must be positive", c.ReadyMaxContact))
	}
	if c.DisableWebSockets && c.DisableServerSentEvents && c.DisableLongPolling {
		errs = append(errs, errors.New("every transport is disabled"))
	}
	if c.MaxBodySize < 256 {
		errs = append(errs, fmt.Errorf("MaxBodySize (%d) must be at least 256", c.MaxBodySize))
	}
	if err := validateClientMethods(c.ClientMethods); err != nil {
		errs = append(errs, err)
	}
	if c.TokenSecretFunc == nil && len(c.TokenSecret) < 16 {
		errs = append(errs, fmt.Errorf("TokenSecret is %d bytes, want at least 16", len(c.TokenSecret)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("hub config: %w", errors.Join(errs...))
	}
	return nil
}
