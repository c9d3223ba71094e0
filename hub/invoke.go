package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/raftplane/raftplane/fsm"
)

// appMethod returns the application method a connection's invocation
// names, if its hub has one.
func (c *conn) appMethod(target string) (appMethod, bool) {
	a := c.srv.appFor(c.hub)
	if a == nil {
		return appMethod{}, false
	}
	m, ok := a.methods[strings.ToLower(target)]
	return m, ok
}

// callApp runs an application method and returns its effects and its
// result as JSON, or the error text for the caller's Completion.
func (c *conn) callApp(m hubMessage, am appMethod) (effects []fsm.Command, result json.RawMessage, errText string) {
	if len(m.StreamIDs) > 0 {
		return nil, nil, fmt.Sprintf("%s does not accept streams", am.name)
	}
	ctx := c.srv.newContext(c)
	res, err := c.srv.runMethod(ctx, am, m.Arguments)
	ctx.srv = nil // the context ends with the run: a late Send fails
	if err != nil {
		c.logger().Debug("hub method failed", "method", am.name, "err", err)
		return nil, nil, c.srv.methodError(am.name, err)
	}
	if res != nil {
		if result, err = json.Marshal(res); err != nil {
			c.logger().Error("hub method result cannot be marshalled", "method", am.name, "err", err)
			return nil, nil, c.srv.methodError(am.name, fmt.Errorf("result: %w", err))
		}
	}
	return ctx.effects, result, ""
}

// invokeApp runs an application method for a connection without stateful
// reconnect: its effects are committed as one group, then the caller gets
// the Completion, after the effects' messages on its own connection.
func (c *conn) invokeApp(m hubMessage, am appMethod) {
	reply := m.HasInvocationID
	effects, result, errText := c.callApp(m, am)
	if errText == "" && len(effects) > 0 {
		ctx, cancel := context.WithTimeout(c.ctx, c.srv.cfg.PublishTimeout)
		res, err := c.srv.pub.PublishGroup(ctx, effects)
		if err == nil {
			c.srv.waitDispatched(ctx, res[len(res)-1].Cursor)
		}
		cancel()
		if err != nil {
			errText = publishError(am.name, fsm.Command{}, err)
		}
	}
	if reply {
		if errText != "" {
			c.complete(m.InvocationID, nil, errText)
			return
		}
		c.complete(m.InvocationID, result, "")
	}
}

// statefulApp builds the log commands of an application method invoked on
// a stateful-reconnect connection: its effects, then a KindInvoke carrying
// the client message's origin and the Completion, or the refusal text.
func (c *conn) statefulApp(m hubMessage, am appMethod) ([]fsm.Command, string) {
	if f := c.srv.stream.Format(); f < fsm.FormatInvoke {
		// A node of the cluster runs an older build, which would stop at
		// the invoke: refuse until the rolling upgrade is complete.
		return nil, fmt.Sprintf("%s: not run, the cluster is being upgraded (log format %d, application methods need %d); retry once every node runs the new version", am.name, f, fsm.FormatInvoke)
	}
	effects, result, errText := c.callApp(m, am)
	if errText != "" {
		return nil, errText
	}
	inv := fsm.Invoke(c.hub, c.id, am.name, uint32(len(effects)), result)
	return append(effects, inv), ""
}
