package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/raftplane/raftplane/fsm"
)

// The server-side send API: what an application running beside the hub
// (a background job, a webhook handler) uses to reach clients, as ASP.NET
// Core's IHubContext. Each call commits to the log and returns the cursor
// of what it wrote, once it is applied on this node: every node delivers it
// to its own clients from there.

// HubClients selects the recipients of a server-side send in one hub.
type HubClients struct {
	s   *Server
	hub string
}

// Clients returns the server-side senders of a hub.
func (s *Server) Clients(hub string) HubClients { return HubClients{s: s, hub: hub} }

// All is every connection of the hub.
func (h HubClients) All() Sender { return h.sender(fsm.AudienceAll) }

// AllExcept is every connection but the given ones.
func (h HubClients) AllExcept(exclude ...string) Sender {
	return h.sender(fsm.AudienceAll, withExclude(exclude...))
}

// Client is one connection; Clients several, each receiving once.
func (h HubClients) Client(id string) Sender { return h.sender(fsm.AudienceConnection, withKeys(id)) }

// Clients is several connections, each receiving once.
func (h HubClients) Clients(ids ...string) Sender {
	return h.sender(fsm.AudienceConnection, withKeys(ids...))
}

// Group is every connection in a group.
func (h HubClients) Group(name string) Sender { return h.sender(fsm.AudienceGroup, withKeys(name)) }

// Groups is every connection in any of the groups (once per group, see
// Clients.Groups).
func (h HubClients) Groups(names ...string) Sender {
	return h.sender(fsm.AudienceGroup, withKeys(names...))
}

// GroupExcept is a group but the given connections.
func (h HubClients) GroupExcept(name string, exclude ...string) Sender {
	return h.sender(fsm.AudienceGroup, withKeys(name), withExclude(exclude...))
}

// User is every connection of a user; Users of several.
func (h HubClients) User(id string) Sender { return h.sender(fsm.AudienceUser, withKeys(id)) }

// Users is every connection of any of the users.
func (h HubClients) Users(ids ...string) Sender { return h.sender(fsm.AudienceUser, withKeys(ids...)) }

func (h HubClients) sender(a fsm.Audience, opts ...func(*Proxy)) Sender {
	p := Proxy{audience: a}
	for _, o := range opts {
		o(&p)
	}
	return Sender{s: h.s, hub: h.hub, p: p}
}

// Sender sends to the recipients it was made for.
type Sender struct {
	s   *Server
	hub string
	p   Proxy
}

// Send commits a message that calls the client method target with args
// (each marshalled to JSON) and returns its cursor. To several keys (Users,
// Groups, Clients) it writes one message per key, together in one log
// entry, and returns the last one's cursor.
func (x Sender) Send(ctx context.Context, target string, args ...any) (string, error) {
	if x.s == nil {
		return "", errors.New("hub: Send on a zero Sender")
	}
	if err := validHub(x.hub); err != nil {
		return "", err
	}
	c := &Context{Context: ctx, Hub: x.hub, srv: x.s}
	p := x.p
	p.ctx = c
	if err := p.Send(target, args...); err != nil {
		return "", err
	}
	return x.s.commitEffects(ctx, c.effects)
}

// HubGroups changes the groups of a hub's connections from the server.
type HubGroups struct {
	s   *Server
	hub string
}

// Groups returns the server-side group manager of a hub.
func (s *Server) Groups(hub string) HubGroups { return HubGroups{s: s, hub: hub} }

// Add adds a connection (on any node) to a group and returns the cursor of
// the change. An unknown connection is an error wrapping
// fsm.ErrUnknownConnection.
func (g HubGroups) Add(ctx context.Context, connectionID, group string) (string, error) {
	return g.change(ctx, connectionID, group, true)
}

// Remove removes a connection from a group.
func (g HubGroups) Remove(ctx context.Context, connectionID, group string) (string, error) {
	return g.change(ctx, connectionID, group, false)
}

func (g HubGroups) change(ctx context.Context, conn, group string, join bool) (string, error) {
	if err := validHub(g.hub); err != nil {
		return "", err
	}
	c := &Context{Context: ctx, Hub: g.hub, srv: g.s}
	var err error
	if join {
		err = c.Groups().Add(conn, group)
	} else {
		err = c.Groups().Remove(conn, group)
	}
	if err != nil {
		return "", err
	}
	return g.s.commitEffects(ctx, c.effects)
}

// commitEffects publishes effects as one group and returns the last cursor, as a
// client sees it. An outcome error of one of them (an unknown connection)
// is returned with it.
func (s *Server) commitEffects(ctx context.Context, effects []fsm.Command) (string, error) {
	if len(effects) == 0 {
		return "", nil
	}
	res, err := s.pub.PublishGroup(ctx, effects)
	if err != nil {
		return "", err
	}
	last := res[len(res)-1]
	for _, r := range res {
		if r.Err != nil {
			return last.Cursor.Format(s.stream.Epoch()), fmt.Errorf("hub: %w", r.Err)
		}
	}
	return last.Cursor.Format(s.stream.Epoch()), nil
}
