package fsm

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func invoke(hub, conn, method string, effects uint32, result string) Command {
	c := Command{Kind: KindInvoke, Hub: hub, Conn: conn, Target: method, Effects: effects}
	if result != "" {
		c.Args = []byte(result)
	}
	return c
}

// effect strips what a group's effect must not carry.
func effect(c Command) Command { c.ID, c.Origin = "", Origin{}; return c }

// TestInvoke_GroupShape: an invoke's effects come just before it in its entry, are
// publishes, joins or leaves of its hub, and carry no id or origin; the
// decoder rejects any other shape as malformed and ValidateBatch refuses it.
func TestInvoke_GroupShape(t *testing.T) {
	pub := effect(publish("h", AudienceAll, "", `[1]`))
	for _, tc := range []struct {
		name string
		cmds []Command
		want string // "" = valid
	}{
		{"no effects", []Command{invoke("h", "c1", "Echo", 0, `"hi"`)}, ""},
		{"another command then two effects", []Command{publish("h", AudienceAll, "", `[2]`), pub, effect(join("h", "c1", "g")), invoke("h", "c1", "Send", 2, ``)}, ""},
		{"two groups", []Command{pub, invoke("h", "c1", "A", 1, ``), effect(leave("h", "c2", "g")), invoke("h", "c2", "B", 1, `1`)}, ""},
		{"effects before the entry", []Command{pub, invoke("h", "c1", "Send", 2, ``)}, "with 1 commands before it"},
		{"an open as an effect", []Command{open("h", "c9", ""), invoke("h", "c1", "Send", 1, ``)}, "cannot be an effect"},
		{"an invoke as an effect", []Command{invoke("h", "c1", "X", 0, ``), invoke("h", "c1", "Send", 1, ``)}, "cannot be an effect"},
		{"another hub", []Command{effect(publish("other", AudienceAll, "", `[1]`)), invoke("h", "c1", "Send", 1, ``)}, "in hub"},
		{"an effect with an id", []Command{withID(pub, "x"), invoke("h", "c1", "Send", 1, ``)}, "id or an origin"},
		{"an effect with an origin", []Command{withOrigin(pub, "c1", "", 3), invoke("h", "c1", "Send", 1, ``)}, "id or an origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.cmds {
				tc.cmds[i].Time = t0
			}
			vErr := ValidateBatch(tc.cmds)
			got, dErr := DecodeBatch(EncodeBatch(tc.cmds))
			if tc.want == "" {
				if vErr != nil || dErr != nil {
					t.Fatalf("ValidateBatch: %v; DecodeBatch: %v; want both to accept", vErr, dErr)
				}
				if !reflect.DeepEqual(got, tc.cmds) {
					t.Fatalf("decoded %+v, want %+v", got, tc.cmds)
				}
				return
			}
			if !errors.Is(vErr, ErrInvalid) || !strings.Contains(vErr.Error(), tc.want) {
				t.Errorf("ValidateBatch = %v, want ErrInvalid containing %q", vErr, tc.want)
			}
			if !errors.Is(dErr, ErrMalformed) || errors.Is(dErr, ErrUnknownFormat) || !strings.Contains(dErr.Error(), tc.want) {
				t.Errorf("DecodeBatch = %v, want ErrMalformed (not unknown format) containing %q", dErr, tc.want)
			}
		})
	}
}

// TestInvoke_RoundTrip: every field of an invoke, origin included, survives
// the codec, and EncodedSize is exact.
func TestInvoke_RoundTrip(t *testing.T) {
	c := invoke("chat", "c1", "SendMessage", 3, `{"ok":true}`)
	c.ID, c.Time, c.Reason = "s:c1:7", t0, ""
	c.Origin = Origin{Conn: "c1", InvocationID: "12", Seq: 7}
	b := EncodeCommand(&c)
	if len(b) != EncodedSize(&c) {
		t.Fatalf("EncodedSize = %d, encoding has %d bytes", EncodedSize(&c), len(b))
	}
	got, err := DecodeCommand(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("DecodeCommand = %+v, %v; want %+v", got, err, c)
	}
	f := Command{Kind: KindFormat, Time: t0, Format: 2}
	if got, err := DecodeCommand(EncodeCommand(&f)); err != nil || !reflect.DeepEqual(got, f) {
		t.Fatalf("format: DecodeCommand = %+v, %v", got, err)
	}
	if err := f.Validate(); err == nil {
		t.Fatal("Validate accepted a format command: only a leader writes it, directly")
	}
	stray := publish("h", AudienceAll, "", `[1]`)
	stray.Effects = 2
	if err := stray.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "Effects") {
		t.Fatalf("Validate(publish with Effects) = %v, want a refusal naming Effects", err)
	}
}

// TestInvoke_AppliedAsOne: an invoke and its effects apply together, and
// are skipped together: a copy with the same id (a retried forward) or the
// same origin sequence (a client message resent after a stateful
// reconnect, with another id) applies none of its effects, and each result
// names the first copy's cursor; an expired head skips its effects too.
func TestInvoke_AppliedAsOne(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(open("h", "c1", "u"))
	a.apply1(open("h", "c2", "u2"))
	head := invoke("h", "c1", "JoinAndSend", 2, `"done"`)
	head.ID = "s:c1:1"
	head.Origin = Origin{Conn: "c1", InvocationID: "1", Seq: 1}
	group := []Command{effect(join("h", "c1", "room")), effect(publish("h", AudienceGroup, "room", `["hello"]`)), head}
	res := a.apply(append([]Command(nil), group...)...)
	want := []Result{{Cursor: Cursor{3, 0}}, {Cursor: Cursor{3, 1}}, {Cursor: Cursor{3, 2}}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("first copy: %+v, want %+v", res, want)
	}
	if gs := a.m.GroupConnections("h", "room"); !reflect.DeepEqual(gs, []string{"c1"}) {
		t.Fatalf("room = %v, want [c1]", gs)
	}
	// The same entry again (a retried forward): duplicates of the first.
	res = a.apply(append([]Command{publish("h", AudienceAll, "", `[0]`)}, group...)...)
	want = []Result{{Cursor: Cursor{4, 0}}, {Cursor: Cursor{3, 0}, Duplicate: true}, {Cursor: Cursor{3, 1}, Duplicate: true}, {Cursor: Cursor{3, 2}, Duplicate: true}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("same id: %+v, want %+v", res, want)
	}
	// Resent by the client to another node: another id, the same origin.
	again := append([]Command(nil), group...)
	again[2].ID = "other-node"
	again[0] = effect(leave("h", "c1", "room"))
	res = a.apply(again...)
	if !res[0].Duplicate || !res[1].Duplicate || !res[2].Duplicate {
		t.Fatalf("same origin: %+v, want three duplicates", res)
	}
	if gs := a.m.GroupConnections("h", "room"); !reflect.DeepEqual(gs, []string{"c1"}) {
		t.Fatalf("room after the duplicate = %v, want [c1] (its leave must not apply)", gs)
	}
	es := mustSince(t, a.m, Cursor{2, 0}, 0)
	if got, want := cursorsOf(es), []Cursor{{3, 0}, {3, 1}, {3, 2}, {4, 0}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("cached = %v, want %v (no duplicate is cached)", got, want)
	}
	if es[2].Kind != KindInvoke || string(es[2].Args) != `"done"` || es[2].Effects != 2 {
		t.Fatalf("cached invoke = %+v", es[2].Command)
	}
	// An expired head: its effects are skipped with it.
	a.apply1(at(publish("h", AudienceAll, "", `[9]`), t0+int64(2*MaxCommandAge)))
	old := invoke("h", "c2", "Late", 1, ``)
	old.ID = "late"
	res = a.apply(effect(join("h", "c2", "late-room")), old)
	if !errors.Is(res[0].Err, ErrExpired) || !errors.Is(res[1].Err, ErrExpired) {
		t.Fatalf("expired group: %+v, want ErrExpired twice", res)
	}
	if gs := a.m.GroupConnections("h", "late-room"); len(gs) != 0 {
		t.Fatalf("late-room = %v: an effect of an expired invoke applied", gs)
	}
}

// TestFormat_Recorded: a format command raises Format, is neither cached
// nor digested (an older build skips it, and replicas of both builds must
// stay equal), and survives a snapshot.
func TestFormat_Recorded(t *testing.T) {
	a, b := newApplier(t, testConfig(t)), newApplier(t, testConfig(t))
	if got := a.m.Format(); got != 1 {
		t.Fatalf("Format of a new machine = %d, want 1", got)
	}
	a.apply(publish("h", AudienceAll, "", `[1]`), Command{Kind: KindFormat, Format: 2}, publish("h", AudienceAll, "", `[2]`))
	// b plays an older build: it skips kind 128 as unknown and ignorable.
	b.apply(publish("h", AudienceAll, "", `[1]`), Command{Kind: KindIgnorable + 1}, publish("h", AudienceAll, "", `[2]`))
	if got := a.m.Format(); got != 2 {
		t.Fatalf("Format = %d, want 2", got)
	}
	if a.m.Position().Digest != b.m.Position().Digest {
		t.Fatal("a format command changed the digest")
	}
	if got := cursorsOf(mustSince(t, a.m, Cursor{}, 0)); !reflect.DeepEqual(got, []Cursor{{1, 0}, {1, 2}}) {
		t.Fatalf("cached %v, want 1:0 and 1:2", got)
	}
	a.apply1(Command{Kind: KindFormat, Format: 1}) // never lowers it
	if got := a.m.Format(); got != 2 {
		t.Fatalf("Format after a lower one = %d, want 2", got)
	}
	c := newTestMachine(t, testConfig(t))
	if err := restore(t, c, snapshotBytes(t, a.m)); err != nil {
		t.Fatal(err)
	}
	if got := c.Format(); got != 2 {
		t.Fatalf("Format after restore = %d, want 2", got)
	}
}
