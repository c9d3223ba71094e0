package hub

import (
	"encoding/json"
	"sync"

	"github.com/raftplane/raftplane/signalr"
)

// The hub's names for the wire format, which package signalr owns. They
// keep the connection code (methods.go, conn.go, websocket.go, stateful.go,
// dispatch.go) as it was written: lower-case protocol methods, one message
// struct, the JSON encoders as free functions.

const recordSeparator = signalr.RecordSeparator

const (
	typeInvocation       = signalr.TypeInvocation
	typeStreamItem       = signalr.TypeStreamItem
	typeCompletion       = signalr.TypeCompletion
	typeStreamInvocation = signalr.TypeStreamInvocation
	typeCancelInvocation = signalr.TypeCancelInvocation
	typePing             = signalr.TypePing
	typeClose            = signalr.TypeClose
	typeAck              = signalr.TypeAck
	typeSequence         = signalr.TypeSequence
)

type (
	hubMessage       = signalr.Message
	recordInfo       = signalr.RecordInfo
	handshakeRequest = signalr.HandshakeRequest
)

// protocol is what a connection encodes with: one of the two values below.
// Each is a signalr.Protocol (codec) and comparable, so a connection's
// protocol can be compared and switched on.
type protocol interface {
	codec() signalr.Protocol
	name() string // "json" or "messagepack"
	binary() bool // binary transport frames
	appendInvocation(dst []byte, target string, args json.RawMessage, cursor string) []byte
	appendCompletion(dst []byte, invocationID string, result json.RawMessage, errMsg string) []byte
	appendPing(dst []byte) []byte
	appendClose(dst []byte, errMsg string, allowReconnect bool) []byte
	appendAck(dst []byte, seq uint64) []byte
	appendSequence(dst []byte, seq uint64) []byte
}

// jsonProtocol and msgpackProtocol are the hub protocols.
type (
	jsonProtocol    struct{}
	msgpackProtocol struct{}
)

func (jsonProtocol) codec() signalr.Protocol    { return signalr.JSON }
func (msgpackProtocol) codec() signalr.Protocol { return signalr.MessagePack }

func (p jsonProtocol) name() string    { return p.codec().Name() }
func (p msgpackProtocol) name() string { return p.codec().Name() }
func (p jsonProtocol) binary() bool    { return p.codec().Binary() }
func (p msgpackProtocol) binary() bool { return p.codec().Binary() }

func (p jsonProtocol) appendInvocation(dst []byte, target string, args json.RawMessage, cursor string) []byte {
	return p.codec().AppendInvocation(dst, target, args, cursor)
}

func (p msgpackProtocol) appendInvocation(dst []byte, target string, args json.RawMessage, cursor string) []byte {
	return p.codec().AppendInvocation(dst, target, args, cursor)
}

func (p jsonProtocol) appendCompletion(dst []byte, invocationID string, result json.RawMessage, errMsg string) []byte {
	return p.codec().AppendCompletion(dst, invocationID, result, errMsg)
}

func (p msgpackProtocol) appendCompletion(dst []byte, invocationID string, result json.RawMessage, errMsg string) []byte {
	return p.codec().AppendCompletion(dst, invocationID, result, errMsg)
}

func (p jsonProtocol) appendPing(dst []byte) []byte    { return p.codec().AppendPing(dst) }
func (p msgpackProtocol) appendPing(dst []byte) []byte { return p.codec().AppendPing(dst) }

func (p jsonProtocol) appendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	return p.codec().AppendClose(dst, errMsg, allowReconnect)
}

func (p msgpackProtocol) appendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	return p.codec().AppendClose(dst, errMsg, allowReconnect)
}

func (p jsonProtocol) appendAck(dst []byte, seq uint64) []byte { return p.codec().AppendAck(dst, seq) }
func (p msgpackProtocol) appendAck(dst []byte, seq uint64) []byte {
	return p.codec().AppendAck(dst, seq)
}
func (p jsonProtocol) appendSequence(dst []byte, seq uint64) []byte {
	return p.codec().AppendSequence(dst, seq)
}
func (p msgpackProtocol) appendSequence(dst []byte, seq uint64) []byte {
	return p.codec().AppendSequence(dst, seq)
}

// protocolByName returns the hub protocol a handshake names, or nil.
func protocolByName(name string) protocol {
	switch name {
	case signalr.JSON.Name():
		return jsonProtocol{}
	case signalr.MessagePack.Name():
		return msgpackProtocol{}
	}
	return nil
}

// parseHandshake and encodeHandshakeResponse: the handshake (always JSON).
func parseHandshake(rec []byte) (handshakeRequest, error) { return signalr.ParseHandshake(rec) }
func encodeHandshakeResponse(errMsg string) []byte {
	return signalr.AppendHandshakeResponse(nil, errMsg)
}

// parseRecord parses a record with the connection's protocol.
func parseRecord(p protocol, rec []byte) (hubMessage, error) { return p.codec().Parse(rec) }

// scanRecordInvocationID finds the invocation id of a malformed record with
// the connection's protocol.
func scanRecordInvocationID(p protocol, rec []byte) (string, bool) {
	return p.codec().ScanInvocationID(rec)
}

// splitter turns a transport's incoming bytes into hub message records:
// a signalr.Splitter (codecSplitter) under the connection code's method name.
type splitter interface {
	feed(p []byte, emit func(rec []byte, info recordInfo))
	resting() bool // no record in progress (signalr.Splitter's Resting)
}

type codecSplitter struct{ signalr.Splitter }

func (s codecSplitter) feed(p []byte, emit func(rec []byte, info recordInfo)) { s.Feed(p, emit) }
func (s codecSplitter) resting() bool                                         { return s.Resting() }

// newSplitter returns the splitter for the protocol a handshake names
// (JSON's for a name it does not know).
func newSplitter(protocolName string, max int) splitter {
	if p := signalr.ProtocolByName(protocolName); p != nil {
		return codecSplitter{p.NewSplitter(max)}
	}
	return newRecordSplitter(max)
}

// splitters returns the server's pool of resting splitters for protocol p.
func (s *Server) splitters(p protocol) *sync.Pool {
	if p.binary() {
		return &s.msgpackSplits
	}
	return &s.jsonSplits
}

// newRecordSplitter returns a JSON splitter (the handshake's).
func newRecordSplitter(max int) splitter { return codecSplitter{signalr.JSON.NewSplitter(max)} }

// splitErr returns the error that stopped a splitter for good (a bad
// MessagePack length prefix: the stream cannot be resynchronised), or nil.
func splitErr(s splitter) error {
	if cs, ok := s.(codecSplitter); ok {
		return cs.Err()
	}
	return nil
}

// binaryCapable is implemented by readers whose transport carries binary
// frames (wsReader: its binary field). A transport without it (Server-Sent
// Events is text only) refuses a binary protocol at the handshake.
type binaryCapable interface {
	canBinary() bool
}

// canBinary reports whether rd's transport can carry a binary protocol.
func canBinary(rd reader) bool {
	b, ok := rd.(binaryCapable)
	return ok && b.canBinary()
}

// binaryFramer is implemented by transports that can send binary frames
// (wsTransport).
type binaryFramer interface {
	setBinary(on bool)
}

// setBinaryFrames makes tr send binary frames from now on, if it can. It
// must be called before the connection's writer starts.
func setBinaryFrames(tr transport, on bool) {
	if b, ok := tr.(binaryFramer); ok {
		b.setBinary(on)
	}
}
