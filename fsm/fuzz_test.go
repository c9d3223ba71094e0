package fsm

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzParseCursor: any string parses to a cursor that formats back to
// itself (up to leading zeros), or fails with ErrBadCursor and a short
// message.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"e:0:0", "5f1c0a9e:1042:3", "x:18446744073709551615:4294967295", "x:18446744073709551616:0",
		"x:1:4294967296", "a:b:c:d", "::", ":1:2", "e:007:00", "e:+1:0", "e:-1:0", "e:1:0 ", "grüße:3:2", strings.Repeat(":", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		epoch, c, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("ParseCursor(%q) error %v does not wrap ErrBadCursor", s, err)
			}
			if len(err.Error()) > 4*maxQuoted+128 {
				t.Fatalf("ParseCursor error of %d bytes for %d bytes of input", len(err.Error()), len(s))
			}
			if epoch != "" || c != (Cursor{}) {
				t.Fatalf("ParseCursor(%q) returned %q, %v with an error", s, epoch, c)
			}
			return
		}
		if epoch == "" || strings.Contains(epoch, ":") {
			t.Fatalf("ParseCursor(%q) returned epoch %q", s, epoch)
		}
		e2, c2, err := ParseCursor(c.Format(epoch))
		if err != nil || e2 != epoch || c2 != c {
			t.Fatalf("ParseCursor(%q) = %q %v, which formats to %q and parses to %q %v %v", s, epoch, c, c.Format(epoch), e2, c2, err)
		}
	})
}

// TestMachine_RestoreRefusesInconsistent: a snapshot whose cache is out of
// order, or after its own last cursor, would break Since; it is refused.
func TestMachine_RestoreRefusesInconsistent(t *testing.T) {
	cmd := EncodeCommand(&Command{Kind: KindPublish, Hub: "h", Audience: AudienceAll, Target: "t"})
	tests := []struct {
		name string
		d    snapshotData
	}{
		{"entries out of order", snapshotData{Applied: 5, Last: Cursor{5, 0},
			Entries: []snapshotEntry{{Cursor: Cursor{3, 0}, Command: cmd}, {Cursor: Cursor{2, 0}, Command: cmd}}}},
		{"entry twice", snapshotData{Applied: 5, Last: Cursor{5, 0},
			Entries: []snapshotEntry{{Cursor: Cursor{3, 0}, Command: cmd}, {Cursor: Cursor{3, 0}, Command: cmd}}}},
		{"entry after last", snapshotData{Applied: 5, Last: Cursor{2, 0},
			Entries: []snapshotEntry{{Cursor: Cursor{3, 0}, Command: cmd}}}},
		{"last after applied", snapshotData{Applied: 1, Last: Cursor{2, 0}}},
		{"connection twice", snapshotData{Conns: []snapshotConn{{ConnInfo: ConnInfo{ID: "c", Hub: "h", User: "u"}},
			{ConnInfo: ConnInfo{ID: "c", Hub: "h", User: "v"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMachine(t, testConfig(t))
			if err := restore(t, m, snapshotOf(t, snapshotVersion, &tt.d)); err == nil {
				t.Fatal("Restore accepted an inconsistent snapshot")
			}
		})
	}
	ok := snapshotData{Applied: 5, Last: Cursor{5, 1}, Entries: []snapshotEntry{{Cursor: Cursor{3, 0}, Command: cmd}, {Cursor: Cursor{5, 1}, Command: cmd}}}
	if err := restore(t, newTestMachine(t, testConfig(t)), snapshotOf(t, snapshotVersion, &ok)); err != nil {
		t.Fatalf("Restore of a consistent snapshot: %v", err)
	}
}

// FuzzRestore: Restore of arbitrary bytes returns an error and leaves the
// machine as it was, or succeeds; either way the machine goes on applying,
// snapshotting and restoring.
//
// Gob inputs are large and every new type descriptor is new coverage, so
// run it with a short minimisation time, e.g.
//
//	go test ./fsm -run '^$' -fuzz '^FuzzRestore$' -fuzztime 2000x -fuzzminimizetime 2s
func FuzzRestore(f *testing.F) {
	small := newApplier(f, DefaultConfig())
	small.apply1(withID(Command{Kind: KindClusterInit, ClusterID: "e"}, "init"))
	small.apply(withID(open("h", "c", "u"), "o"), withID(join("h", "c", "g"), "j"))
	small.apply1(withOrigin(publish("h", AudienceGroup, "g", `[1]`), "c", "1", 1))
	f.Add(snapshotBytes(f, small.m))
	valid := snapshotBytes(f, buildState(f, DefaultConfig()).m)
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(valid[:1])
	f.Add([]byte{})
	f.Add([]byte{2})
	empty := newTestMachine(f, DefaultConfig())
	f.Add(snapshotBytes(f, empty))
	f.Fuzz(func(t *testing.T, data []byte) {
		a := newApplier(t, DefaultConfig())
		a.apply1(withID(Command{Kind: KindClusterInit, ClusterID: "e"}, "init"))
		a.apply1(withID(open("h", "c", "u"), "o"))
		before := a.m.Position()
		if err := restore(t, a.m, data); err != nil {
			if after := a.m.Position(); after != before || a.m.Epoch() != "e" {
				t.Fatalf("a failed Restore (%v) changed the state: %+v, was %+v", err, after, before)
			}
		}
		pos := a.m.Position()
		// Restore kept the bytes it validated: they decode.
		if _, err := a.m.Since(pos.Floor, 0); err != nil {
			t.Fatalf("Since(Floor) after Restore: %v", err)
		}
		if pos.Applied == ^uint64(0) {
			return // no next index to apply
		}
		next := &raft.Log{Index: pos.Applied + 1, Type: raft.LogCommand,
			Data: EncodeBatch([]Command{at(withID(publish("h", AudienceAll, "", `[]`), "next"), a.m.Newest())})}
		checkResponse(t, next, a.m.Apply(next))
		if a.m.Position().Applied != next.Index {
			t.Fatalf("applied index %d after applying entry %d", a.m.Position().Applied, next.Index)
		}
		// Whatever the restored state holds, it snapshots and restores.
		b := newTestMachine(t, DefaultConfig())
		if err := restore(t, b, snapshotBytes(t, a.m)); err != nil {
			t.Fatalf("the machine's own snapshot does not restore: %v", err)
		}
		if pa, pb := a.m.Position(), b.Position(); !reflect.DeepEqual(pa, pb) {
			t.Fatalf("restored copy %+v, original %+v", pb, pa)
		}
	})
}
