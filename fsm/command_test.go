package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// sampleCommands returns one command per kind and audience, with every field
// that kind encodes set, keyed by a subtest name.
func sampleCommands() []struct {
	name string
	cmd  Command
} {
	binaryArgs := []byte{0x00, 0x01, 0xff, 0xfe, '[', '"', 0x1e, 0x80, 0xc3, 0x28, ']'}
	return []struct {
		name string
		cmd  Command
	}{
		{name: "cluster-init", cmd: Command{Kind: KindClusterInit, ID: "init-1", Time: 1_700_000_000_000_000_000, ClusterID: "5f1c0a9e"}},
		{name: "cluster-init minimal", cmd: Command{Kind: KindClusterInit}},
		{name: "publish all", cmd: Command{Kind: KindPublish, ID: "p-all", Time: 42, Hub: "chat",
			Audience: AudienceAll, Target: "receive", Args: []byte(`["hello",1,{"a":null}]`)}},
		{name: "publish all with exclude", cmd: Command{Kind: KindPublish, ID: "p-all-x", Time: 43, Hub: "chat",
			Audience: AudienceAll, Exclude: []string{"c1", "c2", ""}, Target: "receive", Args: []byte(`[]`)}},
		{name: "publish group", cmd: Command{Kind: KindPublish, ID: "p-grp", Time: -5, Hub: "chat",
			Audience: AudienceGroup, Key: "room-1", Exclude: []string{"c9"}, Target: "roomMessage", Args: []byte(`["x"]`)}},
		{name: "publish user", cmd: Command{Kind: KindPublish, ID: "p-usr", Time: 1 << 62, Hub: "notify",
			Audience: AudienceUser, Key: "alice", Target: "notify", Args: binaryArgs}},
		{name: "publish connection", cmd: Command{Kind: KindPublish, ID: "p-conn", Time: -1 << 63, Hub: "h",
			Audience: AudienceConnection, Key: "conn-7", Target: "direct"}},
		{name: "publish empty args", cmd: Command{Kind: KindPublish, Audience: AudienceAll}},
		{name: "publish long exclude", cmd: Command{Kind: KindPublish, ID: "p-long", Hub: "h", Audience: AudienceGroup,
			Key: "g", Exclude: strings.Fields(strings.Repeat("conn ", 300)), Target: "t", Args: bytes.Repeat([]byte{0xab}, 5000)}},
		{name: "group-join", cmd: Command{Kind: KindGroupJoin, ID: "j", Time: 7, Hub: "chat", Conn: "c1", Group: "room-1"}},
		{name: "group-leave", cmd: Command{Kind: KindGroupLeave, ID: "l", Time: 8, Hub: "chat", Conn: "c1", Group: "room-1"}},
		{name: "conn-open", cmd: Command{Kind: KindConnOpen, ID: "o", Time: 9, Hub: "chat", Conn: "c1", User: "alice", Node: "node-a"}},
		{name: "conn-open anonymous", cmd: Command{Kind: KindConnOpen, ID: "o2", Time: 9, Hub: "chat", Conn: "c2", Node: "node-b"}},
		{name: "conn-close", cmd: Command{Kind: KindConnClose, ID: "x", Time: 10, Hub: "chat", Conn: "c1", Reason: "transport closed: \x00\xff"}},
		{name: "publish with origin", cmd: Command{Kind: KindPublish, ID: "s:c1:3", Hub: "chat", Audience: AudienceAll,
			Target: "t", Args: []byte(`[1]`), Origin: Origin{Conn: "c1", InvocationID: "7", Seq: 3}}},
		{name: "group-join with origin", cmd: Command{Kind: KindGroupJoin, Hub: "chat", Conn: "c1", Group: "g",
			Origin: Origin{Conn: "c1", InvocationID: "0", Seq: 1}}},
		{name: "reject", cmd: Command{Kind: KindReject, ID: "s:c1:4", Hub: "chat", Reason: "Unknown hub method 'x'",
			Origin: Origin{Conn: "c1", Seq: 4}}},
		{name: "conn-ack", cmd: Command{Kind: KindConnAck, Hub: "chat", Conn: "c1", AckSeq: 12, From: Cursor{Index: 40, Offset: 2}}},
		{name: "ignorable 129", cmd: Command{Kind: KindIgnorable + 1, ID: "future", Time: 11, Hub: "chat"}},
		{name: "ignorable 255", cmd: Command{Kind: 255, ID: "future-2", Time: 12}},
	}
}

// normalize makes empty slices nil, since the codec does not distinguish
// them (Exclude, Args, Secret).
func normalize(c Command) Command {
	if len(c.Exclude) == 0 {
		c.Exclude = nil
	}
	if len(c.Args) == 0 {
		c.Args = nil
	}
	if len(c.Secret) == 0 {
		c.Secret = nil
	}
	return c
}

func normalizeAll(cmds []Command) []Command {
	if len(cmds) == 0 {
		return nil
	}
	out := make([]Command, len(cmds))
	for i, c := range cmds {
		out[i] = normalize(c)
	}
	return out
}

func TestEncodeCommand_RoundTrip(t *testing.T) {
	for _, tt := range sampleCommands() {
		t.Run(tt.name, func(t *testing.T) {
			data := EncodeCommand(&tt.cmd)
			got, err := DecodeCommand(data)
			if err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(tt.cmd)) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.cmd)
			}
		})
	}
}

func TestEncodeBatch_RoundTrip(t *testing.T) {
	samples := sampleCommands()
	for _, tt := range samples {
		t.Run("single "+tt.name, func(t *testing.T) {
			got, err := DecodeBatch(EncodeBatch([]Command{tt.cmd}))
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			if want := []Command{normalize(tt.cmd)}; !reflect.DeepEqual(normalizeAll(got), want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
		})
	}
	t.Run("all kinds in one batch", func(t *testing.T) {
		var cmds []Command
		for _, tt := range samples {
			cmds = append(cmds, tt.cmd)
		}
		got, err := DecodeBatch(EncodeBatch(cmds))
		if err != nil {
			t.Fatalf("DecodeBatch: %v", err)
		}
		if !reflect.DeepEqual(normalizeAll(got), normalizeAll(cmds)) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, cmds)
		}
	})
	t.Run("empty batch", func(t *testing.T) {
		got, err := DecodeBatch(EncodeBatch(nil))
		if err != nil {
			t.Fatalf("DecodeBatch: %v", err)
		}
		if len(got) != 0 {
			t.Fatalf("got %d commands, want 0", len(got))
		}
	})
}

func TestEncodeCommand_DropsIrrelevantFields(t *testing.T) {
	tests := []struct {
		name string
		in   Command
		want Command
	}{
		{
			name: "join drops publish fields",
			in: Command{Kind: KindGroupJoin, ID: "1", Hub: "h", Conn: "c", Group: "g",
				Audience: AudienceAll, Key: "k", Exclude: []string{"e"}, Target: "t", Args: []byte("[]"), User: "u", ClusterID: "x"},
			want: Command{Kind: KindGroupJoin, ID: "1", Hub: "h", Conn: "c", Group: "g"},
		},
		{
			name: "publish drops registry fields",
			in: Command{Kind: KindPublish, ID: "2", Hub: "h", Audience: AudienceAll, Target: "t",
				Conn: "c", Group: "g", User: "u", Node: "n", Reason: "r", ClusterID: "x"},
			want: Command{Kind: KindPublish, ID: "2", Hub: "h", Audience: AudienceAll, Target: "t"},
		},
		{
			name: "ignorable keeps only common fields",
			in:   Command{Kind: 200, ID: "3", Time: 5, Hub: "h", Conn: "c", Target: "t", Args: []byte("[]")},
			want: Command{Kind: 200, ID: "3", Time: 5, Hub: "h"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeCommand(EncodeCommand(&tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(got), tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeCommand_DoesNotAliasInput(t *testing.T) {
	in := Command{Kind: KindPublish, ID: "id", Hub: "h", Audience: AudienceGroup, Key: "g",
		Exclude: []string{"c1"}, Target: "t", Args: []byte(`["abc"]`)}
	data := EncodeCommand(&in)
	got, err := DecodeCommand(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 'Z'
	}
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("decoded command changed with its input buffer: %+v", got)
	}
}

func TestDecodeCommand_Truncated(t *testing.T) {
	for _, tt := range sampleCommands() {
		t.Run(tt.name, func(t *testing.T) {
			data := EncodeCommand(&tt.cmd)
			for i := 0; i < len(data); i++ {
				c, err := DecodeCommand(data[:i:i])
				if err == nil && !tt.cmd.Origin.IsZero() && c.Origin.IsZero() && bytes.Equal(EncodeCommand(&c), data[:i]) {
					continue // cut right before the optional Origin trailer: the same command without it
				}
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("DecodeCommand(first %d of %d bytes) error = %v, want ErrMalformed", i, len(data), err)
				}
			}
		})
	}
}

func TestDecodeBatch_Truncated(t *testing.T) {
	for _, tt := range sampleCommands() {
		t.Run(tt.name, func(t *testing.T) {
			data := EncodeBatch([]Command{tt.cmd, tt.cmd})
			for i := 0; i < len(data); i++ {
				_, err := DecodeBatch(data[:i:i])
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("DecodeBatch(first %d of %d bytes) error = %v, want ErrMalformed", i, len(data), err)
				}
			}
		})
	}
}

// header encodes the common fields of a command of kind k.
func header(k Kind) []byte {
	b := []byte{byte(k)}
	b = appendString(b, "id")
	b = binary.AppendVarint(b, 1)
	return appendString(b, "hub")
}

func TestDecodeCommand_Errors(t *testing.T) {
	valid := func(c Command) []byte { return EncodeCommand(&c) }
	hugeUvarint := binary.AppendUvarint(nil, 1<<62)
	overflow := bytes.Repeat([]byte{0xff}, 11)

	tests := []struct {
		name string
		data []byte
	}{
		{name: "empty", data: nil},
		{name: "kind 0", data: header(0)},
		{name: "kind 7", data: header(7)},
		{name: "kind 127", data: header(127)},
		{name: "kind 127 bare", data: []byte{127}},
		{name: "unknown kind truncated header", data: header(99)[:3]},
		{name: "audience 0", data: valid(Command{Kind: KindPublish, Audience: 0})},
		{name: "audience 5", data: valid(Command{Kind: KindPublish, Audience: 5})},
		{name: "audience 255", data: valid(Command{Kind: KindPublish, Audience: 255})},
		{name: "trailing byte cluster-init", data: append(valid(Command{Kind: KindClusterInit, ClusterID: "c"}), 0)},
		{name: "trailing byte publish", data: append(valid(Command{Kind: KindPublish, Audience: AudienceAll}), 0)},
		{name: "trailing byte join", data: append(valid(Command{Kind: KindGroupJoin, Conn: "c", Group: "g"}), 'x')},
		{name: "trailing byte leave", data: append(valid(Command{Kind: KindGroupLeave, Conn: "c", Group: "g"}), 'x')},
		{name: "trailing byte open", data: append(valid(Command{Kind: KindConnOpen, Conn: "c"}), 1, 2, 3)},
		{name: "trailing byte close", data: append(valid(Command{Kind: KindConnClose, Conn: "c"}), 0xff)},
		{name: "huge id length", data: append([]byte{byte(KindClusterInit)}, hugeUvarint...)},
		{name: "max uint64 id length", data: append([]byte{byte(KindClusterInit)}, binary.AppendUvarint(nil, ^uint64(0))...)},
		{name: "uvarint overflow", data: append([]byte{byte(KindClusterInit)}, overflow...)},
		{name: "varint overflow time", data: append(append([]byte{byte(KindClusterInit)}, 0), overflow...)},
		{name: "huge exclude count", data: func() []byte {
			b := append(header(KindPublish), byte(AudienceAll))
			b = appendString(b, "")
			return binary.AppendUvarint(b, 1<<40)
		}()},
		{name: "exclude count over limit", data: func() []byte {
			b := append(header(KindPublish), byte(AudienceAll))
			b = appendString(b, "")
			b = binary.AppendUvarint(b, maxExclude+1)
			return append(b, make([]byte, maxExclude+1)...) // enough bytes for empty strings
		}()},
		{name: "exclude count over remaining bytes", data: func() []byte {
			b := append(header(KindPublish), byte(AudienceAll))
			b = appendString(b, "")
			b = binary.AppendUvarint(b, 10)
			return append(b, 0, 0, 0)
		}()},
		{name: "huge args length", data: func() []byte {
			b := append(header(KindPublish), byte(AudienceAll))
			b = appendString(b, "")
			b = binary.AppendUvarint(b, 0)
			b = appendString(b, "t")
			return binary.AppendUvarint(b, maxFieldBytes+1)
		}()},
		{name: "args length one past end", data: func() []byte {
			b := append(header(KindPublish), byte(AudienceAll))
			b = appendString(b, "")
			b = binary.AppendUvarint(b, 0)
			b = appendString(b, "t")
			b = binary.AppendUvarint(b, 4)
			return append(b, "[1]"...)
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			c, err := DecodeCommand(tt.data)
			runtime.ReadMemStats(&ms1)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeCommand error = %v (command %+v), want ErrMalformed", err, c)
			}
			if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 4<<20 {
				t.Fatalf("DecodeCommand allocated %d bytes for a %d-byte input", alloc, len(tt.data))
			}
		})
	}
}

func TestDecodeCommand_Ignorable(t *testing.T) {
	tests := []struct {
		name  string
		kind  Kind
		extra []byte
	}{
		{name: "129 no body", kind: KindIgnorable + 1},
		{name: "129 with body", kind: KindIgnorable + 1, extra: []byte("whatever a newer version writes")},
		{name: "200 with binary body", kind: 200, extra: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{name: "255", kind: 255, extra: []byte{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := append(header(tt.kind), tt.extra...)
			c, err := DecodeCommand(data)
			if err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
			want := Command{Kind: tt.kind, ID: "id", Time: 1, Hub: "hub"}
			if !reflect.DeepEqual(c, want) {
				t.Fatalf("got %+v, want %+v", c, want)
			}
		})
	}
}

func TestDecodeBatch_Errors(t *testing.T) {
	good := EncodeCommand(&Command{Kind: KindGroupJoin, Conn: "c", Group: "g"})
	batch := func(count uint64, bodies ...[]byte) []byte {
		b := []byte{batchVersion}
		b = binary.AppendUvarint(b, count)
		for _, body := range bodies {
			b = appendBytes(b, body)
		}
		return b
	}
	tests := []struct {
		name string
		data []byte
	}{
		{name: "nil", data: nil},
		{name: "empty", data: []byte{}},
		{name: "version 0", data: append([]byte{0}, batch(1, good)[1:]...)},
		{name: "version 2", data: append([]byte{2}, batch(1, good)[1:]...)},
		{name: "version only", data: []byte{batchVersion}},
		{name: "count over limit", data: append(batch(maxBatchCommands+1), make([]byte, 64)...)},
		{name: "huge count", data: batch(1 << 62)},
		{name: "max uint64 count", data: batch(^uint64(0))},
		{name: "count overflow", data: append([]byte{batchVersion}, bytes.Repeat([]byte{0xff}, 11)...)},
		{name: "count over remaining bytes", data: batch(100, good)},
		{name: "fewer commands than count", data: batch(2, good)},
		{name: "more commands than count", data: batch(1, good, good)},
		{name: "trailing byte", data: append(batch(1, good), 0)},
		{name: "empty command body", data: batch(1, nil)},
		{name: "bad command", data: batch(2, good, header(5)[:2])},
		{name: "unknown kind inside", data: batch(1, header(50))},
		{name: "huge body length", data: binary.AppendUvarint([]byte{batchVersion, 1}, 1<<62)},
		{name: "body length over limit", data: binary.AppendUvarint([]byte{batchVersion, 1}, maxFieldBytes+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			cmds, err := DecodeBatch(tt.data)
			runtime.ReadMemStats(&ms1)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeBatch error = %v (commands %+v), want ErrMalformed", err, cmds)
			}
			if cmds != nil {
				t.Fatalf("DecodeBatch returned %d commands with an error", len(cmds))
			}
			if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 4<<20 {
				t.Fatalf("DecodeBatch allocated %d bytes for a %d-byte input", alloc, len(tt.data))
			}
		})
	}
}

func TestDecodeBatch_ErrorNamesCommand(t *testing.T) {
	good := EncodeCommand(&Command{Kind: KindGroupJoin, Conn: "c", Group: "g"})
	b := []byte{batchVersion, 3}
	b = appendBytes(b, good)
	b = appendBytes(b, good)
	b = appendBytes(b, header(9))
	_, err := DecodeBatch(b)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "command 2") {
		t.Fatalf("error = %v, want ErrMalformed naming command 2", err)
	}
}

func TestKind_String(t *testing.T) {
	tests := []struct {
		k    Kind
		want string
	}{
		{KindClusterInit, "cluster-init"},
		{KindPublish, "publish"},
		{KindGroupJoin, "group-join"},
		{KindGroupLeave, "group-leave"},
		{KindConnOpen, "conn-open"},
		{KindConnClose, "conn-close"},
		{0, "kind(0)"},
		{KindIgnorable + 1, "kind(129)"},
		{KindFormat, "format"},
		{KindInvoke, "invoke"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.k.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAudience_String(t *testing.T) {
	tests := []struct {
		a    Audience
		want string
	}{
		{AudienceAll, "all"},
		{AudienceGroup, "group"},
		{AudienceUser, "user"},
		{AudienceConnection, "connection"},
		{0, "audience(0)"},
		{9, "audience(9)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.a.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// fuzzSeeds returns the sample commands that encode small. Large seeds make
// the fuzzer spend its time minimising (it stalls at 0 execs/s for up to
// -fuzzminimizetime on each new input) instead of exploring.
func fuzzSeeds() []Command {
	var out []Command
	for _, tt := range sampleCommands() {
		if len(EncodeCommand(&tt.cmd)) <= 256 {
			out = append(out, tt.cmd)
		}
	}
	return out
}

func FuzzDecodeBatch(f *testing.F) {
	seeds := fuzzSeeds()
	for _, c := range seeds {
		f.Add(EncodeBatch([]Command{c}))
	}
	f.Add(EncodeBatch(seeds))
	f.Add(EncodeBatch(nil))
	f.Add([]byte{})
	f.Add([]byte{batchVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	// An ignorable command with a newer version's fields inside a batch.
	f.Add(append([]byte{batchVersion, 1}, appendBytes(nil, append(header(200), 1, 2, 3))...))
	// Non-canonical varints (0x80 0x00 is a two-byte zero).
	f.Add([]byte{batchVersion, 1, 6, byte(KindClusterInit), 0x80, 0x00, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds, err := DecodeBatch(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if cmds != nil {
				t.Fatalf("%d commands returned with an error", len(cmds))
			}
			return
		}
		again, err := DecodeBatch(EncodeBatch(cmds))
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v\ncommands %+v", err, cmds)
		}
		if !reflect.DeepEqual(normalizeAll(again), normalizeAll(cmds)) {
			t.Fatalf("round trip changed the batch:\n got %+v\nwant %+v", again, cmds)
		}
	})
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range fuzzSeeds() {
		f.Add(EncodeCommand(&c))
	}
	f.Add(append(header(KindIgnorable+1), "newer fields"...))
	f.Add([]byte{byte(KindConnClose), 0x80, 0x00, 0x80, 0x80, 0x00, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := DecodeCommand(EncodeCommand(&c))
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v\ncommand %+v", err, c)
		}
		if !reflect.DeepEqual(normalize(again), normalize(c)) {
			t.Fatalf("round trip changed the command:\n got %+v\nwant %+v", again, c)
		}
	})
}

func TestCommand_Validate(t *testing.T) {
	ok := func(c Command) Command { return c }
	tests := []struct {
		name    string
		cmd     Command
		wantErr bool
	}{
		{"cluster init", ok(Command{Kind: KindClusterInit, ClusterID: "ab12"}), false},
		{"cluster init without id", Command{Kind: KindClusterInit}, true},
		{"cluster id with colon", Command{Kind: KindClusterInit, ClusterID: "a:b"}, true},
		{"broadcast", Command{Kind: KindPublish, Hub: "h", Audience: AudienceAll, Target: "t"}, false},
		{"group publish", Command{Kind: KindPublish, Hub: "h", Audience: AudienceGroup, Key: "g", Target: "t"}, false},
		{"group publish without key", Command{Kind: KindPublish, Hub: "h", Audience: AudienceGroup, Target: "t"}, true},
		{"bad audience", Command{Kind: KindPublish, Hub: "h", Audience: 9, Key: "k", Target: "t"}, true},
		{"zero audience", Command{Kind: KindPublish, Hub: "h", Target: "t"}, true},
		{"publish without target", Command{Kind: KindPublish, Hub: "h", Audience: AudienceAll}, true},
		{"publish without hub", Command{Kind: KindPublish, Audience: AudienceAll, Target: "t"}, true},
		{"join", Command{Kind: KindGroupJoin, Hub: "h", Conn: "c", Group: "g"}, false},
		{"join without group", Command{Kind: KindGroupJoin, Hub: "h", Conn: "c"}, true},
		{"leave without conn", Command{Kind: KindGroupLeave, Hub: "h", Group: "g"}, true},
		{"open", Command{Kind: KindConnOpen, Hub: "h", Conn: "c"}, false},
		{"close without conn", Command{Kind: KindConnClose, Hub: "h"}, true},
		{"unknown kind", Command{Kind: 42, Hub: "h"}, true},
		{"ignorable kind is not submittable", Command{Kind: KindIgnorable, Hub: "h"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cmd.Validate()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if err == nil {
				if _, derr := DecodeBatch(EncodeBatch([]Command{tc.cmd})); derr != nil {
					t.Fatalf("valid command does not decode: %v", derr)
				}
			}
		})
	}
}
