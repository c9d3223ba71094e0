package raftplane

import "github.com/raftplane/raftplane/hub"

// Handle registers an application's handlers for a hub: Authenticate,
// OnConnected, OnDisconnected and methods by name, shaped like an ASP.NET
// Core Hub (see hub.Handlers). Call it before Start, with the same handlers
// on every node: a client may connect to, and resume on, any of them. A
// method's sends, group changes and Completion go through the log together;
// what it does outside raftplane is at-least-once. The built-in methods
// stay the default handlers of every hub, limited by ClientMethods.
func (n *Node) Handle(hubName string, h hub.Handlers) error { return n.srv.Handle(hubName, h) }

// Clients returns the server-side senders of a hub (ASP.NET Core's
// IHubContext.Clients): each Send commits to the log and returns the
// cursor of what it wrote, which every node delivers to its own clients.
func (n *Node) Clients(hubName string) hub.HubClients { return n.srv.Clients(hubName) }

// Groups returns the server-side group manager of a hub.
func (n *Node) Groups(hubName string) hub.HubGroups { return n.srv.Groups(hubName) }
