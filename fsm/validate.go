package fsm

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// ErrInvalid is wrapped by Validate's errors.
var ErrInvalid = errors.New("fsm: invalid command")

// Validate reports a command that must not reach the log, so that a
// submitter refuses it up front: a committed entry is applied by every
// replica, so the log is the wrong place to find out.
//
// It enforces every rule DecodeCommand enforces, so that a command it
// accepts encodes and decodes back to an equal command on every replica
// (empty and nil Exclude or Args aside, which the codec does not tell
// apart): a known kind below KindIgnorable, only the fields that kind
// encodes (a field the encoder would drop is refused, not lost), a known
// audience, at most MaxExclude excluded ids, an encoding of at most
// MaxCommandBytes (and so every field within it), an Origin only on kinds
// that carry one and only with a connection and a sequence number, and a
// reject only with an Origin.
//
// It refuses more than the decoder does, for what no submitter may write
// although the decoder reads it (an entry already in the log is applied
// whatever these say):
//   - kinds at or above KindIgnorable (only a newer version writes them);
//   - a cluster-init without a cluster id, or with one containing ':' (the
//     id prefixes every cursor);
//   - a command other than cluster-init and events-done without a Hub;
//   - an events-done without From;
//   - a group, user or connection publish without a Key, a publish without
//     a Target;
//   - a join or leave without Conn or Group; an open, close, resume or ack
//     without Conn.
func (c *Command) Validate() error {
	if err := c.checkEncoding(); err != nil {
		return err
	}
	return c.checkMeaning()
}

// ValidateBatch validates the commands of one log entry: the count limit of
// the format, then every command.
func ValidateBatch(cmds []Command) error {
	if len(cmds) > MaxBatchCommands {
		return fmt.Errorf("%w: %d commands in one entry, the limit is %d", ErrInvalid, len(cmds), MaxBatchCommands)
	}
	for i := range cmds {
		if err := cmds[i].Validate(); err != nil {
			return fmt.Errorf("command %d: %w", i, err)
		}
	}
	if err := checkGroups(cmds); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// checkEncoding enforces what the decoder enforces: every command
// DecodeCommand returns without an error (below KindIgnorable) passes it.
func (c *Command) checkEncoding() error {
	if !c.Kind.known() {
		return fmt.Errorf("%w: unknown kind %d", ErrInvalid, c.Kind)
	}
	if stray := c.present() &^ carried(c.Kind); stray != 0 {
		return fmt.Errorf("%w: a %s command does not carry %s", ErrInvalid, c.Kind, stray.firstName())
	}
	if c.Kind == KindPublish {
		if c.Audience < AudienceAll || c.Audience > AudienceConnection {
			return fmt.Errorf("%w: unknown audience %d", ErrInvalid, c.Audience)
		}
		if len(c.Exclude) > MaxExclude {
			return fmt.Errorf("%w: %d excluded connection ids, the limit is %d", ErrInvalid, len(c.Exclude), MaxExclude)
		}
	}
	if c.Origin != (Origin{}) {
		if c.Origin.Seq == 0 {
			return fmt.Errorf("%w: origin without a sequence number", ErrInvalid)
		}
		if c.Origin.Conn == "" {
			return fmt.Errorf("%w: origin without a connection", ErrInvalid)
		}
	}
	if c.Kind == KindReject && c.Origin.IsZero() {
		return fmt.Errorf("%w: reject without an origin", ErrInvalid)
	}
	if n := EncodedSize(c); n > MaxCommandBytes {
		name, size := c.largestField()
		return fmt.Errorf("%w: the command encodes to %d bytes, the limit is %d (its largest field, %s, has %d)",
			ErrInvalid, n, MaxCommandBytes, name, size)
	}
	return nil
}

// checkMeaning enforces what submitters must write although the decoder
// reads it (see Validate).
func (c *Command) checkMeaning() error {
	switch c.Kind {
	case KindClusterInit:
		if c.ClusterID == "" || strings.Contains(c.ClusterID, ":") {
			return fmt.Errorf("%w: cluster id %q", ErrInvalid, c.ClusterID)
		}
	case KindPublish:
		if c.Audience != AudienceAll && c.Key == "" {
			return fmt.Errorf("%w: %s publish without a key", ErrInvalid, c.Audience)
		}
		if c.Target == "" {
			return fmt.Errorf("%w: publish without a target", ErrInvalid)
		}
	case KindGroupJoin, KindGroupLeave:
		if c.Conn == "" || c.Group == "" {
			return fmt.Errorf("%w: %s needs a connection and a group", ErrInvalid, c.Kind)
		}
	case KindInvoke:
		if c.Target == "" {
			return fmt.Errorf("%w: invoke without a method name (Target)", ErrInvalid)
		}
	case KindConnOpen, KindConnClose, KindConnResume, KindConnAck:
		if c.Conn == "" {
			return fmt.Errorf("%w: %s needs a connection", ErrInvalid, c.Kind)
		}
	case KindEventsDone:
		if c.From.IsZero() {
			return fmt.Errorf("%w: events-done without a cursor (From)", ErrInvalid)
		}
		// It is about the whole log, not one hub: no Hub needed.
		return nil
	}
	if c.Kind != KindClusterInit && c.Hub == "" {
		return fmt.Errorf("%w: %s without a hub", ErrInvalid, c.Kind)
	}
	return nil
}

// known reports the kinds this version writes and applies.
func (k Kind) known() bool { return k >= KindClusterInit && k <= KindEventsDone }

// fieldSet names the kind-specific fields of a Command, one bit each, in
// the order of fieldNames.
type fieldSet uint32

const (
	fAudience fieldSet = 1 << iota
	fKey
	fExclude
	fTarget
	fArgs
	fConn
	fGroup
	fUser
	fNode
	fReason
	fFrom
	fAckSeq
	fClusterID
	fSecret
	fOrigin
	fEffects
	fFormat
)

var fieldNames = [...]string{"Audience", "Key", "Exclude", "Target", "Args", "Conn", "Group", "User", "Node",
	"Reason", "From", "AckSeq", "ClusterID", "Secret", "Origin", "Effects", "Format"}

func (f fieldSet) firstName() string { return fieldNames[bits.TrailingZeros32(uint32(f))] }

// carried returns the fields the encoder writes for kind k (ID, Time and Hub
// are written for every kind); keep it in step with appendCommand.
func carried(k Kind) fieldSet {
	switch k {
	case KindClusterInit:
		return fClusterID | fSecret
	case KindPublish:
		return fAudience | fKey | fExclude | fTarget | fArgs | fOrigin
	case KindGroupJoin, KindGroupLeave:
		return fConn | fGroup | fOrigin
	case KindConnOpen:
		return fConn | fUser | fNode
	case KindConnClose:
		return fConn | fReason
	case KindConnResume:
		return fConn | fUser | fNode | fFrom
	case KindReject:
		return fReason | fOrigin
	case KindConnAck:
		return fConn | fAckSeq | fFrom
	case KindInvoke:
		return fConn | fTarget | fEffects | fArgs | fReason | fOrigin
	case KindEventsDone:
		return fFrom
	}
	return 0
}

// present returns the kind-specific fields that are set.
func (c *Command) present() fieldSet {
	var f fieldSet
	set := func(b fieldSet, on bool) {
		if on {
			f |= b
		}
	}
	set(fAudience, c.Audience != 0)
	set(fKey, c.Key != "")
	set(fExclude, len(c.Exclude) > 0)
	set(fTarget, c.Target != "")
	set(fArgs, len(c.Args) > 0)
	set(fConn, c.Conn != "")
	set(fGroup, c.Group != "")
	set(fUser, c.User != "")
	set(fNode, c.Node != "")
	set(fReason, c.Reason != "")
	set(fFrom, !c.From.IsZero())
	set(fAckSeq, c.AckSeq != 0)
	set(fClusterID, c.ClusterID != "")
	set(fSecret, len(c.Secret) > 0)
	set(fOrigin, c.Origin != (Origin{}))
	set(fEffects, c.Effects != 0)
	set(fFormat, c.Format != 0)
	return f
}

// largestField names the longest byte field, for an error message.
func (c *Command) largestField() (string, int) {
	name, size := "ID", len(c.ID)
	for _, f := range []struct {
		name string
		n    int
	}{
		{"Hub", len(c.Hub)}, {"Key", len(c.Key)}, {"Target", len(c.Target)}, {"Args", len(c.Args)},
		{"Conn", len(c.Conn)}, {"Group", len(c.Group)}, {"User", len(c.User)}, {"Node", len(c.Node)},
		{"Reason", len(c.Reason)}, {"ClusterID", len(c.ClusterID)}, {"Secret", len(c.Secret)},
		{"Origin.Conn", len(c.Origin.Conn)}, {"Origin.InvocationID", len(c.Origin.InvocationID)},
		{"Exclude", excludeBytes(c.Exclude)},
	} {
		if f.n > size {
			name, size = f.name, f.n
		}
	}
	return name, size
}

func excludeBytes(ex []string) int {
	n := 0
	for _, e := range ex {
		n += stringLen(len(e))
	}
	return n
}

// EncodedSize returns len(EncodeCommand(c)) without encoding it.
func EncodedSize(c *Command) int {
	n := 1 + stringLen(len(c.ID)) + varintLen(c.Time) + stringLen(len(c.Hub))
	switch c.Kind {
	case KindClusterInit:
		n += stringLen(len(c.ClusterID)) + stringLen(len(c.Secret))
	case KindPublish:
		n += 1 + stringLen(len(c.Key)) + uvarintLen(uint64(len(c.Exclude))) + excludeBytes(c.Exclude) +
			stringLen(len(c.Target)) + stringLen(len(c.Args))
	case KindGroupJoin, KindGroupLeave:
		n += stringLen(len(c.Conn)) + stringLen(len(c.Group))
	case KindConnOpen:
		n += stringLen(len(c.Conn)) + stringLen(len(c.User)) + stringLen(len(c.Node))
	case KindConnClose:
		n += stringLen(len(c.Conn)) + stringLen(len(c.Reason))
	case KindConnResume:
		n += stringLen(len(c.Conn)) + stringLen(len(c.User)) + stringLen(len(c.Node)) + cursorLen(c.From)
	case KindReject:
		n += stringLen(len(c.Reason))
	case KindConnAck:
		n += stringLen(len(c.Conn)) + uvarintLen(c.AckSeq) + cursorLen(c.From)
	case KindInvoke:
		n += stringLen(len(c.Conn)) + stringLen(len(c.Target)) + uvarintLen(uint64(c.Effects)) +
			stringLen(len(c.Args)) + stringLen(len(c.Reason))
	case KindEventsDone:
		n += cursorLen(c.From)
	case KindFormat:
		n += uvarintLen(uint64(c.Format))
	}
	if carriesOrigin(c.Kind) && !c.Origin.IsZero() {
		n += 1 + stringLen(len(c.Origin.Conn)) + stringLen(len(c.Origin.InvocationID)) + uvarintLen(c.Origin.Seq)
	}
	return n
}

// BatchEntrySize returns what a command of EncodedSize n adds to an entry
// written by EncodeBatch (its length prefix and its bytes).
func BatchEntrySize(n int) int { return uvarintLen(uint64(n)) + n }

func stringLen(n int) int { return uvarintLen(uint64(n)) + n }

func cursorLen(c Cursor) int { return uvarintLen(c.Index) + uvarintLen(uint64(c.Offset)) }

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}
