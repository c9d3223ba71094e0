package signalr

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// ---------------------------------------------------------------------------
// Test builders

// hx decodes space-separated hex ("02 91 06").
func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// kv and omap build MessagePack maps with a chosen key order (and key type).
type kv struct {
	k, v any
}
type omap []kv

// rawMP is already-encoded MessagePack, written as is.
type rawMP []byte

// mpb encodes v with the library, element by element: []any is an array,
// omap an ordered map, []byte bin, rawMP raw bytes.
func mpb(v any) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	var walk func(v any)
	walk = func(v any) {
		var err error
		switch x := v.(type) {
		case nil:
			err = enc.EncodeNil()
		case bool:
			err = enc.EncodeBool(x)
		case int:
			err = enc.EncodeInt(int64(x))
		case int64:
			err = enc.EncodeInt(x)
		case uint64:
			err = enc.EncodeUint(x)
		case float32:
			err = enc.EncodeFloat32(x)
		case float64:
			err = enc.EncodeFloat64(x)
		case string:
			err = enc.EncodeString(x)
		case []byte:
			err = enc.EncodeBytes(x)
		case rawMP:
			buf.Write(x)
		case []any:
			err = enc.EncodeArrayLen(len(x))
			for _, e := range x {
				walk(e)
			}
		case omap:
			err = enc.EncodeMapLen(len(x))
			for _, e := range x {
				walk(e.k)
				walk(e.v)
			}
		default:
			err = enc.Encode(x)
		}
		if err != nil {
			panic(err)
		}
	}
	walk(v)
	return buf.Bytes()
}

// framed prefixes body with its VarInt length, using encoding/binary's
// Uvarint (the same LEB128 encoding) as an independent reference.
func framed(body []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(body))), body...)
}

// ---------------------------------------------------------------------------
// VarInt

func TestVarInt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n    int
		want string
	}{
		{0, "00"},
		{1, "01"},
		{127, "7f"},
		{128, "80 01"},
		{0x1480, "80 29"}, // PROTOCOL.md 3.2
		{16383, "ff 7f"},
		{16384, "80 80 01"},
		{1<<21 - 1, "ff ff 7f"},
		{1 << 21, "80 80 80 01"},
		{1<<28 - 1, "ff ff ff 7f"},
		{1 << 28, "80 80 80 80 01"},
		{maxBinaryMessage, "ff ff ff ff 07"}, // 2 GB, the largest
	}
	for _, tt := range tests {
		got := appendVarInt([]byte{0xAA}, tt.n)
		if want := append([]byte{0xAA}, hx(tt.want)...); !bytes.Equal(got, want) {
			t.Errorf("appendVarInt(%#x) = % x, want % x", tt.n, got[1:], want[1:])
		}
		if ref := binary.AppendUvarint(nil, uint64(tt.n)); !bytes.Equal(ref, hx(tt.want)) {
			t.Errorf("table error: Uvarint(%#x) = % x", tt.n, ref)
		}
		n, size, err := parseVarInt(append(hx(tt.want), 0x55, 0x66))
		if err != nil || n != tt.n || size != len(hx(tt.want)) {
			t.Errorf("parseVarInt(% x) = %d, %d, %v; want %d, %d", hx(tt.want), n, size, err, tt.n, len(hx(tt.want)))
		}
		// Every proper prefix of the encoding is incomplete, not an error.
		for k := range len(hx(tt.want)) {
			if n, size, err := parseVarInt(hx(tt.want)[:k]); n != 0 || size != 0 || err != nil {
				t.Errorf("parseVarInt(% x) = %d, %d, %v; want incomplete", hx(tt.want)[:k], n, size, err)
			}
		}
	}

	t.Run("lenient forms", func(t *testing.T) {
		for _, tt := range []struct {
			in      string
			n, size int
		}{
			{"80 00", 0, 2}, // non-minimal, as the JS client accepts
			{"ff ff ff ff 00", 0x0fffffff, 5},
			{"80 80 80 80 07", 7 << 28, 5},
		} {
			n, size, err := parseVarInt(hx(tt.in))
			if err != nil || n != tt.n || size != tt.size {
				t.Errorf("parseVarInt(%s) = %d, %d, %v; want %d, %d", tt.in, n, size, err, tt.n, tt.size)
			}
		}
	})

	t.Run("bad prefixes", func(t *testing.T) {
		for _, tt := range []struct{ in, want string }{
			{"ff ff ff ff 08", "2GB"},
			{"80 80 80 80 7f", "2GB"},
			{"ff ff ff ff 87", "longer than 5 bytes"},
			{"ff ff ff ff ff ff", "longer than 5 bytes"},
			{"80 80 80 80 80", "longer than 5 bytes"},
		} {
			_, _, err := parseVarInt(hx(tt.in))
			if err == nil || !errors.Is(err, errBadPrefix) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseVarInt(%s) error %v, want one containing %q", tt.in, err, tt.want)
			}
		}
	})
}

// ---------------------------------------------------------------------------
// Parsing

// args renders Arguments for comparison.
func argStrings(a []json.RawMessage) []string {
	if a == nil {
		return nil
	}
	out := make([]string, len(a))
	for i, x := range a {
		out[i] = string(x)
	}
	return out
}

func TestParseMsgpackMessage(t *testing.T) {
	t.Parallel()
	type want struct {
		typ            int
		id             string
		hasID          bool
		target         string
		args           []string
		streamIDs      []string
		item, result   string
		errMsg         string
		allowReconnect bool
		seq            int64
		headers        map[string]string
	}
	hdrs := omap{}
	tests := []struct {
		name    string
		rec     []byte
		want    want
		wantErr string // substring; "" means success
	}{
		// The tiny frames from PROTOCOL.md 3.3, without their prefix (the
		// Splitter test checks the prefixes byte for byte).
		{name: "ping 91 06", rec: hx("91 06"), want: want{typ: TypePing}},
		{name: "invoke", rec: hx("95 01 80 a1 30 a3 41 64 64 92 28 02"),
			want: want{typ: 1, id: "0", hasID: true, target: "Add", args: []string{"40", "2"}}},
		{name: "send (nil id)", rec: hx("95 01 80 c0 a4 46 69 72 65 91 01"),
			want: want{typ: 1, target: "Fire", args: []string{"1"}}},
		{name: "close [7,nil]", rec: hx("92 07 c0"), want: want{typ: TypeClose}},

		{name: "invocation with 6 elements, empty streamIds",
			rec:  mpb([]any{1, hdrs, "0", "Add", []any{1}, []any{}}),
			want: want{typ: 1, id: "0", hasID: true, target: "Add", args: []string{"1"}}},
		{name: "invocation with streamIds",
			rec:  mpb([]any{1, hdrs, "0", "Up", []any{}, []any{"s1", "s2"}}),
			want: want{typ: 1, id: "0", hasID: true, target: "Up", args: []string{}, streamIDs: []string{"s1", "s2"}}},
		{name: "invocation with nil streamIds",
			rec:  mpb([]any{1, hdrs, "0", "Up", []any{}, nil}),
			want: want{typ: 1, id: "0", hasID: true, target: "Up", args: []string{}}},
		{name: "invocation with headers and extra elements",
			rec:  mpb([]any{1, omap{{"a", "b"}, {"c", ""}}, "7", "T", []any{"x", nil, true}, []any{}, "future", omap{}}),
			want: want{typ: 1, id: "7", hasID: true, target: "T", args: []string{`"x"`, "null", "true"}, headers: map[string]string{"a": "b", "c": ""}}},
		{name: "invocation with nil headers",
			rec:  mpb([]any{1, nil, nil, "T", []any{}}),
			want: want{typ: 1, target: "T", args: []string{}}},
		{name: "stream invocation", rec: mpb([]any{4, hdrs, "1", "Counter", []any{3}}),
			want: want{typ: 4, id: "1", hasID: true, target: "Counter", args: []string{"3"}}},
		{name: "stream item", rec: mpb([]any{2, hdrs, "1", omap{{"n", 0}}}),
			want: want{typ: 2, id: "1", hasID: true, item: `{"n":0}`}},
		{name: "completion value", rec: mpb([]any{3, hdrs, "0", 3, 42}),
			want: want{typ: 3, id: "0", hasID: true, result: "42"}},
		{name: "completion value nil", rec: mpb([]any{3, hdrs, "0", 3, nil}),
			want: want{typ: 3, id: "0", hasID: true, result: "null"}},
		{name: "completion void", rec: mpb([]any{3, hdrs, "0", 2}),
			want: want{typ: 3, id: "0", hasID: true}},
		{name: "completion error", rec: mpb([]any{3, hdrs, "0", 1, "msg"}),
			want: want{typ: 3, id: "0", hasID: true, errMsg: "msg"}},
		{name: "cancel", rec: mpb([]any{5, hdrs, "1"}), want: want{typ: 5, id: "1", hasID: true}},
		{name: "close with error and allowReconnect",
			rec: mpb([]any{7, "bye", true}), want: want{typ: 7, errMsg: "bye", allowReconnect: true}},
		{name: "close allowReconnect false", rec: mpb([]any{7, nil, false}), want: want{typ: 7}},
		{name: "ack", rec: mpb([]any{8, 2}), want: want{typ: 8, seq: 2}},
		{name: "sequence big", rec: mpb([]any{9, int64(1) << 40}), want: want{typ: 9, seq: 1 << 40}},
		{name: "ping with extra element", rec: mpb([]any{6, "x"}), want: want{typ: 6}},
		{name: "type as uint8", rec: hx("91 cc 06"), want: want{typ: 6}},
		{name: "unknown type is not an error", rec: mpb([]any{42, "whatever"}), want: want{typ: 42}},
		{name: "unknown negative type", rec: mpb([]any{-3}), want: want{typ: -3}},

		{name: "not an array", rec: hx("80"), wantErr: "expected an array"},
		{name: "nil", rec: hx("c0"), wantErr: "expected an array"},
		{name: "empty record", rec: nil, wantErr: "truncated"},
		{name: "empty array", rec: hx("90"), wantErr: "empty array"},
		{name: "type is a string", rec: mpb([]any{"1"}), wantErr: "type must be an integer"},
		{name: "type is a float", rec: mpb([]any{1.0}), wantErr: "type must be an integer"},
		{name: "type out of range", rec: mpb([]any{int64(1) << 40}), wantErr: "type out of range"},
		{name: "invocation too short", rec: mpb([]any{1, hdrs, "0", "T"}), want: want{typ: 1}, wantErr: "at least 5 elements"},
		{name: "target not a string", rec: mpb([]any{1, hdrs, "0", 5, []any{}}), want: want{typ: 1, id: "0", hasID: true}, wantErr: "target must be a string"},
		{name: "empty target", rec: mpb([]any{1, hdrs, "0", "", []any{}}), want: want{typ: 1, id: "0", hasID: true}, wantErr: "missing target"},
		{name: "arguments not an array", rec: mpb([]any{1, hdrs, "0", "T", "x"}), want: want{typ: 1, id: "0", hasID: true, target: "T"}, wantErr: "arguments must be an array"},
		{name: "arguments nil", rec: mpb([]any{1, hdrs, "0", "T", nil}), want: want{typ: 1, id: "0", hasID: true, target: "T"}, wantErr: "arguments must be an array"},
		{name: "invocation id not a string", rec: mpb([]any{1, hdrs, 5, "T", []any{}}), want: want{typ: 1}, wantErr: "invocationId must be a string"},
		{name: "stream invocation without id", rec: mpb([]any{4, hdrs, nil, "T", []any{}}), want: want{typ: 4}, wantErr: "missing invocationId"},
		{name: "completion without id", rec: mpb([]any{3, hdrs, nil, 2}), want: want{typ: 3}, wantErr: "missing invocationId"},
		{name: "headers not a map", rec: mpb([]any{1, []any{}, "0", "T", []any{}}), want: want{typ: 1}, wantErr: "headers must be a map"},
		{name: "header value not a string", rec: mpb([]any{1, omap{{"a", 1}}, "0", "T", []any{}}), want: want{typ: 1}, wantErr: `header "a"`},
		{name: "header name not a string", rec: mpb([]any{1, omap{{1, "a"}}, "0", "T", []any{}}), want: want{typ: 1}, wantErr: "header name"},
		{name: "streamIds not strings", rec: mpb([]any{1, hdrs, "0", "T", []any{}, []any{1}}), want: want{typ: 1, id: "0", hasID: true, target: "T", args: []string{}}, wantErr: "streamIds"},
		{name: "argument map with an integer key", rec: mpb([]any{1, hdrs, "9", "T", []any{"ok", omap{{1, "x"}}}}),
			want: want{typ: 1, id: "9", hasID: true, target: "T"}, wantErr: "argument 2: unsupported argument type"},
		{name: "argument ext type", rec: mpb([]any{1, hdrs, "9", "T", []any{rawMP(hx("d4 05 00"))}}),
			want: want{typ: 1, id: "9", hasID: true, target: "T"}, wantErr: "unsupported argument type"},
		{name: "completion bad kind", rec: mpb([]any{3, hdrs, "0", 4, 1}), want: want{typ: 3, id: "0", hasID: true}, wantErr: "invalid result kind 4"},
		{name: "completion error without message", rec: mpb([]any{3, hdrs, "0", 1}), want: want{typ: 3, id: "0", hasID: true}, wantErr: "error completion without an error"},
		{name: "completion value without value", rec: mpb([]any{3, hdrs, "0", 3}), want: want{typ: 3, id: "0", hasID: true}, wantErr: "without a result"},
		{name: "close error not a string", rec: mpb([]any{7, 1}), want: want{typ: 7}, wantErr: "error must be a string"},
		{name: "close allowReconnect not a bool", rec: mpb([]any{7, nil, 1}), want: want{typ: 7}, wantErr: "allowReconnect must be a boolean"},
		{name: "ack negative", rec: mpb([]any{8, -1}), want: want{typ: 8}, wantErr: "sequenceId"},
		{name: "sequence not an integer", rec: mpb([]any{9, "2"}), want: want{typ: 9}, wantErr: "sequenceId"},
		{name: "sequence above int64", rec: mpb([]any{9, uint64(math.MaxUint64)}), want: want{typ: 9}, wantErr: "sequenceId"},
		{name: "trailing bytes", rec: hx("91 06 06"), want: want{typ: 6}, wantErr: "1 bytes after the message"},
		{name: "truncated string", rec: hx("95 01 80 a1 30 a3 41 64"), want: want{typ: 1, id: "0", hasID: true}, wantErr: "target must be a string"},
		{name: "truncated arguments", rec: hx("95 01 80 a1 30 a3 41 64 64 92 28"), want: want{typ: 1, id: "0", hasID: true, target: "Add"}, wantErr: "arguments must be an array"},
		{name: "array claims 2^32-1 elements", rec: hx("dd ff ff ff ff 06"), wantErr: "truncated"},
		{name: "never-used code", rec: hx("91 c1"), wantErr: "type must be an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMsgpackMessage(tt.rec)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			got := want{typ: m.Type, id: m.InvocationID, hasID: m.HasInvocationID, target: m.Target,
				args: argStrings(m.Arguments), streamIDs: m.StreamIDs, item: string(m.Item), result: string(m.Result),
				errMsg: m.Error, allowReconnect: m.AllowReconnect, seq: m.SequenceID, headers: m.Headers}
			if tt.wantErr != "" {
				// On error only Type and the id (and what came before) matter.
				got.args, got.streamIDs, got.headers = tt.want.args, tt.want.streamIDs, tt.want.headers
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
			if m.Type == TypeInvocation && err == nil && m.Arguments == nil {
				t.Fatalf("Arguments is nil for an invocation")
			}
			for _, a := range m.Arguments {
				if !json.Valid(a) {
					t.Fatalf("argument %s is not valid JSON", a)
				}
			}
		})
	}
}

// The arguments must not alias the record: the Splitter reuses its buffer.
func TestParseMsgpackMessage_NoAliasing(t *testing.T) {
	t.Parallel()
	rec := mpb([]any{1, omap{{"h", "v"}}, "id", "Target", []any{"abc", []byte{1, 2, 3}}})
	m, err := parseMsgpackMessage(rec)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rec {
		rec[i] = 0xFF
	}
	if m.InvocationID != "id" || m.Target != "Target" || m.Headers["h"] != "v" ||
		string(m.Arguments[0]) != `"abc"` || string(m.Arguments[1]) != `"AQID"` {
		t.Fatalf("message changed with the record: %+v %s", m, argStrings(m.Arguments))
	}
}

// Declared lengths are checked against the record before the library reads
// them: a few bytes claiming gigabytes allocate next to nothing.
func TestParseMsgpackMessage_BoundedMemory(t *testing.T) {
	recs := [][]byte{
		hx("dd 7f ff ff ff"),                            // array of 2^31-1 elements
		hx("95 01 80 a1 30 a1 54 91 db 7f ff ff ff"),    // string argument of 2 GB
		hx("95 01 80 a1 30 a1 54 91 c6 7f ff ff ff"),    // bin argument of 2 GB
		hx("95 01 80 a1 30 a1 54 91 c9 7f ff ff ff ff"), // ext of 2 GB
		hx("95 01 80 a1 30 a1 54 91 df 7f ff ff ff"),    // map of 2^31-1 entries
		hx("95 01 df 7f ff ff ff"),                      // headers map
		hx("95 01 80 db 7f ff ff ff"),                   // invocation id
	}
	for _, rec := range recs {
		_, _ = parseMsgpackMessage(rec) // warm the decoder pool
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		for _, rec := range recs {
			if _, err := parseMsgpackMessage(rec); err == nil {
				t.Fatalf("% x parsed", rec)
			}
			_, _ = scanMsgpackInvocationID(rec)
			_, _ = msgpackToJSON(rec[min(len(rec), 8):])
		}
	}
	runtime.ReadMemStats(&after)
	t.Logf("allocated %d bytes", after.TotalAlloc-before.TotalAlloc)
	if d := after.TotalAlloc - before.TotalAlloc; d > 256<<10 {
		t.Fatalf("parsing %d tiny malformed records allocated %d bytes", 10*len(recs), d)
	}
}

// ---------------------------------------------------------------------------
// Argument conversion

func TestMsgpackJSONConversion(t *testing.T) {
	t.Parallel()
	ints16 := make([]any, 16)
	ints16JSON := make([]string, 16)
	for i := range ints16 {
		ints16[i] = i
		ints16JSON[i] = strconv.Itoa(i)
	}
	map16 := omap{}
	var map16JSON []string
	for i := range 16 {
		k := fmt.Sprintf("k%02d", 15-i) // descending: order must be kept
		map16 = append(map16, kv{k, i})
		map16JSON = append(map16JSON, fmt.Sprintf("%q:%d", k, i))
	}
	long := strings.Repeat("x", 40)

	// Both ways: msgpack -> JSON gives js, JSON -> msgpack gives mp back.
	both := []struct {
		name string
		mp   []byte
		js   string
	}{
		{"nil", mpb(nil), `null`},
		{"true", mpb(true), `true`},
		{"false", mpb(false), `false`},
		{"zero", mpb(0), `0`},
		{"fixint", mpb(127), `127`},
		{"negative fixint", mpb(-32), `-32`},
		{"uint8", mpb(255), `255`},
		{"int8", mpb(-33), `-33`},
		{"uint16", mpb(65535), `65535`},
		{"int16", mpb(-129), `-129`},
		{"uint32", mpb(1 << 31), `2147483648`},
		{"int64 max", mpb(int64(math.MaxInt64)), `9223372036854775807`},
		{"int64 min", mpb(int64(math.MinInt64)), `-9223372036854775808`},
		{"uint64 max", mpb(uint64(math.MaxUint64)), `18446744073709551615`},
		{"float", mpb(1.5), `1.5`},
		{"negative float", mpb(-0.25), `-0.25`},
		{"small float", mpb(1e-7), `1e-7`},
		{"large float", mpb(1e21), `1e+21`},
		{"float beyond uint64", mpb(1.2345678901234568e+29), `1.2345678901234568e+29`},
		{"empty string", mpb(""), `""`},
		{"unicode string", mpb("héllo ☃ 😀"), `"héllo ☃ 😀"`},
		{"escaped string", mpb("a\"b\\c\nd\x01"), `"a\"b\\c\nd\u0001"`},
		{"str8", mpb(long), `"` + long + `"`},
		{"empty array", mpb([]any{}), `[]`},
		{"empty map", mpb(omap{}), `{}`},
		{"nested", mpb([]any{1, []any{2, []any{3, omap{}}}, []any{}, nil}), `[1,[2,[3,{}]],[],null]`},
		{"map key order", mpb(omap{{"b", 1}, {"a", []any{1, omap{{"z", nil}, {"y", true}}}}}),
			`{"b":1,"a":[1,{"z":null,"y":true}]}`},
		{"array16", mpb(ints16), `[` + strings.Join(ints16JSON, ",") + `]`},
		{"map16", mpb(map16), `{` + strings.Join(map16JSON, ",") + `}`},
		{"arguments", mpb([]any{"hello", 42, omap{{"n", 1}}}), `["hello",42,{"n":1}]`},
	}
	for _, tt := range both {
		t.Run("both/"+tt.name, func(t *testing.T) {
			js, err := msgpackToJSON(tt.mp)
			if err != nil || string(js) != tt.js {
				t.Fatalf("msgpackToJSON(% x) = %s, %v; want %s", tt.mp, js, err, tt.js)
			}
			mp, err := jsonToMsgpack([]byte(tt.js))
			if err != nil || !bytes.Equal(mp, tt.mp) {
				t.Fatalf("jsonToMsgpack(%s) = % x, %v; want % x", tt.js, mp, err, tt.mp)
			}
		})
	}

	// One way: msgpack -> JSON.
	toJSON := []struct {
		name string
		mp   []byte
		js   string
	}{
		{"integral float", mpb(2.0), `2`},
		{"float32", mpb(float32(0.1)), `0.1`},
		{"float32 large", mpb(float32(3e38)), `3e+38`},
		{"non-minimal int", hx("d3 00 00 00 00 00 00 00 05"), `5`},
		{"binary", mpb([]byte{1, 2, 3}), `"AQID"`},
		{"binary empty", hx("c4 00"), `""`},
		{"binary in a map", mpb(omap{{"data", []byte("hi!")}}), `{"data":"aGkh"}`},
		{"invalid utf-8", mpb("a\xffb"), `"a\ufffdb"`},
		{"timestamp32", hx("d6 ff 00 00 00 00"), `"1970-01-01T00:00:00.000Z"`},
		{"timestamp64 ms", mpb(time.Date(2024, 5, 1, 10, 0, 0, 123e6, time.UTC)), `"2024-05-01T10:00:00.123Z"`},
		{"timestamp64 ns", mpb(time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.UTC)), `"2024-05-01T10:00:00.123456789Z"`},
		{"duplicate keys kept", mpb(omap{{"a", 1}, {"a", 2}}), `{"a":1,"a":2}`},
	}
	for _, tt := range toJSON {
		t.Run("toJSON/"+tt.name, func(t *testing.T) {
			js, err := msgpackToJSON(tt.mp)
			if err != nil || string(js) != tt.js {
				t.Fatalf("msgpackToJSON(% x) = %s, %v; want %s", tt.mp, js, err, tt.js)
			}
		})
	}

	// One way: JSON -> msgpack.
	toMP := []struct {
		name string
		js   string
		mp   []byte
	}{
		{"1.0 is a float", `1.0`, mpb(1.0)},
		{"exponent is a float", `1e3`, mpb(1000.0)},
		{"negative zero int", `-0`, mpb(0)},
		{"big int beyond uint64", `123456789012345678901234567890`, mpb(1.2345678901234568e+29)},
		{"beyond float64", `1e400`, mpb(math.Inf(1))},
		{"whitespace", " [ 1 , { \"a\" : [ ] } ] ", mpb([]any{1, omap{{"a", []any{}}}})},
		{"escapes", `"\u00e9\ud83d\ude00\n"`, mpb("é😀\n")},
		{"lone surrogate", `"\ud800"`, mpb("\ufffd")},
	}
	for _, tt := range toMP {
		t.Run("toMsgpack/"+tt.name, func(t *testing.T) {
			mp, err := jsonToMsgpack([]byte(tt.js))
			if err != nil || !bytes.Equal(mp, tt.mp) {
				t.Fatalf("jsonToMsgpack(%s) = % x, %v; want % x", tt.js, mp, err, tt.mp)
			}
		})
	}

	deep := bytes.Repeat([]byte{0x91}, maxArgDepth+1)
	deep = append(deep, 0xc0)
	errs := []struct {
		name string
		mp   []byte
		want string
	}{
		{"map with an integer key", mpb(omap{{1, "x"}}), "unsupported argument type"},
		{"map with a nil key", mpb(omap{{nil, "x"}}), "unsupported argument type"},
		{"nested map with a binary key", mpb([]any{omap{{"a", omap{{[]byte("k"), 1}}}}}), "unsupported argument type"},
		{"unknown ext", hx("d4 05 00"), "unsupported argument type"},
		{"bad timestamp", hx("d5 ff 00 00"), "unsupported argument type"},
		{"NaN", mpb(math.NaN()), "unsupported argument type"},
		{"+Inf", mpb(math.Inf(1)), "unsupported argument type"},
		{"float32 -Inf", mpb(float32(math.Inf(-1))), "unsupported argument type"},
		{"too deep", deep, "unsupported argument type"},
		{"truncated", hx("92 01"), "truncated"},
		{"trailing", hx("01 02"), "trailing"},
	}
	for _, tt := range errs {
		t.Run("error/"+tt.name, func(t *testing.T) {
			js, err := msgpackToJSON(tt.mp)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("msgpackToJSON(% x) = %s, %v; want an error containing %q", tt.mp, js, err, tt.want)
			}
		})
	}
	for _, js := range []string{`[1,`, `{"a"}`, `1 2`, ``} {
		if mp, err := jsonToMsgpack([]byte(js)); err == nil {
			t.Errorf("jsonToMsgpack(%q) = % x, want an error", js, mp)
		}
	}
}

// ---------------------------------------------------------------------------
// Encoders

func TestMsgpackEncoders(t *testing.T) {
	t.Parallel()
	p := msgpackProtocol{}
	if p.Name() != "messagepack" || !p.Binary() {
		t.Fatalf("name %q binary %v", p.Name(), p.Binary())
	}
	exact := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"ping", p.AppendPing(nil), hx("02 91 06")},
		{"invocation without cursor", p.AppendInvocation(nil, "Add", json.RawMessage(`[40,2]`), ""),
			hx("0c 96 01 80 c0 a3 41 64 64 92 28 02 90")},
		{"invocation with cursor", p.AppendInvocation(nil, "say", json.RawMessage(`["hi"]`), "ep:1:0"),
			framed(mpb([]any{1, omap{{"cursor", "ep:1:0"}}, nil, "say", []any{"hi"}, []any{}}))},
		{"invocation with empty args", p.AppendInvocation(nil, "t", nil, "c"),
			framed(mpb([]any{1, omap{{"cursor", "c"}}, nil, "t", []any{}, []any{}}))},
		{"invocation with invalid args", p.AppendInvocation(nil, "t", json.RawMessage(`[1,`), "c"),
			framed(mpb([]any{1, omap{{"cursor", "c"}}, nil, "t", []any{}, []any{}}))},
		{"invocation with non-array args", p.AppendInvocation(nil, "t", json.RawMessage(`{"a":1}`), "c"),
			framed(mpb([]any{1, omap{{"cursor", "c"}}, nil, "t", []any{}, []any{}}))},
		{"completion value", p.AppendCompletion(nil, "0", json.RawMessage(`42`), ""), hx("07 95 03 80 a1 30 03 2a")},
		{"completion string", p.AppendCompletion(nil, "0", json.RawMessage(`"ep:5:0"`), ""),
			framed(mpb([]any{3, omap{}, "0", 3, "ep:5:0"}))},
		{"completion null", p.AppendCompletion(nil, "0", json.RawMessage(`null`), ""), hx("07 95 03 80 a1 30 03 c0")},
		{"completion void", p.AppendCompletion(nil, "0", nil, ""), hx("06 94 03 80 a1 30 02")},
		{"completion error", p.AppendCompletion(nil, "0", nil, "msg"), hx("0a 95 03 80 a1 30 01 a3 6d 73 67")},
		{"completion error wins", p.AppendCompletion(nil, "0", json.RawMessage(`1`), "msg"), hx("0a 95 03 80 a1 30 01 a3 6d 73 67")},
		{"completion bad result", p.AppendCompletion(nil, "0", json.RawMessage(`{`), ""),
			framed(mpb([]any{3, omap{}, "0", 1, "unsupported argument type in the result"}))},
		{"close", p.AppendClose(nil, "", false), hx("04 93 07 c0 c2")},
		{"close with error", p.AppendClose(nil, "bye", true), framed(mpb([]any{7, "bye", true}))},
	}
	for _, tt := range exact {
		if !bytes.Equal(tt.got, tt.want) {
			t.Errorf("%s: % x, want % x", tt.name, tt.got, tt.want)
		}
	}

	t.Run("appends to dst", func(t *testing.T) {
		dst := []byte("prefix")
		dst = p.AppendPing(dst)
		dst = p.AppendInvocation(dst, "Add", json.RawMessage(`[40,2]`), "")
		dst = p.AppendClose(dst, "", false)
		want := append([]byte("prefix"), hx("02 91 06 0c 96 01 80 c0 a3 41 64 64 92 28 02 90 04 93 07 c0 c2")...)
		if !bytes.Equal(dst, want) {
			t.Fatalf("% x\nwant % x", dst, want)
		}
	})

	t.Run("long messages get longer prefixes", func(t *testing.T) {
		for _, n := range []int{100, 200, 20000, 70000} {
			target := strings.Repeat("T", n)
			got := p.AppendInvocation([]byte{0xEE}, target, json.RawMessage(`[1]`), "c")
			want := append([]byte{0xEE}, framed(mpb([]any{1, omap{{"cursor", "c"}}, nil, target, []any{1}, []any{}}))...)
			if !bytes.Equal(got, want) {
				t.Fatalf("target of %d bytes: got %d bytes % x..., want %d bytes % x...", n, len(got), got[:12], len(want), want[:12])
			}
		}
	})

	// Every encoder's output goes through the Splitter and the parser.
	t.Run("round trip", func(t *testing.T) {
		args := `["hello",42,{"b":[1.5,null,true],"a":"x"},18446744073709551615,-7]`
		var stream []byte
		stream = p.AppendInvocation(stream, "say", json.RawMessage(args), "ep:9:1")
		stream = p.AppendCompletion(stream, "3", json.RawMessage(`"ep:9:1"`), "")
		stream = p.AppendCompletion(stream, "4", nil, "boom")
		stream = p.AppendCompletion(stream, "5", nil, "")
		stream = p.AppendPing(stream)
		stream = p.AppendClose(stream, "closing", true)
		var got []Message
		sp := newBinarySplitter(1 << 20)
		sp.Feed(stream, func(rec []byte, info RecordInfo) {
			m, err := parseMsgpackMessage(rec)
			if err != nil {
				t.Fatalf("parsing % x: %v", rec, err)
			}
			got = append(got, m)
		})
		if len(got) != 6 || sp.Err() != nil || sp.Pending() != 0 {
			t.Fatalf("%d messages, err %v, pending %d", len(got), sp.Err(), sp.Pending())
		}
		inv := got[0]
		if inv.Type != TypeInvocation || inv.HasInvocationID || inv.Target != "say" || inv.Headers["cursor"] != "ep:9:1" ||
			string(joinArgs(inv.Arguments)) != args {
			t.Errorf("invocation %+v args %s", inv, joinArgs(inv.Arguments))
		}
		if c := got[1]; c.Type != TypeCompletion || c.InvocationID != "3" || string(c.Result) != `"ep:9:1"` || c.Error != "" {
			t.Errorf("completion %+v", c)
		}
		if c := got[2]; c.Type != TypeCompletion || c.InvocationID != "4" || c.Result != nil || c.Error != "boom" {
			t.Errorf("error completion %+v", c)
		}
		if c := got[3]; c.Type != TypeCompletion || c.InvocationID != "5" || c.Result != nil || c.Error != "" {
			t.Errorf("void completion %+v", c)
		}
		if got[4].Type != TypePing {
			t.Errorf("ping %+v", got[4])
		}
		if c := got[5]; c.Type != TypeClose || c.Error != "closing" || !c.AllowReconnect {
			t.Errorf("close %+v", c)
		}
	})
}

// ---------------------------------------------------------------------------
// binarySplitter

type splitOut struct {
	rec  string
	info RecordInfo
}

func splitAll(s Splitter, chunks ...[]byte) []splitOut {
	var out []splitOut
	for _, c := range chunks {
		s.Feed(c, func(rec []byte, info RecordInfo) {
			out = append(out, splitOut{string(rec), info})
		})
	}
	return out
}

// chunk cuts p into pieces of the given sizes (cycled).
func chunk(p []byte, sizes ...int) [][]byte {
	var out [][]byte
	for i := 0; len(p) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(p))
		out = append(out, p[:n])
		p = p[n:]
	}
	return out
}

func TestBinarySplitter(t *testing.T) {
	t.Parallel()
	ping, invoke, send, closeMsg := hx("02 91 06"), hx("0c 95 01 80 a1 30 a3 41 64 64 92 28 02"),
		hx("0b 95 01 80 c0 a4 46 69 72 65 91 01"), hx("03 92 07 c0")
	stream := bytes.Join([][]byte{ping, invoke, send, closeMsg}, nil)
	want := []splitOut{
		{"\x91\x06", RecordInfo{Size: 2}},
		{string(invoke[1:]), RecordInfo{Size: 12}},
		{string(send[1:]), RecordInfo{Size: 11}},
		{string(closeMsg[1:]), RecordInfo{Size: 3}},
	}

	t.Run("PROTOCOL.md frames byte for byte", func(t *testing.T) {
		for i, f := range [][]byte{ping, invoke, send, closeMsg} {
			got := splitAll(newBinarySplitter(100), f)
			if len(got) != 1 || got[0] != want[i] {
				t.Fatalf("frame % x: %+v", f, got)
			}
		}
	})
	t.Run("several messages per chunk", func(t *testing.T) {
		if got := splitAll(newBinarySplitter(100), stream); !reflect.DeepEqual(got, want) {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("byte by byte", func(t *testing.T) {
		s := newBinarySplitter(100)
		got := splitAll(s, chunk(stream, 1)...)
		if !reflect.DeepEqual(got, want) || s.Pending() != 0 {
			t.Fatalf("%+v pending %d", got, s.Pending())
		}
	})
	t.Run("one message byte by byte", func(t *testing.T) {
		s := newBinarySplitter(100)
		for i, b := range invoke {
			got := splitAll(s, []byte{b})
			if i < len(invoke)-1 && len(got) != 0 {
				t.Fatalf("emitted after %d bytes: %+v", i+1, got)
			}
			if i == len(invoke)-1 && (len(got) != 1 || got[0] != want[1]) {
				t.Fatalf("last byte: %+v", got)
			}
		}
	})
	t.Run("random chunkings", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for range 200 {
			sizes := []int{1 + r.IntN(7), 1 + r.IntN(30), 1 + r.IntN(3)}
			if got := splitAll(newBinarySplitter(100), chunk(stream, sizes...)...); !reflect.DeepEqual(got, want) {
				t.Fatalf("sizes %v: %+v", sizes, got)
			}
		}
	})
	t.Run("long prefix split across chunks", func(t *testing.T) {
		body := mpb([]any{1, omap{}, "0", "T", []any{strings.Repeat("x", 20000)}})
		f := framed(body)
		if f[0]&0x80 == 0 || f[1]&0x80 == 0 {
			t.Fatalf("want a 3-byte prefix, got % x", f[:3])
		}
		got := splitAll(newBinarySplitter(1<<20), f[:1], f[1:2], f[2:10], f[10:])
		if len(got) != 1 || got[0].rec != string(body) {
			t.Fatalf("got %d records", len(got))
		}
	})
	t.Run("zero-length message", func(t *testing.T) {
		got := splitAll(newBinarySplitter(100), hx("00 02 91 06"))
		if len(got) != 2 || got[0] != (splitOut{"", RecordInfo{}}) || got[1] != want[0] {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("exactly max", func(t *testing.T) {
		got := splitAll(newBinarySplitter(12), invoke, ping)
		if len(got) != 2 || got[0] != want[1] {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("oversized skipped, id captured, next parsed", func(t *testing.T) {
		big := framed(mpb([]any{1, omap{}, "big-1", "Broadcast", []any{strings.Repeat("x", 5000)}}))
		bigSize := len(big) - 2
		bigSend := framed(mpb([]any{1, omap{}, nil, "Broadcast", []any{strings.Repeat("y", 300)}}))
		bigCompletion := framed(mpb([]any{3, omap{}, "c-1", 3, strings.Repeat("z", 300)}))
		bigStream := framed(mpb([]any{4, omap{{"h", "v"}}, "s-1", "Counter", []any{strings.Repeat("w", 300)}}))
		all := bytes.Join([][]byte{ping, big, invoke, bigSend, bigCompletion, bigStream, closeMsg}, nil)
		wantOver := []splitOut{
			want[0],
			{"", RecordInfo{Oversized: true, Size: bigSize, InvocationID: "big-1", HasInvocationID: true}},
			want[1],
			{"", RecordInfo{Oversized: true, Size: len(bigSend) - 2}},
			{"", RecordInfo{Oversized: true, Size: len(bigCompletion) - 2}}, // not an invocation: no id
			{"", RecordInfo{Oversized: true, Size: len(bigStream) - 2, InvocationID: "s-1", HasInvocationID: true}},
			want[3],
		}
		for _, sizes := range [][]int{{len(all)}, {1}, {7}, {1000, 1, 3}} {
			s := newBinarySplitter(64)
			maxPending := 0
			var got []splitOut
			for _, c := range chunk(all, sizes...) {
				got = append(got, splitAll(s, c)...)
				maxPending = max(maxPending, s.Pending(), cap(s.buf))
				if cap(s.head) > oversizedHead {
					t.Fatalf("head capacity %d", cap(s.head))
				}
			}
			if !reflect.DeepEqual(got, wantOver) {
				t.Fatalf("chunks %v:\n got %+v\nwant %+v", sizes, got, wantOver)
			}
			if maxPending > 64 {
				t.Fatalf("chunks %v: buffered up to %d bytes with max 64", sizes, maxPending)
			}
		}
	})
	t.Run("oversized id too far in", func(t *testing.T) {
		// Headers bigger than the captured head hide the id.
		h := omap{{"pad", strings.Repeat("p", oversizedHead)}}
		big := framed(mpb([]any{1, h, "far", "T", []any{}}))
		got := splitAll(newBinarySplitter(64), big, ping)
		if len(got) != 2 || !got[0].info.Oversized || got[0].info.HasInvocationID || got[1] != want[0] {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("bad prefix stops the Splitter", func(t *testing.T) {
		for _, bad := range []string{"ff ff ff ff 08", "ff ff ff ff ff", "80 80 80 80 80 01"} {
			for _, sizes := range [][]int{{100}, {1}} {
				s := newBinarySplitter(100)
				in := append(append(append([]byte(nil), ping...), hx(bad)...), ping...)
				got := splitAll(s, chunk(in, sizes...)...)
				if len(got) != 1 || got[0] != want[0] {
					t.Fatalf("%s: %+v", bad, got)
				}
				if err := s.Err(); err == nil || !errors.Is(err, errBadPrefix) {
					t.Fatalf("%s: err %v", bad, err)
				}
				if err := s.Err(); !errors.Is(err, errBadPrefix) {
					t.Fatalf("Err: %v", err)
				}
				if got := splitAll(s, ping); len(got) != 0 {
					t.Fatalf("%s: emitted after the error: %+v", bad, got)
				}
			}
		}
	})
	t.Run("largest prefix is accepted and skipped", func(t *testing.T) {
		s := newBinarySplitter(100)
		got := splitAll(s, hx("ff ff ff ff 07"), make([]byte, 4096))
		if len(got) != 0 || s.Err() != nil || s.Pending() != 0 || !s.over || s.left != maxBinaryMessage-4096 {
			t.Fatalf("%+v err %v left %d", got, s.Err(), s.left)
		}
	})
	if newRecordSplitter(10).Err() != nil {
		t.Fatal("Err of a recordSplitter")
	}
}

func TestScanMsgpackInvocationID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rec  []byte
		id   string
		ok   bool
	}{
		{"invocation", hx("95 01 80 a1 30 a3 41 64 64 92 28 02"), "0", true},
		{"cut after the id", hx("95 01 80 a1 30 a3"), "0", true},
		{"cut inside the id", mpb([]any{1, omap{}, "abcdef"})[:6], "", false},
		{"send", hx("95 01 80 c0 a4 46 69 72 65 91 01"), "", false},
		{"stream invocation", mpb([]any{4, omap{{"a", "b"}}, "9", "T", []any{}}), "9", true},
		{"odd headers are skipped", mpb([]any{1, []any{1, 2}, "h", "T", 5}), "h", true},
		{"completion", mpb([]any{3, omap{}, "0", 2}), "", false},
		{"id too long", mpb([]any{1, omap{}, strings.Repeat("i", maxIDCapture+1), "T", []any{}}), "", false},
		{"id longest", mpb([]any{1, omap{}, strings.Repeat("i", maxIDCapture), "T", []any{}}), strings.Repeat("i", maxIDCapture), true},
		{"garbage", hx("ff ff"), "", false},
		{"empty", nil, "", false},
	}
	for _, tt := range tests {
		id, ok := scanMsgpackInvocationID(tt.rec)
		if id != tt.id || ok != tt.ok {
			t.Errorf("%s: %q %v, want %q %v", tt.name, id, ok, tt.id, tt.ok)
		}
	}
}

// joinArgs writes arguments back as one JSON array.
func joinArgs(r []json.RawMessage) []byte {
	parts := make([][]byte, len(r))
	for i, a := range r {
		parts[i] = a
	}
	return append(append([]byte{'['}, bytes.Join(parts, []byte{','})...), ']')
}
