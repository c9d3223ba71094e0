package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

const (
	headerLen  = 8       // segment file header: segMagic
	recHdrLen  = 8       // record header: length word, CRC-32C
	maxPayload = 1 << 30 // larger lengths are corruption; never allocated
	metaLen    = 20      // metaMagic, first index, CRC-32C

	// batchEnd marks, in a record's length word, the last record of a
	// StoreLogs call: a batch counts only once its last record is whole,
	// so a crash keeps all of it or none (the bootstrap writes the
	// configuration and the cluster id in one batch, and relies on it).
	batchEnd = 1 << 31
)

var (
	segMagic   = [headerLen]byte{'R', 'P', 'W', 'A', 'L', 0, 0, 1}
	metaMagic  = [8]byte{'R', 'P', 'W', 'M', 'E', 'T', 0, 1}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)

	errBadHeader  = errors.New("not a wal segment (bad header)")
	errMalformed  = errors.New("malformed record")
	errUnfinished = errors.New("the last batch ends before its last record")
)

var le = binary.LittleEndian

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// segment is one file of consecutive records, starting at index base.
// offs and size change only under Log.mu (written) and Log.wmu (held by
// the one writer), so readers holding Log.mu see whole records only.
type segment struct {
	base uint64
	f    *os.File
	offs []int64 // offs[i] is the file offset of the record of index base+i
	size int64   // bytes holding the header and published records
}

// last is the segment's last index; only for a segment with records.
func (s *segment) last() uint64 { return s.base + uint64(len(s.offs)) - 1 }

// end is where the record at offs[i] ends.
func (s *segment) end(i int) int64 {
	if i+1 < len(s.offs) {
		return s.offs[i+1]
	}
	return s.size
}

func segName(base uint64) string { return fmt.Sprintf("%020d.wal", base) }

// parseSegName returns the base of a segment file name, false for any
// other name (the folder also holds meta and LOCK).
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, ".wal")
	if !ok || len(digits) != 20 || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	base, err := strconv.ParseUint(digits, 10, 64)
	return base, err == nil && base > 0
}

// appendRecord appends e's record to b, marked as its batch's last when
// end is set. On error b is returned unchanged.
func appendRecord(b []byte, e *raft.Log, end bool) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, recHdrLen)...)
	b = binary.AppendUvarint(b, e.Index)
	b = binary.AppendUvarint(b, e.Term)
	b = append(b, byte(e.Type))
	b = binary.AppendUvarint(b, uint64(len(e.Data)))
	b = append(b, e.Data...)
	b = binary.AppendUvarint(b, uint64(len(e.Extensions)))
	b = append(b, e.Extensions...)
	var at int64
	if !e.AppendedAt.IsZero() {
		at = e.AppendedAt.UnixNano()
	}
	b = binary.AppendVarint(b, at)
	p := b[start+recHdrLen:]
	if len(p) > maxPayload {
		return b[:start], fmt.Errorf("wal: entry %d is %d bytes, over the %d limit", e.Index, len(p), maxPayload)
	}
	word := uint32(len(p))
	if end {
		word |= batchEnd
	}
	le.PutUint32(b[start:], word)
	le.PutUint32(b[start+4:], recordCRC(b[start:start+4], p))
	return b, nil
}

// recordCRC covers the length word too, so a flipped end mark is caught.
func recordCRC(word, p []byte) uint32 {
	return crc32.Update(crc(word), castagnoli, p)
}

// checkRecord checks the record at the start of b (length, CRC) and
// returns its payload and whether it ends its batch.
func checkRecord(b []byte) (p []byte, end bool, err error) {
	if len(b) < recHdrLen {
		return nil, false, errors.New("short record header")
	}
	word := le.Uint32(b)
	n := word &^ batchEnd
	if n > maxPayload {
		return nil, false, fmt.Errorf("record length %d over the limit", n)
	}
	if uint64(len(b)-recHdrLen) < uint64(n) {
		return nil, false, fmt.Errorf("short record: %d bytes of %d", len(b)-recHdrLen, n)
	}
	p = b[recHdrLen : recHdrLen+int(n)]
	if recordCRC(b[:4], p) != le.Uint32(b[4:]) {
		return nil, false, errors.New("record checksum mismatch")
	}
	return p, word&batchEnd != 0, nil
}

// decodePayload fills out from a payload that passed checkRecord. Data and
// Extensions alias p, which the caller hands over.
func decodePayload(p []byte, out *raft.Log) error {
	index, n := binary.Uvarint(p)
	if n <= 0 {
		return errMalformed
	}
	p = p[n:]
	term, n := binary.Uvarint(p)
	if n <= 0 || n >= len(p) {
		return errMalformed
	}
	typ := p[n]
	p = p[n+1:]
	var fields [2][]byte
	for i := range fields {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return errMalformed
		}
		if l > 0 {
			fields[i] = p[n : n+int(l) : n+int(l)]
		}
		p = p[n+int(l):]
	}
	at, n := binary.Varint(p)
	if n <= 0 || n != len(p) {
		return errMalformed
	}
	*out = raft.Log{Index: index, Term: term, Type: raft.LogType(typ), Data: fields[0], Extensions: fields[1]}
	if at != 0 {
		out.AppendedAt = time.Unix(0, at)
	}
	return nil
}

// scan checks a segment image read from disk and returns the offsets of
// its records up to the end of its last whole batch. When the image goes
// on past that (a bad record, or records of a batch whose last record is
// missing), it returns where the last whole batch ends and what is wrong
// after it; for a good image end is len(b).
func scan(b []byte, base uint64) (offs []int64, end int64, err error) {
	if len(b) < headerLen || !bytes.Equal(b[:headerLen], segMagic[:]) {
		return nil, 0, errBadHeader
	}
	var e raft.Log
	off, done := headerLen, 0 // done: the records up to the last batch end
	end = headerLen
	for off < len(b) {
		p, last, err := checkRecord(b[off:])
		if err == nil {
			err = decodePayload(p, &e)
		}
		if want := base + uint64(len(offs)); err == nil && e.Index != want {
			err = fmt.Errorf("record has index %d, want %d", e.Index, want)
		}
		if err != nil {
			return offs[:done], end, err
		}
		offs = append(offs, int64(off))
		off += recHdrLen + len(p)
		if last {
			done, end = len(offs), int64(off)
		}
	}
	if done < len(offs) {
		return offs[:done], end, errUnfinished
	}
	return offs, end, nil
}
