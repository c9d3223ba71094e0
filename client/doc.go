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
// set, is called once per Dial (and once per resume attempt) and its result
// is sent as "Authorization: Bearer <token>" on both requests. With
// Config.URLs, Dial tries the nodes in turn until one accepts.
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
// Without Config.Resume, a connection ends when Close is called, when the
// server sends a Close message (Err returns *CloseError), when the transport
// fails or when nothing was received for Config.ServerTimeout (Err returns
// that error); with it, see Resume below. When it
// ends, pending Invokes fail with the same error (ErrClosed after Close),
// Messages() is closed after the messages already buffered, and Done() is
// closed once every goroutine of the connection has returned.
//
// # Goroutines
//
// Each transport runs one reader goroutine and, unless keep-alive is
// disabled, one keep-alive goroutine; each Conn runs one supervisor
// goroutine that follows its transports (and calls OnEvent). Writes
// (Invoke, Send, pings, Close) are serialised by a one-slot semaphore, so
// every method is safe for concurrent use. A write that has started is
// bounded by an internal timeout rather than by the caller's context,
// because abandoning a half-written WebSocket frame would break the
// connection for everyone; a context that ends while waiting for the
// semaphore, for a resume or for a Completion returns at once.
//
// # Resume
//
// With Config.Resume set, a connection survives the loss of its transport
// and of the node it was on. Every message carries a cursor (its position
// in the cluster's log), and the server keeps a connection that dropped
// without a goodbye registered, with its id, user and groups, for its
// disconnect timeout (30s by default). On an unexpected drop (a transport
// error, a server timeout, a server Close with allowReconnect such as
// "Server is shutting down.") the client reconnects, without negotiate, to
//
//	GET <hub URL>?resume=<Token()>&cursor=<Cursor()>   (WebSocket upgrade, then the handshake)
//
// on the next of Config.URLs in turn (round robin, starting after the node
// that failed; the first attempt at once, then backoff from
// ResumeBackoffMin to ResumeBackoffMax with jitter) until ResumeTimeout
// after the drop. The server replays exactly what the connection missed
// after the cursor, in order, then goes live. Meanwhile:
//
//   - Messages() stays open and simply continues with the replayed
//     messages. As a safety net, a message whose cursor does not come after
//     the last one delivered (same epoch, ParseCursor order) is dropped and
//     counted in Stats().Duplicates.
//   - Invokes waiting for their Completion when the transport dropped fail
//     with an error wrapping ErrDropped: their outcome is unknown, since the
//     server may have committed them. Sends and Invokes whose write failed
//     too. Retrying may do them twice.
//   - New Invokes and Sends wait for the resume, bounded by their context.
//   - OnEvent hears EventDropped, then EventResumed (with Replayed, the
//     messages the replay delivered) once the replay has arrived.
//
// The connection ends when the resume is refused or gives up:
//
//   - The server refuses a resume it cannot honour without a gap (the
//     cursor is older than its message cache, comes from another cluster,
//     or the connection was closed, for example after the disconnect
//     timeout): the handshake succeeds, then a Close "Resume refused: ..."
//     arrives. That is a reset: Err() returns a *ResetError, which wraps
//     ErrReset, OnEvent hears EventReset, Messages() is closed. An HTTP
//     refusal of the resume request (400, 401, 403, 404) is a refusal too.
//     A refusal is confirmed first, by asking the next nodes again after a
//     backoff (three refusals make a reset, and so does ResumeTimeout
//     passing after one): a refused
//     attempt changes nothing on the server, and a node that has not yet
//     applied the log entries the client has seen (it lags the leader by a
//     few milliseconds) refuses a resume it could honour a moment later,
//     taking a connection it does not know yet for a closed one.
//   - No node accepted it within ResumeTimeout: Err() wraps ErrDropped and
//     the drop's error, OnEvent hears EventGaveUp.
//
// The resume position (Cursor) is the cursor of the last message
// delivered. A connection that has received no message yet resumes from
// just before the cursor its first Invoke returned (raftplane's built-in
// methods return the cursor of the command they committed, which comes
// after the connection's opening), so that the call's own message, if it
// reaches this connection, is replayed too: the server completes an Invoke
// as soon as its command is applied, independently of the delivery of
// messages, so the Completion can overtake it. Caveat: for the same reason
// a message from someone else, committed after the connection opened but
// before its first call and not yet delivered when the transport drops, is
// lost; the server does not tell the client the position at which the
// connection opened, which would close that gap. A connection that has received nothing
// and called nothing has no position at all: it is replaced by a new
// connection (new ID and Token, no groups, which it had not joined) and
// OnEvent hears EventReset, whose *ResetError says so; the Conn carries on
// and Err() stays nil. One that sent invocations but has no position ends
// with a *ResetError, since a new connection would lack what they did.
//
// Close is a goodbye: the server ends the connection for good, and Close
// never triggers a resume. A resume needs the cluster's nodes to share the
// secret that signs connection tokens (the cluster secret, by default).
package client
