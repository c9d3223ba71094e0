package fsm

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
)

// checkMembership compares everything the registry says of connection c's
// groups with want (the groups it is in), and the membership of every
// group in all with members.
func checkMembership(t *testing.T, m *Machine, conn string, want map[string]bool, all []string) {
	t.Helper()
	var sorted []string
	for g := range want {
		sorted = append(sorted, g)
	}
	sort.Strings(sorted)
	ci, ok := m.Connection("h", conn)
	if !ok || !reflect.DeepEqual(ci.Groups, sorted) {
		t.Fatalf("Connection(%s).Groups = %v (%v), want %v", conn, ci.Groups, ok, sorted)
	}
	for _, g := range all {
		n, member, ok := m.ConnectionGroupCount("h", conn, g)
		if !ok || n != len(want) || member != want[g] {
			t.Fatalf("ConnectionGroupCount(%s, %s) = %d, %v, %v; want %d, %v", conn, g, n, member, ok, len(want), want[g])
		}
		if in := slices.Contains(m.GroupConnections("h", g), conn); in != want[g] {
			t.Fatalf("GroupConnections(%s) has %s: %v, want %v", g, conn, in, want[g])
		}
	}
}

// TestMachine_GroupMembership: a connection's groups are a sorted slice
// (not a set); joins and leaves, repeated or of absent groups, in one or
// thousands of groups, must read as they did.
func TestMachine_GroupMembership(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(open("h", "c1", "u"))
	a.apply1(open("h", "c2", "u"))
	all := []string{"b", "a", "c", "absent"}
	want := map[string]bool{}

	opened := a.m.Position().Last
	steps := []struct {
		c      Command
		change func()
	}{
		{join("h", "c1", "b"), func() { want["b"] = true }},
		{join("h", "c1", "b"), func() {}}, // twice: no change
		{join("h", "c1", "a"), func() { want["a"] = true }},
		{leave("h", "c1", "absent"), func() {}},
		{join("h", "c1", "c"), func() { want["c"] = true }},
		{leave("h", "c1", "a"), func() { delete(want, "a") }},
		{leave("h", "c1", "a"), func() {}},
		{join("h", "c2", "a"), func() {}}, // another connection's join
	}
	var at []Cursor
	var states []map[string]bool
	for _, s := range steps {
		if r := a.apply1(s.c); r.Err != nil {
			t.Fatalf("%s %s: %v", s.c.Kind, s.c.Group, r.Err)
		}
		s.change()
		checkMembership(t, a.m, "c1", want, all)
		at = append(at, a.m.Position().Last)
		states = append(states, maps.Clone(want))
	}
	// GroupsAt rebuilds every step from the history.
	if g, _, err := a.m.GroupsAt("h", "c1", opened); err != nil || len(g) != 0 {
		t.Fatalf("GroupsAt(open) = %v, %v; want none", g, err)
	}
	for i, c := range at {
		g, _, err := a.m.GroupsAt("h", "c1", c)
		if wantG := sortedSet(states[i]); err != nil || !reflect.DeepEqual(g, wantG) {
			t.Fatalf("GroupsAt(%s) = %v, %v; want %v", c, g, err, wantG)
		}
	}
	// A resume's entry carries a copy: later changes do not reach it.
	r := a.apply1(ConnResume("h", "c1", "u", "node-b", at[0]))
	a.apply1(join("h", "c1", "aa"))
	es := mustSince(t, a.m, Cursor{Index: r.Cursor.Index - 1}, 1)
	if len(es) != 1 || !reflect.DeepEqual(es[0].Groups, []string{"b", "c"}) {
		t.Fatalf("resume entry = %+v, want groups [b c]", es)
	}
	a.apply1(leave("h", "c1", "aa"))

	// Leaving the last group leaves none, as a connection that never joined.
	a.apply1(leave("h", "c1", "b"))
	a.apply1(leave("h", "c1", "c"))
	clear(want)
	checkMembership(t, a.m, "c1", want, all)
	if r := a.apply1(ConnResume("h", "c1", "u", "node-c", at[0])); r.Err != nil {
		t.Fatal(r.Err)
	}
	es = mustSince(t, a.m, Cursor{Index: a.m.Position().Last.Index - 1}, 0)
	if es[0].Groups != nil {
		t.Fatalf("resume of a connection in no group: Groups = %#v, want nil", es[0].Groups)
	}

	// The snapshot restores the membership; a close leaves every group.
	a.apply1(join("h", "c1", "z"))
	want["z"] = true
	m2 := roundTrip(t, a.m)
	checkMembership(t, m2, "c1", want, append(all, "z"))
	a.apply1(closeConn("h", "c1"))
	if got := a.m.GroupConnections("h", "z"); got != nil {
		t.Fatalf("group z after the close = %v, want none", got)
	}
	if got := a.m.GroupConnections("h", "a"); !reflect.DeepEqual(got, []string{"c2"}) {
		t.Fatalf("group a after the close = %v, want [c2]", got)
	}
}

// TestMachine_ManyGroups: a connection in thousands of groups, joined and
// left in random order, matches a set model, and restores.
func TestMachine_ManyGroups(t *testing.T) {
	const n = 3000
	a := newApplier(t, testConfig(t))
	a.apply1(open("h", "c", ""))
	rng := rand.New(rand.NewPCG(7, 7))
	model := map[string]bool{}
	var all []string
	for i := range n {
		all = append(all, fmt.Sprintf("g%04d", i))
	}
	for range 4 * n {
		g := all[rng.IntN(n)]
		cmd := join("h", "c", g)
		if rng.IntN(3) == 0 {
			cmd = leave("h", "c", g)
			delete(model, g)
		} else {
			model[g] = true
		}
		if r := a.apply1(cmd); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if len(model) < n/2 {
		t.Fatalf("the walk left %d groups joined; want thousands", len(model))
	}
	checkMembership(t, a.m, "c", model, all)
	checkMembership(t, roundTrip(t, a.m), "c", model, all)
}

// TestMachine_RestoreUnsortedGroups: builds before the groups were a
// sorted slice wrote them in map order; Restore sorts them (and drops a
// repeat, which no build writes).
func TestMachine_RestoreUnsortedGroups(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(withID(Command{Kind: KindClusterInit, ClusterID: "e"}, "init"))
	a.apply1(open("h", "c", "u"))
	for _, g := range []string{"m", "z", "a"} {
		a.apply1(join("h", "c", g))
	}
	d := snapshotDataOf(t, snapshotBytes(t, a.m))
	if len(d.Conns) != 1 {
		t.Fatalf("snapshot has %d connections", len(d.Conns))
	}
	d.Conns[0].Groups = []string{"z", "a", "m", "a"}
	m2 := newTestMachine(t, testConfig(t))
	if err := restore(t, m2, snapshotOf(t, snapshotVersion, &d)); err != nil {
		t.Fatal(err)
	}
	checkMembership(t, m2, "c", map[string]bool{"a": true, "m": true, "z": true}, []string{"a", "m", "z", "b"})
}

// sortedSet lists a set's members, sorted, as GroupsAt does ([] for none).
func sortedSet(m map[string]bool) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestMachine_SnapshotConnBase: a connection keeps its history's base and
// its acknowledgement state in pointers that most connections leave nil;
// the snapshot still carries Base (Opened until a fold), BaseGroups and
// the acks as before, and a base that is not Opened (a fold, or a
// snapshot that wrote another) survives Restore.
func TestMachine_SnapshotConnBase(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(withID(Command{Kind: KindClusterInit, ClusterID: "e"}, "init"))
	opened := a.apply1(open("h", "plain", "u")).Cursor
	a.apply1(join("h", "plain", "g"))
	if cs, _ := a.m.st.conn("h", "plain"); cs.folded != nil || cs.acks != nil {
		t.Fatalf("a plain connection holds %+v, %+v; want neither", cs.folded, cs.acks)
	}
	d := snapshotDataOf(t, snapshotBytes(t, a.m))
	if sc := d.Conns[0]; sc.Base != opened || sc.BaseGroups != nil || sc.ClientSeq != 0 || sc.AckSeq != 0 {
		t.Fatalf("snapshot of a plain connection: %+v; want Base %s", sc, opened)
	}
	// Another base, groups at it, acks: as another writer might have left them.
	d.Conns[0].Base = Cursor{Index: 1}
	d.Conns[0].BaseGroups = []string{"g0"}
	d.Conns[0].ClientSeq, d.Conns[0].AckSeq, d.Conns[0].AckAt = 4, 3, Cursor{Index: 2}
	m2 := newTestMachine(t, testConfig(t))
	if err := restore(t, m2, snapshotOf(t, snapshotVersion, &d)); err != nil {
		t.Fatal(err)
	}
	d2 := snapshotDataOf(t, snapshotBytes(t, m2))
	if !reflect.DeepEqual(d2.Conns, d.Conns) {
		t.Fatalf("restored and snapshotted again: %+v, want %+v", d2.Conns, d.Conns)
	}
	ci, _ := m2.Connection("h", "plain")
	if ci.ClientSeq != 4 || ci.AckSeq != 3 || ci.AckAt != (Cursor{Index: 2}) {
		t.Fatalf("Connection after restore = %+v", ci)
	}
}
