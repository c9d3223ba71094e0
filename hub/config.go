package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures a Server. Start from DefaultConfig; every field is a
// documented flag of cmd/raftplane.
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
	// SendTimeout bounds one transport write.
	SendTimeout time.Duration
	// MaxParallelInvocations is how many hub method invocations of one
	// connection may run at once (ASP.NET Core's
	// MaximumParallelInvocationsPerClient, default 1). Above 1, a
	// connection's invocations may commit and complete in any order, as
	// in ASP.NET Core; stateful-reconnect connections stay at 1, since
	// their messages are numbered in order.
	MaxParallelInvocations int
	// WriteDelay, when positive, spaces a connection's writes at least this
	// far apart while messages keep coming: what arrives meanwhile goes out
	// in the same transport message. A connection that was quiet for
	// WriteDelay is written to at once, so only busy connections wait. It
	// trades up to WriteDelay of latency for far fewer writes (and reads on
	// the client) at high fan-out. 0 writes as soon as possible.
	WriteDelay time.Duration
	// WSReadBufferSize is each WebSocket's read buffer, held for the life
	// of the connection, idle or not: it is most of an idle connection's
	// memory. Larger messages are read straight past it.
	WSReadBufferSize int
	// WSWriteBufferSize is the WebSocket write buffer, lent from a pool for
	// the length of one write: a transport message (several coalesced hub
	// messages) up to this size goes out as one frame and one write, a
	// larger one as several. A write blocked on a slow client holds its
	// buffer, hence not larger.
	WSWriteBufferSize int
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
	// JWTKey, when set, makes negotiate and connect require an HS256 JWT
	// whose "sub" is the user id. Empty runs the hub open (dev mode).
	JWTKey []byte
	// APIKey, when set, is required as "Authorization: Bearer <key>" on the
	// REST API.
	APIKey string

	// NodeHTTPAddr, when set, gives the client address of a live node by
	// its id: SSE and long-polling requests for a connection held by
	// another node are forwarded there (forward.go).
	NodeHTTPAddr func(nodeID string) (string, bool)

	// Status, when set, adds this node's Raft view to /api/v1/status.
	Status func() any
	// Cluster, when set, serves GET /api/v1/cluster: every member as this
	// node sees it.
	Cluster func(ctx context.Context) any
	Logger  *slog.Logger
}

// DefaultConfig returns the SignalR defaults (keep-alive 15 s, client
// timeout 30 s, handshake 15 s, 32 KiB messages).
func DefaultConfig() Config {
	return Config{
		KeepAliveInterval:      15 * time.Second,
		ClientTimeout:          30 * time.Second,
		HandshakeTimeout:       15 * time.Second,
		MaxMessageSize:         32 << 10,
		MaxQueuedMessages:      4096,
		MaxParallelInvocations: 1,
		SendTimeout:            10 * time.Second,
		WSReadBufferSize:       1024,
		WSWriteBufferSize:      16 << 10,
		PublishTimeout:         10 * time.Second,
		NegotiateTTL:           60 * time.Second,
		MaxBodySize:            64 << 10,
		DisconnectTimeout:      30 * time.Second,
		PollTimeout:            90 * time.Second,
	}
}

// Validate checks the fields and their relations.
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
	if c.WSReadBufferSize < 256 || c.WSWriteBufferSize < 256 {
		errs = append(errs, fmt.Errorf("WSReadBufferSize (%d) and WSWriteBufferSize (%d) must be at least 256", c.WSReadBufferSize, c.WSWriteBufferSize))
	}
	if c.MaxParallelInvocations < 1 || c.MaxParallelInvocations > 1024 {
		errs = append(errs, fmt.Errorf("MaxParallelInvocations (%d) must be between 1 and 1024", c.MaxParallelInvocations))
	}
	if c.WriteDelay < 0 || c.WriteDelay > time.Second {
		errs = append(errs, fmt.Errorf("WriteDelay (%s) must be between 0 and 1s", c.WriteDelay))
	}
	if c.MaxQueuedMessages < 1 {
		errs = append(errs, fmt.Errorf("MaxQueuedMessages (%d) must be at least 1", c.MaxQueuedMessages))
	}
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
	if c.DisableWebSockets && c.DisableServerSentEvents && c.DisableLongPolling {
		errs = append(errs, errors.New("every transport is disabled"))
	}
	if c.MaxBodySize < 256 {
		errs = append(errs, fmt.Errorf("MaxBodySize (%d) must be at least 256", c.MaxBodySize))
	}
	if c.TokenSecretFunc == nil && len(c.TokenSecret) < 16 {
		errs = append(errs, fmt.Errorf("TokenSecret is %d bytes, want at least 16", len(c.TokenSecret)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("hub config: %w", errors.Join(errs...))
	}
	return nil
}
