package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/raftplane/raftplane/fsm"
)

// Handlers is an application's hub: what an ASP.NET Core app writes in a
// Hub class. Register it with Server.Handle before Start; every node of a
// cluster must register the same handlers, since a client may connect to,
// and resume on, any of them.
//
// Everything a handler does to clients (Context.Clients, Context.Groups)
// goes through the log: its sends and group changes are collected while it
// runs and committed together, in one log entry, when it returns without
// an error (an error discards them). So every recipient, on every node,
// sees a method's effects at one place of the total order, and a client
// message sent again after a stateful reconnect to another node applies
// once. What a handler does outside raftplane (a database write) is
// at-least-once: the handler may run again for a message resent after a
// reconnect if its first run had not committed.
type Handlers struct {
	// Authenticate, when set, identifies the client of every negotiate and
	// connect request of this hub instead of the JWT check (Config.JWT*) or
	// the ?user= of dev mode: it returns the user id ("" for anonymous) and
	// the claims handlers see in Context.Claims. An error refuses the
	// request with 401 and the error's text.
	Authenticate func(r *http.Request) (user string, claims map[string]any, err error)
	// OnConnected runs once per connection, on the node it connects to,
	// after the connection is recorded in the log and before any of its
	// invocations: not again when it resumes, here or on another node. Its
	// effects commit like a method's. An error refuses the connection: the
	// client's start fails with the error's text (see Error).
	OnConnected func(ctx *Context) error
	// OnDisconnected runs once when a connection whose OnConnected
	// succeeded ends for good (the client closed it, the server or the
	// REST API did, it did not resume within DisconnectTimeout, or its node
	// died and the leader reaped it), not when it merely drops and
	// resumes. reason is "" when the client closed it, else why it ended.
	// It runs on the cluster's leader, from the log (events.go), at least
	// once: after a leader dies, the next may run it again for the same
	// connection. Its context has the connection's id, hub and user (no
	// claims: they stay on the node that accepted it) and its Clients and
	// Groups, whose effects commit as one group; its Context ends when the
	// node stops leading.
	OnDisconnected func(ctx *Context, reason string)
	// Methods are the hub methods clients invoke, by name; names are
	// matched case-insensitively, as in ASP.NET Core. A method here
	// replaces a built-in of the same name.
	Methods map[string]Method
}

// Method is a hub method. args holds the invocation's arguments, from JSON
// and MessagePack clients alike. The result is marshalled to JSON and sent
// to the caller in its Completion (nil: no result). An error is sent to the
// caller instead: the text of an *Error as it is, any other as "An
// unexpected error occurred invoking '<method>' on the server." (with the
// error's text when Config.DetailedErrors is set), as ASP.NET Core does.
type Method func(ctx *Context, args Args) (any, error)

// Error is an error whose text is sent to the client as it is (ASP.NET
// Core's HubException).
type Error struct{ Message string }

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(format string, args ...any) *Error { return &Error{Message: fmt.Sprintf(format, args...)} }

// Args are an invocation's arguments, each a JSON value (MessagePack
// arguments are converted to JSON on arrival).
type Args []json.RawMessage

// Len returns the number of arguments.
func (a Args) Len() int { return len(a) }

// Decode unmarshals argument i into v.
func (a Args) Decode(i int, v any) error {
	if i < 0 || i >= len(a) {
		return Errorf("argument %d is missing: the method got %d", i+1, len(a))
	}
	if err := json.Unmarshal(a[i], v); err != nil {
		return Errorf("argument %d: %v", i+1, err)
	}
	return nil
}

// Bind unmarshals exactly len(vs) arguments into vs, in order; a wrong
// count or a value of the wrong type is an *Error for the client.
func (a Args) Bind(vs ...any) error {
	if len(a) != len(vs) {
		return Errorf("the method takes %d argument(s), got %d", len(vs), len(a))
	}
	for i, v := range vs {
		if err := a.Decode(i, v); err != nil {
			return err
		}
	}
	return nil
}

// Context is what a handler sees of an invocation or a connect: who calls,
// and the proxies through which it sends and changes groups. It is valid
// only while the handler runs, and is not safe for concurrent use.
type Context struct {
	// Context ends when the connection ends or the server shuts down.
	context.Context
	// ConnectionID, Hub and User identify the caller ("" user: anonymous).
	ConnectionID string
	Hub          string
	User         string
	// Claims are the caller's: its JWT's claims, or what Authenticate
	// returned; nil in dev mode.
	Claims map[string]any

	srv     *Server
	effects []fsm.Command
	size    int // bytes of Args in effects
}

// Clients returns the proxies that send to clients of the caller's hub.
func (c *Context) Clients() Clients { return Clients{ctx: c} }

// Groups returns the proxy that adds connections of the caller's hub to
// groups and removes them.
func (c *Context) Groups() Groups { return Groups{ctx: c} }

// Clients selects recipients, as IHubCallerClients does.
type Clients struct{ ctx *Context }

// All is every connection of the hub.
func (c Clients) All() Proxy { return c.proxy(fsm.AudienceAll) }

// Others is every connection but the caller.
func (c Clients) Others() Proxy { return c.proxy(fsm.AudienceAll, withExclude(c.ctx.ConnectionID)) }

// Caller is the calling connection.
func (c Clients) Caller() Proxy { return c.proxy(fsm.AudienceConnection, withKeys(c.ctx.ConnectionID)) }

// Client is one connection.
func (c Clients) Client(id string) Proxy { return c.proxy(fsm.AudienceConnection, withKeys(id)) }

// Clients is several connections, each receiving once.
func (c Clients) Clients(ids ...string) Proxy {
	return c.proxy(fsm.AudienceConnection, withKeys(ids...))
}

// Group is every connection in a group.
func (c Clients) Group(name string) Proxy { return c.proxy(fsm.AudienceGroup, withKeys(name)) }

// Groups is every connection in any of the groups. Unlike ASP.NET Core, a
// connection in several of them receives the message once per group: the
// log holds one send per group, and which connections share groups is
// known only when each is applied.
func (c Clients) Groups(names ...string) Proxy { return c.proxy(fsm.AudienceGroup, withKeys(names...)) }

// GroupExcept is a group but the given connections.
func (c Clients) GroupExcept(name string, exclude ...string) Proxy {
	return c.proxy(fsm.AudienceGroup, withKeys(name), withExclude(exclude...))
}

// OthersInGroup is a group but the caller.
func (c Clients) OthersInGroup(name string) Proxy {
	return c.proxy(fsm.AudienceGroup, withKeys(name), withExclude(c.ctx.ConnectionID))
}

// User is every connection of a user.
func (c Clients) User(id string) Proxy { return c.proxy(fsm.AudienceUser, withKeys(id)) }

// Users is every connection of any of the users.
func (c Clients) Users(ids ...string) Proxy { return c.proxy(fsm.AudienceUser, withKeys(ids...)) }

func (c Clients) proxy(a fsm.Audience, opts ...func(*Proxy)) Proxy {
	p := Proxy{ctx: c.ctx, audience: a}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func withKeys(keys ...string) func(*Proxy) { return func(p *Proxy) { p.keys = keys } }
func withExclude(ids ...string) func(*Proxy) {
	return func(p *Proxy) { p.exclude = append(p.exclude, ids...) }
}

// Proxy sends to the recipients it was made for.
type Proxy struct {
	ctx      *Context
	audience fsm.Audience
	keys     []string
	exclude  []string
}

// Send queues a message that calls the client method target with args
// (each marshalled to JSON), to be committed with the handler's other
// effects when it returns. It fails at once on arguments that cannot be
// marshalled, an empty or overlong name, or effects larger than the limit
// (Config.MaxMessageSize times maxArgsFactor, all sends together).
func (p Proxy) Send(target string, args ...any) error {
	if p.ctx == nil {
		return errors.New("hub: Send on a zero Proxy")
	}
	if target == "" || len(target) > maxTargetLen {
		return fmt.Errorf("hub: client method name must be 1 to %d bytes", maxTargetLen)
	}
	raw := make([]json.RawMessage, len(args))
	for i, a := range args {
		b, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("hub: argument %d of %s: %w", i+1, target, err)
		}
		raw[i] = b
	}
	data := joinArgs(raw)
	keys := p.keys
	if p.audience == fsm.AudienceAll {
		keys = []string{""}
	}
	for _, k := range keys {
		if p.audience != fsm.AudienceAll && (k == "" || len(k) > maxGroupLen) {
			return fmt.Errorf("hub: a %s name must be 1 to %d bytes", p.audience, maxGroupLen)
		}
		if err := p.ctx.add(fsm.Publish(p.ctx.Hub, p.audience, k, target, data, p.exclude)); err != nil {
			return err
		}
	}
	return nil
}

// Groups adds connections of the caller's hub to groups and removes them.
type Groups struct{ ctx *Context }

// Add queues adding a connection (of this hub, on any node) to a group.
// The group limits (Config.MaxGroupsPerConnection, MaxGroupMembers) are
// checked at once, against the registry as this node has applied it.
func (g Groups) Add(connectionID, group string) error {
	if err := validGroupChange(connectionID, group); err != nil {
		return err
	}
	if le := g.ctx.srv.checkJoin(g.ctx.Hub, connectionID, group); le != nil {
		return &Error{Message: le.Error()}
	}
	return g.ctx.add(fsm.GroupJoin(g.ctx.Hub, connectionID, group))
}

// Remove queues removing a connection from a group.
func (g Groups) Remove(connectionID, group string) error {
	if err := validGroupChange(connectionID, group); err != nil {
		return err
	}
	return g.ctx.add(fsm.GroupLeave(g.ctx.Hub, connectionID, group))
}

func validGroupChange(conn, group string) error {
	if conn == "" || group == "" || len(group) > maxGroupLen || len(conn) > maxGroupLen {
		return fmt.Errorf("hub: a connection id and a group name of 1 to %d bytes are needed", maxGroupLen)
	}
	return nil
}

// maxEffects bounds the sends and group changes of one handler run.
const maxEffects = 1024

// add queues one effect within the limits.
func (c *Context) add(cmd fsm.Command) error {
	if c.srv == nil {
		return errors.New("hub: Context used outside its handler")
	}
	if len(c.effects) >= maxEffects {
		return fmt.Errorf("hub: more than %d sends and group changes in one handler", maxEffects)
	}
	limit := maxArgsFactor * c.srv.cfg.MaxMessageSize
	if c.size+len(cmd.Args) > limit {
		return fmt.Errorf("hub: the handler's sends take more than %d bytes", limit)
	}
	c.size += len(cmd.Args)
	c.effects = append(c.effects, cmd)
	return nil
}

// Handle registers an application's handlers for a hub. Call it before
// Start; a hub has one set of handlers.
func (s *Server) Handle(hub string, h Handlers) error {
	if err := validHub(hub); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("hub: Handle after Start")
	}
	if _, ok := s.apps[hub]; ok {
		return fmt.Errorf("hub: handlers for hub %q registered twice", hub)
	}
	a := &app{h: h, methods: map[string]appMethod{}}
	for name, m := range h.Methods {
		if name == "" || m == nil {
			return fmt.Errorf("hub: hub %q: a method needs a name and a function", hub)
		}
		k := strings.ToLower(name)
		if _, dup := a.methods[k]; dup {
			return fmt.Errorf("hub: hub %q: methods %q differ only in case", hub, name)
		}
		a.methods[k] = appMethod{name: name, fn: m}
	}
	s.apps[hub] = a
	return nil
}

// app is a hub's registered handlers, methods indexed by lower-case name.
type app struct {
	h       Handlers
	methods map[string]appMethod
}

type appMethod struct {
	name string
	fn   Method
}

// appFor returns the handlers of a hub, or nil. The map is written only
// before Start.
func (s *Server) appFor(hub string) *app { return s.apps[hub] }

// newContext makes the context of a handler run for connection c.
func (s *Server) newContext(c *conn) *Context {
	return &Context{Context: c.ctx, ConnectionID: c.id, Hub: c.hub, User: c.user, Claims: c.claims, srv: s}
}

// methodError words a method's error for the client.
func (s *Server) methodError(name string, err error) string {
	var he *Error
	if errors.As(err, &he) {
		return he.Message
	}
	msg := fmt.Sprintf("An unexpected error occurred invoking '%s' on the server.", name)
	if s.cfg.DetailedErrors {
		msg += " " + err.Error()
	}
	return msg
}

// runMethod runs an application method, recovering a panic as an error
// (a handler's bug must not take the node down).
func (s *Server) runMethod(ctx *Context, m appMethod, args []json.RawMessage) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("hub method panicked", "hub", ctx.Hub, "method", m.name, "panic", p)
			res, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	return m.fn(ctx, Args(args))
}
