package fsm

// Constructors of the commands a submitter writes, one per kind, so that
// the fields a kind carries are named in one place (Validate refuses the
// others). They set no ID or Time, which the submitter stamps
// (cluster.Node.Publish), and no Origin, which the hub sets on the command
// that carries out a stateful-reconnect client's message.

// Publish is a KindPublish: the hub message target(args...) to an
// audience of hub (key names the group, user or connection; "" for
// AudienceAll), except the connections in exclude. args is the arguments
// as a JSON array, validated by the submitter.
func Publish(hub string, a Audience, key, target string, args []byte, exclude []string) Command {
	return Command{Kind: KindPublish, Hub: hub, Audience: a, Key: key, Target: target, Args: args, Exclude: exclude}
}

// GroupJoin is a KindGroupJoin: connection conn joins group in hub.
func GroupJoin(hub, conn, group string) Command {
	return Command{Kind: KindGroupJoin, Hub: hub, Conn: conn, Group: group}
}

// GroupLeave is a KindGroupLeave: connection conn leaves group in hub.
func GroupLeave(hub, conn, group string) Command {
	return Command{Kind: KindGroupLeave, Hub: hub, Conn: conn, Group: group}
}

// ConnOpen is a KindConnOpen: connection conn of user opens in hub, its
// transport held by node.
func ConnOpen(hub, conn, user, node string) Command {
	return Command{Kind: KindConnOpen, Hub: hub, Conn: conn, User: user, Node: node}
}

// ConnResume is a KindConnResume: connection conn of user resumes on node,
// its client having seen everything up to from.
func ConnResume(hub, conn, user, node string, from Cursor) Command {
	return Command{Kind: KindConnResume, Hub: hub, Conn: conn, User: user, Node: node, From: from}
}

// ConnClose is a KindConnClose: connection conn of hub ends (leaving its
// groups) for reason.
func ConnClose(hub, conn, reason string) Command {
	return Command{Kind: KindConnClose, Hub: hub, Conn: conn, Reason: reason}
}

// ConnAck is a KindConnAck: the client of stateful-reconnect connection
// conn has received its first seq messages, the last at last.
func ConnAck(hub, conn string, seq uint64, last Cursor) Command {
	return Command{Kind: KindConnAck, Hub: hub, Conn: conn, AckSeq: seq, From: last}
}

// Reject is a KindReject: a client message of hub refused before the log,
// for reason. The submitter sets its Origin (Validate requires one).
func Reject(hub, reason string) Command {
	return Command{Kind: KindReject, Hub: hub, Reason: reason}
}

// Invoke is a KindInvoke: the end of connection conn's invocation of hub
// method target, whose effects are the effects commands just before it in
// its entry; result is its result (JSON; nil for none).
func Invoke(hub, conn, target string, effects uint32, result []byte) Command {
	return Command{Kind: KindInvoke, Hub: hub, Conn: conn, Target: target, Effects: effects, Args: result}
}

// EventsDone is a KindEventsDone: the leader has delivered the connection
// events of the entries up to upTo.
func EventsDone(upTo Cursor) Command {
	return Command{Kind: KindEventsDone, From: upTo}
}

// ClusterInit is a KindClusterInit: it names the stream (clusterID
// becomes the cursor epoch) and carries the cluster's shared secret. now
// is the submitter's clock (Unix nanoseconds): it is applied straight to
// Raft, not through Publish.
func ClusterInit(clusterID string, secret []byte, now int64) Command {
	return Command{Kind: KindClusterInit, ClusterID: clusterID, Secret: secret, Time: now}
}

// FormatKnown is a KindFormat: every server knows log format format. now
// is the submitter's clock (Unix nanoseconds): it is applied straight to
// Raft, not through Publish.
func FormatKnown(format uint32, now int64) Command {
	return Command{Kind: KindFormat, Format: format, Time: now}
}
