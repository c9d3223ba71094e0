package check

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/chaos/history"
)

// builder writes synthetic histories, one event per call, 10 ns apart.
type builder struct {
	t int64
	h history.History
}

func P(index uint64, offset uint32) history.Pos { return history.Pos{Index: index, Offset: offset} }

func (b *builder) add(e history.Event) {
	b.t += 10
	e.T = b.t
	b.h = append(b.h, e)
}

func (b *builder) invoke(p, id, group string) {
	b.add(history.Event{P: p, Type: history.Invoke, ID: id, Group: group, Node: "n1", Via: "hub"})
}

func (b *builder) ok(p, id string, pos history.Pos) {
	b.add(history.Event{P: p, Type: history.OK, ID: id, Pos: &pos})
}

func (b *builder) fail(p, id string) {
	b.add(history.Event{P: p, Type: history.Fail, ID: id, Err: "not leader"})
}

func (b *builder) info(p, id string) {
	b.add(history.Event{P: p, Type: history.Info, ID: id, Err: "timeout"})
}

// pub is a publish acked at pos.
func (b *builder) pub(p, id, group string, pos history.Pos) {
	b.invoke(p, id, group)
	b.ok(p, id, pos)
}

func (b *builder) join(sub string, session int, group string, pos history.Pos) {
	b.add(history.Event{P: sub, Type: history.Join, Session: session, Group: group, Pos: &pos, Node: "n1"})
}

func (b *builder) deliver(sub string, session int, id, group string, pos history.Pos) {
	b.add(history.Event{P: sub, Type: history.Deliver, Session: session, ID: id, Group: group, Pos: &pos})
}

func (b *builder) drop(sub string, session int, node string) {
	b.add(history.Event{P: sub, Type: history.Drop, Session: session, Node: node, Err: "eof"})
}

func (b *builder) resume(sub string, session int, node string, pos history.Pos) {
	b.add(history.Event{P: sub, Type: history.Resume, Session: session, Node: node, Pos: &pos})
}

func (b *builder) reset(sub string, session int) {
	b.add(history.Event{P: sub, Type: history.Reset, Session: session, Err: "cursor too old"})
}

func (b *builder) leave(sub string, session int) {
	b.add(history.Event{P: sub, Type: history.Leave, Session: session})
}

func (b *builder) read(node, group string, done bool, msgs ...any) {
	for i := 0; i < len(msgs); i += 2 {
		pos := msgs[i+1].(history.Pos)
		b.add(history.Event{P: "reader", Type: history.Read, Node: node, Group: group, ID: msgs[i].(string), Pos: &pos})
	}
	if done {
		b.add(history.Event{P: "reader", Type: history.ReadDone, Node: node, Group: group})
	}
}

func (b *builder) state(node string, pos history.Pos, digest, role string) {
	b.add(history.Event{P: "harness", Type: history.State, Node: node, Pos: &pos, Digest: digest, Role: role})
}

// clean is a correct run: two groups, sparse positions, an indeterminate
// publish that lands and one that never does, a definite failure, a retry
// after Info and a duplicate send after OK that both keep their position, a
// drop and resume, a Reset session followed by a new session joining later,
// a session that Leaves, canaries, three nodes' reads (one incomplete) and
// converged states.
func clean() *builder {
	b := &builder{}
	b.add(history.Event{P: "nemesis", Type: history.FaultStart, Kind: "kill", Targets: []string{"n2"}})
	b.join("sub-1", 1, "a", P(2, 0))
	b.join("sub-1", 1, "b", P(2, 1))
	b.join("sub-2", 1, "a", P(2, 2))
	b.join("sub-3", 1, "b", P(1, 0))
	b.pub("pub-1", "m1", "a", P(3, 0))
	b.deliver("sub-1", 1, "m1", "a", P(3, 0))
	b.deliver("sub-2", 1, "m1", "a", P(3, 0))
	b.pub("pub-1", "m2", "b", P(3, 1))
	b.deliver("sub-1", 1, "m2", "b", P(3, 1))
	b.deliver("sub-3", 1, "m2", "b", P(3, 1))
	b.leave("sub-3", 1)
	b.reset("sub-2", 1)
	b.pub("pub-1", "m3", "a", P(7, 0))
	b.deliver("sub-1", 1, "m3", "a", P(7, 0))
	b.drop("sub-1", 1, "n1")
	b.resume("sub-1", 1, "n2", P(7, 0))
	b.invoke("pub-2", "m4", "a")
	b.info("pub-2", "m4")
	b.join("sub-2", 2, "a", P(8, 0))
	b.invoke("pub-2", "m5", "b")
	b.info("pub-2", "m5")
	b.invoke("pub-2", "m7", "b")
	b.fail("pub-2", "m7")
	b.deliver("sub-1", 1, "m4", "a", P(9, 2))
	b.deliver("sub-2", 2, "m4", "a", P(9, 2))
	b.invoke("pub-1", "m6", "a")
	b.info("pub-1", "m6")
	b.invoke("pub-1", "m6", "a")
	b.ok("pub-1", "m6", P(12, 0))
	b.deliver("sub-1", 1, "m6", "a", P(12, 0))
	b.deliver("sub-2", 2, "m6", "a", P(12, 0))
	b.pub("pub-1", "m6", "a", P(12, 0))
	b.add(history.Event{P: "nemesis", Type: history.FaultEnd, Kind: "kill", Targets: []string{"n2"}})
	b.add(history.Event{P: "harness", Type: history.Note, Text: "final heal"})
	b.pub("pub-1", "canary-n1", "a", P(15, 0))
	b.deliver("sub-1", 1, "canary-n1", "a", P(15, 0))
	b.deliver("sub-2", 2, "canary-n1", "a", P(15, 0))
	b.pub("pub-2", "canary-n2", "b", P(15, 1))
	b.deliver("sub-1", 1, "canary-n2", "b", P(15, 1))
	for _, n := range []string{"n1", "n2", "n3"} {
		b.read(n, "a", true, "m1", P(3, 0), "m3", P(7, 0), "m4", P(9, 2), "m6", P(12, 0), "canary-n1", P(15, 0))
	}
	b.read("n1", "b", true, "m2", P(3, 1), "canary-n2", P(15, 1))
	b.read("n2", "b", true, "m2", P(3, 1), "canary-n2", P(15, 1))
	b.read("n3", "b", false, "m2", P(3, 1))
	b.state("n1", P(15, 1), "d1", "Follower")
	b.state("n2", P(15, 1), "d1", "Leader")
	b.state("n3", P(15, 1), "d1", "Follower")
	return b
}

func TestCheck_Clean(t *testing.T) {
	noStates := func() history.History {
		var h history.History
		for _, e := range clean().h {
			if e.Type != history.State {
				h = append(h, e)
			}
		}
		return h
	}
	shuffled := func() history.History {
		h := slices.Clone(clean().h)
		rand.New(rand.NewSource(1)).Shuffle(len(h), func(i, j int) { h[i], h[j] = h[j], h[i] })
		return h
	}
	openAtEnd := func() history.History {
		b := clean()
		b.invoke("pub-3", "x1", "a")
		return b.h
	}
	// The first message after a join can be recorded before the join's
	// completion is: joins count by position, not by record time.
	deliveredBeforeJoin := func() history.History {
		b := clean()
		b.deliver("sub-5", 1, "canary-n1", "a", P(15, 0))
		b.join("sub-5", 1, "a", P(14, 0))
		return b.h
	}
	for _, tc := range []struct {
		name string
		h    history.History
	}{
		{"empty", nil},
		{"clean", clean().h},
		{"no states", noStates()},
		{"unsorted", shuffled()},
		{"open invoke at end", openAtEnd()},
		{"delivered before the join was recorded", deliveredBeforeJoin()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(tc.h)
			if !r.OK() {
				t.Fatalf("clean history flagged:\n%s", r.Summary())
			}
		})
	}

	r := Check(clean().h)
	p := r.Publishes
	want := PublishStats{Invoked: 11, OK: 7, Fail: 1, Info: 3, IDs: 9, Retries: 2, Acked: 6,
		Recovered: 1, Unrecovered: 1, Canaries: 2, CanariesOK: 2}
	if p != want {
		t.Errorf("publishes = %+v, want %+v", p, want)
	}
	s := r.Subscribers
	wantS := SubscriberStats{Sessions: 4, Joins: 5, Deliveries: 12, Drops: 1, Resumes: 1, Resets: 1, Leaves: 1, AliveAtEnd: 2}
	if s != wantS {
		t.Errorf("subscribers = %+v, want %+v", s, wantS)
	}
	if r.Reads.PerNode["n3"] != 6 || r.Reads.Complete != 5 || !reflect.DeepEqual(r.Reads.Incomplete, []string{"n3/b"}) {
		t.Errorf("reads = %+v", r.Reads)
	}
	if !r.State.Known || !reflect.DeepEqual(r.State.Leaders, []string{"n2"}) || r.Faults["kill"] != 1 {
		t.Errorf("state = %+v, faults = %v", r.State, r.Faults)
	}
	if r.LatencyP50 != 10 || r.MaxUnavailable <= 0 {
		t.Errorf("latency p50 = %v, max unavailable = %v", r.LatencyP50, r.MaxUnavailable)
	}
	if Check(noStates()).State.Known {
		t.Error("state known without State events")
	}
	if !reflect.DeepEqual(Check(shuffled()), r) {
		t.Error("an unsorted history checks differently from the sorted one")
	}
	if !strings.Contains(r.Summary(), "PASS") {
		t.Errorf("summary:\n%s", r.Summary())
	}
}

// TestCheck_Violations adds one fault to the clean run per case; the checker
// must flag exactly that kind, count times.
func TestCheck_Violations(t *testing.T) {
	// sub4 is a new session of group a joined at 2:0, receiving ids of a.
	sub4 := func(b *builder, ids ...string) {
		pos := map[string]history.Pos{"m1": P(3, 0), "m2": P(3, 1), "m3": P(7, 0), "m4": P(9, 2), "m6": P(12, 0), "canary-n1": P(15, 0)}
		b.join("sub-4", 1, "a", P(2, 0))
		for _, id := range ids {
			g := "a"
			if id == "m2" {
				g = "b"
			}
			b.deliver("sub-4", 1, id, g, pos[id])
		}
	}
	for _, tc := range []struct {
		name   string
		kind   string
		count  int
		detail string
		add    func(b *builder)
	}{
		{"lost ack never observed", KindLostAck, 1, "never delivered or read", func(b *builder) {
			b.pub("pub-3", "x1", "c", P(20, 0))
		}},
		{"lost ack missing from a read", KindLostAck, 1, "missing from n2's complete read", func(b *builder) {
			b.pub("pub-3", "x1", "c", P(20, 0))
			b.pub("pub-3", "x2", "c", P(21, 0))
			b.read("n1", "c", true, "x1", P(20, 0), "x2", P(21, 0))
			b.read("n2", "c", true, "x1", P(20, 0))
		}},
		{"duplicate in a read", KindDuplicate, 1, "first observed at 20:0", func(b *builder) {
			b.pub("pub-3", "x1", "c", P(20, 0))
			b.read("n1", "c", true, "x1", P(20, 0), "x1", P(22, 0))
		}},
		{"duplicate send applied twice", KindDuplicate, 1, "acked to pub-3", func(b *builder) {
			b.pub("pub-3", "x1", "c", P(20, 0))
			b.pub("pub-3", "x1", "c", P(22, 0))
			b.read("n1", "c", true, "x1", P(20, 0), "x1", P(22, 0))
		}},
		{"nonmonotonic repeat", KindNonmonotonic, 1, "repeated", func(b *builder) {
			sub4(b, "m1", "m3", "m3", "m4", "m6", "canary-n1")
		}},
		{"nonmonotonic going back", KindNonmonotonic, 1, "went back", func(b *builder) {
			sub4(b, "m1", "m3", "m1", "m4", "m6", "canary-n1")
		}},
		{"gap", KindGap, 1, "first skipped m3 at 7:0", func(b *builder) {
			sub4(b, "m1", "m4", "m6", "canary-n1")
		}},
		{"gap right after resume", KindGap, 1, "after resume from 3:0 on n3", func(b *builder) {
			b.join("sub-4", 1, "a", P(2, 0))
			b.deliver("sub-4", 1, "m1", "a", P(3, 0))
			b.drop("sub-4", 1, "n1")
			b.resume("sub-4", 1, "n3", P(3, 0))
			b.deliver("sub-4", 1, "m4", "a", P(9, 2))
			b.deliver("sub-4", 1, "m6", "a", P(12, 0))
			b.deliver("sub-4", 1, "canary-n1", "a", P(15, 0))
		}},
		{"gap after join", KindGap, 1, "between its join at 2:0", func(b *builder) {
			sub4(b, "m3", "m4", "m6", "canary-n1")
		}},
		{"gap before a reset", KindGap, 1, "first skipped m3", func(b *builder) {
			sub4(b, "m1", "m4")
			b.reset("sub-4", 1)
		}},
		{"phantom", KindPhantom, 1, "never invoked", func(b *builder) {
			b.join("sub-4", 1, "c", P(1, 0))
			b.deliver("sub-4", 1, "ghost", "c", P(13, 0))
		}},
		{"aborted read", KindAbortedRead, 1, "definitely failed", func(b *builder) {
			b.invoke("pub-3", "x9", "c")
			b.fail("pub-3", "x9")
			b.read("n1", "c", true, "x9", P(13, 1))
		}},
		{"divergent", KindDivergent, 1, "first observed holding x1", func(b *builder) {
			b.invoke("pub-3", "x1", "c")
			b.info("pub-3", "x1")
			b.invoke("pub-3", "x2", "c")
			b.info("pub-3", "x2")
			b.join("sub-4", 1, "c", P(1, 0))
			b.deliver("sub-4", 1, "x1", "c", P(20, 0))
			b.leave("sub-4", 1)
			b.join("sub-5", 1, "c", P(1, 0))
			b.deliver("sub-5", 1, "x2", "c", P(20, 0))
			b.leave("sub-5", 1)
		}},
		{"read mismatch", KindReadMismatch, 1, "n1's complete read of group c has x2 at 20:0", func(b *builder) {
			for _, id := range []string{"x1", "x2", "x3"} {
				b.invoke("pub-3", id, "c")
				b.info("pub-3", id)
			}
			b.read("n1", "c", true, "x1", P(19, 0), "x2", P(20, 0), "x3", P(21, 0))
			b.read("n2", "c", true, "x1", P(19, 0), "x3", P(21, 0))
			// Incomplete reads are not compared.
			b.read("n3", "c", false, "x1", P(19, 0), "x3", P(21, 0))
		}},
		{"unseen at end", KindUnseenAtEnd, 1, "lacks 2 message(s) of group a after its last delivery at 9:2; first missing m6 at 12:0", func(b *builder) {
			sub4(b, "m1", "m3", "m4")
		}},
		{"realtime", KindRealtime, 1, "xA was acked at 30:0", func(b *builder) {
			b.pub("pub-3", "xA", "c", P(30, 0))
			b.pub("pub-4", "xB", "c", P(25, 0))
			b.read("n1", "c", true, "xB", P(25, 0), "xA", P(30, 0))
		}},
		{"state digest mismatch", KindState, 1, "n3 ended at 15:1 digest d2", func(b *builder) {
			b.state("n3", P(15, 1), "d2", "Follower")
		}},
		{"state position mismatch", KindState, 1, "n3 ended at 14:0", func(b *builder) {
			b.state("n3", P(14, 0), "d1", "Follower")
		}},
		{"two leaders", KindLeaders, 1, "2 leaders", func(b *builder) {
			b.state("n3", P(15, 1), "d1", "Leader")
		}},
		{"no leader", KindLeaders, 1, "0 leaders", func(b *builder) {
			b.state("n2", P(15, 1), "d1", "Candidate")
		}},
		{"anomaly", KindAnomaly, 1, "panic on n2", func(b *builder) {
			b.add(history.Event{P: "harness", Type: history.Anomaly, Kind: "panic", Node: "n2", Text: "panic: boom"})
		}},
		{"unexpected delivery", KindUnexpectedDelivery, 1, "never joined", func(b *builder) {
			sub4(b, "m1", "m2", "m3", "m4", "m6", "canary-n1")
		}},
		{"group mismatch", KindGroupMismatch, 1, `under group "c", invoked for "a"`, func(b *builder) {
			b.read("n1", "c", true, "m1", P(3, 0))
		}},
		{"outcome without invoke", KindMalformed, 1, "no pending invoke", func(b *builder) {
			b.fail("pub-9", "zz")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := clean()
			tc.add(b)
			r := Check(b.h)
			if got := r.Kinds(); !reflect.DeepEqual(got, []string{tc.kind}) || r.Counts[tc.kind] != tc.count {
				t.Fatalf("kinds %v counts %v, want %d %s\n%s", got, r.Counts, tc.count, tc.kind, r.Summary())
			}
			for _, v := range r.Violations {
				if !strings.Contains(v.Detail, tc.detail) {
					t.Errorf("detail %q lacks %q", v.Detail, tc.detail)
				}
			}
			if r.OK() || !strings.Contains(r.Summary(), tc.kind+": ") {
				t.Errorf("summary:\n%s", r.Summary())
			}
		})
	}
}

// sub4More is sub4 for another subscriber process.
func sub4More(b *builder, sub string, ids ...string) {
	pos := map[string]history.Pos{"m1": P(3, 0), "m3": P(7, 0), "m4": P(9, 2), "m6": P(12, 0), "canary-n1": P(15, 0)}
	b.join(sub, 1, "a", P(2, 0))
	for _, id := range ids {
		b.deliver(sub, 1, id, "a", pos[id])
	}
}

func TestCheck_Reorder(t *testing.T) {
	b := clean()
	sub4More(b, "sub-4", "m1", "m4", "m3", "m6", "canary-n1")
	r := Check(b.h)
	if !reflect.DeepEqual(r.Counts, map[string]int{KindGap: 1, KindNonmonotonic: 1}) {
		t.Fatalf("counts %v, want one gap and one nonmonotonic\n%s", r.Counts, r.Summary())
	}
}

func TestCheck_Cap(t *testing.T) {
	b := clean()
	for i := 0; i < MaxExamples+50; i++ {
		b.pub("pub-3", fmt.Sprintf("x%d", i), "c", P(uint64(100+i), 0))
	}
	r := Check(b.h)
	if r.Counts[KindLostAck] != MaxExamples+50 || len(r.Violations) != MaxExamples {
		t.Fatalf("count %d, examples %d", r.Counts[KindLostAck], len(r.Violations))
	}
	if s := r.Summary(); !strings.Contains(s, "lost-ack: 150") || !strings.Contains(s, "... and 145 more") {
		t.Errorf("summary:\n%s", s)
	}
}

// TestCheck_RoundTrip writes histories with a Recorder and checks what Load
// reads back: the JSON form must lose nothing the checker uses.
func TestCheck_RoundTrip(t *testing.T) {
	bad := clean()
	bad.join("sub-4", 1, "a", P(2, 0))
	bad.deliver("sub-4", 1, "m3", "a", P(7, 0))
	for _, tc := range []struct {
		name string
		h    history.History
		ok   bool
	}{
		{"clean", clean().h, true},
		{"gap", bad.h, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rec, err := history.NewRecorder(dir, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range tc.h {
				rec.Add(e)
			}
			if err := rec.Close(); err != nil {
				t.Fatal(err)
			}
			h, err := history.Load(filepath.Join(dir, history.FileName))
			if err != nil {
				t.Fatal(err)
			}
			got, want := Check(h), Check(tc.h)
			if got.OK() != tc.ok {
				t.Fatalf("OK() = %v, want %v\n%s", got.OK(), tc.ok, got.Summary())
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("loaded history checks differently:\n%s\nwant\n%s", got.Summary(), want.Summary())
			}
			if _, err := json.Marshal(got); err != nil {
				t.Error(err)
			}
		})
	}
}

// large is a clean run of n publishes over three groups, each delivered to
// four of six subscribers and read from three nodes: about 9n events.
func large(n int) history.History {
	b := &builder{h: make(history.History, 0, 9*n+64)}
	groups := []string{"g0", "g1", "g2"}
	subs := map[string][]string{}
	for k := 0; k < 6; k++ {
		sub := fmt.Sprintf("sub-%d", k)
		for _, g := range []string{groups[k%3], groups[(k+1)%3]} {
			b.join(sub, 1, g, P(1, uint32(k)))
			subs[g] = append(subs[g], sub)
		}
	}
	pos := make([]history.Pos, n)
	for i := 0; i < n; i++ {
		g := groups[i%3]
		id := fmt.Sprintf("p%d-%d", i%4, i)
		pos[i] = P(uint64(10+2*i), uint32(i%3))
		b.pub(fmt.Sprintf("pub-%d", i%4), id, g, pos[i])
		for _, sub := range subs[g] {
			b.deliver(sub, 1, id, g, pos[i])
		}
	}
	for _, node := range []string{"n1", "n2", "n3"} {
		for gi, g := range groups {
			for i := gi; i < n; i += 3 {
				b.read(node, g, false, fmt.Sprintf("p%d-%d", i%4, i), pos[i])
			}
			b.read(node, g, true)
		}
		role := "Follower"
		if node == "n1" {
			role = "Leader"
		}
		b.state(node, pos[n-1], "d", role)
	}
	return b.h
}

func TestCheck_Large(t *testing.T) {
	h := large(22000)
	start := time.Now()
	r := Check(h)
	t.Logf("checked %d events in %v", len(h), time.Since(start))
	if !r.OK() {
		t.Fatalf("large clean history flagged:\n%s", r.Summary())
	}
	if r.Subscribers.Deliveries != 4*22000 {
		t.Errorf("deliveries = %d", r.Subscribers.Deliveries)
	}
}

func BenchmarkCheck(b *testing.B) {
	h := large(22000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Check(h)
	}
	b.ReportMetric(float64(len(h)), "events/op")
}

// TestCheck_CountsExpired: outcomes the FSM refused as expired are counted
// (they are not violations: an indeterminate send may be refused so).
func TestCheck_CountsExpired(t *testing.T) {
	b := &builder{}
	b.invoke("pub-0", "a", "g0")
	b.add(history.Event{P: "pub-0", Type: history.Info, ID: "a", Err: "503 Service Unavailable: cluster unavailable: " + ExpiredText + ": it reached the log too late"})
	b.invoke("pub-1", "b", "g0")
	b.info("pub-1", "b")
	r := Check(b.h)
	if r.Publishes.Expired != 1 || r.Publishes.Info != 2 {
		t.Fatalf("expired %d info %d, want 1 and 2", r.Publishes.Expired, r.Publishes.Info)
	}
	if !strings.Contains(r.Summary(), "1 refused as expired") {
		t.Fatalf("summary lacks the expired count:\n%s", r.Summary())
	}
}
