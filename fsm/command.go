package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind is the type byte of a command. Kinds at or above KindIgnorable may be
// skipped by a node that does not know them (room for rolling upgrades);
// any other unknown kind stops the node rather than let replicas diverge.
type Kind uint8

// Command kinds.
const (
	KindClusterInit Kind = 1 // names the stream: ClusterID becomes the cursor epoch
	KindPublish     Kind = 2 // a hub message to an audience
	KindGroupJoin   Kind = 3 // Conn joins Group in Hub
	KindGroupLeave  Kind = 4 // Conn leaves Group in Hub
	KindConnOpen    Kind = 5 // Conn of User opens in Hub, owned by Node
	KindConnClose   Kind = 6 // Conn closes (left its groups); Reason says why
	KindConnResume  Kind = 7 // Conn of User resumes on Node, replaying after From
	KindReject      Kind = 8 // Origin's message was refused before the log; Reason says why
	KindConnAck     Kind = 9 // Conn's client has received its first AckSeq messages, the last at From
	// KindInvoke ends a hub method's invocation: the Effects commands just
	// before it in its entry are the method's sends and group changes, Args
	// is its result (JSON) and Reason its error. The group is deduplicated
	// (by the invoke's ID and Origin) as one command, before any of it
	// applies: a duplicate or expired invoke skips its effects with it. Its
	// cursor follows its effects', so the Completion it carries reaches the
	// caller after what the method sent. Log format 2.
	KindInvoke Kind = 10
	// KindEventsDone records how far the leader has delivered the
	// connection events (hub: the upstream's disconnected event and
	// OnDisconnected) that the entries up to From carry, so a new leader
	// resumes from there instead of from the start of the cache. It names
	// no hub. Log format 2.
	KindEventsDone Kind = 11

	KindIgnorable Kind = 128
	// KindFormat records that every server of the cluster knows log format
	// Format, so commands of that format may now be written (Format). Older
	// builds skip it (it is ignorable); it is not cached, digested or
	// deduplicated, so replicas of every version stay equal.
	KindFormat Kind = 128
)

// Log formats. A command or a rule of a format is written or relied on only
// once the log holds a KindFormat of that format or more (Machine.Format).
const (
	// FormatInvoke (v0.2.0) adds KindInvoke and KindEventsDone; v0.1.0
	// wrote format 1 (kinds 1 to 9).
	FormatInvoke = 2
	// FormatOrdered (v0.3.0) applies the commands of one origin in the
	// order of their sequence numbers: a command whose number is past the
	// next one expected is refused with ErrOutOfOrder, applied nowhere, so
	// that a connection may have many commands in flight (pipelined) and
	// still see them applied in the order it sent them (fsm/DESIGN.md).
	FormatOrdered = 3
)

// LogFormat is the newest log format this build writes and applies.
const LogFormat = FormatOrdered

func (k Kind) String() string {
	switch k {
	case KindClusterInit:
		return "cluster-init"
	case KindPublish:
		return "publish"
	case KindGroupJoin:
		return "group-join"
	case KindGroupLeave:
		return "group-leave"
	case KindConnOpen:
		return "conn-open"
	case KindConnClose:
		return "conn-close"
	case KindConnResume:
		return "conn-resume"
	case KindReject:
		return "reject"
	case KindConnAck:
		return "conn-ack"
	case KindInvoke:
		return "invoke"
	case KindEventsDone:
		return "events-done"
	case KindFormat:
		return "format"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Audience says who receives a KindPublish command.
type Audience uint8

// Audiences of a publish. Key holds the group, user or connection id.
const (
	AudienceAll        Audience = 1
	AudienceGroup      Audience = 2
	AudienceUser       Audience = 3
	AudienceConnection Audience = 4
)

func (a Audience) String() string {
	switch a {
	case AudienceAll:
		return "all"
	case AudienceGroup:
		return "group"
	case AudienceUser:
		return "user"
	case AudienceConnection:
		return "connection"
	}
	return fmt.Sprintf("audience(%d)", uint8(a))
}

// Command is one operation in the log. Which fields matter depends on Kind;
// the others stay empty and are not encoded.
type Command struct {
	Kind Kind
	// ID is unique per command; the FSM drops a command whose ID it applied
	// within DedupWindow, so a retried submission never publishes twice.
	ID string
	// Time is the submitter's clock (Unix nanoseconds). The FSM never reads a
	// clock; cache age and the dedup window are measured on these stamps.
	Time int64
	Hub  string

	// KindPublish
	Audience Audience
	Key      string   // group, user or connection id, per Audience
	Exclude  []string // connection ids that must not receive it
	Target   string   // client method name
	Args     []byte   // the arguments as a JSON array, validated by the submitter

	// KindGroupJoin, KindGroupLeave, KindConnOpen, KindConnClose
	Conn  string
	Group string // join/leave
	// User is the connection's user on an open or resume. A close does not
	// carry it, but as the stream serves it (Entry) Apply sets it from the
	// registry, for whoever reports the connection's end (hub: the
	// disconnected event).
	User   string
	Node   string // open, resume: the node that holds the transport
	Reason string // close
	From   Cursor // resume: the last cursor the client saw; events-done: delivered up to here

	// AckSeq (KindConnAck) is how many messages a stateful-reconnect
	// connection's client has acknowledged; From is the last one's cursor.
	AckSeq uint64

	// Effects (KindInvoke) is how many of the commands just before it in
	// its entry are the invocation's effects (publishes, joins and leaves of
	// its hub, without ids or origins of their own).
	Effects uint32
	// Format (KindFormat) is the log format every server knows.
	Format uint32

	// Origin, on a publish, join, leave, reject or invoke, names the client message
	// of a stateful-reconnect connection that the command carries out, so
	// that the connection's Completion is part of the log (and any node can
	// replay it) and a message the client sends again is applied once.
	Origin Origin

	// KindClusterInit
	ClusterID string
	// Secret is the cluster's shared secret (signs connection tokens, so
	// any node can verify a token another node issued).
	Secret []byte
}

// Origin is a client message of a stateful-reconnect connection: Seq is its
// sequence number (the client numbers its messages 1, 2, ...), InvocationID
// the id its Completion answers ("" for a message that wants none).
type Origin struct {
	Conn         string
	InvocationID string
	Seq          uint64
}

// IsZero reports whether o names no client message.
func (o Origin) IsZero() bool { return o.Seq == 0 }

// size estimates the memory a cached command costs, for the byte limit.
func (c *Command) size() int {
	n := 64 + len(c.ID) + len(c.Hub) + len(c.Key) + len(c.Target) + len(c.Args) +
		len(c.Conn) + len(c.Group) + len(c.User) + len(c.Node) + len(c.Reason) + len(c.ClusterID) + len(c.Secret) +
		len(c.Origin.Conn) + len(c.Origin.InvocationID)
	for _, e := range c.Exclude {
		n += 16 + len(e)
	}
	return n
}

// batchVersion is the first byte of every log entry raftplane writes.
const batchVersion = 1

// Limits of the log format. DecodeBatch refuses an entry beyond them (so a
// corrupt entry cannot make it allocate without bound) and Validate refuses
// a command that would break one. They are constants, not settings: every
// replica must decode the same bytes the same way.
const (
	// MaxBatchCommands caps the commands in one log entry.
	MaxBatchCommands = 1 << 20
	// MaxCommandBytes caps one encoded command, and so every field of it.
	MaxCommandBytes = 64 << 20
	// MaxExclude caps the connection ids a publish excludes.
	MaxExclude = 1 << 16
)

// The decoder's names for the limits.
const (
	maxBatchCommands = MaxBatchCommands
	maxFieldBytes    = MaxCommandBytes
	maxExclude       = MaxExclude
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("fsm: malformed command")

// ErrUnknownFormat is wrapped (with ErrMalformed) by the decoding error of
// an entry whose batch version, or a command kind below KindIgnorable, this
// build does not know: a newer version may have written it, so Apply stops
// the node rather than skip what other replicas may apply. Any other
// decoding error is a malformed entry, which every replica rejects alike.
// So a newer version changes the format with a new batch version or a new
// kind, never with more fields in a known kind (trailing bytes are
// malformed).
var ErrUnknownFormat = errors.New("fsm: unknown log format")

// EncodeBatch encodes commands as the data of one Raft log entry. Their
// offsets in the entry are their positions in cmds.
func EncodeBatch(cmds []Command) []byte {
	n := 8
	for i := range cmds {
		n += cmds[i].size()
	}
	b := make([]byte, 0, n)
	b = append(b, batchVersion)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	var scratch []byte
	for i := range cmds {
		scratch = appendCommand(scratch[:0], &cmds[i])
		b = binary.AppendUvarint(b, uint64(len(scratch)))
		b = append(b, scratch...)
	}
	return b
}

// DecodeBatch decodes the data of a log entry written by EncodeBatch.
func DecodeBatch(data []byte) ([]Command, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrMalformed)
	}
	if data[0] != batchVersion {
		return nil, fmt.Errorf("%w: %w: batch version %d (this build knows version %d)", ErrMalformed, ErrUnknownFormat, data[0], batchVersion)
	}
	r := reader{b: data[1:]}
	n := r.uvarint()
	if r.err == nil && n > maxBatchCommands {
		return nil, fmt.Errorf("%w: %d commands in one entry", ErrMalformed, n)
	}
	if r.err == nil && n > uint64(len(r.b)) { // every command takes at least one byte
		return nil, fmt.Errorf("%w: %d commands in %d bytes", ErrMalformed, n, len(r.b))
	}
	cmds := make([]Command, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		body := r.bytes()
		if r.err != nil {
			break
		}
		c, err := DecodeCommand(body)
		if err != nil {
			return nil, fmt.Errorf("command %d: %w", i, err)
		}
		cmds = append(cmds, c)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	if err := checkGroups(cmds); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return cmds, nil
}

// checkGroups enforces the shape of invocations in an entry: an invoke's
// effects come just before it in the same entry, and each is a publish,
// join or leave of its hub with neither an id nor an origin of its own (the
// invoke is deduplicated for them all). Entries without an invoke always
// pass.
func checkGroups(cmds []Command) error {
	for j := range cmds {
		t := &cmds[j]
		if t.Kind != KindInvoke {
			continue
		}
		if uint64(t.Effects) > uint64(j) {
			return fmt.Errorf("command %d: an invoke of %d effects with %d commands before it", j, t.Effects, j)
		}
		for i := j - int(t.Effects); i < j; i++ {
			e := &cmds[i]
			switch {
			case e.Kind != KindPublish && e.Kind != KindGroupJoin && e.Kind != KindGroupLeave:
				return fmt.Errorf("command %d: a %s cannot be an effect of the invoke at %d", i, e.Kind, j)
			case e.Hub != t.Hub:
				return fmt.Errorf("command %d: an effect in hub %q of an invoke in hub %q", i, e.Hub, t.Hub)
			case e.ID != "" || e.Origin != (Origin{}):
				return fmt.Errorf("command %d: an effect of the invoke at %d has an id or an origin of its own", i, j)
			}
		}
	}
	return nil
}

// groupEnds maps the offset of each invoke group's first command to the
// offset of its invoke, for an entry that checkGroups accepted; nil when
// the entry has no invoke.
func groupEnds(cmds []Command) map[int]int {
	var m map[int]int
	for j := range cmds {
		if cmds[j].Kind == KindInvoke {
			if m == nil {
				m = map[int]int{}
			}
			m[j-int(cmds[j].Effects)] = j
		}
	}
	return m
}

// EncodeCommand encodes one command (the unit inside a batch).
func EncodeCommand(c *Command) []byte { return appendCommand(nil, c) }

func appendCommand(b []byte, c *Command) []byte {
	b = append(b, byte(c.Kind))
	b = appendString(b, c.ID)
	b = binary.AppendVarint(b, c.Time)
	b = appendString(b, c.Hub)
	switch c.Kind {
	case KindClusterInit:
		b = appendString(b, c.ClusterID)
		b = appendBytes(b, c.Secret)
	case KindPublish:
		b = append(b, byte(c.Audience))
		b = appendString(b, c.Key)
		b = binary.AppendUvarint(b, uint64(len(c.Exclude)))
		for _, e := range c.Exclude {
			b = appendString(b, e)
		}
		b = appendString(b, c.Target)
		b = appendBytes(b, c.Args)
	case KindGroupJoin, KindGroupLeave:
		b = appendString(b, c.Conn)
		b = appendString(b, c.Group)
	case KindConnOpen:
		b = appendString(b, c.Conn)
		b = appendString(b, c.User)
		b = appendString(b, c.Node)
	case KindConnClose:
		b = appendString(b, c.Conn)
		b = appendString(b, c.Reason)
	case KindConnResume:
		b = appendString(b, c.Conn)
		b = appendString(b, c.User)
		b = appendString(b, c.Node)
		b = appendCursor(b, c.From)
	case KindReject:
		b = appendString(b, c.Reason)
	case KindConnAck:
		b = appendString(b, c.Conn)
		b = binary.AppendUvarint(b, c.AckSeq)
		b = appendCursor(b, c.From)
	case KindInvoke:
		b = appendString(b, c.Conn)
		b = appendString(b, c.Target)
		b = binary.AppendUvarint(b, uint64(c.Effects))
		b = appendBytes(b, c.Args)
		b = appendString(b, c.Reason)
	case KindEventsDone:
		b = appendCursor(b, c.From)
	case KindFormat:
		b = binary.AppendUvarint(b, uint64(c.Format))
	}
	if carriesOrigin(c.Kind) && !c.Origin.IsZero() {
		// An optional trailer: entries without it (older ones included)
		// decode as before.
		b = append(b, originMark)
		b = appendString(b, c.Origin.Conn)
		b = appendString(b, c.Origin.InvocationID)
		b = binary.AppendUvarint(b, c.Origin.Seq)
	}
	return b
}

// originMark starts the Origin trailer of a command.
const originMark = 0x4f

// carriesOrigin reports the kinds that may carry an Origin.
func carriesOrigin(k Kind) bool {
	switch k {
	case KindPublish, KindGroupJoin, KindGroupLeave, KindReject, KindInvoke:
		return true
	}
	return false
}

// DecodeCommand decodes one command. A kind at or above KindIgnorable decodes
// with only its common fields, so that a newer peer's command can be skipped.
// (A codec: the fields in their wire order, each read and checked, one
// branch per optional field; the encoder is its mirror.)
func DecodeCommand(data []byte) (Command, error) {
	r := reader{b: data}
	var c Command
	c.Kind = Kind(r.byte())
	c.ID = r.string()
	c.Time = r.varint()
	c.Hub = r.string()
	switch c.Kind {
	case KindClusterInit:
		c.ClusterID = r.string()
		if sec := r.bytes(); len(sec) > 0 {
			c.Secret = append([]byte(nil), sec...)
		}
	case KindPublish:
		c.Audience = Audience(r.byte())
		c.Key = r.string()
		n := r.uvarint()
		if r.err == nil && (n > maxExclude || n > uint64(len(r.b))) {
			r.fail("exclude list of %d", n)
		}
		if r.err == nil && n > 0 {
			c.Exclude = make([]string, 0, n)
			for i := uint64(0); i < n && r.err == nil; i++ {
				c.Exclude = append(c.Exclude, r.string())
			}
		}
		c.Target = r.string()
		if a := r.bytes(); len(a) > 0 {
			c.Args = append([]byte(nil), a...) // the entry buffer is not ours to keep
		}
		if r.err == nil && (c.Audience < AudienceAll || c.Audience > AudienceConnection) {
			r.fail("unknown audience %d", c.Audience)
		}
	case KindGroupJoin, KindGroupLeave:
		c.Conn = r.string()
		c.Group = r.string()
	case KindConnOpen:
		c.Conn = r.string()
		c.User = r.string()
		c.Node = r.string()
	case KindConnClose:
		c.Conn = r.string()
		c.Reason = r.string()
	case KindConnResume:
		c.Conn = r.string()
		c.User = r.string()
		c.Node = r.string()
		c.From = r.cursor()
	case KindReject:
		c.Reason = r.string()
	case KindConnAck:
		c.Conn = r.string()
		c.AckSeq = r.uvarint()
		c.From = r.cursor()
	case KindInvoke:
		c.Conn = r.string()
		c.Target = r.string()
		c.Effects = r.uint32()
		if a := r.bytes(); len(a) > 0 {
			c.Args = append([]byte(nil), a...)
		}
		c.Reason = r.string()
	case KindEventsDone:
		c.From = r.cursor()
	case KindFormat:
		c.Format = r.uint32()
	default:
		if r.err == nil && c.Kind == 0 {
			r.fail("command kind 0") // no version writes it
		}
		if r.err == nil && c.Kind < KindIgnorable {
			r.err = fmt.Errorf("%w: %w: command kind %d", ErrMalformed, ErrUnknownFormat, c.Kind)
		}
		return c, r.err // ignorable: the rest belongs to a newer version
	}
	if r.err == nil && carriesOrigin(c.Kind) && len(r.b) > 0 {
		if r.byte() != originMark {
			r.fail("bad origin mark in %s", c.Kind)
		}
		c.Origin.Conn = r.string()
		c.Origin.InvocationID = r.string()
		c.Origin.Seq = r.uvarint()
		if r.err == nil && (c.Origin.Seq == 0 || c.Origin.Conn == "") {
			r.fail("origin without a connection or sequence number")
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes in %s", len(r.b), c.Kind)
	}
	if r.err == nil && c.Kind == KindReject && c.Origin.IsZero() {
		r.fail("reject without an origin")
	}
	return c, r.err
}

func appendCursor(b []byte, c Cursor) []byte {
	b = binary.AppendUvarint(b, c.Index)
	return binary.AppendUvarint(b, uint64(c.Offset))
}

// cursor reads a cursor written by appendCursor.
func (r *reader) cursor() Cursor {
	c := Cursor{Index: r.uvarint()}
	off := r.uvarint()
	if r.err == nil && off > 1<<32-1 {
		r.fail("offset %d", off)
	}
	c.Offset = uint32(off)
	return c
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// reader decodes fields and remembers the first error, so that decoding code
// reads straight through and checks once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("unexpected end of data")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > maxFieldBytes || n > uint64(len(r.b)) {
		r.fail("field of %d bytes with %d left", n, len(r.b))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes()) }

func (r *reader) uint32() uint32 {
	v := r.uvarint()
	if r.err == nil && v > 1<<32-1 {
		r.fail("value %d out of range", v)
	}
	return uint32(v)
}
