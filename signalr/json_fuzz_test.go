package signalr

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// refJSONString decodes a raw JSON string with encoding/json.
func refJSONString(t *testing.T, raw json.RawMessage) (string, bool) {
	t.Helper()
	var s string
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("encoding/json cannot decode string %s: %v", raw, err)
	}
	return s, true
}

// refJSONObject decodes rec with encoding/json into its top-level members. Map
// keys are matched exactly (unlike struct fields) and the last duplicate wins,
// which is the behaviour parseMessage promises.
func refJSONObject(rec []byte) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(rec, &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

func FuzzParseHandshake(f *testing.F) {
	for _, s := range []string{
		`{"protocol":"json","version":1}`,
		`{"protocol":"json","version":2}`,
		`{"protocol":"messagepack","version":1}`,
		`{"version":1}`,
		`{"protocol":"json"}`,
		`{"protocol":"js\u006fn","version":-0,"x":[{}]}`,
		`{"protocol":"json","version":1`,
		`{"protocol":"json","version":1e0}`,
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		h, err := ParseHandshake(rec)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "handshake: ") {
				t.Fatalf("error %q lacks the handshake: prefix", err)
			}
			return
		}
		if !utf8.Valid(rec) || !json.Valid(rec) {
			t.Fatalf("accepted invalid input %q", rec)
		}
		m, ok := refJSONObject(rec)
		if !ok {
			t.Fatalf("accepted %q, which encoding/json does not read as an object", rec)
		}
		if p, ok := refJSONString(t, m["protocol"]); !ok || p != h.Protocol || p == "" {
			t.Fatalf("protocol %q, encoding/json reads %s", h.Protocol, m["protocol"])
		}
		var v int32
		if err := json.Unmarshal(m["version"], &v); err != nil || int(v) != h.Version {
			t.Fatalf("version %d, encoding/json reads %s (%v)", h.Version, m["version"], err)
		}
	})
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":6}`,
		`{"target":"Add","arguments":[40,2],"invocationId":"0","type":1}`,
		`{"target":"Fire","arguments":[1],"type":1}`,
		`{"target":"Counter","arguments":[3],"invocationId":"1","type":4}`,
		`{"type":7}`,
		`{"type":7,"error":"x","allowReconnect":true}`,
		`{"type":8,"sequenceId":2}`,
		`{"type":9,"sequenceId":2}`,
		`{"type":2,"invocationId":"4","item":{"a":[1,"]"]}}`,
		`{"type":3,"invocationId":"0","result":42}`,
		`{"type":3,"invocationId":"0","error":"e"}`,
		`{"type":5,"invocationId":"\ud83d\ude00"}`,
		`{"type":1,"target":"T","arguments":[],"streamIds":["1"],"headers":{"a":"b"}}`,
		`{"type":1,"target":"T","arguments":[{"invocationId":"x"}],"invocationId":"y","invocationId":1}`,
		`{"type":1,"target":"T"}`,
		`{"type":"1"}`,
		`{"type":10}`,
		`{"Type":1}`,
		`[1]`,
		`{"type":1,"target":"T","arguments":[1,2`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		m, err := parseMessage(rec)
		valid := utf8.Valid(rec) && json.Valid(rec)
		if valid {
			// Whatever the verdict, the id visible to the caller matches the
			// lenient scanner (ids longer than the scanner's bound excepted).
			if id, ok := scanInvocationID(rec); len(m.InvocationID) <= maxIDCapture/6 && (id != m.InvocationID || ok != m.HasInvocationID) {
				t.Fatalf("parseMessage id %q/%v, scanInvocationID %q/%v", m.InvocationID, m.HasInvocationID, id, ok)
			}
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "hub message: ") {
				t.Fatalf("error %q lacks the hub message: prefix", err)
			}
			return
		}
		if !valid {
			t.Fatalf("accepted invalid input %q", rec)
		}
		ref, ok := refJSONObject(rec)
		if !ok {
			t.Fatalf("accepted %q, which encoding/json does not read as an object", rec)
		}
		var typ int
		if err := json.Unmarshal(ref["type"], &typ); err != nil || typ != m.Type {
			t.Fatalf("type %d, encoding/json reads %s", m.Type, ref["type"])
		}
		if id, ok := refJSONString(t, ref["invocationId"]); ok != m.HasInvocationID || id != m.InvocationID {
			t.Fatalf("invocationId %q/%v, encoding/json reads %s", m.InvocationID, m.HasInvocationID, ref["invocationId"])
		}
		switch m.Type {
		case TypeInvocation, TypeStreamInvocation:
			if tgt, _ := refJSONString(t, ref["target"]); tgt != m.Target || tgt == "" {
				t.Fatalf("target %q, encoding/json reads %s", m.Target, ref["target"])
			}
			var args []json.RawMessage
			if err := json.Unmarshal(ref["arguments"], &args); err != nil || len(args) != len(m.Arguments) {
				t.Fatalf("arguments %q, encoding/json reads %s", m.Arguments, ref["arguments"])
			}
			for i := range args {
				if !bytes.Equal(args[i], m.Arguments[i]) {
					t.Fatalf("argument %d = %s, encoding/json reads %s", i, m.Arguments[i], args[i])
				}
			}
			// Re-encoding what we parsed gives a record that parses the same.
			arr := append([]byte{'['}, bytes.Join(rawsAsBytes(m.Arguments), []byte{','})...)
			arr = append(arr, ']')
			out := appendInvocation(nil, m.Target, arr, "")
			m2, err := parseMessage(out[:len(out)-1])
			if err != nil || m2.Target != m.Target || len(m2.Arguments) != len(m.Arguments) {
				t.Fatalf("re-encoded %q parses as %+v, %v", out, m2, err)
			}
		case TypeAck, TypeSequence:
			var seq int64
			if err := json.Unmarshal(ref["sequenceId"], &seq); err != nil || seq != m.SequenceID || seq < 0 {
				t.Fatalf("sequenceId %d, encoding/json reads %s", m.SequenceID, ref["sequenceId"])
			}
		case TypeCompletion, TypeClose:
			if e, ok := refJSONString(t, ref["error"]); ok && e != m.Error {
				t.Fatalf("error %q, encoding/json reads %s", m.Error, ref["error"])
			}
		}
		for k, v := range m.Headers {
			var hs map[string]string
			if err := json.Unmarshal(ref["headers"], &hs); err != nil || hs[k] != v || len(hs) != len(m.Headers) {
				t.Fatalf("headers %v, encoding/json reads %s", m.Headers, ref["headers"])
			}
		}
	})
}

func rawsAsBytes(r []json.RawMessage) [][]byte {
	out := make([][]byte, len(r))
	for i := range r {
		out[i] = r[i]
	}
	return out
}

// fuzzChunks splits data into pseudo-random chunks (including empty ones)
// derived from seed.
func fuzzChunks(data []byte, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, seed>>32|1))
	var out [][]byte
	for len(data) > 0 {
		var n int
		switch r.IntN(8) {
		case 0:
			n = 0
		case 1:
			n = r.IntN(len(data) + 1)
		case 2:
			n = len(data)
		default:
			n = r.IntN(min(len(data), 24) + 1)
		}
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

// fuzzFeed feeds chunks to a fresh Splitter and returns what it emitted,
// failing if pending() ever exceeds max.
func fuzzFeed(t *testing.T, max int, chunks [][]byte) ([]splitEvent, *recordSplitter) {
	s := newRecordSplitter(max)
	var got []splitEvent
	for _, c := range chunks {
		s.Feed(c, func(rec []byte, info RecordInfo) {
			if info.Oversized != (rec == nil) {
				t.Fatalf("Oversized=%v with rec nil=%v", info.Oversized, rec == nil)
			}
			got = append(got, splitEvent{string(rec), info})
		})
		if s.Pending() > max {
			t.Fatalf("pending() = %d > max %d", s.Pending(), max)
		}
	}
	return got, s
}

func FuzzRecordSplitter(f *testing.F) {
	f.Add([]byte(`{"type":6}`+recSep+`{"target":"Add","arguments":[40,2],"invocationId":"0","type":1}`+recSep), uint16(20), uint64(1))
	f.Add([]byte(`{"arguments":["}\"{",{"invocationId":"n"}],"invocationId":"x\u0031"}`+recSep+`{"type":6}`+recSep+`{"ty`), uint16(12), uint64(7))
	f.Add([]byte(recSep+recSep+"abc"), uint16(2), uint64(3))
	f.Add([]byte("hello|world|"+strings.Repeat("x", 300)+"|a\"b\\c|"), uint16(100), uint64(99))
	f.Fuzz(func(t *testing.T, data []byte, maxSeed uint16, chunkSeed uint64) {
		max := int(maxSeed%512) + 1

		// 1. Arbitrary bytes: the Splitter must agree with a bytes.Split
		// reference in which over-long records are reported with the id that
		// scanInvocationID finds in the whole record.
		got, s := fuzzFeed(t, max, fuzzChunks(data, chunkSeed))
		pieces := bytes.Split(data, []byte(recSep))
		var want []splitEvent
		for _, p := range pieces[:len(pieces)-1] {
			if len(p) <= max {
				want = append(want, normalRecord(string(p)))
				continue
			}
			id, ok := scanInvocationID(p)
			want = append(want, splitEvent{"", RecordInfo{Oversized: true, Size: len(p), InvocationID: id, HasInvocationID: ok}})
		}
		if !equalSplitEvents(got, want) {
			t.Fatalf("arbitrary input, max %d:\n got %+v\nwant %+v", max, got, want)
		}
		tail := pieces[len(pieces)-1]
		wantPending := len(tail)
		if wantPending > max {
			wantPending = 0
		}
		if s.Pending() != wantPending {
			t.Fatalf("pending() = %d, want %d", s.Pending(), wantPending)
		}

		// 2. Only valid records, shaped like the JS client's invocations (id
		// after the arguments, decoy ids nested inside): normal records equal
		// the bytes.Split reference and oversized ones report the real id.
		var stream []byte
		var ids []string
		for i, part := range bytes.Split(data, []byte("|")) {
			id := strconv.Itoa(i) + string(part[:min(len(part), 4)])
			rec, err := json.Marshal(struct {
				Target       string `json:"target"`
				Arguments    []any  `json:"arguments"`
				InvocationID string `json:"invocationId"`
				Type         int    `json:"type"`
			}{"T", []any{string(part), map[string]any{"invocationId": "decoy", "x": []string{string(part)}}}, id, 1})
			if err != nil {
				t.Fatal(err)
			}
			var dec struct {
				InvocationID string `json:"invocationId"`
			}
			if err := json.Unmarshal(rec, &dec); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, dec.InvocationID)
			stream = append(append(stream, rec...), RecordSeparator)
		}
		got, s = fuzzFeed(t, max, fuzzChunks(stream, chunkSeed^0x9e3779b97f4a7c15))
		recs := bytes.Split(stream[:len(stream)-1], []byte(recSep))
		if len(got) != len(recs) || s.Pending() != 0 {
			t.Fatalf("valid records: emitted %d, want %d (pending %d)", len(got), len(recs), s.Pending())
		}
		for i, e := range got {
			if len(recs[i]) <= max {
				if e.info.Oversized || e.rec != string(recs[i]) {
					t.Fatalf("record %d = %+v, want %q", i, e, recs[i])
				}
				continue
			}
			if !e.info.Oversized || e.info.Size != len(recs[i]) || !e.info.HasInvocationID || e.info.InvocationID != ids[i] {
				t.Fatalf("oversized record %d = %+v, want size %d id %q", i, e.info, len(recs[i]), ids[i])
			}
		}
	})
}

func equalSplitEvents(a, b []splitEvent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzAppendInvocation(f *testing.F) {
	f.Add("Send", []byte(`["hi",{"a":1}]`), "e1:42")
	f.Add("", []byte(`[]`), "")
	f.Add("a\"b\\c\n\x00\x1e\u2028\xff\xed\xa0\x80", []byte(` [ 1 , null ] `), "\x7f<>&")
	f.Add("héllo 世界 \U0001F600", []byte(`not json`), "c\ufffd")
	f.Fuzz(func(t *testing.T, target string, args []byte, cursor string) {
		trimmed := bytes.TrimSpace(args)
		if !json.Valid(args) || len(trimmed) == 0 || trimmed[0] != '[' {
			var err error
			if args, err = json.Marshal([]string{string(args)}); err != nil {
				t.Fatal(err)
			}
			trimmed = args
		}
		out := appendInvocation(nil, target, args, cursor)
		if len(out) == 0 || out[len(out)-1] != RecordSeparator || bytes.IndexByte(out, RecordSeparator) != len(out)-1 {
			t.Fatalf("%q is not one 0x1E-terminated record", out)
		}
		body := out[:len(out)-1]
		if !json.Valid(body) {
			t.Fatalf("invalid JSON %q", body)
		}
		if utf8.Valid(args) && !utf8.Valid(body) {
			t.Fatalf("invalid UTF-8 %q", body)
		}
		var dec struct {
			Type      int               `json:"type"`
			Target    string            `json:"target"`
			Arguments json.RawMessage   `json:"arguments"`
			Headers   map[string]string `json:"headers"`
		}
		if err := json.Unmarshal(body, &dec); err != nil {
			t.Fatal(err)
		}
		if dec.Type != 1 || dec.Target != refJSONRoundTrip(t, target) || !bytes.Equal(dec.Arguments, trimmed) {
			t.Fatalf("decoded %+v from %q", dec, body)
		}
		if (cursor == "") != (dec.Headers == nil) || (cursor != "" && dec.Headers["cursor"] != refJSONRoundTrip(t, cursor)) {
			t.Fatalf("headers %v for cursor %q", dec.Headers, cursor)
		}
		if utf8.Valid(args) && target != "" {
			m, err := parseMessage(body)
			if err != nil || m.Target != dec.Target {
				t.Fatalf("parseMessage(%q) = %+v, %v", body, m, err)
			}
		}
		// The other string-carrying encoders escape the same way.
		for _, rec := range [][]byte{
			appendCompletion(nil, target, nil, cursor),
			appendClose(nil, target, true),
			appendStreamItem(nil, cursor, args),
			AppendHandshakeResponse(nil, target),
		} {
			if !json.Valid(rec[:len(rec)-1]) || (utf8.Valid(args) && !utf8.Valid(rec)) {
				t.Fatalf("invalid record %q", rec)
			}
		}
	})
}

// refJSONRoundTrip is what a JSON reader sees after encoding/json encodes s
// (invalid UTF-8 becomes U+FFFD).
func refJSONRoundTrip(t *testing.T, s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
