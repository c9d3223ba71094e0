package hub

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/raftplane/raftplane/fsm"
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
		// splitter test checks the prefixes byte for byte).
		{name: "ping 91 06", rec: hx("91 06"), want: want{typ: typePing}},
		{name: "invoke", rec: hx("95 01 80 a1 30 a3 41 64 64 92 28 02"),
			want: want{typ: 1, id: "0", hasID: true, target: "Add", args: []string{"40", "2"}}},
		{name: "send (nil id)", rec: hx("95 01 80 c0 a4 46 69 72 65 91 01"),
			want: want{typ: 1, target: "Fire", args: []string{"1"}}},
		{name: "close [7,nil]", rec: hx("92 07 c0"), want: want{typ: typeClose}},

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
			if m.Type == typeInvocation && err == nil && m.Arguments == nil {
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

// The arguments must not alias the record: the splitter reuses its buffer.
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
	if p.name() != "messagepack" || !p.binary() {
		t.Fatalf("name %q binary %v", p.name(), p.binary())
	}
	exact := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"ping", p.appendPing(nil), hx("02 91 06")},
		{"invocation without cursor", p.appendInvocation(nil, "Add", json.RawMessage(`[40,2]`), ""),
			hx("0c 96 01 80 c0 a3 41 64 64 92 28 02 90")},
		{"invocation with cursor", p.appendInvocation(nil, "say", json.RawMessage(`["hi"]`), "ep:1:0"),
			framed(mpb([]any{1, omap{{"cursor", "ep:1:0"}}, nil, "say", []any{"hi"}, []any{}}))},
		{"invocation with empty args", p.appendInvocation(nil, "t", nil, "c"),
			framed(mpb([]any{1, omap{{"cursor", "c"}}, nil, "t", []any{}, []any{}}))},
		{"invocation with invalid args", p.appendInvocation(nil, "t", json.RawMessage(`[1,`), "c"),
			framed(mpb([]any{1, omap{{"cursor", "c"}}, nil, "t", []any{}, []any{}}))},
		{"invocation with non-array args", p.appendInvocation(nil, "t", json.RawMessage(`{"a":1}`), "c"),
			framed(mpb([]any{1, omap{{"cursor", "c"}}, nil, "t", []any{}, []any{}}))},
		{"completion value", p.appendCompletion(nil, "0", json.RawMessage(`42`), ""), hx("07 95 03 80 a1 30 03 2a")},
		{"completion string", p.appendCompletion(nil, "0", json.RawMessage(`"ep:5:0"`), ""),
			framed(mpb([]any{3, omap{}, "0", 3, "ep:5:0"}))},
		{"completion null", p.appendCompletion(nil, "0", json.RawMessage(`null`), ""), hx("07 95 03 80 a1 30 03 c0")},
		{"completion void", p.appendCompletion(nil, "0", nil, ""), hx("06 94 03 80 a1 30 02")},
		{"completion error", p.appendCompletion(nil, "0", nil, "msg"), hx("0a 95 03 80 a1 30 01 a3 6d 73 67")},
		{"completion error wins", p.appendCompletion(nil, "0", json.RawMessage(`1`), "msg"), hx("0a 95 03 80 a1 30 01 a3 6d 73 67")},
		{"completion bad result", p.appendCompletion(nil, "0", json.RawMessage(`{`), ""),
			framed(mpb([]any{3, omap{}, "0", 1, "unsupported argument type in the result"}))},
		{"close", p.appendClose(nil, "", false), hx("04 93 07 c0 c2")},
		{"close with error", p.appendClose(nil, "bye", true), framed(mpb([]any{7, "bye", true}))},
	}
	for _, tt := range exact {
		if !bytes.Equal(tt.got, tt.want) {
			t.Errorf("%s: % x, want % x", tt.name, tt.got, tt.want)
		}
	}

	t.Run("appends to dst", func(t *testing.T) {
		dst := []byte("prefix")
		dst = p.appendPing(dst)
		dst = p.appendInvocation(dst, "Add", json.RawMessage(`[40,2]`), "")
		dst = p.appendClose(dst, "", false)
		want := append([]byte("prefix"), hx("02 91 06 0c 96 01 80 c0 a3 41 64 64 92 28 02 90 04 93 07 c0 c2")...)
		if !bytes.Equal(dst, want) {
			t.Fatalf("% x\nwant % x", dst, want)
		}
	})

	t.Run("long messages get longer prefixes", func(t *testing.T) {
		for _, n := range []int{100, 200, 20000, 70000} {
			target := strings.Repeat("T", n)
			got := p.appendInvocation([]byte{0xEE}, target, json.RawMessage(`[1]`), "c")
			want := append([]byte{0xEE}, framed(mpb([]any{1, omap{{"cursor", "c"}}, nil, target, []any{1}, []any{}}))...)
			if !bytes.Equal(got, want) {
				t.Fatalf("target of %d bytes: got %d bytes % x..., want %d bytes % x...", n, len(got), got[:12], len(want), want[:12])
			}
		}
	})

	// Every encoder's output goes through the splitter and the parser.
	t.Run("round trip", func(t *testing.T) {
		args := `["hello",42,{"b":[1.5,null,true],"a":"x"},18446744073709551615,-7]`
		var stream []byte
		stream = p.appendInvocation(stream, "say", json.RawMessage(args), "ep:9:1")
		stream = p.appendCompletion(stream, "3", json.RawMessage(`"ep:9:1"`), "")
		stream = p.appendCompletion(stream, "4", nil, "boom")
		stream = p.appendCompletion(stream, "5", nil, "")
		stream = p.appendPing(stream)
		stream = p.appendClose(stream, "closing", true)
		var got []hubMessage
		sp := newBinarySplitter(1 << 20)
		sp.feed(stream, func(rec []byte, info recordInfo) {
			m, err := parseMsgpackMessage(rec)
			if err != nil {
				t.Fatalf("parsing % x: %v", rec, err)
			}
			got = append(got, m)
		})
		if len(got) != 6 || sp.err() != nil || sp.pending() != 0 {
			t.Fatalf("%d messages, err %v, pending %d", len(got), sp.err(), sp.pending())
		}
		inv := got[0]
		if inv.Type != typeInvocation || inv.HasInvocationID || inv.Target != "say" || inv.Headers["cursor"] != "ep:9:1" ||
			string(joinArgs(inv.Arguments)) != args {
			t.Errorf("invocation %+v args %s", inv, joinArgs(inv.Arguments))
		}
		if c := got[1]; c.Type != typeCompletion || c.InvocationID != "3" || string(c.Result) != `"ep:9:1"` || c.Error != "" {
			t.Errorf("completion %+v", c)
		}
		if c := got[2]; c.Type != typeCompletion || c.InvocationID != "4" || c.Result != nil || c.Error != "boom" {
			t.Errorf("error completion %+v", c)
		}
		if c := got[3]; c.Type != typeCompletion || c.InvocationID != "5" || c.Result != nil || c.Error != "" {
			t.Errorf("void completion %+v", c)
		}
		if got[4].Type != typePing {
			t.Errorf("ping %+v", got[4])
		}
		if c := got[5]; c.Type != typeClose || c.Error != "closing" || !c.AllowReconnect {
			t.Errorf("close %+v", c)
		}
	})
}

// ---------------------------------------------------------------------------
// binarySplitter

type splitOut struct {
	rec  string
	info recordInfo
}

func splitAll(s splitter, chunks ...[]byte) []splitOut {
	var out []splitOut
	for _, c := range chunks {
		s.feed(c, func(rec []byte, info recordInfo) {
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
		{"\x91\x06", recordInfo{Size: 2}},
		{string(invoke[1:]), recordInfo{Size: 12}},
		{string(send[1:]), recordInfo{Size: 11}},
		{string(closeMsg[1:]), recordInfo{Size: 3}},
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
		if !reflect.DeepEqual(got, want) || s.pending() != 0 {
			t.Fatalf("%+v pending %d", got, s.pending())
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
		if len(got) != 2 || got[0] != (splitOut{"", recordInfo{}}) || got[1] != want[0] {
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
			{"", recordInfo{Oversized: true, Size: bigSize, InvocationID: "big-1", HasInvocationID: true}},
			want[1],
			{"", recordInfo{Oversized: true, Size: len(bigSend) - 2}},
			{"", recordInfo{Oversized: true, Size: len(bigCompletion) - 2}}, // not an invocation: no id
			{"", recordInfo{Oversized: true, Size: len(bigStream) - 2, InvocationID: "s-1", HasInvocationID: true}},
			want[3],
		}
		for _, sizes := range [][]int{{len(all)}, {1}, {7}, {1000, 1, 3}} {
			s := newBinarySplitter(64)
			maxPending := 0
			var got []splitOut
			for _, c := range chunk(all, sizes...) {
				got = append(got, splitAll(s, c)...)
				maxPending = max(maxPending, s.pending(), cap(s.buf))
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

	t.Run("bad prefix stops the splitter", func(t *testing.T) {
		for _, bad := range []string{"ff ff ff ff 08", "ff ff ff ff ff", "80 80 80 80 80 01"} {
			for _, sizes := range [][]int{{100}, {1}} {
				s := newBinarySplitter(100)
				in := append(append(append([]byte(nil), ping...), hx(bad)...), ping...)
				got := splitAll(s, chunk(in, sizes...)...)
				if len(got) != 1 || got[0] != want[0] {
					t.Fatalf("%s: %+v", bad, got)
				}
				if err := s.err(); err == nil || !errors.Is(err, errBadPrefix) {
					t.Fatalf("%s: err %v", bad, err)
				}
				if err := splitErr(s); !errors.Is(err, errBadPrefix) {
					t.Fatalf("splitErr: %v", err)
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
		if len(got) != 0 || s.err() != nil || s.pending() != 0 || !s.over || s.left != maxBinaryMessage-4096 {
			t.Fatalf("%+v err %v left %d", got, s.err(), s.left)
		}
	})
	if splitErr(newRecordSplitter(10)) != nil {
		t.Fatal("splitErr of a recordSplitter")
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

func TestProtocolHooks(t *testing.T) {
	t.Parallel()
	if _, ok := protocolByName("json").(jsonProtocol); !ok {
		t.Error("json")
	}
	if _, ok := protocolByName("messagepack").(msgpackProtocol); !ok {
		t.Error("messagepack")
	}
	if protocolByName("blazorpack") != nil || protocolByName("MessagePack") != nil {
		t.Error("unknown protocols must be nil")
	}
	if _, ok := newSplitter("messagepack", 10).(*binarySplitter); !ok {
		t.Error("messagepack splitter")
	}
	if _, ok := newSplitter("json", 10).(*recordSplitter); !ok {
		t.Error("json splitter")
	}
	m, err := parseRecord(msgpackProtocol{}, hx("91 06"))
	if err != nil || m.Type != typePing {
		t.Errorf("parseRecord msgpack: %+v %v", m, err)
	}
	m, err = parseRecord(jsonProtocol{}, []byte(`{"type":6}`))
	if err != nil || m.Type != typePing {
		t.Errorf("parseRecord json: %+v %v", m, err)
	}
	if id, ok := scanRecordInvocationID(msgpackProtocol{}, hx("95 01 80 a1 37")); id != "7" || !ok {
		t.Errorf("scan msgpack: %q %v", id, ok)
	}
	if id, ok := scanRecordInvocationID(jsonProtocol{}, []byte(`{"invocationId":"7",`)); id != "7" || !ok {
		t.Errorf("scan json: %q %v", id, ok)
	}
	if !canBinary(&wsReader{binary: true}) || canBinary(&wsReader{}) {
		t.Error("canBinary(wsReader)")
	}
	tr := &wsTransport{}
	setBinaryFrames(tr, true)
	if !tr.binary {
		t.Error("setBinaryFrames(wsTransport)")
	}
	setBinaryFrames(newGateTransport(false), true) // no binary frames: a no-op
}

func TestCheckHandshake_Protocols(t *testing.T) {
	t.Parallel()
	s := &Server{}
	tests := []struct {
		h       handshakeRequest
		binary  bool
		want    protocol
		wantErr string
	}{
		{handshakeRequest{"json", 1}, false, jsonProtocol{}, ""},
		{handshakeRequest{"json", 2}, true, jsonProtocol{}, ""},
		{handshakeRequest{"messagepack", 1}, true, msgpackProtocol{}, ""},
		{handshakeRequest{"messagepack", 2}, true, msgpackProtocol{}, ""},
		{handshakeRequest{"messagepack", 3}, true, nil, "The server does not support version 3 of the 'messagepack' protocol."},
		{handshakeRequest{"messagepack", 1}, false, nil, "Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format."},
		{handshakeRequest{"blazorpack", 1}, true, nil, "The protocol 'blazorpack' is not supported."},
	}
	for _, tt := range tests {
		p, err := s.checkHandshake(tt.h, tt.binary)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%+v binary=%v: %v, want %q", tt.h, tt.binary, err, tt.wantErr)
			}
			continue
		}
		if err != nil || p != tt.want {
			t.Errorf("%+v binary=%v: %v %v, want %v", tt.h, tt.binary, p, err, tt.want)
		}
	}
}

// ---------------------------------------------------------------------------
// Dispatcher: one encoding per protocol per message.

func TestDeliver_EncodesOncePerProtocol(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	m := newTestMachine(t)
	srv, err := New(cfg, newFakePublisher(t, m, true), m) // not started: deliver is called by hand
	if err != nil {
		t.Fatal(err)
	}
	var conns []*conn
	for i, p := range []protocol{jsonProtocol{}, msgpackProtocol{}, jsonProtocol{}, msgpackProtocol{}} {
		c := srv.newConn(nil, fmt.Sprintf("c%d", i), testHubName, "", newGateTransport(false))
		c.setProtocol(p)
		srv.conns[c.id] = c
		srv.deliver(&fsm.Entry{Command: fsm.Command{Kind: fsm.KindConnOpen, ID: c.openID, Hub: testHubName, Conn: c.id, Node: cfg.NodeID}}, testEpoch, nil)
		conns = append(conns, c)
	}
	args := `["hi",{"b":2,"a":1}]`
	e := &fsm.Entry{Cursor: fsm.Cursor{Index: 7, Offset: 1}, Command: publishCmd(testHubName, fsm.AudienceAll, "", "say", []byte(args), []string{})}
	srv.deliver(e, testEpoch, make([]byte, 0, 8))
	cur := e.Cursor.Format(testEpoch)
	frames := make([][]byte, len(conns))
	for i, c := range conns {
		c.mu.Lock()
		if len(c.queue) != 1 {
			c.mu.Unlock()
			t.Fatalf("conn %d: %d queued frames", i, len(c.queue))
		}
		frames[i] = c.queue[0].b
		c.mu.Unlock()
	}
	wantJSON := invocationRaw("say", args, cur) + "\x1e"
	wantMP := framed(mpb([]any{1, omap{{"cursor", cur}}, nil, "say", []any{"hi", omap{{"b", 2}, {"a", 1}}}, []any{}}))
	if string(frames[0]) != wantJSON || string(frames[2]) != wantJSON {
		t.Errorf("JSON frames %q %q, want %q", frames[0], frames[2], wantJSON)
	}
	if !bytes.Equal(frames[1], wantMP) || !bytes.Equal(frames[3], wantMP) {
		t.Errorf("MessagePack frames % x / % x, want % x", frames[1], frames[3], wantMP)
	}
	// Same bytes, not equal copies: each protocol was encoded once.
	if &frames[0][0] != &frames[2][0] || &frames[1][0] != &frames[3][0] {
		t.Error("recipients of the same protocol got separately encoded frames")
	}
}

// ---------------------------------------------------------------------------
// End to end over loopback: a raw MessagePack client.

type mpClient struct {
	t      *testing.T
	ws     *websocket.Conn
	connID string
	nextID int

	mu         sync.Mutex
	handshake  string   // the first frame
	bodies     [][]byte // every message received after the handshake, without prefix
	textFrames int      // text frames after the handshake (must stay 0)
	rawFrames  [][]byte // every frame after the handshake
	partial    bool     // a frame that did not hold whole messages
	readErr    error
	bell       chan struct{}
	done       chan struct{}
}

// connectMsgpack negotiates, opens the WebSocket and does the MessagePack
// handshake (version 1). extra is sent in the same frame after it.
func connectMsgpack(t *testing.T, h *testHub, extra []byte) *mpClient {
	t.Helper()
	n := h.negotiateOK(testHubName, "negotiateVersion=1", nil)
	d := websocket.Dialer{HandshakeTimeout: testWait}
	ws, _, err := d.Dial(h.wsURL(testHubName, url.Values{"id": {*n.ConnectionToken}}.Encode()), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := &mpClient{t: t, ws: ws, connID: n.ConnectionID, bell: make(chan struct{}, 1), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() {
		_ = c.ws.Close()
		<-c.done
	})
	// The JS client sends the handshake as a text frame even for msgpack.
	c.send(websocket.TextMessage, append([]byte(`{"protocol":"messagepack","version":1}`+"\x1e"), extra...))
	c.wait("the handshake response", func() bool { return c.handshake != "" })
	c.mu.Lock()
	hs := c.handshake
	c.mu.Unlock()
	if hs != "{}\x1e" {
		t.Fatalf("handshake response %q", hs)
	}
	return c
}

func (c *mpClient) readLoop() {
	defer close(c.done)
	first := true
	for {
		typ, p, err := c.ws.ReadMessage()
		c.mu.Lock()
		if err != nil {
			c.readErr = err
			c.mu.Unlock()
			c.ring()
			return
		}
		if first {
			first = false
			c.handshake = string(p)
			c.mu.Unlock()
			c.ring()
			continue
		}
		c.rawFrames = append(c.rawFrames, p)
		if typ != websocket.BinaryMessage {
			c.textFrames++
		}
		for len(p) > 0 {
			// encoding/binary's Uvarint: an independent VarInt decoder.
			n, k := binary.Uvarint(p)
			if k <= 0 || uint64(len(p)-k) < n {
				c.partial = true
				break
			}
			c.bodies = append(c.bodies, p[k:k+int(n)])
			p = p[k+int(n):]
		}
		c.mu.Unlock()
		c.ring()
	}
}

func (c *mpClient) ring() {
	select {
	case c.bell <- struct{}{}:
	default:
	}
}

func (c *mpClient) send(typ int, p []byte) {
	c.t.Helper()
	_ = c.ws.SetWriteDeadline(time.Now().Add(testWait))
	if err := c.ws.WriteMessage(typ, p); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// wait waits for cond, evaluated under c.mu.
func (c *mpClient) wait(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, err := cond(), c.readErr
		n := len(c.bodies)
		c.mu.Unlock()
		if ok {
			return
		}
		if err != nil {
			c.t.Fatalf("connection ended (%v) while waiting for %s; %d messages received", err, what, n)
		}
		select {
		case <-c.bell:
		case <-deadline.C:
			c.t.Fatalf("timed out waiting for %s; %d messages received", what, n)
		}
	}
}

// decoded decodes a body with the library's generic decoder.
func decoded(t testing.TB, body []byte) []any {
	t.Helper()
	var v []any
	if err := msgpack.Unmarshal(body, &v); err != nil {
		t.Fatalf("decoding % x: %v", body, err)
	}
	return v
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		return int64(x)
	}
	return -1
}

// tryDecode is decoded without failing the test (for use under c.mu):
// nil when the body does not decode to a non-empty array.
func tryDecode(body []byte) []any {
	var v []any
	if err := msgpack.Unmarshal(body, &v); err != nil || len(v) == 0 {
		return nil
	}
	return v
}

// find waits for the first message body matching pred and returns it.
// Bodies that do not decode are reported once the wait is over.
func (c *mpClient) find(what string, pred func(v []any) bool) []byte {
	c.t.Helper()
	var got []byte
	c.wait(what, func() bool {
		for _, b := range c.bodies {
			if v := tryDecode(b); v != nil && pred(v) {
				got = b
				return true
			}
		}
		return false
	})
	c.mu.Lock()
	bodies := append([][]byte(nil), c.bodies...)
	c.mu.Unlock()
	for _, b := range bodies {
		decoded(c.t, b)
	}
	return got
}

// invoke sends [1, {}, id, target, args] and returns the id.
func (c *mpClient) invoke(target string, args ...any) string {
	c.t.Helper()
	c.nextID++
	id := strconv.Itoa(c.nextID)
	c.send(websocket.BinaryMessage, framed(mpb([]any{1, omap{}, id, target, append([]any{}, args...)})))
	return id
}

// completion waits for the Completion of id and returns it decoded.
func (c *mpClient) completion(id string) []any {
	c.t.Helper()
	b := c.find("the completion of "+id, func(v []any) bool {
		return len(v) >= 4 && asInt(v[0]) == typeCompletion && v[2] == id
	})
	return decoded(c.t, b)
}

// callOK invokes and requires a value Completion holding a cursor string.
func (c *mpClient) callOK(target string, args ...any) string {
	c.t.Helper()
	v := c.completion(c.invoke(target, args...))
	if len(v) != 5 || asInt(v[3]) != resultValue {
		c.t.Fatalf("%s: completion %#v, want a result", target, v)
	}
	if h, ok := v[1].(map[string]any); !ok || len(h) != 0 {
		c.t.Fatalf("%s: completion headers %#v", target, v[1])
	}
	cur, ok := v[4].(string)
	if !ok {
		c.t.Fatalf("%s: result %#v is not a string", target, v[4])
	}
	mustCursor(c.t, cur)
	return cur
}

// callErr invokes and requires an error Completion containing want.
func (c *mpClient) callErr(want, id string, frame []byte) {
	c.t.Helper()
	c.send(websocket.BinaryMessage, frame)
	v := c.completion(id)
	if len(v) != 5 || asInt(v[3]) != resultError {
		c.t.Fatalf("completion %#v, want an error", v)
	}
	if s, _ := v[4].(string); !strings.Contains(s, want) {
		c.t.Fatalf("completion error %q, want one containing %q", s, want)
	}
}

// invocation waits for an Invocation of target and returns its body.
func (c *mpClient) invocation(target string) []byte {
	c.t.Helper()
	return c.find("an invocation of "+target, func(v []any) bool {
		return len(v) >= 5 && asInt(v[0]) == typeInvocation && v[3] == target
	})
}

// invocationParts splits an Invocation body into its raw elements.
func invocationParts(t testing.TB, body []byte) (headers map[string]string, id any, target string, args []byte) {
	t.Helper()
	d := msgpack.NewDecoder(bytes.NewReader(body))
	n, err := d.DecodeArrayLen()
	if err != nil || n != 6 {
		t.Fatalf("invocation % x: %d elements (%v), want 6 (streamIds last, as ASP.NET Core writes)", body, n, err)
	}
	if typ, _ := d.DecodeInt(); typ != typeInvocation {
		t.Fatalf("type %d", typ)
	}
	if err := d.Decode(&headers); err != nil {
		t.Fatal(err)
	}
	if id, err = d.DecodeInterface(); err != nil {
		t.Fatal(err)
	}
	if target, err = d.DecodeString(); err != nil {
		t.Fatal(err)
	}
	raw, err := d.DecodeRaw()
	if err != nil {
		t.Fatal(err)
	}
	return headers, id, target, raw
}

func (c *mpClient) checkFraming() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.textFrames > 0 {
		c.t.Errorf("%d text frames after the handshake, want binary only", c.textFrames)
	}
	if c.partial {
		c.t.Errorf("a frame did not hold whole messages")
	}
}

func TestMsgpack_EndToEnd(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	j := h.connect(testHubName, "")
	m := connectMsgpack(t, h, nil)

	j.callOK("JoinGroup", "room")
	m.callOK("JoinGroup", "room")

	// From the MessagePack client: both receive it with the cursor header.
	mpArgs := []any{"from-mp", 42, omap{{"b", 1}, {"a", []any{1.5, nil, true}}}, []byte{1, 2, 3}, uint64(math.MaxUint64)}
	c1 := m.callOK("SendToGroup", append([]any{"room", "say"}, mpArgs...)...)
	wantJSON := `["from-mp",42,{"b":1,"a":[1.5,null,true]},"AQID",18446744073709551615]`
	got := j.waitInvocations("say", 1)
	if want := invocationRaw("say", wantJSON, c1); got[0].Raw != want {
		t.Fatalf("JSON client got %s, want %s", got[0].Raw, want)
	}
	hdr, id, target, args := invocationParts(t, m.invocation("say"))
	if hdr["cursor"] != c1 || len(hdr) != 1 || id != nil || target != "say" {
		t.Fatalf("msgpack client got headers %v id %v target %q, want cursor %s", hdr, id, target, c1)
	}
	// bin comes back as its base64 string: JSON in the log has no binary.
	wantArgs := mpb([]any{"from-mp", 42, omap{{"b", 1}, {"a", []any{1.5, nil, true}}}, "AQID", uint64(math.MaxUint64)})
	if !bytes.Equal(args, wantArgs) {
		t.Fatalf("msgpack client args % x, want % x", args, wantArgs)
	}

	// From the JSON client: both receive it, the MessagePack one as msgpack.
	c2 := j.callOK("SendToGroup", "room", "news", "from-json", json.RawMessage(`{"z":1,"y":[2.5,-3]}`), 12345678901234)
	if c2 == c1 {
		t.Fatal("two sends got the same cursor")
	}
	if got := j.waitInvocations("news", 1); got[0].Raw != invocationRaw("news", `["from-json",{"z":1,"y":[2.5,-3]},12345678901234]`, c2) {
		t.Fatalf("JSON client got %s", got[0].Raw)
	}
	hdr, _, _, args = invocationParts(t, m.invocation("news"))
	if hdr["cursor"] != c2 {
		t.Fatalf("cursor header %v, want %s", hdr, c2)
	}
	if want := mpb([]any{"from-json", omap{{"z", 1}, {"y", []any{2.5, -3}}}, int64(12345678901234)}); !bytes.Equal(args, want) {
		t.Fatalf("msgpack client args % x, want % x", args, want)
	}

	// Errors come back as Completion errors, and the connection stays up.
	m.callErr("Unknown hub method 'NoSuchMethod'", "e1", framed(mpb([]any{1, omap{}, "e1", "NoSuchMethod", []any{}})))
	m.callErr("unsupported argument type", "e2",
		framed(mpb([]any{1, omap{}, "e2", "Broadcast", []any{"t", omap{{1, "int key"}}}})))
	m.callErr("must be a string", "e3", framed(mpb([]any{1, omap{}, "e3", "JoinGroup", []any{7}})))
	big := strings.Repeat("x", h.cfg.MaxMessageSize+10)
	m.callErr("exceeds the maximum message size", "big",
		framed(mpb([]any{1, omap{}, "big", "Broadcast", []any{"t", big}})))
	// A fire-and-forget send gets no reply; a ping and a message in one frame.
	two := append(framed(mpb([]any{1, omap{}, nil, "Broadcast", []any{"ff", "x"}})), hx("02 91 06")...)
	m.send(websocket.BinaryMessage, two)
	c3 := m.callOK("Broadcast", "after-errors")
	hdr, _, _, _ = invocationParts(t, m.invocation("after-errors"))
	if hdr["cursor"] != c3 {
		t.Fatalf("cursor header %v, want %s", hdr, c3)
	}
	m.invocation("ff")
	j.waitInvocations("after-errors", 1)
	m.mu.Lock()
	bodies := append([][]byte(nil), m.bodies...)
	m.mu.Unlock()
	for _, b := range bodies {
		if v := decoded(t, b); asInt(v[0]) == typeCompletion && len(v) > 2 && v[2] == nil {
			t.Errorf("a completion for the fire-and-forget send: %v", v)
		}
	}
	m.checkFraming()
	j.checkFraming()
}

func TestMsgpack_HandshakeFrame(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)

	t.Run("messages in the handshake frame", func(t *testing.T) {
		// The bytes after the handshake's 0x1E go to the binary splitter.
		extra := append(hx("02 91 06"), framed(mpb([]any{1, omap{}, "1", "Broadcast", []any{"same-frame", 1}}))...)
		m := connectMsgpack(t, h, extra)
		v := m.completion("1")
		if len(v) != 5 || asInt(v[3]) != resultValue {
			t.Fatalf("completion %#v", v)
		}
		hdr, _, _, args := invocationParts(t, m.invocation("same-frame"))
		if hdr["cursor"] != v[4] || !bytes.Equal(args, mpb([]any{1})) {
			t.Fatalf("invocation headers %v args % x", hdr, args)
		}
		m.checkFraming()
	})
	t.Run("oversized message in the handshake frame", func(t *testing.T) {
		big := framed(mpb([]any{1, omap{}, "big", "Broadcast", []any{"t", strings.Repeat("x", h.cfg.MaxMessageSize)}}))
		m := connectMsgpack(t, h, big)
		v := m.completion("big")
		if s, _ := v[4].(string); asInt(v[3]) != resultError || !strings.Contains(s, "exceeds the maximum message size") {
			t.Fatalf("completion %#v", v)
		}
		m.callOK("Broadcast", "t", "still up")
	})
	t.Run("versions", func(t *testing.T) {
		for _, tt := range []struct {
			v    int
			want string
		}{
			{2, "{}\x1e"},
			{3, `{"error":"The server does not support version 3 of the 'messagepack' protocol."}` + "\x1e"},
		} {
			n := h.negotiateOK(testHubName, "negotiateVersion=1", nil)
			ws, _, err := websocket.DefaultDialer.Dial(h.wsURL(testHubName, "id="+url.QueryEscape(*n.ConnectionToken)), nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"protocol":"messagepack","version":%d}`+"\x1e", tt.v)))
			_ = ws.SetReadDeadline(time.Now().Add(testWait))
			_, p, err := ws.ReadMessage()
			if err != nil || string(p) != tt.want {
				t.Fatalf("version %d: %q %v, want %q", tt.v, p, err, tt.want)
			}
			ws.Close()
		}
	})
}

func TestMsgpack_PingAndBadPrefix(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.KeepAliveInterval = 100 * time.Millisecond })
	m := connectMsgpack(t, h, nil)
	m.wait("a ping frame", func() bool {
		for _, f := range m.rawFrames {
			if bytes.Equal(f, hx("02 91 06")) {
				return true
			}
		}
		return false
	})
	// A length prefix over 2 GB: the stream cannot be resynchronised, so
	// the server sends Close with an error and ends the connection.
	m.send(websocket.BinaryMessage, hx("ff ff ff ff 08 00"))
	b := m.find("a Close message", func(v []any) bool { return asInt(v[0]) == typeClose })
	v := decoded(t, b)
	if len(v) != 3 || v[2] != false {
		t.Fatalf("close %#v, want [7, error, false]", v)
	}
	if s, _ := v[1].(string); !strings.Contains(s, "2GB") {
		t.Fatalf("close error %#v", v[1])
	}
	select {
	case <-m.done:
	case <-time.After(testWait):
		t.Fatal("connection still open after a bad length prefix")
	}
	waitFor(t, "the server to drop the connection", func() bool {
		_, ok := h.m.Connection(testHubName, m.connID)
		return !ok || h.srv.LocalConnections() == 0
	})
	m.checkFraming()
}

// Publishing straight into the log (the REST path) reaches a MessagePack
// client with the cursor header.
func TestMsgpack_LogPublish(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	m := connectMsgpack(t, h, nil)
	cur, err := h.pub.Publish(context.Background(), publishCmd(testHubName, fsm.AudienceAll, "", "rest", []byte(`["extra",{"n":1}]`), nil))
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, _, args := invocationParts(t, m.invocation("rest"))
	if hdr["cursor"] != cur.Format(testEpoch) || !bytes.Equal(args, mpb([]any{"extra", omap{{"n", 1}}})) {
		t.Fatalf("headers %v args % x", hdr, args)
	}
}
