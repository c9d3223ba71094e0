package fsm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Cursor is a position in the message stream: the Raft index of the entry
// that carried a command and the command's offset inside that entry (a
// batched entry carries several commands). Cursors totally order everything
// in the log. Raft also writes entries that carry no command (configuration
// changes, no-ops), so indexes have gaps: a cursor means "the last position I
// saw" and a resume asks for everything after it.
type Cursor struct {
	Index  uint64
	Offset uint32
}

// Less reports whether c comes before d in the stream.
func (c Cursor) Less(d Cursor) bool {
	if c.Index != d.Index {
		return c.Index < d.Index
	}
	return c.Offset < d.Offset
}

// IsZero reports whether c is the position before the first entry.
func (c Cursor) IsZero() bool { return c.Index == 0 && c.Offset == 0 }

// Format renders the cursor as clients see it: "<epoch>:<index>:<offset>",
// for example "5f1c0a9e:1042:0". The epoch names the stream (the cluster id),
// so a cursor from another cluster is recognised instead of misread.
func (c Cursor) Format(epoch string) string {
	b := make([]byte, 0, len(epoch)+24)
	b = append(b, epoch...)
	b = append(b, ':')
	b = strconv.AppendUint(b, c.Index, 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(c.Offset), 10)
	return string(b)
}

// String renders the cursor without an epoch, for logs.
func (c Cursor) String() string { return fmt.Sprintf("%d:%d", c.Index, c.Offset) }

// ErrBadCursor is returned by ParseCursor for a string that is not a cursor.
var ErrBadCursor = errors.New("fsm: malformed cursor")

// ParseCursor parses a string made by Cursor.Format. Clients send cursors,
// so its errors quote at most the first maxQuoted bytes of s.
func ParseCursor(s string) (epoch string, c Cursor, err error) {
	epoch, rest, ok1 := strings.Cut(s, ":")
	index, offset, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || epoch == "" || strings.Contains(offset, ":") {
		return "", Cursor{}, fmt.Errorf("%w %s: want <epoch>:<index>:<offset>", ErrBadCursor, quoteShort(s))
	}
	idx, err := strconv.ParseUint(index, 10, 64)
	if err != nil {
		return "", Cursor{}, fmt.Errorf("%w %s: index: %v", ErrBadCursor, quoteShort(s), numErr(err))
	}
	off, err := strconv.ParseUint(offset, 10, 32)
	if err != nil {
		return "", Cursor{}, fmt.Errorf("%w %s: offset: %v", ErrBadCursor, quoteShort(s), numErr(err))
	}
	return epoch, Cursor{Index: idx, Offset: uint32(off)}, nil
}

// maxQuoted bounds how much of a bad cursor an error repeats.
const maxQuoted = 64

func quoteShort(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuoted]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// numErr drops the input strconv repeats in its error.
func numErr(err error) error {
	if ne, ok := err.(*strconv.NumError); ok {
		return ne.Err
	}
	return err
}
