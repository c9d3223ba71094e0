package fsm

import "testing"

func withOrigin(c Command, conn, inv string, seq uint64) Command {
	c.Origin = Origin{Conn: conn, InvocationID: inv, Seq: seq}
	return c
}

// TestMachine_Origin: a stateful connection's client messages are applied
// once by sequence number, whoever submits them and however late; rejects
// and acknowledgement checkpoints are recorded; all of it survives a
// snapshot.
func TestMachine_Origin(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(open("h", "c1", "u"))
	if r := a.apply1(withOrigin(join("h", "c1", "g"), "c1", "0", 1)); r.Err != nil || r.Duplicate {
		t.Fatalf("join: %+v", r)
	}
	p2 := a.apply1(withOrigin(publish("h", AudienceGroup, "g", `[1]`), "c1", "1", 2))
	if p2.Err != nil || p2.Duplicate {
		t.Fatalf("publish: %+v", p2)
	}
	// The same message again (a replay after a reconnect, another node):
	// dropped, with a different command id and long after any dedup window.
	late := withOrigin(publish("h", AudienceGroup, "g", `[1]`), "c1", "1", 2)
	late.ID, late.Time = "other-node-id", t0+int64(10*DedupWindow)
	if r := a.apply1(late); !r.Duplicate {
		t.Fatalf("replayed seq 2: %+v, want a duplicate", r)
	}
	if r := a.apply1(withOrigin(publish("h", AudienceGroup, "g", `[0]`), "c1", "", 1)); !r.Duplicate {
		t.Fatalf("older seq 1: %+v, want a duplicate", r)
	}
	rej := Command{Kind: KindReject, Hub: "h", Reason: "Unknown hub method 'x'", Origin: Origin{Conn: "c1", InvocationID: "2", Seq: 3}}
	if r := a.apply1(rej); r.Err != nil || r.Duplicate {
		t.Fatalf("reject: %+v", r)
	}
	if r := a.apply1(rej); !r.Duplicate {
		t.Fatalf("reject again: %+v, want a duplicate", r)
	}
	ack := Command{Kind: KindConnAck, Hub: "h", Conn: "c1", AckSeq: 2, From: p2.Cursor}
	a.apply1(ack)
	stale := ack
	stale.AckSeq, stale.From = 1, Cursor{Index: 1}
	a.apply1(stale) // an older checkpoint never moves it back
	if r := a.apply1(Command{Kind: KindConnAck, Hub: "h", Conn: "nope", AckSeq: 1}); r.Err != ErrUnknownConnection {
		t.Errorf("ack of an unknown connection: %v", r.Err)
	}
	want := ConnInfo{ID: "c1", Hub: "h", User: "u", Node: "", ClientSeq: 3, AckSeq: 2, AckAt: p2.Cursor}
	check := func(m *Machine, what string) {
		t.Helper()
		ci, ok := m.Connection("h", "c1")
		if !ok || ci.ClientSeq != want.ClientSeq || ci.AckSeq != want.AckSeq || ci.AckAt != want.AckAt {
			t.Errorf("%s: %+v, want ClientSeq 3, AckSeq 2 at %s", what, ci, p2.Cursor)
		}
	}
	check(a.m, "applied")
	b := newTestMachine(t, testConfig(t))
	if err := restore(t, b, snapshotBytes(t, a.m)); err != nil {
		t.Fatal(err)
	}
	check(b, "restored")

	// Messages of a connection the log does not know are applied (their
	// effects are the command's own business) and tracked by nobody.
	if r := a.apply1(withOrigin(publish("h", AudienceAll, "", `[2]`), "gone", "", 1)); r.Duplicate || r.Err != nil {
		t.Errorf("origin of an unknown connection: %+v", r)
	}
}

func TestCommand_ValidateOrigin(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Command
		ok   bool
	}{
		{"publish with origin", withOrigin(publish("h", AudienceAll, "", `[]`), "c", "1", 1), true},
		{"reject", Command{Kind: KindReject, Hub: "h", Origin: Origin{Conn: "c", Seq: 1}}, true},
		{"reject without origin", Command{Kind: KindReject, Hub: "h"}, false},
		{"origin without conn", withOrigin(publish("h", AudienceAll, "", `[]`), "", "1", 1), false},
		{"origin on a conn-open", withOrigin(open("h", "c", "u"), "c", "", 1), false},
		{"conn-ack", Command{Kind: KindConnAck, Hub: "h", Conn: "c", AckSeq: 1}, true},
		{"conn-ack without conn", Command{Kind: KindConnAck, Hub: "h", AckSeq: 1}, false},
	} {
		if err := tc.c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestMachine_OriginOrder: from log format FormatOrdered, the commands of
// one origin apply in the order of their sequence numbers; one that comes
// early is refused with ErrOutOfOrder and leaves no trace, so it can come
// again in its turn. Before that format the rule is not applied (an older
// build does not know it, and replicas must stay equal).
func TestMachine_OriginOrder(t *testing.T) {
	type step struct {
		seq     uint64
		id      string
		wantErr error
		wantDup bool
	}
	for _, tc := range []struct {
		name   string
		format uint32
		steps  []step
		seq    uint64 // ClientSeq at the end
	}{
		{"in order", FormatOrdered, []step{{1, "a", nil, false}, {2, "b", nil, false}, {3, "c", nil, false}}, 3},
		{"a gap is refused, then filled", FormatOrdered, []step{
			{1, "a", nil, false}, {3, "c", ErrOutOfOrder, false}, {4, "d", ErrOutOfOrder, false},
			{2, "b", nil, false}, {3, "c", nil, false}, {4, "d", nil, false}}, 4},
		{"a refused command again with a new id", FormatOrdered, []step{
			{2, "b", ErrOutOfOrder, false}, {1, "a", nil, false}, {2, "b2", nil, false}}, 2},
		{"older and equal numbers are duplicates", FormatOrdered, []step{
			{1, "a", nil, false}, {2, "b", nil, false}, {1, "a2", nil, true}, {2, "b", nil, true}}, 2},
		{"a copy of an applied command is a duplicate, whatever its number", FormatOrdered, []step{
			{1, "a", nil, false}, {5, "a", nil, true}}, 1},
		{"format 2: no order rule", FormatInvoke, []step{
			{1, "a", nil, false}, {3, "c", nil, false}, {2, "b", nil, true}}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t, testConfig(t))
			a.apply1(Command{Kind: KindFormat, Format: tc.format})
			a.apply1(open("h", "c1", "u"))
			before := len(mustSince(t, a.m, Cursor{}, 1000))
			applied := 0
			for i, s := range tc.steps {
				r := a.apply1(withID(withOrigin(publish("h", AudienceAll, "", `[1]`), "c1", "", s.seq), s.id))
				if r.Err != s.wantErr || r.Duplicate != s.wantDup {
					t.Fatalf("step %d (seq %d, id %s): %+v, want err %v, duplicate %v", i, s.seq, s.id, r, s.wantErr, s.wantDup)
				}
				if r.Err == nil && !r.Duplicate {
					applied++
				}
			}
			if ci, _ := a.m.Connection("h", "c1"); ci.ClientSeq != tc.seq {
				t.Errorf("ClientSeq %d, want %d", ci.ClientSeq, tc.seq)
			}
			if got := len(mustSince(t, a.m, Cursor{}, 1000)) - before; got != applied {
				t.Errorf("%d entries cached, want the %d applied", got, applied)
			}
		})
	}
}
