// Package wal is a hashicorp/raft LogStore (the log only; the stable store
// lives elsewhere) kept in append-only segment files: an append costs one
// write(2) and one fdatasync.
//
// It owns one folder, which holds:
//   - segments, dir/%020d.wal, named by the index of their first record: an
//     8-byte header "RPWAL\x00\x00\x01", then records, each a 4-byte
//     little-endian length word (the payload's length; the top bit marks
//     the last record of a StoreLogs call), the CRC-32C (Castagnoli) of
//     the length word and the payload, and
//     the payload: uvarint Index, uvarint Term, byte Type, uvarint length and
//     Data, uvarint length and Extensions, varint AppendedAt in Unix
//     nanoseconds (0 for the zero time). A segment's indexes are consecutive
//     from its base; the next segment starts right after its last index, or
//     higher (a gap: those indexes are not found).
//   - meta: 8-byte magic, the logical first index (uint64 LE), CRC-32C of the
//     16 bytes before it. Entries below it are deleted even while their
//     segment is still on disk; 0 means no such floor.
//   - LOCK, flocked by the one Log that has the folder open.
//
// Crash rules:
//   - An entry exists once its StoreLogs returned: records are written, then
//     fdatasynced, then shown to readers; a new segment's name is made
//     durable (directory fsync) before that.
//   - Append writes without the fdatasync (readers see the entries at once)
//     and Sync makes what was written durable later: only the last segment
//     ever holds unsynced records (an Append that starts a segment syncs as
//     StoreLogs does), and Open syncs what it finds, so entries that
//     outlived a crash of the process in the page cache are durable before
//     anyone acts on them.
//   - A crash can tear the last batch. A batch counts only once its last
//     record (the marked one) is whole, so the log keeps a StoreLogs whole
//     or not at all. Open cuts the end of the last segment after its last
//     whole batch (Repaired says how many bytes); a bad record, a batch
//     without its end or a bad header anywhere else fails Open, which then
//     changes nothing.
//   - Deleting a prefix persists meta first, then removes the segments below
//     it: files left by a crash are removed by the next Open.
//   - Deleting a suffix removes the later segments (durably) before it
//     truncates the one holding the cut, so a crash never leaves a segment
//     that ends early followed by entries that were deleted.
//   - Deleting everything first sets meta past the last index; a log whose
//     entries all lie below meta opens empty.
//   - When a failed write or delete leaves the disk in a state the Log cannot
//     vouch for, the Log refuses later writes (reads go on); reopen it.
package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// DefaultSegmentSize is the size at which a segment is closed for appends
// when Options.SegmentSize is 0.
const DefaultSegmentSize = 64 << 20

// Options tune a Log.
type Options struct {
	NoSync      bool  // skip fdatasync (tests, -no-sync); writes still go to the OS
	SegmentSize int64 // roll to a new segment file once the current one reaches this many bytes; 0 means DefaultSegmentSize
}

var (
	_ raft.LogStore          = (*Log)(nil)
	_ raft.MonotonicLogStore = (*Log)(nil)
)

var errClosed = errors.New("wal: log is closed")

// Log is a raft.LogStore in a folder of segment files. Its methods are safe
// for concurrent use.
type Log struct {
	dir      string
	opt      Options
	lock     *os.File
	repaired int64

	// smu is held across an fdatasync of records that Append wrote (Sync)
	// and by whatever changes which files exist or syncs itself
	// (StoreLogs, DeleteRange, Close), so a Sync's file stays open and one
	// Sync's result never claims another's pending work. Order: smu, wmu,
	// mu. Append takes wmu only: it never waits for a sync.
	smu    sync.Mutex
	wmu    sync.Mutex // serializes writers (Append, StoreLogs, DeleteRange, Close)
	buf    []byte     // records being written, reused across calls
	offs   []int64    // their offsets, reused across calls
	failed error      // set when the disk may not match memory: refuse writes
	dirty  bool       // the last segment holds records Append wrote and no sync covered yet
	synced int64      // bytes of the last segment known to be on disk

	// A simulated power cut (SimulatePowerCut, for tests): from then on
	// nothing syncs, and Close leaves the files as they were on disk then.
	cut     bool
	cutSegs map[string]bool // the segments that existed
	cutLast string          // the last of them, whose synced bytes were
	cutSize int64

	// mu guards what readers use: segs, each segment's offs and size, first
	// and closed. Writers hold it only to publish, never across a sync.
	mu     sync.RWMutex
	segs   []*segment
	first  uint64 // first readable index, 0 when empty
	closed bool
}

// Open opens (or creates) the log in dir and takes its lock.
func Open(dir string, o Options) (*Log, error) {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	_, err := os.Stat(dir)
	created := errors.Is(err, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	if created && !o.NoSync {
		// The folder's own name must survive a crash as its files do.
		if err := SyncDir(filepath.Dir(dir)); err != nil {
			return nil, fmt.Errorf("wal: %w", err)
		}
	}
	lock, err := lockDir(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil, err
	}
	l := &Log{dir: dir, opt: o, lock: lock}
	if err := l.load(); err != nil {
		for _, s := range l.segs {
			s.f.Close()
		}
		lock.Close()
		return nil, err
	}
	return l, nil
}

// load reads meta and every segment, checks them all, and only then
// repairs: a torn tail, an empty last segment, segments below meta.
func (l *Log) load() error {
	meta, err := l.readMeta()
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	var buf []byte
	var tornErr error // what is wrong at offset cut of the last segment read
	cut, torn := int64(-1), int64(0)
	for _, ent := range ents { // sorted by name, so by base
		base, ok := parseSegName(ent.Name())
		if !ok || !ent.Type().IsRegular() {
			continue
		}
		if tornErr != nil { // not the last segment after all: corrupt
			return fmt.Errorf("wal: %s: offset %d: %w", l.segs[len(l.segs)-1].f.Name(), cut, tornErr)
		}
		name := filepath.Join(l.dir, ent.Name())
		f, err := os.OpenFile(name, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		s := &segment{base: base, f: f}
		l.segs = append(l.segs, s)
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		buf = slices.Grow(buf[:0], int(st.Size()))[:st.Size()]
		if n, err := f.ReadAt(buf, 0); n < len(buf) {
			return fmt.Errorf("wal: reading %s: %w", name, err)
		}
		s.offs, s.size, err = scan(buf, base)
		if err != nil {
			// A full header that is wrong is no torn write: the header
			// goes to disk with the segment's first records.
			if errors.Is(err, errBadHeader) && len(buf) >= headerLen {
				return fmt.Errorf("wal: %s: offset 0: %w", name, err)
			}
			tornErr, cut, torn = err, s.size, int64(len(buf))-s.size
		}
	}

	// Only the last segment may be empty: a crash right after creating it.
	live := l.segs
	if n := len(live); n > 0 && len(live[n-1].offs) == 0 {
		live = live[:n-1]
	}
	for i, s := range live {
		if len(s.offs) == 0 {
			return fmt.Errorf("wal: %s: offset %d: segment has no records", s.f.Name(), headerLen)
		}
		if i > 0 && s.base <= live[i-1].last() {
			return fmt.Errorf("wal: %s: offset 0: starts at index %d, not after index %d of %s",
				s.f.Name(), s.base, live[i-1].last(), live[i-1].f.Name())
		}
	}

	// Everything checked; repair.
	var doomed []*segment
	if len(live) < len(l.segs) {
		doomed = append(doomed, l.segs[len(live)])
	} else if len(live) > 0 {
		// Synced even when whole: records written before a crash of the
		// process (not of the machine) may still be only in the page cache,
		// and this node will treat them as stored. Only the last segment
		// can hold such records (see Append).
		s := live[len(live)-1]
		if cut >= 0 {
			if err := s.f.Truncate(cut); err != nil {
				return fmt.Errorf("wal: cutting the torn tail of %s: %w", s.f.Name(), err)
			}
		}
		if err := l.datasync(s.f); err != nil {
			return fmt.Errorf("wal: %s: %w", s.f.Name(), err)
		}
		l.synced = s.size
	}
	l.repaired = torn
	k := 0 // segments wholly below meta are left from an interrupted delete
	for k < len(live) && live[k].last() < meta {
		k++
	}
	doomed = append(doomed, live[:k]...)
	l.segs = live[k:]
	if err := l.removeSegs(doomed); err != nil {
		return err
	}
	if len(l.segs) == 0 { // an empty log keeps no floor: any index may come next
		if meta != 0 {
			return l.writeMeta(0)
		}
		return nil
	}
	l.first = max(meta, l.segs[0].base)
	return nil
}

func (l *Log) readMeta() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, "meta"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("wal: %w", err)
	}
	if len(b) != metaLen || [8]byte(b) != metaMagic || crc(b[:16]) != le.Uint32(b[16:]) {
		return 0, fmt.Errorf("wal: %s: offset 0: corrupt meta file", filepath.Join(l.dir, "meta"))
	}
	return le.Uint64(b[8:]), nil
}

// writeMeta replaces meta atomically (write, sync, rename, sync the folder).
func (l *Log) writeMeta(first uint64) error {
	var b [metaLen]byte
	copy(b[:], metaMagic[:])
	le.PutUint64(b[8:], first)
	le.PutUint32(b[16:], crc(b[:16]))
	tmp := filepath.Join(l.dir, "meta.tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		_, err = f.Write(b[:])
		if err == nil && !l.opt.NoSync {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(l.dir, "meta"))
	}
	if err == nil {
		err = l.syncDir()
	}
	if err != nil {
		return fmt.Errorf("wal: writing meta: %w", err)
	}
	return nil
}

// FirstIndex returns the first readable index, 0 when the log is empty.
func (l *Log) FirstIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, errClosed
	}
	return l.first, nil
}

// LastIndex returns the last index, 0 when the log is empty.
func (l *Log) LastIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, errClosed
	}
	return l.lastLocked(), nil
}

func (l *Log) lastLocked() uint64 {
	if len(l.segs) == 0 {
		return 0
	}
	return l.segs[len(l.segs)-1].last()
}

// Len returns the number of entries held.
func (l *Log) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n := 0
	for _, s := range l.segs {
		n += len(s.offs)
		if l.first > s.base { // entries below first, still in their segment
			n -= int(min(l.first-s.base, uint64(len(s.offs))))
		}
	}
	return n
}

// Size returns the bytes the log's segment files hold.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	for _, s := range l.segs {
		n += s.size
	}
	return n
}

// Repaired returns the bytes Open cut from a torn tail of the last segment.
func (l *Log) Repaired() int64 { return l.repaired }

// IsMonotonic tells raft the log has no gaps to rely on: after installing
// a snapshot it empties the log instead.
func (l *Log) IsMonotonic() bool { return true }

// GetLog reads the entry at index into out; raft.ErrLogNotFound if absent.
func (l *Log) GetLog(index uint64, out *raft.Log) error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return errClosed
	}
	s := l.find(index)
	if s == nil {
		l.mu.RUnlock()
		return raft.ErrLogNotFound
	}
	i := int(index - s.base)
	off := s.offs[i]
	b := make([]byte, s.end(i)-off)
	// Under the lock so that no writer closes the file meanwhile.
	_, err := s.f.ReadAt(b, off)
	l.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("wal: reading index %d from %s: %w", index, s.f.Name(), err)
	}
	p, _, err := checkRecord(b)
	if err == nil {
		err = decodePayload(p, out)
	}
	if err == nil && out.Index != index {
		err = fmt.Errorf("record has index %d", out.Index)
	}
	if err != nil {
		return fmt.Errorf("wal: %s: offset %d: index %d: %w", s.f.Name(), off, index, err)
	}
	return nil
}

// find returns the segment holding index, nil if none does. Needs mu.
func (l *Log) find(index uint64) *segment {
	if l.first == 0 || index < l.first {
		return nil
	}
	lo, hi := 0, len(l.segs) // find the last segment with base <= index
	for lo < hi {
		if m := (lo + hi) / 2; l.segs[m].base <= index {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 || index > l.segs[lo-1].last() {
		return nil
	}
	return l.segs[lo-1]
}

// StoreLog appends one entry.
func (l *Log) StoreLog(e *raft.Log) error { return l.StoreLogs([]*raft.Log{e}) }

// StoreLogs appends consecutive entries after the last one (or anywhere in
// an empty log; past a gap in a new segment), with one write and one sync,
// which also covers what Append wrote before.
func (l *Log) StoreLogs(es []*raft.Log) error {
	l.smu.Lock()
	defer l.smu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return l.store(es, true)
}

// Append appends as StoreLogs does, but returns once the records are
// written, before they reach the disk: they are readable at once, and
// durable only once a later Sync (or StoreLogs) returns. An Append that
// would start a segment syncs as StoreLogs does, so that only the last
// segment ever holds unsynced records.
func (l *Log) Append(es []*raft.Log) error {
	l.wmu.Lock()
	if !l.startsSegment(es) {
		defer l.wmu.Unlock()
		return l.store(es, false)
	}
	l.wmu.Unlock()
	return l.StoreLogs(es)
}

// Sync makes every record written so far durable and returns the last
// index it covers (0 for an empty log). A failed sync makes the log refuse
// writes: what reached the disk is unknown.
func (l *Log) Sync() (uint64, error) {
	l.smu.Lock()
	defer l.smu.Unlock()
	l.wmu.Lock()
	if err := l.writable(); err != nil {
		l.wmu.Unlock()
		return 0, err
	}
	last, dirty := l.lastLocked(), l.dirty
	var f *os.File
	var size int64
	if dirty {
		s := l.segs[len(l.segs)-1] // the last until smu is released
		f, size = s.f, s.size
	}
	l.dirty = false
	l.wmu.Unlock()
	if !dirty {
		return last, nil
	}
	err := l.datasync(f)
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("wal: syncing %s: %w", f.Name(), err)
		l.failed = err
		return 0, err
	}
	l.markSynced(size)
	return last, nil
}

// startsSegment reports whether es would go to a new segment. Under wmu.
func (l *Log) startsSegment(es []*raft.Log) bool {
	n := len(l.segs)
	if n == 0 || len(es) == 0 {
		return true
	}
	cur := l.segs[n-1]
	return es[0].Index > cur.last()+1 || cur.size >= l.opt.SegmentSize
}

// store writes es and, when sync is set, syncs. Under wmu, and under smu
// when sync is set or es starts a segment.
func (l *Log) store(es []*raft.Log, sync bool) error {
	for i := 1; i < len(es); i++ {
		if es[i].Index != es[i-1].Index+1 {
			return fmt.Errorf("wal: batch not consecutive: index %d follows %d", es[i].Index, es[i-1].Index)
		}
	}
	if err := l.writable(); err != nil || len(es) == 0 {
		return err
	}
	if es[0].Index == 0 {
		return errors.New("wal: index 0")
	}
	var cur *segment
	if n := len(l.segs); n > 0 {
		cur = l.segs[n-1]
		last := cur.last()
		if es[0].Index <= last {
			return fmt.Errorf("wal: non-monotonic write: index %d, last index %d", es[0].Index, last)
		}
		if es[0].Index > last+1 || cur.size >= l.opt.SegmentSize {
			cur = nil
		}
	}
	fresh := cur == nil
	hadDirty := l.dirty
	if fresh && hadDirty {
		// The segment being left behind holds unsynced records: they go to
		// the disk first, so that only the last segment may be torn.
		prev := l.segs[len(l.segs)-1]
		if err := l.datasync(prev.f); err != nil {
			return l.fail(fmt.Errorf("wal: syncing %s: %w", prev.f.Name(), err))
		}
		l.dirty, hadDirty = false, false
	}
	var at int64 // where buf goes in the file
	buf := l.buf[:0]
	if fresh {
		buf = append(buf, segMagic[:]...)
	} else {
		at = cur.size
	}
	offs := l.offs[:0]
	for i, e := range es {
		offs = append(offs, at+int64(len(buf)))
		var err error
		if buf, err = appendRecord(buf, e, i == len(es)-1); err != nil {
			return err
		}
	}
	if cap(buf) <= 4<<20 { // keep the buffers, unless one batch was huge
		l.buf, l.offs = buf, offs
	}

	if fresh {
		f, err := os.OpenFile(filepath.Join(l.dir, segName(es[0].Index)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		cur = &segment{base: es[0].Index, f: f}
	}
	_, err := cur.f.WriteAt(buf, at)
	synced := false
	if err == nil && (sync || fresh) {
		err, synced = l.datasync(cur.f), true
	}
	if err == nil && fresh {
		err = l.syncDir()
	}
	if err != nil {
		err = fmt.Errorf("wal: appending to %s: %w", cur.f.Name(), err)
		// Take back what may have reached the file, so that a later append
		// does not follow garbage (or a stray segment come back at Open).
		var undo error
		if fresh {
			cur.f.Close()
			undo = os.Remove(cur.f.Name())
		} else {
			undo = cur.f.Truncate(at)
		}
		// A failed sync leaves earlier unsynced records of unknown fate.
		if undo != nil || (synced && hadDirty) {
			l.failed = err
		}
		return err
	}
	l.dirty = !synced
	if synced {
		l.markSynced(at + int64(len(buf)))
	}

	l.mu.Lock()
	if fresh {
		l.segs = append(l.segs, cur)
	}
	cur.offs = append(cur.offs, offs...)
	cur.size = at + int64(len(buf))
	if l.first == 0 {
		l.first = es[0].Index
	}
	l.mu.Unlock()
	return nil
}

// DeleteRange deletes the entries lo..hi (inclusive). It takes the shapes
// raft uses: a prefix, a suffix, or everything; a hole is refused. A range
// that holds no entry deletes nothing.
func (l *Log) DeleteRange(lo, hi uint64) error {
	l.smu.Lock()
	defer l.smu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	if l.dirty {
		// Deletes keep their crash rules only over synced records.
		s := l.segs[len(l.segs)-1]
		if err := l.datasync(s.f); err != nil {
			return l.fail(fmt.Errorf("wal: syncing %s: %w", s.f.Name(), err))
		}
		l.dirty = false
		l.markSynced(s.size)
	}
	first, last := l.first, l.lastLocked()
	switch {
	case first == 0 || hi < first || lo > last || lo > hi: // nothing to delete
		return nil
	case lo <= first && hi >= last:
		return l.deleteAll(last)
	case lo <= first:
		return l.deletePrefix(hi)
	case hi >= last:
		return l.deleteSuffix(lo)
	}
	return fmt.Errorf("wal: DeleteRange(%d, %d) would leave a hole in %d..%d", lo, hi, first, last)
}

func (l *Log) deletePrefix(hi uint64) error {
	if err := l.writeMeta(hi + 1); err != nil {
		return err
	}
	k := 0 // hi < last: the last segment stays
	for l.segs[k].last() <= hi {
		k++
	}
	doomed := slices.Clone(l.segs[:k])
	l.mu.Lock()
	l.segs = slices.Delete(l.segs, 0, k)
	l.first = max(hi+1, l.segs[0].base)
	l.mu.Unlock()
	return l.removeSegs(doomed) // what it leaves, Open removes
}

func (l *Log) deleteSuffix(lo uint64) error {
	k := len(l.segs) // lo > first: the first segment stays
	for l.segs[k-1].base >= lo {
		k--
	}
	doomed := slices.Clone(l.segs[k:])
	s := l.segs[k-1]
	keep, cut := len(s.offs), s.size
	if lo <= s.last() {
		keep = int(lo - s.base)
		cut = s.offs[keep]
	}
	trunc := keep < len(s.offs)
	l.mu.Lock()
	l.segs = slices.Delete(l.segs, k, len(l.segs))
	s.offs, s.size = s.offs[:keep], cut
	l.mu.Unlock()
	// The later segments go first, durably: a crash must not leave s cut
	// short and followed, past a gap, by entries that were deleted.
	if err := l.removeSegs(doomed); err != nil {
		return l.fail(err)
	}
	if trunc {
		if err := s.f.Truncate(cut); err != nil {
			return l.fail(fmt.Errorf("wal: truncating %s: %w", s.f.Name(), err))
		}
		if err := l.datasync(s.f); err != nil {
			return l.fail(fmt.Errorf("wal: %s: %w", s.f.Name(), err))
		}
	}
	l.markSynced(cut) // s is the last segment now, all of it synced
	return nil
}

func (l *Log) deleteAll(last uint64) error {
	// Past the last index first: a crash halfway then opens an empty log.
	if err := l.writeMeta(last + 1); err != nil {
		return err
	}
	doomed := l.segs
	l.mu.Lock()
	l.segs, l.first = nil, 0
	l.markSynced(0)
	l.mu.Unlock()
	if err := l.removeSegs(doomed); err != nil {
		return l.fail(err)
	}
	// 0 again, so that the next append may take any index.
	if err := l.writeMeta(0); err != nil {
		return l.fail(err)
	}
	return nil
}

// removeSegs closes and removes segments no reader can reach any more,
// newest first (a crash keeps a prefix of them), then syncs the folder.
func (l *Log) removeSegs(segs []*segment) error {
	var err error
	for i := len(segs) - 1; i >= 0; i-- {
		segs[i].f.Close()
		if err == nil {
			err = os.Remove(segs[i].f.Name())
		}
	}
	if err == nil && len(segs) > 0 {
		err = l.syncDir()
	}
	if err != nil {
		return fmt.Errorf("wal: removing segments: %w", err)
	}
	return nil
}

// fail makes the log refuse writes from now on: after a delete failed
// halfway, what is on disk may differ from what the Log knows.
func (l *Log) fail(err error) error {
	l.failed = err
	return err
}

func (l *Log) writable() error {
	if l.closed {
		return errClosed
	}
	if l.failed != nil {
		return fmt.Errorf("wal: refusing writes after an earlier failure (reopen the log): %w", l.failed)
	}
	return nil
}

// Close syncs what Append wrote, closes the files and releases the lock.
// Later calls return nil; other methods then return an error.
func (l *Log) Close() error {
	l.smu.Lock()
	defer l.smu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	segs := l.segs
	l.segs, l.first, l.closed = nil, 0, true
	l.mu.Unlock()
	var err error
	if l.dirty && l.failed == nil { // what Append wrote goes to the disk
		err = l.datasync(segs[len(segs)-1].f)
		l.dirty = false
	}
	for _, s := range segs {
		err = errors.Join(err, s.f.Close())
	}
	if l.cut {
		err = errors.Join(err, l.powerCut())
	}
	if err = errors.Join(err, l.lock.Close()); err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}

func (l *Log) datasync(f *os.File) error {
	if l.opt.NoSync || l.cut {
		return nil
	}
	return datasync(f)
}

func (l *Log) syncDir() error {
	if l.opt.NoSync || l.cut {
		return nil
	}
	return SyncDir(l.dir)
}

// markSynced records that the last segment is on disk up to size bytes.
// Under wmu.
func (l *Log) markSynced(size int64) {
	if !l.cut {
		l.synced = size
	}
}

// SimulatePowerCut is for crash tests. From now on the log works as before
// but syncs nothing, and Close then leaves its folder as a power cut at
// this moment could have: segments made since are removed, and the last
// segment of the moment is cut back to what had been synced of it, as if
// the disk had kept none of the writes that were not synced (the worst a
// power cut may do; a real one may keep some). Entries the log reported
// durable before the cut survive it.
func (l *Log) SimulatePowerCut() {
	l.smu.Lock() // no sync in flight: what it covers is either counted or not
	defer l.smu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.cut || l.closed {
		return
	}
	l.cut = true
	l.cutSegs = map[string]bool{}
	for _, s := range l.segs {
		l.cutSegs[filepath.Base(s.f.Name())] = true
	}
	if n := len(l.segs); n > 0 {
		l.cutLast, l.cutSize = l.segs[n-1].f.Name(), l.synced
	}
}

// powerCut makes the folder what SimulatePowerCut promised. After Close.
func (l *Log) powerCut() error {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if _, ok := parseSegName(e.Name()); ok && !l.cutSegs[e.Name()] {
			if err := os.Remove(filepath.Join(l.dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if l.cutLast == "" {
		return nil
	}
	st, err := os.Stat(l.cutLast)
	if errors.Is(err, os.ErrNotExist) {
		return nil // deleted since
	}
	if err != nil {
		return err
	}
	if st.Size() > l.cutSize {
		return os.Truncate(l.cutLast, l.cutSize)
	}
	return nil
}
