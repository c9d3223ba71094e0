package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"

	"github.com/hashicorp/raft"
)

// benchPublishes returns n publish commands with 120-byte arguments.
func benchPublishes(n int) []Command {
	args := append(append([]byte(`["`), bytes.Repeat([]byte{'x'}, 116)...), `"]`...)
	cmds := make([]Command, n)
	for i := range cmds {
		cmds[i] = Command{
			Kind: KindPublish, Time: t0, Hub: "chat",
			Audience: AudienceGroup, Key: "room-42", Target: "receiveMessage", Args: args,
		}
	}
	return cmds
}

func BenchmarkEncodeBatch(b *testing.B) {
	cmds := benchPublishes(64)
	b.SetBytes(int64(len(EncodeBatch(cmds))))
	b.ReportAllocs()
	for b.Loop() {
		EncodeBatch(cmds)
	}
}

func BenchmarkDecodeBatch(b *testing.B) {
	data := EncodeBatch(benchPublishes(64))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeBatch(data); err != nil {
			b.Fatal(err)
		}
	}
}

// fillMachine applies entries of perEntry publishes until the cache holds
// at least n commands, and returns the next free index.
func fillMachine(b *testing.B, m *Machine, n, perEntry int) uint64 {
	b.Helper()
	data := EncodeBatch(benchPublishes(perEntry))
	idx := uint64(0)
	logs := make([]*raft.Log, 0, 256)
	for m.Position().Entries < n {
		logs = logs[:0]
		for range 256 {
			idx++
			logs = append(logs, &raft.Log{Index: idx, Type: raft.LogCommand, Data: data})
		}
		m.ApplyBatch(logs)
	}
	return idx + 1
}

// BenchmarkMachine_Apply measures one Apply call on a machine whose cache is
// full at the default limits, so every apply also evicts (the steady state).
func BenchmarkMachine_Apply(b *testing.B) {
	for _, perEntry := range []int{1, 64} {
		b.Run(fmt.Sprintf("cmds=%d", perEntry), func(b *testing.B) {
			m := newTestMachine(b, DefaultConfig())
			idx := fillMachine(b, m, DefaultConfig().CacheMaxEntries, 64)
			data := EncodeBatch(benchPublishes(perEntry))
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				m.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data})
				idx++
			}
		})
	}
}

func BenchmarkMachine_Since(b *testing.B) {
	m := newTestMachine(b, DefaultConfig())
	fillMachine(b, m, 100_000, 64)
	all, err := m.Since(m.Position().Floor, 0)
	if err != nil || len(all) != 100_000 {
		b.Fatalf("cache holds %d entries (%v), want 100000", len(all), err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	b.ReportAllocs()
	for b.Loop() {
		after := all[rng.IntN(len(all))].Cursor
		if _, err := m.Since(after, 256); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMachine_SnapshotCapture measures Snapshot, the call that holds
// the state lock (an Apply waits for it), with a full cache of 100,000
// commands and 1,000 connections; Persist, which encodes, runs without it.
func BenchmarkMachine_SnapshotCapture(b *testing.B) {
	m := newTestMachine(b, DefaultConfig())
	idx := fillMachine(b, m, 100_000, 64)
	opens := make([]Command, 1000)
	for i := range opens {
		opens[i] = Command{Kind: KindConnOpen, Hub: "h", Conn: fmt.Sprintf("c%d", i), User: "u", Node: "n", Time: 1}
	}
	m.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: EncodeBatch(opens)})
	b.ReportAllocs()
	for b.Loop() {
		s, err := m.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		s.Release()
	}
}

// benchConnPairs returns the entries of n connections that open and join a
// group, one command per entry as the cluster's batcher often writes them
// under a light load, with the field sizes of the hub's: 22-character
// connection ids, cluster command ids, a hundred rooms.
func benchConnPairs(n int, t int64) [][]*raft.Log {
	var batches [][]*raft.Log
	var logs []*raft.Log
	idx := uint64(0)
	add := func(c Command) {
		idx++
		c.ID = fmt.Sprintf("5f1c0a9e7d3b2a41-%s", strconv.FormatUint(idx, 36))
		c.Time = t
		logs = append(logs, &raft.Log{Index: idx, Type: raft.LogCommand, Data: EncodeBatch([]Command{c})})
		if len(logs) == 64 {
			batches = append(batches, logs)
			logs = nil
		}
	}
	for i := range n {
		conn := fmt.Sprintf("Qm9vbGVhbkNvbm5lY3Rp%02x", i%256) + strconv.Itoa(i)
		add(ConnOpen("chat", conn, fmt.Sprintf("user-%d", i), "node-1"))
		add(GroupJoin("chat", conn, fmt.Sprintf("room-%d", i%100)))
	}
	if len(logs) > 0 {
		batches = append(batches, logs)
	}
	return batches
}

// BenchmarkMachine_ConnMemory reports the live heap the FSM keeps per idle
// connection (its ConnOpen and GroupJoin cached, its registry entry), the
// figure that bounds a node's RSS per connection (issue 17): "fresh" while
// the dedup window still holds the two command ids, "idle" once a later
// command has moved time past it.
func BenchmarkMachine_ConnMemory(b *testing.B) {
	const n = 10_000
	for _, idle := range []bool{false, true} {
		name := "fresh"
		if idle {
			name = "idle"
		}
		b.Run(name, func(b *testing.B) {
			var perConn float64
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				// The entries are built after the first reading and
				// garbage by the second: both see the machine alone.
				var ms0, ms1 runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms0)
				batches := benchConnPairs(n, t0)
				last := uint64(2 * n)
				b.StartTimer()
				m := newTestMachine(b, DefaultConfig())
				for _, logs := range batches {
					m.ApplyBatch(logs)
				}
				if idle {
					late := EncodeBatch([]Command{at(EventsDone(Cursor{Index: last}), t0+2*DedupWindow.Nanoseconds())})
					m.Apply(&raft.Log{Index: last + 1, Type: raft.LogCommand, Data: late})
				}
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&ms1)
				if got := m.ConnectionCount(); got != n {
					b.Fatalf("%d connections, want %d", got, n)
				}
				runtime.KeepAlive(m)
				perConn = float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc)) / n
				b.StartTimer()
			}
			b.ReportMetric(perConn, "B/conn")
		})
	}
}

// BenchmarkMachine_GroupChurn measures a join and a leave of a connection
// already in groups others: its groups are a sorted slice, and a
// connection in thousands of groups must stay cheap to change.
func BenchmarkMachine_GroupChurn(b *testing.B) {
	for _, others := range []int{0, 10, 3000} {
		b.Run(fmt.Sprintf("groups=%d", others), func(b *testing.B) {
			m := newTestMachine(b, DefaultConfig())
			cmds := []Command{ConnOpen("h", "c", "", "n")}
			for i := range others {
				cmds = append(cmds, GroupJoin("h", "c", fmt.Sprintf("g%05d", i)))
			}
			m.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: EncodeBatch(cmds)})
			data := EncodeBatch([]Command{GroupJoin("h", "c", "g01500x"), GroupLeave("h", "c", "g01500x")})
			idx := uint64(2)
			b.ReportAllocs()
			for b.Loop() {
				m.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data})
				idx++
			}
		})
	}
}
