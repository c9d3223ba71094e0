package fsm

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Tests of KindEventsDone (how far the leader delivered connection events)
// and of the user a close entry carries.

func eventsDone(c Cursor) Command { return Command{Kind: KindEventsDone, From: c} }

// TestEventsDone_Codec: the command round-trips, EncodedSize is exact, it
// needs no hub, and Validate refuses it without a cursor or with a field it
// does not carry.
func TestEventsDone_Codec(t *testing.T) {
	c := eventsDone(Cursor{Index: 1 << 40, Offset: 7})
	c.ID, c.Time = "ev-1", t0
	b := EncodeCommand(&c)
	if len(b) != EncodedSize(&c) {
		t.Fatalf("EncodedSize = %d, encoding has %d bytes", EncodedSize(&c), len(b))
	}
	got, err := DecodeCommand(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("DecodeCommand = %+v, %v; want %+v", got, err, c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate of a valid events-done (no hub) = %v", err)
	}
	if got := KindEventsDone.String(); got != "events-done" {
		t.Errorf("String() = %q", got)
	}
	for _, tc := range []struct {
		name string
		cmd  Command
		want string
	}{
		{"no cursor", eventsDone(Cursor{}), "without a cursor"},
		{"a connection", Command{Kind: KindEventsDone, From: Cursor{Index: 3}, Conn: "c1"}, "does not carry Conn"},
		{"a reason", Command{Kind: KindEventsDone, From: Cursor{Index: 3}, Reason: "x"}, "does not carry Reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cmd.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
	// A byte after the cursor is malformed (a newer format adds a kind,
	// never bytes), not an unknown format.
	_, err = DecodeCommand(append(b, 0))
	if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnknownFormat) {
		t.Fatalf("DecodeCommand with a trailing byte = %v, want malformed", err)
	}
}

// TestEventsDone_Apply: the mark only moves forward, is cached like any
// command, and survives a snapshot.
func TestEventsDone_Apply(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(Command{Kind: KindClusterInit, ClusterID: "c"})
	if got := a.m.EventsDone(); !got.IsZero() {
		t.Fatalf("EventsDone of a new machine = %v, want zero", got)
	}
	hi, lo := Cursor{Index: 9, Offset: 1}, Cursor{Index: 4}
	if r := a.apply1(eventsDone(hi)); r.Err != nil {
		t.Fatalf("apply: %v", r.Err)
	}
	if got := a.m.EventsDone(); got != hi {
		t.Fatalf("EventsDone = %v, want %v", got, hi)
	}
	a.apply1(eventsDone(lo)) // a deposed leader's late mark
	if got := a.m.EventsDone(); got != hi {
		t.Fatalf("EventsDone after an older mark = %v, want it to stay %v", got, hi)
	}
	es := mustSince(t, a.m, Cursor{}, 0)
	if n := len(es); n != 3 || es[1].Kind != KindEventsDone || es[1].From != hi {
		t.Fatalf("cached entries = %+v, want init and two marks", es)
	}

	m2 := newTestMachine(t, testConfig(t))
	if err := restore(t, m2, snapshotBytes(t, a.m)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got := m2.EventsDone(); got != hi {
		t.Fatalf("EventsDone after restore = %v, want %v", got, hi)
	}
}

// TestConnClose_EntryCarriesUser: a close as the stream serves it names the
// closed connection's user, also after a snapshot (the encoding does not
// carry it), and a close of an unknown connection names none.
func TestConnClose_EntryCarriesUser(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(Command{Kind: KindClusterInit, ClusterID: "c"})
	a.apply(open("h", "c1", "alice"), open("h", "c2", ""))
	a.apply(closeConn("h", "c1"), closeConn("h", "c2"), closeConn("h", "c9"))
	check := func(m *Machine) {
		t.Helper()
		var users []string
		var errs []error
		for _, e := range mustSince(t, m, Cursor{}, 0) {
			if e.Kind == KindConnClose {
				users = append(users, e.User)
				errs = append(errs, e.Err)
			}
		}
		if !reflect.DeepEqual(users, []string{"alice", "", ""}) || errs[2] != ErrUnknownConnection {
			t.Fatalf("close entries: users %q, errors %v; want alice, anonymous, unknown", users, errs)
		}
	}
	check(a.m)
	m2 := newTestMachine(t, testConfig(t))
	if err := restore(t, m2, snapshotBytes(t, a.m)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	check(m2)
	if p1, p2 := a.m.Position(), m2.Position(); p1.Bytes != p2.Bytes {
		t.Fatalf("cached bytes %d, after restore %d: the user must count the same", p1.Bytes, p2.Bytes)
	}
	// A submitter cannot write it: the close does not encode a user.
	c := closeConn("h", "c1")
	c.User = "alice"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "does not carry User") {
		t.Fatalf("Validate of a close with a user = %v, want refused", err)
	}
}
