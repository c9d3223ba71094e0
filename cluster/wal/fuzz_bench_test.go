package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// validSegment returns a segment file of entries 1..n, without its header.
func validSegment(t testing.TB, n uint64) []byte {
	l := open(t, t.TempDir(), Options{NoSync: true})
	store(t, l, 1, n, 1)
	l.StoreLog(&raft.Log{Index: n + 1, Term: 2, Type: raft.LogNoop, Extensions: []byte("x")})
	l.Close()
	b, err := os.ReadFile(filepath.Join(l.dir, segName(1)))
	if err != nil {
		t.Fatal(err)
	}
	return b[headerLen:]
}

// FuzzOpen feeds Open segment files that may be torn or corrupt: it must
// refuse them or give a log whose every entry reads back, and that takes
// appends.
func FuzzOpen(f *testing.F) {
	good := validSegment(f, 5)
	f.Add(good, true)
	f.Add(good, false)
	f.Add(good[:len(good)-3], true)
	f.Add(append(good[:len(good):len(good)], 1, 2, 3), true)
	flipped := append([]byte(nil), good...)
	flipped[12] ^= 0x40
	f.Add(flipped, true)
	f.Add([]byte{}, true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, data []byte, header bool) {
		dir := t.TempDir()
		img := data
		if header {
			img = append(segMagic[:], data...)
		}
		if err := os.WriteFile(filepath.Join(dir, segName(1)), img, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(dir, Options{NoSync: true})
		if err != nil {
			return
		}
		defer l.Close()
		first, _ := l.FirstIndex()
		last, _ := l.LastIndex()
		n := 0
		if first != 0 {
			n = int(last - first + 1)
		}
		if (first == 0) != (last == 0) || first > last || l.Len() != n {
			t.Fatalf("first %d, last %d, len %d", first, last, l.Len())
		}
		var out raft.Log
		for i := first; i <= last && first != 0; i++ {
			if err := l.GetLog(i, &out); err != nil || out.Index != i {
				t.Fatalf("GetLog(%d) = %d, %v", i, out.Index, err)
			}
		}
		if err := l.GetLog(last+1, &out); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(last+1) = %v", err)
		}
		if err := l.StoreLog(entry(last+1, 9)); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err = Open(dir, Options{NoSync: true})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l.Close()
		if l.Repaired() != 0 {
			t.Fatalf("Repaired = %d on reopen", l.Repaired())
		}
		checkEntry(t, l, last+1, 9)
	})
}

func BenchmarkStoreLogs(b *testing.B) {
	for _, batch := range []int{1, 64} {
		for _, noSync := range []bool{true, false} {
			b.Run(fmt.Sprintf("batch=%d/nosync=%t", batch, noSync), func(b *testing.B) {
				l := open(b, b.TempDir(), Options{NoSync: noSync})
				es := make([]*raft.Log, batch)
				for i := range es {
					es[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: make([]byte, 120), AppendedAt: time.Now()}
				}
				b.SetBytes(int64(batch * 120))
				b.ReportAllocs()
				next := uint64(1)
				for b.Loop() {
					for _, e := range es {
						e.Index = next
						next++
					}
					if err := l.StoreLogs(es); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int(next-1)), "ns/entry")
			})
		}
	}
}

func BenchmarkGetLog(b *testing.B) {
	const n = 100000
	l := open(b, b.TempDir(), Options{NoSync: true, SegmentSize: 1 << 20})
	es := make([]*raft.Log, 0, 1000)
	for i := uint64(1); i <= n; i++ {
		es = append(es, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: make([]byte, 120), AppendedAt: time.Now()})
		if len(es) == cap(es) {
			if err := l.StoreLogs(es); err != nil {
				b.Fatal(err)
			}
			es = es[:0]
		}
	}
	b.ReportAllocs()
	var out raft.Log
	i := uint64(0)
	for b.Loop() {
		i = i*7919%n + 1
		if err := l.GetLog(i, &out); err != nil {
			b.Fatal(err)
		}
	}
}
