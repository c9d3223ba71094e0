// Package signalr owns the ASP.NET Core SignalR wire format, as the hub
// server (package hub) and the Go client (package client) speak it: the
// message types and their numbers, the parsed Message, the framing of
// records (0x1E after each JSON record, a VarInt length before each
// MessagePack one) with a size limit kept in constant memory, the
// handshake, and the parsing and encoding of every message type in the JSON
// and the MessagePack hub protocols. One table (rules.go) says which fields
// each message type requires and allows; both parsers follow it.
//
// It is pure code with no dependency outside the standard library: no I/O,
// no goroutines, no locks. Protocols are stateless and safe for concurrent
// use; a Splitter belongs to one reader. Parsers never panic, allocate in
// proportion to the record, and return messages that do not alias it.
//
// The wire facts are ASP.NET Core's (HubProtocol.md and TransportProtocols.md
// in github.com/dotnet/aspnetcore, src/SignalR/docs/specs); PROTOCOL.md in
// the shared docs cites them.
package signalr
