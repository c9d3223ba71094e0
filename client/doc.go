// Package client is a small Go client for raftplane's SignalR hubs, for Go
// services, tests, the load tool and the chaos suite.
//
// It speaks the subset of ASP.NET Core SignalR that raftplane offers: negotiate
// (version 1), the WebSockets transport and the JSON hub protocol (version 1).
// It does not import any raftplane package.
//
// # Use
//
//	c, err := client.Dial(ctx, client.Config{URL: "http://127.0.0.1:5000/hubs/chat?user=alice"})
//	if err != nil { ... }
//	defer c.Close()
//	if _, err := c.Invoke(ctx, "JoinGroup", "room1"); err != nil { ... }
//	cur, err := c.InvokeCursor(ctx, "SendToGroup", "room1", "say", "hello")
//	for m := range c.Messages() { ... }   // closed when the connection ends
//	if err := c.Err(); err != nil { ... } // why it ended; nil after Close
//
// Dial performs negotiate, the WebSocket upgrade and the SignalR handshake.
// The hub URL's own query string (for example ?user=alice) is kept on both the
// negotiate request and the WebSocket request. An AccessToken function, when
// set, is called once per Dial and its result is sent as
// "Authorization: Bearer <token>" on both requests.
//
// # Invocations
//
// Invoke sends an Invocation with an invocation id and waits for the matching
// Completion, as the official clients' invoke does; a Completion carrying an
// error comes back as *InvocationError and leaves the connection usable.
// raftplane's built-in methods (JoinGroup, Broadcast, SendToGroup, ...) return
// the cursor of the log entry that carried the command; InvokeCursor returns it
// as a string. Send is fire-and-forget: no invocation id, no reply, so errors
// on the server side are not reported.
//
// # Messages and backpressure
//
// Server invocations (messages for this connection) arrive on Messages() in
// the order the server sent them, each with the cursor from its "cursor"
// header. The channel is bounded (Config.MessageBuffer). When it is full the
// reader goroutine waits for the consumer: nothing is dropped and nothing
// else is read meanwhile, so Completions for pending Invokes and the server's
// pings wait too. A consumer that stops reading for long is eventually closed
// by the server (a Close with allowReconnect, reported by Err as *CloseError)
// once its send queue on the server overflows. Code that does not care about
// messages must still drain the channel (go func() { for range c.Messages()
// {} }()), since a Broadcast reaches every connection, the sender's included.
//
// # Ending
//
// A connection ends when Close is called, when the server sends a Close
// message (Err returns *CloseError), when the transport fails or when nothing
// was received for Config.ServerTimeout (Err returns that error). When it
// ends, pending Invokes fail with the same error (ErrClosed after Close),
// Messages() is closed after the messages already buffered, and Done() is
// closed once every goroutine of the connection has returned.
//
// # Goroutines
//
// Each Conn runs one reader goroutine and, unless keep-alive is disabled, one
// keep-alive goroutine. Writes (Invoke, Send, pings, Close) are serialised by a
// one-slot semaphore, so every method is safe for concurrent use. A write that
// has started is bounded by an internal timeout rather than by the caller's
// context, because abandoning a half-written WebSocket frame would break the
// connection for everyone; a context that ends while waiting for the
// semaphore or for a Completion returns at once.
//
// # Later
//
// Config holds one hub URL today. Resuming by cursor across a list of nodes
// will add fields to Config (several URLs, a resume cursor) and a
// reconnecting wrapper around Conn; the Conn API above is meant to stay as it
// is.
package client
