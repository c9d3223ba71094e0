package wal

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// entry is the entry the tests write at index i in term: Data names both,
// so a read can tell that it got the right one.
func entry(i, term uint64) *raft.Log {
	return &raft.Log{
		Index:      i,
		Term:       term,
		Type:       raft.LogCommand,
		Data:       fmt.Appendf(nil, "entry %d term %d", i, term),
		AppendedAt: time.Unix(1700000000, int64(i)),
	}
}

func open(t testing.TB, dir string, o Options) *Log {
	t.Helper()
	l, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func reopen(t testing.TB, l *Log) *Log {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return open(t, l.dir, l.opt)
}

// store appends lo..hi in term, in batches of up to 7.
func store(t testing.TB, l *Log, lo, hi, term uint64) {
	t.Helper()
	for i := lo; i <= hi; {
		var es []*raft.Log
		for ; i <= hi && len(es) < 7; i++ {
			es = append(es, entry(i, term))
		}
		if err := l.StoreLogs(es); err != nil {
			t.Fatalf("StoreLogs %d..%d: %v", es[0].Index, i-1, err)
		}
	}
}

// check asserts the log holds exactly first..last, each written in term
// (or in the term terms gives for it).
func check(t testing.TB, l *Log, first, last uint64, terms func(uint64) uint64) {
	t.Helper()
	if f, err := l.FirstIndex(); err != nil || f != first {
		t.Fatalf("FirstIndex = %d, %v; want %d", f, err, first)
	}
	if la, err := l.LastIndex(); err != nil || la != last {
		t.Fatalf("LastIndex = %d, %v; want %d", la, err, last)
	}
	want := 0
	if first != 0 {
		want = int(last - first + 1)
	}
	if n := l.Len(); n != want {
		t.Fatalf("Len = %d, want %d", n, want)
	}
	for i := first; i <= last && first != 0; i++ {
		checkEntry(t, l, i, terms(i))
	}
	var out raft.Log
	for _, i := range []uint64{first - 1, last + 1} {
		if i == 0 {
			continue
		}
		if err := l.GetLog(i, &out); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) = %v, want ErrLogNotFound", i, err)
		}
	}
}

func checkEntry(t testing.TB, l *Log, i, term uint64) {
	t.Helper()
	var out raft.Log
	if err := l.GetLog(i, &out); err != nil {
		t.Fatalf("GetLog(%d): %v", i, err)
	}
	want := entry(i, term)
	if out.Index != i || out.Term != term || !bytes.Equal(out.Data, want.Data) || !out.AppendedAt.Equal(want.AppendedAt) {
		t.Fatalf("GetLog(%d) = %+v, want %+v", i, out, *want)
	}
}

func term(n uint64) func(uint64) uint64 { return func(uint64) uint64 { return n } }

// segFiles lists the segment files in dir.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// dirImage is every file's name and contents, to show that a failed Open
// changed nothing.
func dirImage(t testing.TB, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC)
	logs := []*raft.Log{
		{Index: 5, Term: 1, Type: raft.LogCommand, Data: []byte("hello"), AppendedAt: at},
		{Index: 6, Term: 1, Type: raft.LogNoop},                                                // zero time, nil data
		{Index: 7, Term: 2, Type: raft.LogConfiguration, Data: []byte{}, Extensions: []byte{}}, // empty, not nil
		{Index: 8, Term: 1 << 62, Type: raft.LogBarrier, Data: []byte{0, 1, 2}, Extensions: []byte("ext"), AppendedAt: time.Unix(-5, 3)},
		{Index: 9, Term: 3, Type: raft.LogType(255), Data: bytes.Repeat([]byte{0xab}, 70000), AppendedAt: at.Add(time.Hour)},
		{Index: 10, Term: 3, Type: raft.LogCommand, Extensions: []byte{9}},
	}
	l := open(t, t.TempDir(), Options{NoSync: true})
	if err := l.StoreLogs(logs[:3]); err != nil {
		t.Fatal(err)
	}
	for _, e := range logs[3:] {
		if err := l.StoreLog(e); err != nil {
			t.Fatal(err)
		}
	}
	for pass := range 2 {
		for _, want := range logs {
			var got raft.Log
			if err := l.GetLog(want.Index, &got); err != nil {
				t.Fatalf("pass %d: GetLog(%d): %v", pass, want.Index, err)
			}
			if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
				!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) ||
				!got.AppendedAt.Equal(want.AppendedAt) || got.AppendedAt.IsZero() != want.AppendedAt.IsZero() {
				t.Fatalf("pass %d: GetLog(%d) = %+v, want %+v", pass, want.Index, got, *want)
			}
		}
		if f, _ := l.FirstIndex(); f != 5 {
			t.Fatalf("FirstIndex = %d", f)
		}
		if la, _ := l.LastIndex(); la != 10 {
			t.Fatalf("LastIndex = %d", la)
		}
		l = reopen(t, l)
	}
}

func TestEmpty(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	check(t, l, 0, 0, nil)
	if err := l.StoreLogs(nil); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteRange(1, 10); err != nil {
		t.Fatal(err)
	}
	if !l.IsMonotonic() {
		t.Fatal("not monotonic")
	}
	l = reopen(t, l)
	check(t, l, 0, 0, nil)
	if n := len(segFiles(t, l.dir)); n != 0 {
		t.Fatalf("%d segment files", n)
	}
}

func TestStoreLogsRefused(t *testing.T) {
	l := open(t, t.TempDir(), Options{NoSync: true})
	store(t, l, 10, 20, 1)
	before := dirImage(t, l.dir)
	for _, tc := range []struct {
		name string
		es   []*raft.Log
	}{
		{"not consecutive", []*raft.Log{entry(21, 1), entry(23, 1)}},
		{"repeated index", []*raft.Log{entry(21, 1), entry(21, 1)}},
		{"descending", []*raft.Log{entry(22, 1), entry(21, 1)}},
		{"last again", []*raft.Log{entry(20, 2)}},
		{"below last", []*raft.Log{entry(15, 2), entry(16, 2)}},
		{"below first", []*raft.Log{entry(3, 2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := l.StoreLogs(tc.es); err == nil || !strings.HasPrefix(err.Error(), "wal: ") {
				t.Fatalf("StoreLogs = %v, want a wal error", err)
			}
			check(t, l, 10, 20, term(1))
			if !maps.Equal(before, dirImage(t, l.dir)) {
				t.Fatal("files changed")
			}
		})
	}
	store(t, l, 21, 22, 1) // still takes the right next index
	check(t, l, 10, 22, term(1))
}

func TestStoreLogsAnyFirstIndex(t *testing.T) {
	l := open(t, t.TempDir(), Options{NoSync: true})
	if err := l.StoreLog(entry(0, 1)); err == nil {
		t.Fatal("index 0 taken")
	}
	store(t, l, 1<<40, 1<<40+3, 1)
	l = reopen(t, l)
	check(t, l, 1<<40, 1<<40+3, term(1))
}

func TestGap(t *testing.T) {
	l := open(t, t.TempDir(), Options{NoSync: true})
	store(t, l, 1, 10, 1)
	store(t, l, 20, 25, 2)
	for pass := range 2 {
		if n := len(segFiles(t, l.dir)); n != 2 {
			t.Fatalf("pass %d: %d segment files, want 2", pass, n)
		}
		if _, err := os.Stat(filepath.Join(l.dir, segName(20))); err != nil {
			t.Fatal(err)
		}
		if f, _ := l.FirstIndex(); f != 1 {
			t.Fatalf("FirstIndex = %d", f)
		}
		if la, _ := l.LastIndex(); la != 25 {
			t.Fatalf("LastIndex = %d", la)
		}
		if n := l.Len(); n != 16 {
			t.Fatalf("Len = %d", n)
		}
		for i := uint64(1); i <= 25; i++ {
			var out raft.Log
			err := l.GetLog(i, &out)
			switch {
			case i > 10 && i < 20:
				if !errors.Is(err, raft.ErrLogNotFound) {
					t.Fatalf("GetLog(%d) in the gap = %v", i, err)
				}
			case i <= 10:
				checkEntry(t, l, i, 1)
			default:
				checkEntry(t, l, i, 2)
			}
		}
		l = reopen(t, l)
	}
	store(t, l, 26, 27, 2)
	checkEntry(t, l, 27, 2)
}

func TestSegmentRoll(t *testing.T) {
	l := open(t, t.TempDir(), Options{NoSync: true, SegmentSize: 200})
	store(t, l, 1, 500, 1)
	n := len(segFiles(t, l.dir))
	if n < 50 {
		t.Fatalf("%d segment files for 500 entries of ~40 bytes in 200-byte segments", n)
	}
	check(t, l, 1, 500, term(1))
	l = reopen(t, l)
	check(t, l, 1, 500, term(1))
	store(t, l, 501, 520, 1)
	l = reopen(t, l)
	check(t, l, 1, 520, term(1))
}

func TestDeletePrefix(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segSize int64
		hi      uint64 // DeleteRange(1, hi) of 1..100
	}{
		{"inside one segment", 0, 40},
		{"first entry only", 0, 1},
		{"all but last", 0, 99},
		{"across segments", 300, 57},
		{"at a segment end", 300, 0}, // hi: the last index of the third segment
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, t.TempDir(), Options{NoSync: true, SegmentSize: tc.segSize})
			store(t, l, 1, 100, 1)
			hi := tc.hi
			if hi == 0 {
				hi = l.segs[2].last()
			}
			before := len(segFiles(t, l.dir))
			if err := l.DeleteRange(1, hi); err != nil {
				t.Fatal(err)
			}
			for pass := range 2 {
				check(t, l, hi+1, 100, term(1))
				files := segFiles(t, l.dir)
				if tc.segSize > 0 && len(files) >= before {
					t.Fatalf("pass %d: %d files before, %d after", pass, before, len(files))
				}
				// No file left whose entries are all deleted.
				if base, _ := parseSegName(filepath.Base(files[0])); base > hi+1 {
					t.Fatalf("pass %d: first file %s starts past %d", pass, files[0], hi+1)
				}
				if len(files) > 1 {
					if base, _ := parseSegName(filepath.Base(files[1])); base <= hi+1 {
						t.Fatalf("pass %d: file %s holds only deleted entries", pass, files[0])
					}
				}
				l = reopen(t, l)
			}
			// Compaction again, then appends.
			if err := l.DeleteRange(hi+1, hi+1); err != nil {
				t.Fatal(err)
			}
			store(t, l, 101, 110, 1)
			l = reopen(t, l)
			check(t, l, hi+2, 110, term(1))
		})
	}
}

func TestDeleteSuffix(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segSize int64
		lo      uint64 // DeleteRange(lo, 100) of 1..100
	}{
		{"inside one segment", 0, 50},
		{"last entry", 0, 100},
		{"second entry", 0, 2},
		{"across segments", 300, 43},
		{"at a segment base", 300, 0}, // lo: the base of the fourth segment
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, t.TempDir(), Options{NoSync: true, SegmentSize: tc.segSize})
			store(t, l, 1, 100, 1)
			lo := tc.lo
			if lo == 0 {
				lo = l.segs[3].base
			}
			if err := l.DeleteRange(lo, 100); err != nil {
				t.Fatal(err)
			}
			check(t, l, 1, lo-1, term(1))
			store(t, l, lo, lo+20, 2)
			terms := func(i uint64) uint64 {
				if i < lo {
					return 1
				}
				return 2
			}
			check(t, l, 1, lo+20, terms)
			l = reopen(t, l)
			check(t, l, 1, lo+20, terms)
		})
	}
}

func TestDeleteSuffixPastGap(t *testing.T) {
	l := open(t, t.TempDir(), Options{NoSync: true})
	store(t, l, 1, 10, 1)
	store(t, l, 20, 30, 1)
	if err := l.DeleteRange(15, 30); err != nil {
		t.Fatal(err)
	}
	check(t, l, 1, 10, term(1))
	store(t, l, 11, 12, 2)
	l = reopen(t, l)
	check(t, l, 1, 12, func(i uint64) uint64 { return 1 + i/11 })
}

func TestDeleteAll(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lo, hi uint64
	}{
		{"exact", 1, 100},
		{"wider", 0, 1 << 62},
		{"after a prefix delete", 30, 100}, // the store's first index is 30 then
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, t.TempDir(), Options{NoSync: true, SegmentSize: 500})
			store(t, l, 1, 100, 1)
			if tc.lo > 1 {
				if err := l.DeleteRange(1, tc.lo-1); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.DeleteRange(tc.lo, tc.hi); err != nil {
				t.Fatal(err)
			}
			check(t, l, 0, 0, nil)
			if n := len(segFiles(t, l.dir)); n != 0 {
				t.Fatalf("%d segment files left", n)
			}
			l = reopen(t, l)
			check(t, l, 0, 0, nil)
			store(t, l, 1000, 1005, 3)
			l = reopen(t, l)
			check(t, l, 1000, 1005, term(3))
			// And below where it was: any index goes in an empty log.
			if err := l.DeleteRange(1000, 1005); err != nil {
				t.Fatal(err)
			}
			store(t, l, 7, 8, 4)
			l = reopen(t, l)
			check(t, l, 7, 8, term(4))
		})
	}
}

func TestDeleteRangeRefusedOrNoop(t *testing.T) {
	l := open(t, t.TempDir(), Options{NoSync: true, SegmentSize: 300})
	store(t, l, 10, 100, 1)
	before := dirImage(t, l.dir)
	for _, tc := range []struct {
		lo, hi uint64
		ok     bool
	}{
		{20, 30, false},  // a hole
		{11, 99, false},  // a hole, one entry each side
		{50, 40, true},   // reversed: empty
		{1, 9, true},     // below the log
		{101, 200, true}, // above it
	} {
		err := l.DeleteRange(tc.lo, tc.hi)
		if (err == nil) != tc.ok {
			t.Fatalf("DeleteRange(%d, %d) = %v", tc.lo, tc.hi, err)
		}
		check(t, l, 10, 100, term(1))
		if !maps.Equal(before, dirImage(t, l.dir)) {
			t.Fatalf("DeleteRange(%d, %d) changed the files", tc.lo, tc.hi)
		}
	}
}

// lastSeg returns the path of the last segment file.
func lastSeg(t *testing.T, dir string) string {
	files := segFiles(t, dir)
	return files[len(files)-1]
}

func editFile(t *testing.T, path string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTornTail(t *testing.T) {
	rec, _ := appendRecord(nil, entry(21, 1), true) // what the next append would write
	for _, tc := range []struct {
		name string
		edit func(dir string, b []byte) []byte
		last uint64 // the last index Open should find
	}{
		{"garbage", func(_ string, b []byte) []byte { return append(b, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3) }, 20},
		{"zeros", func(_ string, b []byte) []byte { return append(b, make([]byte, 4096)...) }, 20},
		{"half a record", func(_ string, b []byte) []byte { return append(b, rec[:len(rec)/2]...) }, 20},
		{"record header only", func(_ string, b []byte) []byte { return append(b, rec[:recHdrLen]...) }, 20},
		// store writes batches of 7: the batch 15..20 goes whole.
		{"flipped byte in the last record", func(_ string, b []byte) []byte { b[len(b)-3] ^= 0x10; return b }, 14},
		{"last record cut short", func(_ string, b []byte) []byte { return b[:len(b)-1] }, 14},
		{"length too large", func(_ string, b []byte) []byte {
			r := slices.Clone(rec)
			le.PutUint32(r, 1<<31)
			return append(b, r...)
		}, 20},
		{"record with the wrong index", func(_ string, b []byte) []byte {
			r, _ := appendRecord(nil, entry(30, 1), true)
			return append(b, r...)
		}, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, t.TempDir(), Options{SegmentSize: 400})
			store(t, l, 1, 20, 1)
			dir := l.dir
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			editFile(t, lastSeg(t, dir), func(b []byte) []byte { return tc.edit(dir, b) })
			l = open(t, dir, Options{SegmentSize: 400})
			if l.Repaired() <= 0 {
				t.Fatalf("Repaired = %d", l.Repaired())
			}
			check(t, l, 1, tc.last, term(1))
			store(t, l, tc.last+1, 25, 2)
			l = reopen(t, l)
			if l.Repaired() != 0 {
				t.Fatalf("Repaired = %d after a clean reopen", l.Repaired())
			}
			check(t, l, 1, 25, func(i uint64) uint64 { return 1 + i/(tc.last+1) })
		})
	}
}

// A crash right after a new segment file was created leaves it empty, or
// holding part of its first batch.
func TestTornNewSegment(t *testing.T) {
	hdr := segMagic[:]
	rec, _ := appendRecord(nil, entry(21, 1), true)
	for _, tc := range []struct {
		name     string
		contents []byte
	}{
		{"empty file", nil},
		{"part of the header", hdr[:5]},
		{"header only", hdr},
		{"header and half a record", append(slices.Clone(hdr), rec[:len(rec)/2]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, t.TempDir(), Options{})
			store(t, l, 1, 20, 1)
			dir := l.dir
			l.Close()
			if err := os.WriteFile(filepath.Join(dir, segName(21)), tc.contents, 0o600); err != nil {
				t.Fatal(err)
			}
			l = open(t, dir, Options{})
			check(t, l, 1, 20, term(1))
			if want := int64(len(tc.contents)) - int64(len(hdr)); want > 0 && l.Repaired() != want {
				t.Fatalf("Repaired = %d, want %d", l.Repaired(), want)
			}
			store(t, l, 21, 22, 2)
			l = reopen(t, l)
			check(t, l, 1, 22, func(i uint64) uint64 { return 1 + i/21 })
		})
	}
}

func TestCorruptionFailsOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		file int // which segment file to edit
		edit func([]byte) []byte
	}{
		{"flipped byte in the first segment", 0, func(b []byte) []byte { b[len(b)-5] ^= 1; return b }},
		{"flipped byte in a middle segment", 2, func(b []byte) []byte { b[headerLen+3] ^= 1; return b }},
		{"first segment cut short", 0, func(b []byte) []byte { return b[:len(b)-2] }},
		{"garbage after the first segment", 0, func(b []byte) []byte { return append(b, 0, 0, 0, 0) }},
		{"bad header in the last segment", -1, func(b []byte) []byte { b[0] = 'X'; return b }},
		{"bad header in the first segment", 0, func(b []byte) []byte { b[7] = 9; return b }},
		{"middle segment emptied", 2, func(b []byte) []byte { return b[:headerLen] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, t.TempDir(), Options{NoSync: true, SegmentSize: 300})
			store(t, l, 1, 100, 1)
			dir := l.dir
			l.Close()
			files := segFiles(t, dir)
			name := files[(tc.file+len(files))%len(files)]
			editFile(t, name, tc.edit)
			before := dirImage(t, dir)
			_, err := Open(dir, Options{})
			if err == nil || !strings.Contains(err.Error(), filepath.Base(name)) || !strings.HasPrefix(err.Error(), "wal: ") {
				t.Fatalf("Open = %v, want an error naming %s", err, filepath.Base(name))
			}
			t.Log(err)
			if !maps.Equal(before, dirImage(t, dir)) {
				t.Fatal("failed Open changed the files")
			}
			lock, err := lockDir(filepath.Join(dir, "LOCK")) // released
			if err != nil {
				t.Fatal(err)
			}
			lock.Close()
		})
	}
}

func TestSegmentOrderFailsOpen(t *testing.T) {
	l := open(t, t.TempDir(), Options{NoSync: true, SegmentSize: 300})
	store(t, l, 1, 40, 1)
	dir := l.dir
	second := l.segs[1]
	l.Close()
	// A copy of the second segment named as if it started one earlier: its
	// records do not start at its base.
	b, err := os.ReadFile(second.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, segName(second.base-1))
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), filepath.Base(bad)) {
		t.Fatalf("Open = %v, want an error naming %s", err, bad)
	}
	os.Remove(bad)

	// A segment that overlaps the one before.
	l = open(t, t.TempDir(), Options{NoSync: true})
	store(t, l, 1, 10, 1)
	store(t, l, 20, 30, 1)
	dir = l.dir
	l.Close()
	other := open(t, t.TempDir(), Options{NoSync: true})
	store(t, other, 5, 12, 1)
	other.Close()
	b, err = os.ReadFile(filepath.Join(other.dir, segName(5)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segName(5)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), segName(5)) {
		t.Fatalf("Open = %v, want an error naming %s", err, segName(5))
	}
}

func TestMetaCorruptFailsOpen(t *testing.T) {
	l := open(t, t.TempDir(), Options{NoSync: true})
	store(t, l, 1, 10, 1)
	if err := l.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	dir := l.dir
	l.Close()
	editFile(t, filepath.Join(dir, "meta"), func(b []byte) []byte { b[9] ^= 1; return b })
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "meta") {
		t.Fatalf("Open = %v", err)
	}
}

// Crashes in the middle of a delete leave files that the next Open sorts
// out: meta was written first.
func TestInterruptedDelete(t *testing.T) {
	t.Run("prefix", func(t *testing.T) {
		l := open(t, t.TempDir(), Options{SegmentSize: 300})
		store(t, l, 1, 100, 1)
		dir := l.dir
		before := dirImage(t, dir)
		if err := l.DeleteRange(1, 60); err != nil {
			t.Fatal(err)
		}
		l.Close()
		for name, b := range before { // the files, as if never removed
			if strings.HasSuffix(name, ".wal") {
				os.WriteFile(filepath.Join(dir, name), []byte(b), 0o600)
			}
		}
		l = open(t, dir, Options{SegmentSize: 300})
		check(t, l, 61, 100, term(1))
		if base, _ := parseSegName(filepath.Base(segFiles(t, dir)[0])); base > 61 || l.segs[0].last() < 61 {
			t.Fatalf("first file %d", base)
		}
	})
	t.Run("all", func(t *testing.T) {
		l := open(t, t.TempDir(), Options{SegmentSize: 300})
		store(t, l, 1, 100, 1)
		dir := l.dir
		// Meta is past the last index; the files are still there.
		if err := l.writeMeta(101); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l = open(t, dir, Options{SegmentSize: 300})
		check(t, l, 0, 0, nil)
		if n := len(segFiles(t, dir)); n != 0 {
			t.Fatalf("%d segment files left", n)
		}
		store(t, l, 3, 4, 2)
		l = reopen(t, l)
		check(t, l, 3, 4, term(2))
	})
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{NoSync: true})
	store(t, l, 1, 3, 1)
	if l2, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("second Open = %v, want in use", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	var out raft.Log
	for name, err := range map[string]error{
		"GetLog":      l.GetLog(1, &out),
		"StoreLog":    l.StoreLog(entry(4, 1)),
		"StoreLogs":   l.StoreLogs([]*raft.Log{entry(4, 1)}),
		"DeleteRange": l.DeleteRange(1, 2),
		"FirstIndex":  second(l.FirstIndex()),
		"LastIndex":   second(l.LastIndex()),
	} {
		if err == nil {
			t.Errorf("%s after Close: no error", name)
		}
	}
	l = open(t, dir, Options{})
	check(t, l, 1, 3, term(1))
}

func second[T any](_ T, err error) error { return err }

// After a failed append whose file cannot be cut back, the log refuses
// writes but still reads; reopened, it has what it had.
func TestFailedWriteStops(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	store(t, l, 1, 10, 1)
	l.segs[0].f.Close() // write, sync and truncate all fail
	if err := l.StoreLogs([]*raft.Log{entry(11, 1)}); err == nil {
		t.Fatal("append to a closed file worked")
	}
	if la, _ := l.LastIndex(); la != 10 {
		t.Fatalf("LastIndex = %d after a failed append", la)
	}
	if err := l.StoreLogs([]*raft.Log{entry(11, 1)}); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("append after a failure = %v", err)
	}
	if err := l.DeleteRange(1, 5); err == nil {
		t.Fatal("delete after a failure worked")
	}
	l.Close()
	l = open(t, l.dir, Options{})
	check(t, l, 1, 10, term(1))
	store(t, l, 11, 12, 1)
	check(t, l, 1, 12, term(1))
}

// One writer appends and compacts; readers read what is there. Run with
// -race.
func TestConcurrent(t *testing.T) {
	l := open(t, t.TempDir(), Options{NoSync: true, SegmentSize: 2048})
	const total = 3000
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	wg.Add(1)
	go func() { // the writer
		defer wg.Done()
		defer done.Store(true)
		next := uint64(1)
		for batch := 0; next <= total; batch++ {
			var es []*raft.Log
			for n := min(1+batch%8, total+1-int(next)); n > 0; n-- {
				es = append(es, entry(next, 1))
				next++
			}
			if err := l.StoreLogs(es); err != nil {
				errs <- err
				return
			}
			if batch%40 == 39 {
				first, _ := l.FirstIndex()
				if err := l.DeleteRange(first, next-1-100); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	var reads atomic.Int64
	for r := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			var out raft.Log
			for !done.Load() || reads.Load() < 1000 {
				first, _ := l.FirstIndex()
				last, _ := l.LastIndex()
				if last == 0 {
					continue
				}
				i := first + rng.Uint64N(last-first+1)
				err := l.GetLog(i, &out)
				if errors.Is(err, raft.ErrLogNotFound) {
					if now, _ := l.FirstIndex(); now > i {
						continue // compacted meanwhile
					}
				}
				if err != nil {
					errs <- fmt.Errorf("GetLog(%d) in %d..%d: %w", i, first, last, err)
					return
				}
				if want := entry(i, 1); out.Index != i || !bytes.Equal(out.Data, want.Data) {
					errs <- fmt.Errorf("GetLog(%d) = %d %q", i, out.Index, out.Data)
					return
				}
				reads.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	first, _ := l.FirstIndex()
	check(t, l, first, total, term(1))
	l = reopen(t, l)
	check(t, l, first, total, term(1))
}

// A StoreLogs is kept whole or not at all: a crash that leaves some of a
// batch's records whole but not its last one loses the whole batch (the
// cluster's bootstrap writes the configuration and the cluster id in one).
func TestTornBatch(t *testing.T) {
	unmarked, _ := appendRecord(nil, entry(21, 2), false)
	for _, tc := range []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"last record cut short", func(b []byte) []byte { return b[:len(b)-2] }},
		{"last record missing", func(b []byte) []byte {
			last, _ := appendRecord(nil, entry(23, 2), true)
			return b[:len(b)-len(last)]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, t.TempDir(), Options{})
			store(t, l, 1, 20, 1)
			if err := l.StoreLogs([]*raft.Log{entry(21, 2), entry(22, 2), entry(23, 2)}); err != nil {
				t.Fatal(err)
			}
			dir := l.dir
			l.Close()
			editFile(t, lastSeg(t, dir), tc.edit)
			l = open(t, dir, Options{})
			check(t, l, 1, 20, term(1))
			if l.Repaired() <= 0 {
				t.Fatalf("Repaired = %d", l.Repaired())
			}
		})
	}
	t.Run("whole records without the batch's end", func(t *testing.T) {
		l := open(t, t.TempDir(), Options{})
		store(t, l, 1, 20, 1)
		dir := l.dir
		l.Close()
		editFile(t, lastSeg(t, dir), func(b []byte) []byte { return append(b, unmarked...) })
		l = open(t, dir, Options{})
		check(t, l, 1, 20, term(1))
		if l.Repaired() != int64(len(unmarked)) {
			t.Fatalf("Repaired = %d, want %d", l.Repaired(), len(unmarked))
		}
	})
	t.Run("in an earlier segment it is corruption", func(t *testing.T) {
		l := open(t, t.TempDir(), Options{SegmentSize: 100})
		store(t, l, 1, 20, 1)
		dir := l.dir
		l.Close()
		files := segFiles(t, dir)
		editFile(t, files[0], func(b []byte) []byte { return append(b, unmarked...) })
		if _, err := Open(dir, Options{SegmentSize: 100}); err == nil || !strings.Contains(err.Error(), files[0]) {
			t.Fatalf("open: %v, want an error naming %s", err, files[0])
		}
	})
}

// Size counts the segment files' bytes: it grows with appends and shrinks
// when a prefix delete removes segments.
func TestSize(t *testing.T) {
	l := open(t, t.TempDir(), Options{SegmentSize: 200})
	if n := l.Size(); n != 0 {
		t.Fatalf("empty log: Size %d", n)
	}
	store(t, l, 1, 40, 1)
	var files int64
	for _, f := range segFiles(t, l.dir) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		files += fi.Size()
	}
	if n := l.Size(); n != files {
		t.Fatalf("Size %d, the files hold %d", n, files)
	}
	if err := l.DeleteRange(1, 30); err != nil {
		t.Fatal(err)
	}
	if n := l.Size(); n >= files || n <= 0 {
		t.Fatalf("Size %d after a prefix delete, was %d", n, files)
	}
}

// appendLogs Appends lo..hi in term, in batches of up to three.
func appendLogs(t testing.TB, l *Log, lo, hi, term uint64) {
	t.Helper()
	for i := lo; i <= hi; {
		var es []*raft.Log
		for ; i <= hi && len(es) < 3; i++ {
			es = append(es, entry(i, term))
		}
		if err := l.Append(es); err != nil {
			t.Fatalf("Append %d..%d: %v", es[0].Index, i-1, err)
		}
	}
}

// Append writes without syncing: readable at once, durable after Sync; an
// Append that starts a segment, a StoreLogs, a DeleteRange and Close each
// sync what Append left, so only the last segment holds unsynced records.
func TestAppendSync(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{SegmentSize: 512})
	if got, err := l.Sync(); err != nil || got != 0 {
		t.Fatalf("Sync of an empty log = %d, %v", got, err)
	}
	appendLogs(t, l, 1, 4, 1)
	check(t, l, 1, 4, term(1))
	if !l.dirty {
		t.Fatal("Append left nothing to sync")
	}
	if got, err := l.Sync(); err != nil || got != 4 {
		t.Fatalf("Sync = %d, %v; want 4", got, err)
	}
	if l.dirty {
		t.Fatal("dirty after Sync")
	}
	if got, err := l.Sync(); err != nil || got != 4 { // nothing new
		t.Fatalf("second Sync = %d, %v; want 4", got, err)
	}

	// Across segment rolls: the segment left behind is synced by the
	// Append that starts the next.
	appendLogs(t, l, 5, 60, 1)
	if len(l.segs) < 3 {
		t.Fatalf("%d segments; the test wants rolls", len(l.segs))
	}
	check(t, l, 1, 60, term(1))

	store(t, l, 61, 61, 1) // StoreLogs syncs the Appends before it
	if l.dirty {
		t.Fatal("dirty after StoreLogs")
	}
	appendLogs(t, l, 62, 70, 2)
	if err := l.DeleteRange(66, 70); err != nil { // a suffix, over unsynced records
		t.Fatal(err)
	}
	if l.dirty {
		t.Fatal("dirty after DeleteRange")
	}
	appendLogs(t, l, 66, 68, 3)
	terms := func(i uint64) uint64 {
		switch {
		case i >= 66:
			return 3
		case i >= 62:
			return 2
		}
		return 1
	}
	check(t, l, 1, 68, terms)
	l = reopen(t, l) // Close syncs
	check(t, l, 1, 68, terms)
	if l.Repaired() != 0 {
		t.Fatalf("Repaired = %d after a clean close", l.Repaired())
	}
}

// A failed sync of appended records makes the log refuse writes: what
// reached the disk is unknown.
func TestAppendSyncFailureStops(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	store(t, l, 1, 5, 1)
	appendLogs(t, l, 6, 7, 1)
	l.segs[0].f.Close() // the sync fails
	if _, err := l.Sync(); err == nil {
		t.Fatal("Sync of a closed file worked")
	}
	if err := l.Append([]*raft.Log{entry(8, 1)}); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("Append after a failed Sync = %v", err)
	}
	if _, err := l.Sync(); err == nil {
		t.Fatal("Sync after a failed Sync worked")
	}
}

// One goroutine appends, another syncs, others read: a Sync never claims
// an index that was not appended, and its answers never go back. Run with
// -race.
func TestAppendSyncConcurrent(t *testing.T) {
	l := open(t, t.TempDir(), Options{SegmentSize: 4096})
	const total = 2000
	var started, appended atomic.Uint64 // before and after each Append
	done := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := uint64(1); i <= total; i++ {
			started.Store(i)
			if err := l.Append([]*raft.Log{entry(i, 1)}); err != nil {
				errs <- err
				return
			}
			appended.Store(i)
			if i%500 == 0 {
				if err := l.DeleteRange(1, i-100); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		var prev uint64
		for {
			select {
			case <-done:
				return
			default:
			}
			got, err := l.Sync()
			if err != nil {
				errs <- err
				return
			}
			if got < prev || got > started.Load() {
				errs <- fmt.Errorf("Sync = %d after %d, with %d appended", got, prev, started.Load())
				return
			}
			prev = got
		}
	}()
	go func() {
		defer wg.Done()
		var out raft.Log
		for {
			select {
			case <-done:
				return
			default:
			}
			if last := appended.Load(); last > 0 {
				if err := l.GetLog(last, &out); err != nil || out.Index != last {
					errs <- fmt.Errorf("GetLog(%d) = %d, %v", last, out.Index, err)
					return
				}
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, err := l.Sync(); err != nil || got != total {
		t.Fatalf("final Sync = %d, %v", got, err)
	}
	first, _ := l.FirstIndex()
	l = reopen(t, l)
	check(t, l, first, total, term(1))
}

// After a simulated power cut, what was synced before it survives and
// nothing else: not the appends that were not synced, nor anything written
// or "synced" after the cut, in the last segment or in new ones.
func TestSimulatePowerCut(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{SegmentSize: 512})
	store(t, l, 1, 5, 1) // synced
	appendLogs(t, l, 6, 7, 1)
	if got, err := l.Sync(); err != nil || got != 7 {
		t.Fatalf("Sync = %d, %v", got, err)
	}
	appendLogs(t, l, 8, 9, 1) // not synced: lost
	l.SimulatePowerCut()
	appendLogs(t, l, 10, 40, 1) // after the cut, across new segments: lost
	store(t, l, 41, 41, 1)
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	check(t, l, 1, 41, term(1)) // the running log sees it all
	l = reopen(t, l)
	check(t, l, 1, 7, term(1))
	// It goes on from there.
	store(t, l, 8, 9, 2)
	check(t, l, 1, 9, func(i uint64) uint64 {
		if i >= 8 {
			return 2
		}
		return 1
	})
}
