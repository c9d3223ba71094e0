package fsm

import (
	"reflect"
	"testing"
)

// TestConstructors: each constructor makes a command of its kind with the
// fields given where the codec carries them, which Validate accepts (once
// its Origin is set, for a reject) and which survives the codec.
func TestConstructors(t *testing.T) {
	at := Cursor{Index: 40, Offset: 2}
	origin := Origin{Conn: "c1", InvocationID: "7", Seq: 3}
	tests := []struct {
		name string
		got  Command
		want Command
	}{
		{"publish", Publish("chat", AudienceGroup, "room", "say", []byte(`[1]`), []string{"c9"}),
			Command{Kind: KindPublish, Hub: "chat", Audience: AudienceGroup, Key: "room", Target: "say", Args: []byte(`[1]`), Exclude: []string{"c9"}}},
		{"group-join", GroupJoin("chat", "c1", "room"), Command{Kind: KindGroupJoin, Hub: "chat", Conn: "c1", Group: "room"}},
		{"group-leave", GroupLeave("chat", "c1", "room"), Command{Kind: KindGroupLeave, Hub: "chat", Conn: "c1", Group: "room"}},
		{"conn-open", ConnOpen("chat", "c1", "alice", "n1"), Command{Kind: KindConnOpen, Hub: "chat", Conn: "c1", User: "alice", Node: "n1"}},
		{"conn-resume", ConnResume("chat", "c1", "alice", "n2", at),
			Command{Kind: KindConnResume, Hub: "chat", Conn: "c1", User: "alice", Node: "n2", From: at}},
		{"conn-close", ConnClose("chat", "c1", "bye"), Command{Kind: KindConnClose, Hub: "chat", Conn: "c1", Reason: "bye"}},
		{"conn-ack", ConnAck("chat", "c1", 12, at), Command{Kind: KindConnAck, Hub: "chat", Conn: "c1", AckSeq: 12, From: at}},
		{"reject", func() Command { c := Reject("chat", "no such method"); c.Origin = origin; return c }(),
			Command{Kind: KindReject, Hub: "chat", Reason: "no such method", Origin: origin}},
		{"invoke", Invoke("chat", "c1", "Add", 2, []byte(`3`)),
			Command{Kind: KindInvoke, Hub: "chat", Conn: "c1", Target: "Add", Effects: 2, Args: []byte(`3`)}},
		{"events-done", EventsDone(at), Command{Kind: KindEventsDone, From: at}},
		{"cluster-init", ClusterInit("5f1c", []byte("0123456789abcdef"), 99),
			Command{Kind: KindClusterInit, ClusterID: "5f1c", Secret: []byte("0123456789abcdef"), Time: 99}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", tt.got, tt.want)
			}
			if err := tt.got.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			back, err := DecodeCommand(EncodeCommand(&tt.got))
			if err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
			if !reflect.DeepEqual(normalize(back), normalize(tt.got)) {
				t.Fatalf("round trip: got %+v\nwant %+v", back, tt.got)
			}
		})
	}
	// KindFormat is ignorable: Validate refuses it from submitters (only
	// the leader writes it, straight to Raft), and the codec carries it.
	f := FormatKnown(LogFormat, 7)
	if want := (Command{Kind: KindFormat, Format: LogFormat, Time: 7}); !reflect.DeepEqual(f, want) {
		t.Fatalf("FormatKnown = %+v, want %+v", f, want)
	}
	back, err := DecodeCommand(EncodeCommand(&f))
	if err != nil || back.Kind != KindFormat || back.Format != LogFormat {
		t.Fatalf("FormatKnown round trip: %+v, %v", back, err)
	}
}
