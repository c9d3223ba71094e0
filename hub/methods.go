package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/raftplane/raftplane/fsm"
)

// method is a built-in hub method: it turns the invocation's arguments into
// one log command.
type method struct {
	name   string // as documented
	params []string
	rest   bool // takes ...args after params
	build  func(c *conn, s []string, rest []json.RawMessage) (fsm.Command, error)
}

// maxArgsFactor bounds the JSON arguments a message puts in the log, as a
// multiple of MaxMessageSize.
const maxArgsFactor = 2

// builtins is the table of built-in methods by lower-case name: built once,
// by an expression rather than an init function, and only read after.
var builtins = func() map[string]*method {
	out := map[string]*method{}
	for _, m := range []*method{
		{name: "JoinGroup", params: []string{"group"}, build: func(c *conn, s []string, _ []json.RawMessage) (fsm.Command, error) {
			if le := c.srv.checkJoin(c.hub, c.id, s[0]); le != nil { // limits.go
				return fsm.Command{}, fmt.Errorf("JoinGroup: %w", le)
			}
			return fsm.GroupJoin(c.hub, c.id, s[0]), nil
		}},
		{name: "LeaveGroup", params: []string{"group"}, build: func(c *conn, s []string, _ []json.RawMessage) (fsm.Command, error) {
			return fsm.GroupLeave(c.hub, c.id, s[0]), nil
		}},
		{name: "Broadcast", params: []string{"target"}, rest: true, build: func(c *conn, s []string, r []json.RawMessage) (fsm.Command, error) {
			return fsm.Publish(c.hub, fsm.AudienceAll, "", s[0], joinArgs(r), nil), nil
		}},
		{name: "SendToOthers", params: []string{"target"}, rest: true, build: func(c *conn, s []string, r []json.RawMessage) (fsm.Command, error) {
			return fsm.Publish(c.hub, fsm.AudienceAll, "", s[0], joinArgs(r), []string{c.id}), nil
		}},
		{name: "SendToGroup", params: []string{"group", "target"}, rest: true, build: func(c *conn, s []string, r []json.RawMessage) (fsm.Command, error) {
			return fsm.Publish(c.hub, fsm.AudienceGroup, s[0], s[1], joinArgs(r), nil), nil
		}},
		{name: "SendToUser", params: []string{"user", "target"}, rest: true, build: func(c *conn, s []string, r []json.RawMessage) (fsm.Command, error) {
			return fsm.Publish(c.hub, fsm.AudienceUser, s[0], s[1], joinArgs(r), nil), nil
		}},
		{name: "SendToConnection", params: []string{"connectionId", "target"}, rest: true, build: func(c *conn, s []string, r []json.RawMessage) (fsm.Command, error) {
			return fsm.Publish(c.hub, fsm.AudienceConnection, s[0], s[1], joinArgs(r), nil), nil
		}},
	} {
		out[strings.ToLower(m.name)] = m
	}
	return out
}()

// connClose is the close of connection c, for reason.
func connClose(c *conn, reason string) fsm.Command { return fsm.ConnClose(c.hub, c.id, reason) }

// joinArgs builds the recipients' arguments array from validated raw values.
func joinArgs(r []json.RawMessage) []byte {
	n := 2
	for _, a := range r {
		n += len(a) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, a := range r {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, a...)
	}
	return append(b, ']')
}

// maxLen of each string parameter.
func paramLimit(p string) int {
	switch p {
	case "target":
		return maxTargetLen
	case "user":
		return maxUserLen
	}
	return maxGroupLen
}

// bind checks the arguments against the method's parameters.
func (m *method) bind(args []json.RawMessage) ([]string, []json.RawMessage, error) {
	if len(args) < len(m.params) || (!m.rest && len(args) > len(m.params)) {
		want := fmt.Sprintf("%d", len(m.params))
		if m.rest {
			want = "at least " + want
		}
		return nil, nil, fmt.Errorf("%s(%s%s) takes %s argument(s), got %d", m.name, strings.Join(m.params, ", "),
			map[bool]string{true: ", ...args", false: ""}[m.rest], want, len(args))
	}
	s := make([]string, len(m.params))
	for i, p := range m.params {
		if err := json.Unmarshal(args[i], &s[i]); err != nil {
			return nil, nil, fmt.Errorf("%s: argument %d (%s) must be a string, got %s", m.name, i+1, p, abbreviate(args[i]))
		}
		if s[i] == "" {
			return nil, nil, fmt.Errorf("%s: argument %d (%s) must not be empty", m.name, i+1, p)
		}
		if l := paramLimit(p); len(s[i]) > l {
			return nil, nil, fmt.Errorf("%s: argument %d (%s) is longer than %d bytes", m.name, i+1, p, l)
		}
	}
	return s, args[len(m.params):], nil
}

func abbreviate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// handleRecord processes one hub message from the client, in order. Hub
// methods run one at a time per connection, as in ASP.NET Core's default,
// or up to Config.MaxParallelInvocations at once (invokeParallel).
func (c *conn) handleRecord(rec []byte, info recordInfo) {
	if c.ctx.Err() != nil {
		return
	}
	c.srv.stats.receivedFrom(c) // stats.go
	if c.sr != nil && c.sr.clientSpoke() {
		c.endHold()
	}
	if info.Oversized {
		msg := fmt.Sprintf("Message of %d bytes exceeds the maximum message size of %d bytes.", info.Size, c.srv.cfg.MaxMessageSize)
		c.logger().Debug("oversized message", "size", info.Size)
		if c.sr != nil {
			c.handleStateful(hubMessage{Type: typeInvocation, InvocationID: info.InvocationID, HasInvocationID: info.HasInvocationID}, msg)
			return
		}
		if info.HasInvocationID {
			c.replyInOrder(info.InvocationID, msg)
		}
		return
	}
	m, err := parseRecord(c.proto, rec) // JSON or MessagePack (msgpack.go)
	if err != nil {
		c.logger().Debug("malformed message", "err", err)
		if c.sr != nil {
			if m.Type == 0 {
				m.Type = typeInvocation // a broken invocation, most likely: it was numbered
			}
			if id, ok := scanRecordInvocationID(c.proto, rec); ok {
				m.InvocationID, m.HasInvocationID = id, true
			}
			c.handleStateful(m, "Invalid message: "+err.Error())
			return
		}
		// Answer only what may be an invocation of ours: the ids of a
		// client's own Completions, StreamItems and Cancels are not.
		if m.Type == 0 || m.Type == typeInvocation || m.Type == typeStreamInvocation {
			if id, ok := scanRecordInvocationID(c.proto, rec); ok {
				c.replyInOrder(id, "Invalid message: "+err.Error())
			}
		}
		return
	}
	if c.sr != nil && c.handleStateful(m, "") {
		return
	}
	switch m.Type {
	case typeInvocation:
		switch {
		case c.parallel != nil:
			c.invokeParallel(m)
		case c.pipelined():
			c.invokePipelined(m) // pipeline.go
		default:
			c.invoke(m)
		}
	case typeStreamInvocation:
		c.replyInOrder(m.InvocationID, fmt.Sprintf("Unknown hub method '%s': this hub has no streaming methods.", m.Target))
	case typeClose:
		c.goodbye.Store(true)
		c.cancel()
	case typePing, typeAck, typeSequence, typeCompletion, typeStreamItem, typeCancelInvocation:
		// Nothing to do: keep-alive already refreshed the timeout, there are no
		// client results or upload streams to route, and stateful reconnect
		// is not offered on this connection.
	default:
		c.logger().Debug("ignoring unknown message type", "type", m.Type)
	}
}

// invokeParallel runs an invocation on a goroutine of its own, once fewer
// than MaxParallelInvocations of the connection's are running; until then
// it blocks the handler (and so the reader, inbox.go), as ASP.NET Core does. m is the parser's own copy
// (parseMessage and parseMsgpackMessage never alias the record).
func (c *conn) invokeParallel(m hubMessage) {
	select {
	case c.parallel <- struct{}{}:
	case <-c.ctx.Done():
		return
	}
	c.invocations.Add(1)
	go func() {
		defer c.invocations.Done()
		defer func() { <-c.parallel }()
		c.invoke(m)
	}()
}

// invoke runs an application method (invoke.go) or a built-in one, which
// answers with its cursor.
func (c *conn) invoke(m hubMessage) {
	if am, ok := c.appMethod(m.Target); ok {
		c.invokeApp(m, am)
		return
	}
	if c.upstreamMethod(m.Target) {
		c.invokeUpstream(m) // upstream.go
		return
	}
	reply := m.HasInvocationID
	cmd, err := c.buildInvocation(m)
	if err != nil {
		if reply {
			c.complete(m.InvocationID, nil, err.Error())
		}
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.cfg.PublishTimeout)
	cur, err := c.srv.pub.Publish(ctx, cmd)
	if err == nil && reply {
		c.srv.waitDispatched(ctx, cur)
	}
	cancel()
	if err != nil {
		if reply {
			c.complete(m.InvocationID, nil, publishError(builtins[strings.ToLower(m.Target)].name, cmd, err))
		}
		return
	}
	if reply {
		res, _ := json.Marshal(cur.Format(c.srv.stream.Epoch()))
		c.complete(m.InvocationID, res, "")
	}
}

// buildInvocation turns an invocation of a built-in method into its log
// command; its error is the message for the client's Completion.
func (c *conn) buildInvocation(m hubMessage) (fsm.Command, error) {
	meth := builtins[strings.ToLower(m.Target)]
	if meth == nil {
		return fsm.Command{}, wireErrorf("Unknown hub method '%s'", m.Target)
	}
	if !c.srv.builtinAllowed(meth.name) {
		return fsm.Command{}, wireErrorf("Method '%s' is not available to clients on this server", meth.name)
	}
	if len(m.StreamIDs) > 0 {
		return fsm.Command{}, fmt.Errorf("%s does not accept streams", meth.name)
	}
	strs, rest, err := meth.bind(m.Arguments)
	if err == nil && len(meth.params) > 0 && meth.params[0] == "group" {
		err = c.groupAllowed(meth.name, strs[0]) // authz.go
	}
	var cmd fsm.Command
	if err == nil {
		cmd, err = meth.build(c, strs, rest)
	}
	if err == nil && len(cmd.Args) > maxArgsFactor*c.srv.cfg.MaxMessageSize {
		// A MessagePack message can grow when its arguments become JSON for
		// the log (nil becomes null, bin becomes base64): bound that too.
		err = fmt.Errorf("%s: the arguments take %d bytes as JSON, more than %d", meth.name, len(cmd.Args), maxArgsFactor*c.srv.cfg.MaxMessageSize)
	}
	return cmd, err
}

// publishError words a failed publish for the client.
func publishError(name string, cmd fsm.Command, err error) string {
	switch {
	case errors.Is(err, fsm.ErrUnknownConnection):
		id := cmd.Key
		if cmd.Kind != fsm.KindPublish {
			id = cmd.Conn
		}
		return fmt.Sprintf("%s: unknown connection '%s'", name, id)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("%s: timed out waiting for the cluster to commit; the message may or may not have been sent", name)
	}
	return fmt.Sprintf("%s: not sent, the cluster is unavailable (%v); retry", name, err)
}

func (c *conn) complete(id string, result json.RawMessage, errMsg string) {
	c.enqueue(c.proto.appendCompletion(nil, id, result, errMsg), fsm.Cursor{})
}
