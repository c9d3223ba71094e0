package signalr

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// msgpackFuzzSeeds are the PROTOCOL.md frames (bodies without the prefix)
// and a few messages with converted values.
func msgpackFuzzSeeds() [][]byte {
	return [][]byte{
		hx("91 06"),
		hx("95 01 80 a1 30 a3 41 64 64 92 28 02"),
		hx("95 01 80 c0 a4 46 69 72 65 91 01"),
		hx("92 07 c0"),
		mpb([]any{1, omap{{"a", "b"}}, "1", "SendToGroup", []any{"room", "say", 1.5, float32(0.1), nil, true,
			[]byte{1, 2}, omap{{"z", []any{}}, {"y", omap{}}}, uint64(1 << 63), int64(-1 << 40)}, []any{"s"}}),
		mpb([]any{3, omap{}, "0", 3, omap{{"k", rawMP(hx("d6 ff 00 00 00 01"))}}}),
		mpb([]any{3, omap{}, "0", 1, "error"}),
		mpb([]any{2, omap{}, "1", []any{1, 2}}),
		mpb([]any{7, "bye", true}),
		mpb([]any{8, 5}),
		mpb([]any{1, omap{}, "9", "T", []any{omap{{1, 2}}}}),
		hx("dd 7f ff ff ff"),
	}
}

// FuzzMsgpackParse: parsing never panics, converted values are valid JSON
// that converts back to MessagePack, and what comes out is proportional to
// what went in (bounded memory: declared lengths are checked against the
// record; TestParseMsgpackMessage_BoundedMemory measures it).
func FuzzMsgpackParse(f *testing.F) {
	for _, s := range msgpackFuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		m, err := parseMsgpackMessage(data)
		if !bytes.Equal(data, orig) {
			t.Fatal("parseMsgpackMessage modified its input")
		}
		out := len(m.Item) + len(m.Result) + len(m.Target) + len(m.InvocationID) + len(m.Error)
		for _, a := range m.Arguments {
			out += len(a)
		}
		if limit := 6*len(data) + 64; out > limit {
			t.Fatalf("%d input bytes produced %d output bytes", len(data), out)
		}
		if err == nil {
			for _, v := range append(append([]json.RawMessage(nil), m.Arguments...), m.Item, m.Result) {
				if v == nil {
					continue
				}
				checkConversionStable(t, v)
			}
			if (m.Type == TypeInvocation || m.Type == TypeStreamInvocation) && m.Arguments == nil {
				t.Fatal("nil Arguments for an invocation")
			}
			if m.Type >= TypeStreamItem && m.Type <= TypeCancelInvocation && !m.HasInvocationID {
				t.Fatalf("type %d without an invocation id", m.Type)
			}
		}
		if id, ok := scanMsgpackInvocationID(data); ok && len(id) > maxIDCapture {
			t.Fatalf("scanned id of %d bytes", len(id))
		}
		if js, err := msgpackToJSON(data); err == nil {
			if len(js) > 6*len(data)+64 {
				t.Fatalf("%d input bytes produced %d bytes of JSON", len(data), len(js))
			}
			checkConversionStable(t, js)
		}
	})
}

// checkConversionStable: js (produced by the msgpack->JSON conversion) is
// valid JSON, converts to MessagePack, and after one more round trip the
// JSON no longer changes (the first trip may normalise: -0 -> 0, an escaped
// U+FFFD -> the raw rune).
func checkConversionStable(t *testing.T, js []byte) {
	t.Helper()
	if !json.Valid(js) {
		t.Fatalf("invalid JSON %q", js)
	}
	mp, err := jsonToMsgpack(js)
	if err != nil {
		t.Fatalf("jsonToMsgpack(%q): %v", js, err)
	}
	j2, err := msgpackToJSON(mp)
	if err != nil {
		t.Fatalf("msgpackToJSON(% x) from %q: %v", mp, js, err)
	}
	mp2, err := jsonToMsgpack(j2)
	if err != nil {
		t.Fatalf("jsonToMsgpack(%q): %v", j2, err)
	}
	j3, err := msgpackToJSON(mp2)
	if err != nil || !bytes.Equal(j2, j3) {
		t.Fatalf("unstable conversion: %q -> %q -> %q (%v)", js, j2, j3, err)
	}
}

// refSplit is an independent reference for binarySplitter over a complete
// stream: it returns what the Splitter must emit and whether the stream
// hits a bad prefix.
func refSplit(data []byte, max int) (out []splitOut, bad bool) {
	for len(data) > 0 {
		var n uint64
		k := 0
		for {
			if k == 5 {
				return out, true // a 5th byte with the continuation bit
			}
			if k == len(data) {
				return out, false // incomplete prefix
			}
			c := data[k]
			n |= uint64(c&0x7f) << (7 * k)
			k++
			if c&0x80 == 0 {
				break
			}
		}
		if n > maxBinaryMessage {
			return out, true
		}
		if uint64(len(data)-k) < n {
			return out, false // incomplete body
		}
		body := data[k : k+int(n)]
		data = data[k+int(n):]
		if int(n) <= max {
			out = append(out, splitOut{string(body), RecordInfo{Size: int(n)}})
			continue
		}
		id, ok := scanMsgpackInvocationID(body[:min(len(body), oversizedHead)])
		out = append(out, splitOut{"", RecordInfo{Oversized: true, Size: int(n), InvocationID: id, HasInvocationID: ok}})
	}
	return out, false
}

// FuzzBinarySplitter: however the stream is cut, the Splitter emits what
// the reference does, stops at a bad prefix, and buffers at most max bytes.
func FuzzBinarySplitter(f *testing.F) {
	var all []byte
	for _, s := range msgpackFuzzSeeds() {
		all = append(all, framed(s)...)
		f.Add(framed(s), uint16(16), uint8(0), uint8(3))
	}
	f.Add(all, uint16(20), uint8(1), uint8(200))
	f.Add(append(append(hx("02 91 06"), hx("ff ff ff ff 08")...), hx("02 91 06")...), uint16(10), uint8(2), uint8(0))
	f.Add(append(framed(mpb([]any{1, omap{}, "big", "T", []any{string(make([]byte, 300))}})), hx("02 91 06")...), uint16(64), uint8(5), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, max16 uint16, cut1, cut2 uint8) {
		max := int(max16%1024) + 1
		want, bad := refSplit(data, max)

		s := newBinarySplitter(max)
		var got []splitOut
		for _, c := range chunk(data, int(cut1)+1, int(cut2)+1) {
			s.Feed(c, func(rec []byte, info RecordInfo) {
				if info.Oversized != (rec == nil) {
					t.Fatalf("rec %q with info %+v", rec, info)
				}
				got = append(got, splitOut{string(rec), info})
			})
			if s.Pending() > max || cap(s.buf) > max || cap(s.head) > oversizedHead {
				t.Fatalf("buffered %d (cap %d, head cap %d) with max %d", s.Pending(), cap(s.buf), cap(s.head), max)
			}
		}
		if len(got) == 0 {
			got = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("max %d chunks %d/%d:\n got %+v\nwant %+v", max, cut1+1, cut2+1, got, want)
		}
		if (s.Err() != nil) != bad {
			t.Fatalf("Splitter error %v, reference bad prefix %v", s.Err(), bad)
		}
	})
}
