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

// ParseCursor parses a string made by Cursor.Format.
func ParseCursor(s string) (epoch string, c Cursor, err error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] == "" {
		return "", Cursor{}, fmt.Errorf("%w %q: want <epoch>:<index>:<offset>", ErrBadCursor, s)
	}
	idx, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil {
		return "", Cursor{}, fmt.Errorf("%w %q: index: %v", ErrBadCursor, s, err)
	}
	off, err := strconv.ParseUint(parts[2], 10, 32)
	if err != nil {
		return "", Cursor{}, fmt.Errorf("%w %q: offset: %v", ErrBadCursor, s, err)
	}
	return parts[0], Cursor{Index: idx, Offset: uint32(off)}, nil
}
