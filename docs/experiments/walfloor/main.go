// walfloor is an experiment, not part of raftplane: the leader's commit
// latency (Apply to its future done) of a 3-node hashicorp/raft cluster in
// one process over loopback TCP at 1,000 entries/s, with raft-boltdb or
// hashicorp/raft-wal as the log store (the stable store is bolt either
// way), to see what a write-ahead-log store would give S2 before moving
// raftplane's data folder to one (docs/performance.md, "Cross-node
// latency: commit notices"). Its own module, so raftplane does not depend
// on raft-wal:
//
//	cd docs/experiments/walfloor && go run . -store bolt && go run . -store wal
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
)

type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) interface{}         { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnap{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnap struct{}

func (nopSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnap) Release()                          {}

func main() {
	store := flag.String("store", "bolt", "bolt or wal")
	n := flag.Int("n", 5000, "entries")
	flag.Parse()
	root, err := os.MkdirTemp("", "walfloor-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(root)
	var rs []*raft.Raft
	var servers []raft.Server
	type parts struct {
		logs   raft.LogStore
		stable raft.StableStore
		trans  *raft.NetworkTransport
	}
	var ps []parts
	for i := 0; i < 3; i++ {
		dir := filepath.Join(root, fmt.Sprint(i))
		if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o755); err != nil {
			panic(err)
		}
		bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
		if err != nil {
			panic(err)
		}
		var logs raft.LogStore = bolt
		if *store == "wal" {
			w, err := wal.Open(filepath.Join(dir, "wal"))
			if err != nil {
				panic(err)
			}
			logs = w
		}
		cache, err := raft.NewLogCache(512, logs)
		if err != nil {
			panic(err)
		}
		trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, io.Discard)
		if err != nil {
			panic(err)
		}
		ps = append(ps, parts{cache, bolt, trans})
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint("n", i)), Address: trans.LocalAddr()})
	}
	for i, p := range ps {
		rc := raft.DefaultConfig()
		rc.LocalID = servers[i].ID
		rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 250*time.Millisecond
		rc.CommitTimeout, rc.MaxAppendEntries = 5*time.Millisecond, 1024
		rc.Logger = hclog.NewNullLogger()
		if i == 0 {
			if err := raft.BootstrapCluster(rc, p.logs, p.stable, raft.NewInmemSnapshotStore(), p.trans, raft.Configuration{Servers: servers}); err != nil {
				panic(err)
			}
		}
		r, err := raft.NewRaft(rc, nopFSM{}, p.logs, p.stable, raft.NewInmemSnapshotStore(), p.trans)
		if err != nil {
			panic(err)
		}
		rs = append(rs, r)
	}
	var leader *raft.Raft
	for leader == nil {
		for _, r := range rs {
			if r.State() == raft.Leader {
				leader = r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := leader.Barrier(10 * time.Second).Error(); err != nil {
		panic(err)
	}
	done := make(chan time.Duration, *n)
	data := make([]byte, 120)
	start := time.Now()
	for i := 0; i < *n; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		t := time.Now()
		f := leader.Apply(data, 10*time.Second)
		go func() {
			if err := f.Error(); err != nil {
				panic(err)
			}
			done <- time.Since(t)
		}()
	}
	var lat []time.Duration
	for i := 0; i < *n; i++ {
		lat = append(lat, <-done)
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	fmt.Printf("store=%s n=%d leader commit p50 %v p90 %v p99 %v max %v\n", *store, *n, q(.5), q(.9), q(.99), lat[len(lat)-1])
	for _, r := range rs {
		if err := r.Shutdown().Error(); err != nil {
			panic(err)
		}
	}
}
