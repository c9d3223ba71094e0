package cluster

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// What one durable log append costs on this machine's disk, two ways, for
// the cross-node latency analysis (README, Performance: S2): a bare
// append + fdatasync of a 200-byte record (what a write-ahead log needs per
// batch) and raft-boltdb's StoreLogs of one 200-byte entry (what the node
// does: a bbolt transaction, whose commit writes its pages and syncs
// twice). Each reports p50 and p99 besides the mean:
//
//	go test -run '^$' -bench 'Durable' -benchtime 3000x ./cluster/

func BenchmarkDurableAppend_Fdatasync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "wal"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := make([]byte, 200)
	reportQuantiles(b, func() {
		if _, err := f.Write(rec); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkDurableAppend_BoltStoreLogs(b *testing.B) {
	stores, err := OpenStores(b.TempDir(), false, nil) // the node's own options
	if err != nil {
		b.Fatal(err)
	}
	defer stores.Close()
	store := stores.Bolt
	data := make([]byte, 200)
	var index uint64
	reportQuantiles(b, func() {
		index++
		l := &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
		if err := store.StoreLogs([]*raft.Log{l}); err != nil {
			b.Fatal(err)
		}
	})
}

// reportQuantiles runs op b.N times and reports the p50 and p99 of its
// durations (the disk's tail is what a commit's p99 waits for).
func reportQuantiles(b *testing.B, op func()) {
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		op()
		d = append(d, time.Since(t))
	}
	b.StopTimer()
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}
