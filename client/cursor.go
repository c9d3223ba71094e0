package client

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseCursor splits a cursor, "<epoch>:<index>:<offset>" as raftplane sends it
// in the "cursor" header and as the result of its built-in methods. Within
// one epoch (one cluster's stream) cursors are ordered by index, then by
// offset; cursors of different epochs are not comparable.
func ParseCursor(s string) (epoch string, index uint64, offset uint32, err error) {
	// strings.Cut, not Split: every delivered message goes through here.
	ep, rest, ok1 := strings.Cut(s, ":")
	ix, of, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || ep == "" || strings.IndexByte(of, ':') >= 0 {
		return "", 0, 0, fmt.Errorf("client: malformed cursor %q: want <epoch>:<index>:<offset>", s)
	}
	idx, err := strconv.ParseUint(ix, 10, 64)
	if err != nil {
		return "", 0, 0, fmt.Errorf("client: malformed cursor %q: index: %w", s, err)
	}
	off, err := strconv.ParseUint(of, 10, 32)
	if err != nil {
		return "", 0, 0, fmt.Errorf("client: malformed cursor %q: offset: %w", s, err)
	}
	return ep, idx, uint32(off), nil
}

// cursorBefore returns the position just before the cursor
// <epoch>:<index>:<offset>: every entry after it is at the cursor or later.
func cursorBefore(epoch string, index uint64, offset uint32) string {
	switch {
	case offset > 0:
		offset--
	case index > 0:
		index, offset = index-1, math.MaxUint32
	}
	return epoch + ":" + strconv.FormatUint(index, 10) + ":" + strconv.FormatUint(uint64(offset), 10)
}
