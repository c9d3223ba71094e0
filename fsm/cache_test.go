package fsm

import (
	"bytes"
	"encoding/gob"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

// cached is a command of a test entry and what the cache must serve for
// it: the outcome, a close's user, a resume's groups. skip marks a command
// that is not cached (KindFormat).
type cached struct {
	c      Command
	err    error
	user   string
	groups []string
	skip   bool
}

// cacheRows are entries of every kind the cache holds, with every outcome.
func cacheRows() [][]cached {
	secret := []byte{0x00, 0xff, 's', 'e', 'c'}
	pub := publish("h", AudienceGroup, "g1", `["hi",{"a":1}]`)
	pub.Exclude = []string{"c2", ""}
	return [][]cached{
		{{c: withID(Command{Kind: KindClusterInit, ClusterID: "cl-1", Secret: secret}, "init")}},
		{{c: withID(open("h", "c1", "alice"), "o1")}, {c: withID(open("h", "c2", "bob"), "o2")}, {c: open("h", "c3", "")}},
		{{c: FormatKnown(LogFormat, 0), skip: true}, {c: join("h", "c1", "g1")}, {c: join("h", "c1", "g2")}},
		{{c: join("h", "c1", "g1")}},      // a second join: cached, changes nothing
		{{c: leave("h", "c3", "absent")}}, // a leave of a group it is not in
		{{c: withID(open("h", "c1", "mallory"), "o3"), err: ErrConnectionExists}},
		{{c: join("h", "c9", "g1"), err: ErrUnknownConnection}},
		{{c: withID(pub, "p1")}},
		{{c: publish("h", AudienceConnection, "c9", `[]`), err: ErrUnknownConnection}},
		{{c: withOrigin(publish("h", AudienceUser, "alice", `[1]`), "c1", "7", 1)}},
		{{c: effect(publish("h", AudienceAll, "", `[2]`))}, {c: effect(join("h", "c2", "g3"))},
			{c: withOrigin(withID(invoke("h", "c2", "Send", 2, `"ok"`), "i1"), "c2", "1", 1)}},
		{{c: withOrigin(Reject("h", "Unknown hub method 'x'"), "c1", "8", 2)}},
		{{c: ConnAck("h", "c1", 3, Cursor{Index: 9, Offset: 0})}},
		{{c: eventsDone(Cursor{Index: 4})}},
		{{c: ConnResume("h", "c1", "alice", "node-b", Cursor{Index: 3}), groups: []string{"g1", "g2"}}},
		{{c: ConnResume("h", "c3", "", "node-b", Cursor{Index: 3}), groups: nil}},
		{{c: ConnResume("h", "c2", "mallory", "node-b", Cursor{Index: 3}), err: ErrResumeDenied}},
		{{c: withID(closeConn("h", "c2"), "x1"), user: "bob"}},
		{{c: closeConn("h", "c3"), user: ""}},
		{{c: closeConn("h", "c2"), err: ErrUnknownConnection}},
	}
}

// applyRows applies the rows to a and returns the entries the cache must
// hold for them, in order.
func applyRows(t *testing.T, a *applier, rows [][]cached) []Entry {
	t.Helper()
	var want []Entry
	for _, row := range rows {
		cmds := make([]Command, len(row))
		for k := range row {
			cmds[k] = row[k].c
		}
		l := a.entry(cmds...) // stamps the times in cmds
		res, ok := a.m.Apply(l).([]Result)
		if !ok || len(res) != len(cmds) {
			t.Fatalf("entry %d: Apply returned %v", l.Index, res)
		}
		for k, x := range row {
			if res[k].Err != x.err || res[k].Duplicate {
				t.Fatalf("entry %d command %d (%s): result %+v, want error %v", l.Index, k, x.c.Kind, res[k], x.err)
			}
			if x.skip {
				continue
			}
			c := normalize(cmds[k])
			if c.Kind == KindConnClose {
				c.User = x.user
			}
			want = append(want, Entry{Cursor: res[k].Cursor, Command: c, Err: x.err, Groups: x.groups})
		}
	}
	return want
}

// snapshotDataOf decodes a snapshot's data, as Restore reads it.
func snapshotDataOf(t testing.TB, data []byte) snapshotData {
	t.Helper()
	var d snapshotData
	if len(data) == 0 || data[0] != snapshotVersion {
		t.Fatalf("not a snapshot of version %d", snapshotVersion)
	}
	if err := gob.NewDecoder(bytes.NewReader(data[1:])).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

func sizeOf(es []Entry) int64 {
	var n int64
	for i := range es {
		n += int64(es[i].size())
	}
	return n
}

// TestMachine_SinceReturnsWhatWasApplied: the cache keeps commands encoded,
// and Since must still serve exactly what Apply cached (the command with a
// close's user, the outcome, a resume's groups), in every window, after
// eviction and after a snapshot, and count its bytes as before.
func TestMachine_SinceReturnsWhatWasApplied(t *testing.T) {
	a := newApplier(t, testConfig(t))
	want := applyRows(t, a, cacheRows())

	got := mustSince(t, a.m, Cursor{}, 0)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Since(0) =\n%+v\nwant\n%+v", got, want)
	}
	for from := range want {
		for _, max := range []int{1, 3, 0} {
			end := len(want)
			if max > 0 {
				end = min(end, from+1+max)
			}
			got := mustSince(t, a.m, want[from].Cursor, max)
			if exp := want[from+1 : end]; !reflect.DeepEqual(got, exp) && len(exp)+len(got) > 0 {
				t.Fatalf("Since(%s, %d) = %+v, want %+v", want[from].Cursor, max, got, exp)
			}
		}
	}
	p := a.m.Position()
	if p.Entries != len(want) || p.Bytes != sizeOf(want) || p.First != want[0].Cursor {
		t.Fatalf("Position() = %+v, want %d entries of %d bytes from %s", p, len(want), sizeOf(want), want[0].Cursor)
	}

	t.Run("eviction", func(t *testing.T) {
		for _, limit := range []int{1, 5, len(want) - 1} {
			cfg := testConfig(t)
			cfg.CacheMaxEntries = limit
			b := newApplier(t, cfg)
			if w := applyRows(t, b, cacheRows()); !reflect.DeepEqual(w, want) {
				t.Fatalf("a second applier disagrees: %+v", w)
			}
			tail := want[len(want)-limit:]
			p := b.m.Position()
			got := mustSince(t, b.m, p.Floor, 0)
			if !reflect.DeepEqual(got, tail) {
				t.Fatalf("limit %d: Since(Floor) = %+v, want %+v", limit, got, tail)
			}
			if p.Bytes != sizeOf(tail) || p.Floor != want[len(want)-limit-1].Cursor {
				t.Fatalf("limit %d: Position() = %+v, want %d bytes, floor %s", limit, p, sizeOf(tail), want[len(want)-limit-1].Cursor)
			}
		}
	})

	t.Run("snapshot", func(t *testing.T) {
		data := snapshotBytes(t, a.m)
		// The format holds each command's encoding and a close's user, as
		// every version since v0.1.0 wrote and reads it.
		d := snapshotDataOf(t, data)
		if len(d.Entries) != len(want) {
			t.Fatalf("snapshot holds %d entries, want %d", len(d.Entries), len(want))
		}
		for i, se := range d.Entries {
			w := want[i]
			var user string
			if w.Kind == KindConnClose {
				user = w.User
			}
			if se.Cursor != w.Cursor || !bytes.Equal(se.Command, EncodeCommand(&w.Command)) ||
				se.ErrCode != ErrorCode(w.Err) || !reflect.DeepEqual(se.Groups, w.Groups) || se.User != user {
				t.Fatalf("snapshot entry %d = %+v, want %+v", i, se, w)
			}
		}
		m2 := newTestMachine(t, testConfig(t))
		if err := restore(t, m2, data); err != nil {
			t.Fatal(err)
		}
		if got := mustSince(t, m2, Cursor{}, 0); !reflect.DeepEqual(got, want) {
			t.Fatalf("after restore Since(0) = %+v, want %+v", got, want)
		}
		if p2 := m2.Position(); p2 != a.m.Position() {
			t.Fatalf("after restore Position() = %+v, want %+v", p2, a.m.Position())
		}
		// And again from the restored machine: its kept bytes persist
		// as they came.
		m3 := newTestMachine(t, testConfig(t))
		if err := restore(t, m3, snapshotBytes(t, m2)); err != nil {
			t.Fatal(err)
		}
		if got := mustSince(t, m3, Cursor{}, 0); !reflect.DeepEqual(got, want) {
			t.Fatalf("after a second restore Since(0) = %+v, want %+v", got, want)
		}
	})

	t.Run("snapshot pinned across eviction", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.CacheMaxEntries = len(want)
		b := newApplier(t, cfg)
		applyRows(t, b, cacheRows())
		snap, err := b.m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Release()
		// Evict the whole captured cache before Persist reads it.
		var logs []*raft.Log
		for range len(want) {
			logs = append(logs, b.entry(publish("h", AudienceAll, "", `[]`)))
		}
		b.m.ApplyBatch(logs)
		var sink memSink
		if err := snap.Persist(&sink); err != nil {
			t.Fatal(err)
		}
		m2 := newTestMachine(t, testConfig(t))
		if err := restore(t, m2, sink.buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		if got := mustSince(t, m2, Cursor{}, 0); !reflect.DeepEqual(got, want) {
			t.Fatalf("a snapshot taken before the eviction restored %+v, want %+v", got, want)
		}
	})
}

// TestMachine_SinceCorruptSlot: a cached command that does not decode is a
// bug, reported as an error, never a panic.
func TestMachine_SinceCorruptSlot(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(open("h", "c1", "u"))
	a.apply1(join("h", "c1", "g"))
	a.m.mu.Lock()
	a.m.st.Entries[1].cmd = a.m.st.Entries[1].cmd[:3]
	a.m.mu.Unlock()
	if es, err := a.m.Since(Cursor{}, 0); err == nil || es != nil {
		t.Fatalf("Since over a corrupt slot = %v, %v; want an error", es, err)
	} else {
		t.Log(err)
	}
	if es, err := a.m.Since(Cursor{}, 1); err != nil || len(es) != 1 {
		t.Fatalf("Since before the corrupt slot = %v, %v; want the open", es, err)
	}
}

// TestMachine_ScratchBounded: the buffer applies encode in is kept between
// calls, but not after a command bigger than maxScratch.
func TestMachine_ScratchBounded(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(publish("h", AudienceAll, "", `[1]`))
	if c := cap(a.m.scratch); c == 0 || c > maxScratch {
		t.Fatalf("scratch of %d bytes after a small command; want it kept", c)
	}
	big := `["` + string(bytes.Repeat([]byte{'x'}, 2*maxScratch)) + `"]`
	a.apply1(publish("h", AudienceAll, "", big))
	if a.m.scratch != nil {
		t.Fatalf("scratch of %d bytes kept after a %d-byte command", cap(a.m.scratch), len(big))
	}
	es := mustSince(t, a.m, Cursor{Index: 1}, 0)
	if len(es) != 1 || string(es[0].Args) != big {
		t.Fatalf("the big command reads back as %d entries", len(es))
	}
}
