package signalr

import "encoding/json"

// RecordSeparator ends every JSON record, the handshake included. It never
// occurs unescaped inside JSON, so splitting on the raw byte is exact.
const RecordSeparator = 0x1E

// Message type numbers (HubProtocol.md).
const (
	TypeInvocation       = 1
	TypeStreamItem       = 2
	TypeCompletion       = 3
	TypeStreamInvocation = 4
	TypeCancelInvocation = 5
	TypePing             = 6
	TypeClose            = 7
	TypeAck              = 8 // stateful reconnect
	TypeSequence         = 9 // stateful reconnect
)

// Message is a parsed hub message of either protocol, in either direction.
// MessagePack arguments, items and results are converted to JSON, so the
// caller never depends on the protocol.
//
// The json.RawMessage fields and the strings never alias the record, so a
// Message stays valid after the record buffer is reused.
type Message struct {
	Type            int
	InvocationID    string // "" if absent
	HasInvocationID bool   // invocationId present (a string); a non-string one is a parse error for types 1-5
	Target          string
	Arguments       []json.RawMessage // each element raw, validated JSON; non-nil for types 1 and 4
	StreamIDs       []string
	Item            json.RawMessage // StreamItem: raw "item"; nil if absent
	Result          json.RawMessage // Completion: raw "result"; nil if absent (void), "null" if explicitly null
	Error           string          // Completion/Close error ("" if absent or null)
	HasError        bool            // Error was sent (a string, maybe empty)
	AllowReconnect  bool            // Close
	SequenceID      int64           // Ack/Sequence
	Headers         map[string]string
}

// RecordInfo describes one record a Splitter emits.
type RecordInfo struct {
	Oversized       bool   // longer than the splitter's max; rec is nil
	Size            int    // record length in bytes, without its framing
	InvocationID    string // oversized only: the invocation id found in what was read of it
	HasInvocationID bool   // oversized only: InvocationID is valid
}

// A Splitter turns a transport's incoming bytes, arriving in chunks of any
// size (several records in one WebSocket frame, or one record across
// frames), into records without their framing. A record longer than the
// splitter's max is not buffered: it is reported as Oversized, with its
// invocation id when one could be found, and the next record parses
// normally. A Splitter is not safe for concurrent use.
type Splitter interface {
	// Feed consumes p and calls emit once per complete record, in order.
	// rec is valid only during the call (copy it to keep it); it is nil
	// for an oversized record. Bytes of an incomplete record are kept (at
	// most max of them) for the next call. emit must not call Feed.
	Feed(p []byte, emit func(rec []byte, info RecordInfo))
	// Pending returns how many bytes of an incomplete record are
	// buffered: never more than max.
	Pending() int
	// Resting reports whether no record is in progress: nothing buffered,
	// no oversized record being skipped, no stopping error. A new
	// splitter would split what follows exactly as this one, so a caller
	// may drop a resting splitter and make another when bytes come (an
	// idle connection then holds none).
	Resting() bool
	// Err returns the error that stopped the splitter for good (a bad
	// MessagePack length prefix: a binary stream cannot be
	// resynchronised), or nil. The JSON splitter never stops.
	Err() error
}

// Protocol is a hub protocol: JSON or MessagePack. The Append methods
// append one complete framed message to dst and return the extended slice,
// except AppendClientInvocation, which writes no framing.
type Protocol interface {
	// Name is the name a handshake uses: "json" or "messagepack".
	Name() string
	// Binary reports whether the protocol needs binary transport frames.
	Binary() bool
	// NewSplitter returns a Splitter for records of at most max bytes
	// (without framing); a max below 1 is taken as 1.
	NewSplitter(max int) Splitter
	// Parse parses one record without its framing. Unknown fields are
	// ignored; an integer type outside 1-9 is not an error: the message
	// comes back with only Type set, for the caller to ignore (forward
	// compatibility, as the official clients and the .NET server do). On
	// error the message is partially filled: Type, and the invocation id
	// when it was read, so the caller can answer with a Completion error.
	Parse(rec []byte) (Message, error)
	// ScanInvocationID finds the invocation id of a record Parse refused
	// (malformed further on, or cut short), or reports false.
	ScanInvocationID(rec []byte) (string, bool)

	// AppendInvocation writes a server's Invocation: no invocation id, the
	// target, the arguments (a JSON array; empty means []) and, when cursor
	// is not "", a "cursor" header.
	AppendInvocation(dst []byte, target string, args json.RawMessage, cursor string) []byte
	// AppendCompletion writes a Completion: with errMsg when it is not "",
	// else with result (raw JSON) when it is not empty, else void.
	AppendCompletion(dst []byte, invocationID string, result json.RawMessage, errMsg string) []byte
	// AppendPing writes a Ping.
	AppendPing(dst []byte) []byte
	// AppendClose writes a Close, with errMsg when it is not "".
	AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte
	// AppendAck and AppendSequence write stateful reconnect's Ack and
	// Sequence.
	AppendAck(dst []byte, seq uint64) []byte
	AppendSequence(dst []byte, seq uint64) []byte
	// AppendClientInvocation writes an Invocation as a client sends it,
	// without framing: the invocation id when hasID, the target and the
	// arguments (a JSON array), no headers. It fails only when the
	// arguments have no MessagePack form.
	AppendClientInvocation(dst []byte, id string, hasID bool, target string, args json.RawMessage) ([]byte, error)
}

// The two hub protocols.
var (
	JSON        Protocol = jsonProtocol{}
	MessagePack Protocol = msgpackProtocol{}
)

// ProtocolByName returns the protocol a handshake names ("json" or
// "messagepack", case-sensitive), or nil.
func ProtocolByName(name string) Protocol {
	switch name {
	case "json":
		return JSON
	case "messagepack":
		return MessagePack
	}
	return nil
}

// jsonProtocol is the JSON hub protocol: text frames, 0x1E framing.
type jsonProtocol struct{}

func (jsonProtocol) Name() string                      { return "json" }
func (jsonProtocol) Binary() bool                      { return false }
func (jsonProtocol) NewSplitter(max int) Splitter      { return newRecordSplitter(max) }
func (jsonProtocol) Parse(rec []byte) (Message, error) { return parseMessage(rec) }
func (jsonProtocol) ScanInvocationID(rec []byte) (string, bool) {
	return scanInvocationID(rec)
}

func (jsonProtocol) AppendInvocation(dst []byte, target string, args json.RawMessage, cursor string) []byte {
	return appendInvocation(dst, target, args, cursor)
}

func (jsonProtocol) AppendCompletion(dst []byte, invocationID string, result json.RawMessage, errMsg string) []byte {
	return appendCompletion(dst, invocationID, result, errMsg)
}

func (jsonProtocol) AppendPing(dst []byte) []byte { return appendPing(dst) }

func (jsonProtocol) AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	return appendClose(dst, errMsg, allowReconnect)
}

func (jsonProtocol) AppendAck(dst []byte, seq uint64) []byte { return appendAck(dst, int64(seq)) }

func (jsonProtocol) AppendSequence(dst []byte, seq uint64) []byte {
	return appendSequence(dst, int64(seq))
}

func (jsonProtocol) AppendClientInvocation(dst []byte, id string, hasID bool, target string, args json.RawMessage) ([]byte, error) {
	return appendClientInvocation(dst, id, hasID, target, args), nil
}
