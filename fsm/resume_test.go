package fsm

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestMachine_ConnResume(t *testing.T) {
	a := newApplier(t, DefaultConfig())
	open := a.apply1(Command{Kind: KindConnOpen, Hub: "h", Conn: "c", User: "u", Node: "n1"}).Cursor
	j1 := a.apply1(Command{Kind: KindGroupJoin, Hub: "h", Conn: "c", Group: "g1"}).Cursor
	j2 := a.apply1(Command{Kind: KindGroupJoin, Hub: "h", Conn: "c", Group: "g2"}).Cursor
	dup := a.apply1(Command{Kind: KindGroupJoin, Hub: "h", Conn: "c", Group: "g2"}).Cursor // no change
	l1 := a.apply1(Command{Kind: KindGroupLeave, Hub: "h", Conn: "c", Group: "g1"}).Cursor
	a.apply1(Command{Kind: KindGroupLeave, Hub: "h", Conn: "c", Group: "nope"}) // no change

	tests := []struct {
		name string
		at   Cursor
		want []string
	}{
		{"before open", Cursor{}, []string{}},
		{"at open", open, []string{}},
		{"after first join", j1, []string{"g1"}},
		{"after second join", j2, []string{"g1", "g2"}},
		{"repeated join changes nothing", dup, []string{"g1", "g2"}},
		{"after leave", l1, []string{"g2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, user, err := a.m.GroupsAt("h", "c", tc.at)
			if err != nil || user != "u" || !reflect.DeepEqual(g, tc.want) {
				t.Fatalf("GroupsAt(%s) = %v, %q, %v; want %v, u", tc.at, g, user, err, tc.want)
			}
		})
	}

	r := a.apply1(Command{Kind: KindConnResume, Hub: "h", Conn: "c", User: "u", Node: "n2", From: j1})
	if r.Err != nil {
		t.Fatalf("resume: %v", r.Err)
	}
	if ci, _ := a.m.Connection("h", "c"); ci.Node != "n2" {
		t.Fatalf("owner after resume = %q, want n2", ci.Node)
	}
	es, _ := a.m.Since(Cursor{Index: r.Cursor.Index - 1, Offset: 0}, 0)
	last := es[len(es)-1]
	if last.Kind != KindConnResume || !reflect.DeepEqual(last.Groups, []string{"g2"}) {
		t.Fatalf("resume entry = %+v, want groups [g2]", last)
	}
	if r := a.apply1(Command{Kind: KindConnResume, Hub: "h", Conn: "c", User: "mallory", Node: "n3"}); !errors.Is(r.Err, ErrResumeDenied) {
		t.Fatalf("resume by another user: %v", r.Err)
	}
	if r := a.apply1(Command{Kind: KindConnResume, Hub: "h", Conn: "gone", User: "u", Node: "n3"}); !errors.Is(r.Err, ErrUnknownConnection) {
		t.Fatalf("resume of an unknown connection: %v", r.Err)
	}
	if _, _, err := a.m.GroupsAt("h", "gone", j1); !errors.Is(err, ErrUnknownConnection) {
		t.Fatalf("GroupsAt of an unknown connection: %v", err)
	}
}

func TestMachine_GroupsAtFoldsHistory(t *testing.T) {
	a := newApplier(t, DefaultConfig())
	a.apply1(Command{Kind: KindConnOpen, Hub: "h", Conn: "c", User: "u", Node: "n1"})
	var cursors []Cursor
	for i := range 3 * maxHistory {
		kind := KindGroupJoin
		if i%3 == 2 {
			kind = KindGroupLeave
		}
		cursors = append(cursors, a.apply1(Command{Kind: kind, Hub: "h", Conn: "c", Group: fmt.Sprintf("g%d", i/3*3)}).Cursor)
	}
	// The recent past is still exact; the distant past is refused, never guessed.
	last := cursors[len(cursors)-1]
	if g, _, err := a.m.GroupsAt("h", "c", last); err != nil || len(g) != 0 {
		t.Fatalf("GroupsAt(last) = %v, %v; want none (every group was left)", g, err)
	}
	mid := cursors[len(cursors)-3] // right after a join of the last group
	if g, _, err := a.m.GroupsAt("h", "c", mid); err != nil || len(g) != 1 {
		t.Fatalf("GroupsAt(recent join) = %v, %v; want one group", g, err)
	}
	if _, _, err := a.m.GroupsAt("h", "c", cursors[0]); !errors.Is(err, ErrHistoryTooOld) {
		t.Fatalf("GroupsAt(first) = %v, want ErrHistoryTooOld", err)
	}
	// A snapshot carries the history.
	m2 := roundTrip(t, a.m)
	g1, _, err1 := a.m.GroupsAt("h", "c", mid)
	g2, _, err2 := m2.GroupsAt("h", "c", mid)
	if !reflect.DeepEqual(g1, g2) || err1 != nil || err2 != nil {
		t.Fatalf("after restore GroupsAt differs: %v/%v vs %v/%v", g1, err1, g2, err2)
	}
}

func roundTrip(t *testing.T, m *Machine) *Machine {
	t.Helper()
	m2 := newTestMachine(t, DefaultConfig())
	if err := restore(t, m2, snapshotBytes(t, m)); err != nil {
		t.Fatalf("restore: %v", err)
	}
	return m2
}
