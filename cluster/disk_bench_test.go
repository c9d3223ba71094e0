package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// What one durable log append costs on this machine's disk, three ways,
// for the cross-node latency analysis (README, Performance: S2): a bare
// append + fdatasync of a 200-byte record (the least a log can do per
// batch), the node's log store's StoreLogs of one 200-byte entry
// (cluster/wal: one write, one fdatasync) and raft-boltdb's (the log store
// through v0.3.0: a bbolt transaction, whose commit writes its pages and syncs
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

func BenchmarkDurableAppend_WALStoreLogs(b *testing.B) {
	stores, err := OpenStores(b.TempDir(), false, nil) // the node's own options
	if err != nil {
		b.Fatal(err)
	}
	defer stores.Close()
	benchStoreLogs(b, stores.WAL)
}

func BenchmarkDurableAppend_BoltStoreLogs(b *testing.B) {
	stores, err := OpenStores(b.TempDir(), false, nil) // raft.db as v0.3 opened it
	if err != nil {
		b.Fatal(err)
	}
	defer stores.Close()
	benchStoreLogs(b, stores.Bolt)
}

func benchStoreLogs(b *testing.B, store raft.LogStore) {
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
	reportDurations(b, d)
}

// reportDurations reports the p50 and p99 of d.
func reportDurations(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkDurableCommit is the disk's part of a commit on this machine,
// with no Raft, network or CPU work in it: three files on the data disk
// (three nodes sharing it, as the load tools run them), one 200-byte
// record per millisecond (S2's rate). hashicorp/raft's leader stores a
// batch and only then sends it to the followers, which store it before they
// answer, so its commit waits for two fdatasyncs in a row: the leader's,
// then the faster follower's ("sequential"). A Raft that writes on the
// leader while it sends (the Raft thesis, 10.2.1; etcd does) waits for the
// second fastest of three started together ("parallel"). p50 and p99 of
// the time from the record's start to its commit:
//
//	go test -run '^$' -bench 'DurableCommit' -benchtime 3000x ./cluster/
func BenchmarkDurableCommit(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		name := "sequential"
		if parallel {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			var fs [3]*os.File
			for i := range fs {
				f, err := os.Create(filepath.Join(dir, fmt.Sprint("node", i)))
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				fs[i] = f
			}
			rec := make([]byte, 200)
			store := func(f *os.File) {
				if _, err := f.Write(rec); err != nil {
					b.Error(err)
				}
				if err := syscall.Fdatasync(int(f.Fd())); err != nil {
					b.Error(err)
				}
			}
			done := make(chan struct{}, 3)
			async := func(f *os.File) { go func() { store(f); done <- struct{}{} }() }
			d := make([]time.Duration, 0, b.N)
			next := time.Now()
			b.ResetTimer()
			for range b.N {
				time.Sleep(time.Until(next))
				next = next.Add(time.Millisecond)
				start := time.Now()
				if parallel {
					async(fs[0])
					async(fs[1])
					async(fs[2])
					<-done
					<-done // committed: two of three durable
				} else {
					store(fs[0])
					async(fs[1])
					async(fs[2])
					<-done // committed: the leader and one follower
				}
				d = append(d, time.Since(start))
				<-done // the third, before the next record
			}
			b.StopTimer()
			reportDurations(b, d)
		})
	}
}
