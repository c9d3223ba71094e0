package cluster

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/gossip"
)

// BenchmarkRaftFloor measures what hashicorp/raft and the log store give on
// this machine with none of raftplane's code in the way: three nodes in
// this process over loopback TCP, stores opened as a node opens them
// (OpenStores: cluster/wal behind raft's log cache, raft.db's stable store), raftplane's Raft timings, a trivial FSM;
// the leader applies one 120-byte entry every millisecond (S2's rate) and
// the figure is the time from that Apply to a follower's FSM applying the
// entry (p50, p99; one clock). With and without fsync, with and without
// commit notices (notice.go), with fsync with and without the leader's
// parallel append (asynclog.go): the floor S2's cross-node latency stands
// on.
//
//	go test -run '^$' -bench RaftFloor -benchtime 5000x ./cluster/
func BenchmarkRaftFloor(b *testing.B) {
	// Follower commits without fsync go without notices: a leader sends
	// none to followers that take their own (it learns that from gossip).
	// With fsync they go with the leader's durable notices, handed to the
	// followers by a function call here (a node posts them on its internal
	// RPC, one way).
	for _, c := range []struct{ sync, notices, parallel, commits bool }{
		{true, true, true, true}, {true, true, true, false}, {true, true, false, false}, {true, false, false, false},
		{false, false, false, true}, {false, true, false, false}, {false, false, false, false},
	} {
		name := fmt.Sprintf("fsync=%t/notices=%t/parallel=%t/followercommits=%t", c.sync, c.notices, c.parallel, c.commits)
		b.Run(name, func(b *testing.B) { raftFloor(b, !c.sync, c.notices, c.parallel, c.commits) })
	}
}

// floorFSM records when it applied each entry (the entry's first 8 bytes
// are its sequence number).
type floorFSM struct {
	mu      sync.Mutex
	applied []time.Time
	notices *commitNotices // nil: off
	durable *asyncLog      // nil: no parallel append
}

func (f *floorFSM) Apply(l *raft.Log) interface{} {
	if f.durable != nil {
		if err := f.durable.waitDurable(l.Index); err != nil {
			panic(err)
		}
	}
	if l.Type == raft.LogCommand && len(l.Data) >= 8 {
		seq := binary.BigEndian.Uint64(l.Data)
		f.mu.Lock()
		if seq < uint64(len(f.applied)) {
			f.applied[seq] = time.Now()
		}
		f.mu.Unlock()
	}
	if f.notices != nil {
		f.notices.committed(l.Index, l.Term)
	}
	return nil
}

func (f *floorFSM) Snapshot() (raft.FSMSnapshot, error) { return floorSnapshot{}, nil }
func (f *floorFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type floorSnapshot struct{}

func (floorSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (floorSnapshot) Release()                          {}

func raftFloor(b *testing.B, noSync, notices, parallel, commits bool) {
	const n = 3
	stop := make(chan struct{})
	var wg sync.WaitGroup
	type member struct {
		r     *raft.Raft
		fsm   *floorFSM
		trans *raft.NetworkTransport
		st    *Stores
		gate  *ackGate
		fc    *followerCommits
	}
	ms := make([]*member, n)
	var servers []raft.Server
	for i := range ms {
		st, err := OpenStores(b.TempDir(), noSync, nil)
		if err != nil {
			b.Fatal(err)
		}
		trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		ms[i] = &member{fsm: &floorFSM{applied: make([]time.Time, b.N)}, trans: trans, st: st}
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint("f", i)), Address: trans.LocalAddr()})
	}
	cfg := DefaultConfig()
	for i, m := range ms {
		rc := raft.DefaultConfig()
		rc.LocalID = servers[i].ID
		rc.HeartbeatTimeout, rc.ElectionTimeout = cfg.HeartbeatTimeout, cfg.ElectionTimeout
		rc.LeaderLeaseTimeout, rc.CommitTimeout = cfg.LeaderLeaseTimeout, cfg.CommitTimeout
		rc.MaxAppendEntries = cfg.MaxAppendEntries
		rc.Logger = newHCLog(slog.New(slog.DiscardHandler), "raft")
		var base raft.LogStore = m.st.WAL
		if parallel {
			m.fsm.durable = newAsyncLog(m.st.WAL, nil)
			base = m.fsm.durable
		}
		logs, err := raft.NewLogCache(logCacheSize, base) // as a node does: one cache, over the bare log
		if err != nil {
			b.Fatal(err)
		}
		if notices {
			m.fsm.notices = newCommitNotices(m.trans, rc, slog.New(slog.DiscardHandler), stop, &wg)
		}
		var fc *followerCommits
		if commits {
			fc = newFollowerCommits(rc.LocalID, !noSync)
			m.fc = fc
		}
		trans, gate := raftTransport(guardedTransport{m.trans, &heartbeats{}}, m.fsm.notices, m.fsm.durable, fc)
		m.gate = gate
		if i == 0 {
			if err := raft.BootstrapCluster(rc, logs, m.st.Bolt, raft.NewInmemSnapshotStore(), m.trans,
				raft.Configuration{Servers: servers}); err != nil {
				b.Fatal(err)
			}
		}
		if m.r, err = raft.NewRaft(rc, m.fsm, logs, m.st.Bolt, raft.NewInmemSnapshotStore(), trans); err != nil {
			b.Fatal(err)
		}
		if notices {
			m.fsm.notices.raft.Store(m.r)
		}
		if notices && commits && m.fsm.durable != nil { // durable notices, as Node.Open wires them
			c := m.fsm.notices
			c.disk, c.post = m.fsm.durable, func(addr raft.ServerAddress, body []byte) error {
				d, ok := decodeDurableNotice(body)
				for _, o := range ms {
					if ok && o.trans.LocalAddr() == addr && o.fc != nil {
						o.fc.leaderDurable(d)
					}
				}
				return nil
			}
			synced := c.synced
			m.fsm.durable.onDurable.Store(&synced)
		}
		if fc != nil {
			fc.raft.Store(m.r)
		}
	}
	defer func() {
		close(stop)
		for _, m := range ms {
			_ = m.r.Shutdown().Error()
		}
		wg.Wait()
		for _, m := range ms {
			if m.gate != nil {
				m.gate.close()
			}
			if m.fsm.durable != nil {
				m.fsm.durable.close()
			}
			m.st.Close()
		}
	}()
	var leader *member
	for deadline := time.Now().Add(30 * time.Second); leader == nil; {
		for _, m := range ms {
			if m.r.State() == raft.Leader {
				leader = m
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("no leader within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := leader.r.Barrier(10 * time.Second).Error(); err != nil {
		b.Fatal(err)
	}
	if c := leader.fsm.notices; c != nil && c.post != nil { // what the leader loop learns from gossip
		var members []gossip.Member
		for _, sv := range servers {
			members = append(members, gossip.Member{Meta: gossip.Meta{ID: string(sv.ID), DurableCommits: true}})
		}
		c.setOwnCommits(members, raft.Configuration{Servers: servers})
	}

	sent := make([]time.Time, b.N)
	futures := make([]raft.ApplyFuture, b.N)
	data := make([]byte, 120)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if d := time.Until(start.Add(time.Duration(i) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		buf := slices.Clone(data)
		binary.BigEndian.PutUint64(buf, uint64(i))
		sent[i] = time.Now()
		futures[i] = leader.r.Apply(buf, 10*time.Second)
	}
	for i, f := range futures {
		if err := f.Error(); err != nil {
			b.Fatalf("entry %d: %v", i, err)
		}
	}
	b.StopTimer()
	var lat []time.Duration
	deadline := time.Now().Add(30 * time.Second)
	for _, m := range ms {
		if m == leader {
			continue
		}
		for i := range b.N {
			for {
				m.fsm.mu.Lock()
				at := m.fsm.applied[i]
				m.fsm.mu.Unlock()
				if !at.IsZero() {
					lat = append(lat, at.Sub(sent[i]))
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("a follower did not apply entry %d within 30s", i)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
