package hub

import (
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// countingTransport counts what is written and discards it.
type countingTransport struct{ writes, bytes atomic.Int64 }

func (t *countingTransport) write(p []byte) error {
	t.writes.Add(1)
	t.bytes.Add(int64(len(p)))
	return nil
}
func (t *countingTransport) close() error { return nil }

// BenchmarkDispatch_Fanout delivers group messages to subs local
// connections: the per-connection filtering, one encoding per protocol,
// the queueing, and the writers (to a transport that discards). batch is
// how many entries the dispatcher finds at once: 1 when it keeps up, more
// when messages arrive faster than it delivers (their frames then
// coalesce). It reports the transport writes per message.
func BenchmarkDispatch_Fanout(b *testing.B) {
	for _, subs := range []int{100, 1000} {
		for _, batch := range []int{1, 16} {
			b.Run("subs="+strconv.Itoa(subs)+"/batch="+strconv.Itoa(batch), func(b *testing.B) {
				benchFanout(b, subs, batch)
			})
		}
	}
}

func benchFanout(b *testing.B, subs, batch int) {
	cfg := testConfig(b)
	cfg.MaxQueuedMessages = 1 << 20
	m := newTestMachine(b)
	s, err := New(cfg, newFakePublisher(b, m, true), m)
	if err != nil {
		b.Fatal(err)
	}
	h := s.localHub(testHubName, true)
	trs := make([]*countingTransport, subs)
	conns := make([]*conn, subs)
	for i := range subs {
		trs[i] = &countingTransport{}
		c := s.newConn(nil, "c"+strconv.Itoa(i), testHubName, "u"+strconv.Itoa(i), trs[i])
		h.conns[c.id] = c
		addConn(h.groups, "g", c)
		c.startWriter()
		conns[i] = c
	}
	b.Cleanup(func() {
		for _, c := range conns {
			c.cancel()
			<-c.writerEnded()
		}
	})
	args, _ := json.Marshal([]any{1, 2, 3, string(make([]byte, 120))})
	entries := make([]fsm.Entry, batch)
	var idx uint64
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += batch {
		var scratch []byte
		for i := range entries {
			idx++
			entries[i] = fsm.Entry{Cursor: fsm.Cursor{Index: idx}, Command: fsm.Command{
				Kind: fsm.KindPublish, Hub: testHubName, Audience: fsm.AudienceGroup, Key: "g", Target: "m", Args: args}}
			scratch = s.deliver(&entries[i], testEpoch, scratch[:0])
		}
		s.kickTouched()
	}
	// Wait for the writers: their work is part of the cost.
	deadline := time.Now().Add(time.Minute)
	for _, c := range conns {
		for {
			c.mu.Lock()
			idle := len(c.queue) == 0 && !c.writing
			c.mu.Unlock()
			if idle {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("writers did not drain within a minute")
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.StopTimer()
	var writes int64
	for _, t := range trs {
		writes += t.writes.Load()
	}
	b.ReportMetric(float64(writes)/float64(b.N), "writes/msg")
	b.ReportMetric(float64(b.N)*float64(subs)/b.Elapsed().Seconds(), "deliveries/s")
}
