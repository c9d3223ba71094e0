package raftplane

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Group is an area of the settings: -help and `raftplane config defaults`
// list the options by group, in the order of Groups.
type Group string

// The groups, in the order -help lists them.
const (
	GroupNode     Group = "Node and data"
	GroupCluster  Group = "Cluster and Raft"
	GroupGossip   Group = "Gossip"
	GroupSecurity Group = "Security and TLS"
	GroupClients  Group = "Clients and transports"
	GroupLimits   Group = "Limits"
	GroupLogging  Group = "Logging and debugging"
)

// Groups returns the groups in the order -help lists them.
func Groups() []Group {
	return []Group{GroupNode, GroupCluster, GroupGossip, GroupSecurity, GroupClients, GroupLimits, GroupLogging}
}

// Option is one setting of a Config under the one name an operator uses
// everywhere: the flag -Name of cmd/raftplane, the key Name of its
// configuration file, and the environment variable Env(). The table of
// options (Options) is the only place that ties a name to a Config field,
// so the flags, the environment, the file, -help and Validate's messages
// cannot disagree.
type Option struct {
	// Name is the flag's name without the dash, also the key in the
	// configuration file.
	Name string
	// Group is the area -help lists it under.
	Group Group
	// Usage is the one-line help.
	Usage string
	// fields are the Config fields the option sets, as Go paths from
	// Config ("DataDir", "Cluster.MaxVoters"): Validate names the option
	// when a sub-config's error names one of them.
	fields []string
	value  func(*Config) Value
}

// Value returns the option's value in c: Set writes c, String reads it.
func (o Option) Value(c *Config) Value { return o.value(c) }

// Env returns the environment variable of the option: RAFTPLANE_ and the
// name in capitals with "-" as "_" (-max-message-size:
// RAFTPLANE_MAX_MESSAGE_SIZE).
func (o Option) Env() string {
	return "RAFTPLANE_" + strings.ToUpper(strings.ReplaceAll(o.Name, "-", "_"))
}

// Fields returns the Config fields the option sets, as Go paths from
// Config ("Cluster.MaxVoters").
func (o Option) Fields() []string { return append([]string(nil), o.fields...) }

// LookupOption returns the option of a name (without the dash).
func LookupOption(name string) (Option, bool) {
	for _, o := range Options() {
		if o.Name == name {
			return o, true
		}
	}
	return Option{}, false
}

// opt builds one table row; fields is a comma-separated list of Go paths.
func opt(name string, g Group, fields string, v func(*Config) Value, usage string) Option {
	return Option{Name: name, Group: g, Usage: usage, fields: SplitList(fields), value: v}
}

// Options returns every option, in the order -help lists them within
// their group. Adding a setting to Config means adding its row here. (A
// table: long by nature, one row per setting.)
func Options() []Option {
	str := func(f func(*Config) *string) func(*Config) Value {
		return func(c *Config) Value { return stringValue{f(c)} }
	}
	num := func(f func(*Config) *int) func(*Config) Value {
		return func(c *Config) Value { return numValue[int]{f(c)} }
	}
	num64 := func(f func(*Config) *int64) func(*Config) Value {
		return func(c *Config) Value { return numValue[int64]{f(c)} }
	}
	unum := func(f func(*Config) *uint64) func(*Config) Value {
		return func(c *Config) Value { return numValue[uint64]{f(c)} }
	}
	dur := func(f func(*Config) *time.Duration) func(*Config) Value {
		return func(c *Config) Value { return durationValue{f(c)} }
	}
	flag := func(f func(*Config) *bool) func(*Config) Value {
		return func(c *Config) Value { return boolValue{p: f(c)} }
	}
	list := func(f func(*Config) *[]string) func(*Config) Value {
		return func(c *Config) Value { return listValue{f(c)} }
	}
	return []Option{
		// Node and data.
		opt("data", GroupNode, "DataDir", str(func(c *Config) *string { return &c.DataDir }),
			"data folder: Raft log, snapshots, node id, peers seen last"),
		opt("node-id", GroupNode, "NodeID", str(func(c *Config) *string { return &c.NodeID }),
			"node id (default: generated once and kept in <data>/node-id)"),
		opt("http", GroupNode, "HTTPAddr", str(func(c *Config) *string { return &c.HTTPAddr }),
			"listen address for SignalR clients and the REST API"),
		opt("http-advertise", GroupNode, "HTTPAdvertise", str(func(c *Config) *string { return &c.HTTPAdvertise }),
			"HTTP address other nodes forward SSE and long-polling requests to (default: -advertise with -http's port, else -http)"),
		opt("shutdown-timeout", GroupNode, "ShutdownTimeout", dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
			"how long a graceful shutdown may take"),
		opt("http-read-header-timeout", GroupNode, "HTTPReadHeaderTimeout", dur(func(c *Config) *time.Duration { return &c.HTTPReadHeaderTimeout }),
			"how long a client may take to send a request's headers on -http"),
		opt("http-idle-timeout", GroupNode, "HTTPIdleTimeout", dur(func(c *Config) *time.Duration { return &c.HTTPIdleTimeout }),
			"close an idle keep-alive connection on -http after this long (it holds buffers until then)"),

		// Cluster and Raft.
		opt("raft", GroupCluster, "RaftAddr,Cluster.RaftBind", str(func(c *Config) *string { return &c.RaftAddr }),
			"listen address for Raft traffic between nodes"),
		opt("raft-advertise", GroupCluster, "RaftAdvertise,Cluster.RaftAdvertise", str(func(c *Config) *string { return &c.RaftAdvertise }),
			"Raft address other nodes dial (default: -advertise with -raft's port, else -raft)"),
		opt("voters", GroupCluster, "Cluster.MaxVoters", num(func(c *Config) *int { return &c.Cluster.MaxVoters }),
			"how many nodes vote in Raft (odd: 1, 3, 5, 7); the others replicate without voting"),
		opt("ready-timeout", GroupCluster, "ReadyTimeout", dur(func(c *Config) *time.Duration { return &c.ReadyTimeout }),
			"how long a starting node waits for its cluster id before it serves anyway (clients get 503 until it is ready)"),
		opt("ready-max-contact", GroupCluster, "Hub.ReadyMaxContact", dur(func(c *Config) *time.Duration { return &c.Hub.ReadyMaxContact }),
			"GET /readyz answers 503 on a follower that has not heard from the Raft leader for longer than this"),
		opt("heartbeat-timeout", GroupCluster, "Cluster.HeartbeatTimeout", dur(func(c *Config) *time.Duration { return &c.Cluster.HeartbeatTimeout }),
			"Raft heartbeat timeout"),
		opt("election-timeout", GroupCluster, "Cluster.ElectionTimeout", dur(func(c *Config) *time.Duration { return &c.Cluster.ElectionTimeout }),
			"Raft election timeout"),
		opt("leader-lease-timeout", GroupCluster, "Cluster.LeaderLeaseTimeout", dur(func(c *Config) *time.Duration { return &c.Cluster.LeaderLeaseTimeout }),
			"Raft leader lease timeout"),
		opt("commit-timeout", GroupCluster, "Cluster.CommitTimeout", dur(func(c *Config) *time.Duration { return &c.Cluster.CommitTimeout }),
			"Raft commit timeout (how soon followers learn a commit when idle)"),
		opt("max-append-entries", GroupCluster, "Cluster.MaxAppendEntries", num(func(c *Config) *int { return &c.Cluster.MaxAppendEntries }),
			"Raft entries per AppendEntries RPC"),
		opt("snapshot-interval", GroupCluster, "Cluster.SnapshotInterval", dur(func(c *Config) *time.Duration { return &c.Cluster.SnapshotInterval }),
			"how often Raft checks whether to snapshot"),
		opt("snapshot-threshold", GroupCluster, "Cluster.SnapshotThreshold", unum(func(c *Config) *uint64 { return &c.Cluster.SnapshotThreshold }),
			"entries since the last snapshot that trigger one"),
		opt("trailing-logs", GroupCluster, "Cluster.TrailingLogs", unum(func(c *Config) *uint64 { return &c.Cluster.TrailingLogs }),
			"entries kept in the log after a snapshot"),
		opt("max-batch", GroupCluster, "Cluster.MaxBatch", num(func(c *Config) *int { return &c.Cluster.MaxBatch }),
			"most commands packed into one log entry"),
		opt("max-batch-bytes", GroupCluster, "Cluster.MaxBatchBytes", num(func(c *Config) *int { return &c.Cluster.MaxBatchBytes }),
			"most bytes of commands packed into one log entry"),
		opt("max-inflight", GroupCluster, "Cluster.MaxInflight", num(func(c *Config) *int { return &c.Cluster.MaxInflight }),
			"log entries a node may have on their way to the log at once; under load, what arrives meanwhile shares the next entry (at least 2)"),
		opt("max-clock-skew", GroupCluster, "Cluster.MaxClockSkew", dur(func(c *Config) *time.Duration { return &c.Cluster.MaxClockSkew }),
			"how far ahead of the leader's clock a forwarded command's time stamp may be (a later one is clamped to the leader's clock), and how far a leader's clock may be ahead of the log's time and still be used (at most 5s)"),
		opt("hold-timeout", GroupCluster, "Cluster.HoldTimeout", dur(func(c *Config) *time.Duration { return &c.Cluster.HoldTimeout }),
			"how long a command waits for a leader before failing"),
		opt("reap-after", GroupCluster, "Cluster.ReapAfter", dur(func(c *Config) *time.Duration { return &c.Cluster.ReapAfter }),
			"remove a node that gossip has seen dead for this long"),
		opt("disconnect-timeout", GroupCluster, "Hub.DisconnectTimeout", dur(func(c *Config) *time.Duration { return &c.Hub.DisconnectTimeout }),
			"how long a dropped connection stays registered so its client can resume it on any node (also: how long the connections of a gone node stay)"),
		opt("no-sync", GroupCluster, "Cluster.NoSync", flag(func(c *Config) *bool { return &c.Cluster.NoSync }),
			"do not fsync the Raft log (unsafe; benchmarks only)"),
		opt("no-parallel-append", GroupCluster, "Cluster.NoParallelAppend", flag(func(c *Config) *bool { return &c.Cluster.NoParallelAppend }),
			"every node fsyncs each write of its log on raft's loop (the leader before replicating, a follower before answering) instead of behind it (slower commits)"),
		opt("no-follower-commits", GroupCluster, "Cluster.NoFollowerCommits", flag(func(c *Config) *bool { return &c.Cluster.NoFollowerCommits }),
			"with two or three voters, a follower does not take the commit of what it stored from the leader by itself (with fsync: once the leader says its copy is on disk too): it waits to hear of it from the leader (slower delivery on followers)"),
		opt("no-commit-notices", GroupCluster, "Cluster.NoCommitNotices", flag(func(c *Config) *bool { return &c.Cluster.NoCommitNotices }),
			"the leader does not tell followers of each commit at once: they learn it with the next entry (slower delivery on followers)"),

		// Gossip.
		opt("gossip", GroupGossip, "GossipAddr", str(func(c *Config) *string { return &c.GossipAddr }),
			"listen address (UDP and TCP) for gossip between nodes"),
		opt("advertise", GroupGossip, "Advertise", str(func(c *Config) *string { return &c.Advertise }),
			"IP or host other nodes use to reach this one (gossip, Raft and HTTP ports stay those of -gossip, -raft, -http); needed when binding 0.0.0.0"),
		opt("join", GroupGossip, "Join", list(func(c *Config) *[]string { return &c.Join }),
			"gossip address(es) of any existing node, host:port[,host:port]: join that cluster instead of starting a new one"),
		opt("join-timeout", GroupGossip, "JoinTimeout", dur(func(c *Config) *time.Duration { return &c.JoinTimeout }),
			"how long a starting node waits for a seed of -join to answer before it goes on (it keeps trying in the background)"),
		opt("gossip-key", GroupGossip, "GossipKey", str(func(c *Config) *string { return &c.GossipKey }),
			"base64 AES key (16, 24 or 32 bytes) that encrypts gossip; all nodes need the same"),
		opt("gossip-key-file", GroupGossip, "GossipKeyFile", str(func(c *Config) *string { return &c.GossipKeyFile }),
			"file holding the -gossip-key (keeps it out of ps)"),
		opt("gossip-leave-timeout", GroupGossip, "GossipLeaveTimeout", dur(func(c *Config) *time.Duration { return &c.GossipLeaveTimeout }),
			"how long a stopping node waits for its leave to reach the other nodes"),

		// Security and TLS.
		opt("api-key", GroupSecurity, "APIKey,Hub.APIKey", str(func(c *Config) *string { return &c.APIKey }),
			"when set, the REST API needs Authorization: Bearer <api-key>"),
		opt("api-key-file", GroupSecurity, "APIKeyFile", str(func(c *Config) *string { return &c.APIKeyFile }),
			"file holding the -api-key (keeps it out of ps)"),
		opt("jwt-key", GroupSecurity, "JWTKey,Hub.JWTKey", str(func(c *Config) *string { return &c.JWTKey }),
			"HS256 key; when set, clients need a JWT whose sub is their user id"),
		opt("jwt-key-file", GroupSecurity, "JWTKeyFile", str(func(c *Config) *string { return &c.JWTKeyFile }),
			"file holding the -jwt-key (keeps it out of ps)"),
		opt("jwt-public-key-file", GroupSecurity, "JWTPublicKeyFile,Hub.JWTPublicKeys", str(func(c *Config) *string { return &c.JWTPublicKeyFile }),
			"PEM file of RSA or ECDSA public keys (PUBLIC KEY or CERTIFICATE blocks): clients need a JWT signed by one (RS256/384/512, PS256/384/512, ES256/384)"),
		opt("jwks-url", GroupSecurity, "Hub.JWKSURL", str(func(c *Config) *string { return &c.Hub.JWKSURL }),
			"https URL of the identity provider's JWKS (Keycloak, Auth0, Entra ID): clients need a JWT signed by one of its keys, found by kid"),
		opt("jwt-issuer", GroupSecurity, "Hub.JWTIssuer", str(func(c *Config) *string { return &c.Hub.JWTIssuer }),
			"when set, a client JWT's iss must equal it"),
		opt("jwt-audience", GroupSecurity, "Hub.JWTAudience", list(func(c *Config) *[]string { return &c.Hub.JWTAudience }),
			"comma-separated audiences; when set, a client JWT's aud must hold one of them"),
		opt("jwt-leeway", GroupSecurity, "Hub.JWTLeeway", dur(func(c *Config) *time.Duration { return &c.Hub.JWTLeeway }),
			"clock skew allowed on a JWT's exp, nbf and iat"),
		opt("jwt-allow-no-exp", GroupSecurity, "Hub.JWTAllowNoExp", flag(func(c *Config) *bool { return &c.Hub.JWTAllowNoExp }),
			"accept client JWTs without exp (by default refused: a connection is closed when its token expires)"),
		opt("jwks-refresh", GroupSecurity, "Hub.JWKSRefresh", dur(func(c *Config) *time.Duration { return &c.Hub.JWKSRefresh }),
			"how often the JWKS is fetched again"),
		opt("jwks-min-refresh", GroupSecurity, "Hub.JWKSMinRefresh", dur(func(c *Config) *time.Duration { return &c.Hub.JWKSMinRefresh }),
			"fetch the JWKS at most this often when tokens name an unknown kid"),
		opt("jwks-timeout", GroupSecurity, "Hub.JWKSTimeout", dur(func(c *Config) *time.Duration { return &c.Hub.JWKSTimeout }),
			"longest one fetch of the JWKS may take"),
		opt("jwks-max-bytes", GroupSecurity, "Hub.JWKSMaxBytes", num64(func(c *Config) *int64 { return &c.Hub.JWKSMaxBytes }),
			"largest JWKS document read, in bytes"),
		opt("client-methods", GroupSecurity, "Hub.ClientMethods", clientMethods,
			"built-in hub methods clients may call: all, none, or a comma-separated list of JoinGroup, LeaveGroup, Broadcast, SendToOthers, SendToGroup, SendToUser, SendToConnection"),
		opt("group-claim", GroupSecurity, "Hub.GroupClaim", str(func(c *Config) *string { return &c.Hub.GroupClaim }),
			`JWT claim listing the groups (names or patterns) a user may join and send to with the built-in methods; "" checks nothing`),
		opt("group-claim-required", GroupSecurity, "Hub.GroupClaimRequired", flag(func(c *Config) *bool { return &c.Hub.GroupClaimRequired }),
			"a token without the -group-claim may use no group (default: any group)"),
		opt("secret", GroupSecurity, "Secret,Hub.TokenSecret", str(func(c *Config) *string { return &c.Secret }),
			"secret that signs connection tokens, the same on every node (default: the cluster secret generated at bootstrap and replicated in the log)"),
		opt("allowed-origins", GroupSecurity, "Hub.AllowedOrigins", list(func(c *Config) *[]string { return &c.Hub.AllowedOrigins }),
			`comma-separated browser origins (https://app.example.com) allowed cross-origin access, with credentials; "*" allows any (default: same-origin only)`),
		opt("peer-cert-file", GroupSecurity, "PeerCertFile", str(func(c *Config) *string { return &c.PeerCertFile }),
			"PEM certificate this node presents to its peers on the Raft port (mutual TLS; make one with `raftplane certs node`); reloaded when the file changes"),
		opt("peer-key-file", GroupSecurity, "PeerKeyFile", str(func(c *Config) *string { return &c.PeerKeyFile }),
			"PEM private key of -peer-cert-file"),
		opt("peer-ca-file", GroupSecurity, "PeerCAFile", str(func(c *Config) *string { return &c.PeerCAFile }),
			"PEM CA certificate(s) a peer's certificate must chain to; a peer without one gets nothing"),
		opt("cert-file", GroupSecurity, "CertFile", str(func(c *Config) *string { return &c.CertFile }),
			"PEM certificate (chain) for -http: serve HTTPS and WSS to clients and the REST API; reloaded when the file changes"),
		opt("key-file", GroupSecurity, "KeyFile", str(func(c *Config) *string { return &c.KeyFile }),
			"PEM private key of -cert-file"),
		opt("client-ca-file", GroupSecurity, "ClientCAFile", str(func(c *Config) *string { return &c.ClientCAFile }),
			"PEM CA certificate(s): clients of -http must present a certificate that chains to one (mutual TLS); reloaded when the file changes"),
		opt("forward-ca-file", GroupSecurity, "ForwardCAFile,Hub.ForwardTLS", str(func(c *Config) *string { return &c.ForwardCAFile }),
			"PEM CA certificate(s) that verify another node's -cert-file when SSE and long-polling requests are forwarded to it (default: the system's roots)"),
		opt("metrics-public", GroupSecurity, "MetricsPublic", flag(func(c *Config) *bool { return &c.MetricsPublic }),
			"serve GET /metrics without the API key (a Prometheus on a private network)"),
		opt("metrics-max-hubs", GroupLimits, "Metrics.MaxHubLabels", num(func(c *Config) *int { return &c.Metrics.MaxHubLabels }),
			"hubs named in the raftplane_connections metric; the others are summed under hub=\"(other)\""),
		opt("insecure", GroupSecurity, "Insecure", flag(func(c *Config) *bool { return &c.Insecure }),
			"allow the Raft and gossip ports to listen beyond loopback without peer TLS and a gossip key: only on a network you trust entirely"),

		// Clients and transports.
		opt("transports", GroupClients, "Hub.DisableWebSockets,Hub.DisableServerSentEvents,Hub.DisableLongPolling", transports,
			"comma-separated transports to offer: websockets, sse, longpolling"),
		opt("stateful-reconnect", GroupClients, "Hub.DisableStatefulReconnect", statefulReconnect,
			"grant the official clients' stateful reconnect (withStatefulReconnect), continued on any node: true or false"),
		opt("keepalive", GroupClients, "Hub.KeepAliveInterval", dur(func(c *Config) *time.Duration { return &c.Hub.KeepAliveInterval }),
			"send a Ping when nothing was sent for this long"),
		opt("client-timeout", GroupClients, "Hub.ClientTimeout", dur(func(c *Config) *time.Duration { return &c.Hub.ClientTimeout }),
			"close a connection that sent nothing for this long"),
		opt("handshake-timeout", GroupClients, "Hub.HandshakeTimeout", dur(func(c *Config) *time.Duration { return &c.Hub.HandshakeTimeout }),
			"how long a client may take to send its handshake"),
		opt("negotiate-ttl", GroupClients, "Hub.NegotiateTTL", dur(func(c *Config) *time.Duration { return &c.Hub.NegotiateTTL }),
			"how long a negotiated connection token waits for its transport"),
		opt("poll-timeout", GroupClients, "Hub.PollTimeout", dur(func(c *Config) *time.Duration { return &c.Hub.PollTimeout }),
			"long polling: how long a poll waits for data before an empty 200"),
		opt("send-timeout", GroupClients, "Hub.SendTimeout", dur(func(c *Config) *time.Duration { return &c.Hub.SendTimeout }),
			"longest a single write to a client may take"),
		opt("publish-timeout", GroupClients, "Hub.PublishTimeout", dur(func(c *Config) *time.Duration { return &c.Hub.PublishTimeout }),
			"longest a hub method or REST call waits for its commit"),
		opt("write-delay", GroupClients, "Hub.WriteDelay", dur(func(c *Config) *time.Duration { return &c.Hub.WriteDelay }),
			"space a busy connection's writes this far apart so that messages share frames (fewer writes at high fan-out, up to this much more latency); 0: write at once"),
		opt("ws-read-buffer", GroupClients, "Hub.WSReadBufferSize", num(func(c *Config) *int { return &c.Hub.WSReadBufferSize }),
			"bytes of WebSocket read buffer: the socket is read in reads of up to this size (larger messages past it), into a buffer lent while it holds unread bytes, so an idle connection keeps none"),
		opt("no-reader-parking", GroupClients, "Hub.NoReaderParking", flag(func(c *Config) *bool { return &c.Hub.NoReaderParking }),
			"keep a reader goroutine waiting in the socket of every idle WebSocket instead of parking it in the server's epoll set (Linux; parking saves the reader's stack, 2 KB or more per idle connection); for a kernel or sandbox that refuses epoll, or to compare"),
		opt("reader-park-after", GroupClients, "Hub.ReaderParkAfter", dur(func(c *Config) *time.Duration { return &c.Hub.ReaderParkAfter }),
			"a WebSocket reader whose messages come less than this apart waits this long in its socket for the next before it parks (a busy connection's reader stays); one whose messages come further apart parks at once; 0: always at once"),
		opt("ws-write-buffer", GroupClients, "Hub.WSWriteBufferSize", num(func(c *Config) *int { return &c.Hub.WSWriteBufferSize }),
			"bytes of WebSocket write buffer, lent per write: coalesced messages up to this size go out as one frame"),
		opt("max-parallel-invocations", GroupClients, "Hub.MaxParallelInvocations", num(func(c *Config) *int { return &c.Hub.MaxParallelInvocations }),
			"hub method invocations of one connection that may run at once (ASP.NET Core's MaximumParallelInvocationsPerClient); above 1 they may complete in any order; stateful-reconnect connections stay at 1"),
		opt("max-pipelined-invocations", GroupClients, "Hub.MaxPipelinedInvocations", num(func(c *Config) *int { return &c.Hub.MaxPipelinedInvocations }),
			"invocations of built-in methods one connection may have on their way into the log at once, applied and completed in the order it sent them; 1: wait for each commit before reading the next"),
		opt("upstream", GroupClients, "Hub.Upstream", str(func(c *Config) *string { return &c.Hub.Upstream }),
			"URL template ({hub}, {category}, {event}) that hub methods no Go handler or built-in claims, and the connected and disconnected events, are POSTed to, as Azure SignalR Service's serverless upstream; signed with -api-key"),
		opt("upstream-timeout", GroupClients, "Hub.UpstreamTimeout", dur(func(c *Config) *time.Duration { return &c.Hub.UpstreamTimeout }),
			"longest one upstream call may take (less than -client-timeout); past it the caller gets an error Completion"),
		opt("upstream-max-body", GroupClients, "Hub.UpstreamMaxBody", num64(func(c *Config) *int64 { return &c.Hub.UpstreamMaxBody }),
			"largest upstream answer read, in bytes"),
		opt("detailed-errors", GroupClients, "Hub.DetailedErrors", flag(func(c *Config) *bool { return &c.Hub.DetailedErrors }),
			"send the text of an application method's error to the client (may show internals: for development)"),

		// Limits.
		opt("max-message-size", GroupLimits, "Hub.MaxMessageSize", num(func(c *Config) *int { return &c.Hub.MaxMessageSize }),
			"largest hub message a client may send, in bytes"),
		opt("max-queued-messages", GroupLimits, "Hub.MaxQueuedMessages", num(func(c *Config) *int { return &c.Hub.MaxQueuedMessages }),
			"per-connection send queue; a client further behind is closed with allowReconnect"),
		opt("max-queued-bytes", GroupLimits, "Hub.MaxQueuedBytes", num(func(c *Config) *int { return &c.Hub.MaxQueuedBytes }),
			"per-connection send queue in bytes; a client further behind is closed with allowReconnect; 0: no limit"),
		opt("max-connections", GroupLimits, "Hub.MaxConnections", num(func(c *Config) *int { return &c.Hub.MaxConnections }),
			"client connections this node holds at most; 0: from the file-descriptor limit, keeping a reserve for Raft, gossip and REST; -1: no limit"),
		opt("max-connections-per-user", GroupLimits, "Hub.MaxConnectionsPerUser", num(func(c *Config) *int { return &c.Hub.MaxConnectionsPerUser }),
			"connections one user may hold in one hub, across the cluster; 0: no limit"),
		opt("max-connections-per-ip", GroupLimits, "Hub.MaxConnectionsPerIP", num(func(c *Config) *int { return &c.Hub.MaxConnectionsPerIP }),
			"connections one client IP (an IPv6 /64) may hold on this node; 0: no limit. Behind a reverse proxy every client shares its address"),
		opt("max-groups-per-connection", GroupLimits, "Hub.MaxGroupsPerConnection", num(func(c *Config) *int { return &c.Hub.MaxGroupsPerConnection }),
			"groups one connection may be in; 0: no limit"),
		opt("max-group-members", GroupLimits, "Hub.MaxGroupMembers", num(func(c *Config) *int { return &c.Hub.MaxGroupMembers }),
			"connections one group may hold; 0: no limit"),
		opt("max-body-size", GroupLimits, "Hub.MaxBodySize", num64(func(c *Config) *int64 { return &c.Hub.MaxBodySize }),
			"largest REST request body, in bytes"),
		opt("cache-entries", GroupLimits, "FSM.CacheMaxEntries", num(func(c *Config) *int { return &c.FSM.CacheMaxEntries }),
			"message cache: most entries kept"),
		opt("cache-bytes", GroupLimits, "FSM.CacheMaxBytes", num64(func(c *Config) *int64 { return &c.FSM.CacheMaxBytes }),
			"message cache: most bytes kept"),
		opt("cache-age", GroupLimits, "FSM.CacheMaxAge", dur(func(c *Config) *time.Duration { return &c.FSM.CacheMaxAge }),
			"message cache: oldest entry kept"),

		// Logging and debugging.
		opt("log-level", GroupLogging, "LogLevel", str(func(c *Config) *string { return &c.LogLevel }),
			"log level: debug, info, warn or error"),
		opt("log-format", GroupLogging, "LogFormat", str(func(c *Config) *string { return &c.LogFormat }),
			"log format: text (key=value) or json (one object per line, for log collectors)"),
		opt("debug-http", GroupLogging, "DebugAddr", str(func(c *Config) *string { return &c.DebugAddr }),
			"listen address for Go's profiling endpoints (/debug/pprof/); off when empty. Keep it private: profiles show memory contents"),
	}
}

// transports is -transports: it turns on the listed transports and off
// the others.
func transports(c *Config) Value {
	h := &c.Hub
	return funcValue{typ: "list",
		set: func(v string) error {
			ws, sse, lp := false, false, false
			for _, t := range strings.Split(v, ",") {
				switch strings.ToLower(strings.TrimSpace(t)) {
				case "websockets", "websocket", "ws":
					ws = true
				case "sse", "serversentevents":
					sse = true
				case "longpolling", "lp":
					lp = true
				default:
					return fmt.Errorf("unknown transport %q: want websockets, sse or longpolling", strings.TrimSpace(t))
				}
			}
			h.DisableWebSockets, h.DisableServerSentEvents, h.DisableLongPolling = !ws, !sse, !lp
			return nil
		},
		get: func() string {
			var on []string
			for _, t := range []struct {
				name string
				off  bool
			}{{"websockets", h.DisableWebSockets}, {"sse", h.DisableServerSentEvents}, {"longpolling", h.DisableLongPolling}} {
				if !t.off {
					on = append(on, t.name)
				}
			}
			return strings.Join(on, ",")
		}}
}

// statefulReconnect is -stateful-reconnect, the opposite of
// Hub.DisableStatefulReconnect. It takes a value (-stateful-reconnect
// false), as it always has, rather than being a bare bool flag.
func statefulReconnect(c *Config) Value {
	h := &c.Hub
	return funcValue{typ: "bool",
		set: func(v string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			h.DisableStatefulReconnect = !b
			return nil
		},
		get: func() string { return strconv.FormatBool(!h.DisableStatefulReconnect) }}
}

// clientMethods is -client-methods: "all" is nil (every built-in), "none"
// an empty list, else the listed built-ins (hub checks the names).
func clientMethods(c *Config) Value {
	h := &c.Hub
	return funcValue{typ: "list",
		set: func(v string) error {
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "all":
				h.ClientMethods = nil
			case "none", "":
				h.ClientMethods = []string{}
			default:
				h.ClientMethods = SplitList(v)
			}
			return nil
		},
		get: func() string {
			switch {
			case h.ClientMethods == nil:
				return "all"
			case len(h.ClientMethods) == 0:
				return "none"
			}
			return strings.Join(h.ClientMethods, ",")
		}}
}
