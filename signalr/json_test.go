package signalr

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

const recSep = "\x1e"

func TestParseHandshake(t *testing.T) {
	tests := []struct {
		name    string
		rec     string
		want    HandshakeRequest
		wantErr string
	}{
		{name: "json v1", rec: `{"protocol":"json","version":1}`, want: HandshakeRequest{"json", 1}},
		{name: "json v2 stateful", rec: `{"protocol":"json","version":2}`, want: HandshakeRequest{"json", 2}},
		{name: "messagepack parsed fine", rec: `{"protocol":"messagepack","version":1}`, want: HandshakeRequest{"messagepack", 1}},
		{name: "order and whitespace free", rec: " {\n\"version\" : 1 ,\t\"protocol\":\"json\"}\r\n", want: HandshakeRequest{"json", 1}},
		{name: "unknown fields ignored", rec: `{"protocol":"json","extra":{"a":[1,2]},"version":1}`, want: HandshakeRequest{"json", 1}},
		{name: "escaped key and value", rec: `{"proto\u0063ol":"js\u006fn","version":1}`, want: HandshakeRequest{"json", 1}},
		{name: "duplicate takes last", rec: `{"protocol":"x","protocol":"json","version":1}`, want: HandshakeRequest{"json", 1}},
		{name: "unsupported protocol still parses", rec: `{"protocol":"xml","version":99}`, want: HandshakeRequest{"xml", 99}},
		{name: "missing protocol", rec: `{"version":1}`, wantErr: "handshake: missing protocol"},
		{name: "protocol wrong case", rec: `{"Protocol":"json","version":1}`, wantErr: "handshake: missing protocol"},
		{name: "protocol not a string", rec: `{"protocol":1,"version":1}`, wantErr: "handshake: protocol must be a string"},
		{name: "protocol null", rec: `{"protocol":null,"version":1}`, wantErr: "handshake: protocol must be a string"},
		{name: "empty protocol", rec: `{"protocol":"","version":1}`, wantErr: "handshake: empty protocol"},
		{name: "version missing", rec: `{"protocol":"json"}`, wantErr: "handshake: missing version"},
		{name: "version string", rec: `{"protocol":"json","version":"1"}`, wantErr: "handshake: version must be"},
		{name: "version fraction", rec: `{"protocol":"json","version":1.5}`, wantErr: "handshake: version must be"},
		{name: "version too big", rec: `{"protocol":"json","version":4294967296}`, wantErr: "handshake: version must be"},
		{name: "bad JSON", rec: `{"protocol":"json","version":1`, wantErr: "handshake: invalid JSON: "},
		{name: "trailing garbage", rec: `{"protocol":"json","version":1}x`, wantErr: "handshake: invalid JSON: "},
		{name: "empty", rec: ``, wantErr: "handshake: invalid JSON: "},
		{name: "not an object", rec: `["json",1]`, wantErr: "handshake: not a JSON object"},
		{name: "invalid UTF-8", rec: "{\"protocol\":\"js\xffon\",\"version\":1}", wantErr: "handshake: invalid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseHandshake([]byte(tt.rec))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseHandshake(%q) error = %v, want containing %q", tt.rec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHandshake(%q): %v", tt.rec, err)
			}
			if got != tt.want {
				t.Fatalf("ParseHandshake(%q) = %+v, want %+v", tt.rec, got, tt.want)
			}
		})
	}
}

func TestEncodeHandshakeResponse(t *testing.T) {
	tests := []struct {
		name, errMsg, want string
	}{
		{name: "success", errMsg: "", want: "{}" + recSep},
		{name: "error", errMsg: "The protocol 'xml' is not supported.", want: `{"error":"The protocol 'xml' is not supported."}` + recSep},
		{name: "escaped", errMsg: "a\"b\\c\n", want: `{"error":"a\"b\\c\n"}` + recSep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendHandshakeResponse(nil, tt.errMsg))
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			var v struct {
				Error *string `json:"error"`
			}
			if err := json.Unmarshal([]byte(strings.TrimSuffix(got, recSep)), &v); err != nil {
				t.Fatal(err)
			}
			if (v.Error == nil) != (tt.errMsg == "") || (v.Error != nil && *v.Error != tt.errMsg) {
				t.Fatalf("decoded error %v, want %q", v.Error, tt.errMsg)
			}
		})
	}
}

func rawArgs(vals ...string) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(vals))
	for _, v := range vals {
		out = append(out, json.RawMessage(v))
	}
	return out
}

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name    string
		rec     string
		want    Message
		wantErr string
	}{
		// The exact frames from PROTOCOL.md section 3.3 "Tiny example frames".
		{name: "example ping", rec: `{"type":6}`, want: Message{Type: TypePing}},
		{name: "example invoke", rec: `{"target":"Add","arguments":[40,2],"invocationId":"0","type":1}`,
			want: Message{Type: TypeInvocation, InvocationID: "0", HasInvocationID: true, Target: "Add", Arguments: rawArgs("40", "2")}},
		{name: "example send", rec: `{"target":"Fire","arguments":[1],"type":1}`,
			want: Message{Type: TypeInvocation, Target: "Fire", Arguments: rawArgs("1")}},
		{name: "example stream", rec: `{"target":"Counter","arguments":[3],"invocationId":"1","type":4}`,
			want: Message{Type: TypeStreamInvocation, InvocationID: "1", HasInvocationID: true, Target: "Counter", Arguments: rawArgs("3")}},
		{name: "example close", rec: `{"type":7}`, want: Message{Type: TypeClose}},
		{name: "example ack", rec: `{"type":8,"sequenceId":2}`, want: Message{Type: TypeAck, SequenceID: 2}},
		{name: "example sequence", rec: `{"type":9,"sequenceId":2}`, want: Message{Type: TypeSequence, SequenceID: 2}},

		// Invocation.
		{name: "invocation empty arguments", rec: `{"type":1,"target":"T","arguments":[]}`,
			want: Message{Type: TypeInvocation, Target: "T", Arguments: []json.RawMessage{}}},
		{name: "invocation complex arguments kept raw", rec: `{"type":1,"target":"T","arguments":[ {"a":[1,{"b":"]"}]} , "x\"y" ,null,true,-1.5e3,[]]}`,
			want: Message{Type: TypeInvocation, Target: "T", Arguments: rawArgs(`{"a":[1,{"b":"]"}]}`, `"x\"y"`, `null`, `true`, `-1.5e3`, `[]`)}},
		{name: "invocation with streamIds and headers", rec: `{"type":1,"invocationId":"3","target":"Up","arguments":[],"streamIds":["4","5"],"headers":{"k":"v","k2":"v\n2"}}`,
			want: Message{Type: TypeInvocation, InvocationID: "3", HasInvocationID: true, Target: "Up", Arguments: []json.RawMessage{}, StreamIDs: []string{"4", "5"}, Headers: map[string]string{"k": "v", "k2": "v\n2"}}},
		{name: "invocation null streamIds and headers", rec: `{"type":1,"target":"T","arguments":[],"streamIds":null,"headers":null}`,
			want: Message{Type: TypeInvocation, Target: "T", Arguments: []json.RawMessage{}}},
		{name: "invocation escaped target and id", rec: `{"type":1,"target":"\u0041\ud83d\ude00\n","arguments":[],"invocationId":"\"7\""}`,
			want: Message{Type: TypeInvocation, Target: "A\U0001F600\n", InvocationID: `"7"`, HasInvocationID: true, Arguments: []json.RawMessage{}}},
		{name: "unknown fields ignored", rec: `{"type":1,"target":"T","arguments":[1],"foo":{"invocationId":5},"bar":[1,2,"}"],"baz":null}`,
			want: Message{Type: TypeInvocation, Target: "T", Arguments: rawArgs("1")}},
		{name: "property names case-sensitive", rec: `{"type":1,"Target":"X","target":"T","Arguments":5,"arguments":[],"InvocationId":7}`,
			want: Message{Type: TypeInvocation, Target: "T", Arguments: []json.RawMessage{}}},
		{name: "duplicate property takes last", rec: `{"type":1,"target":"A","target":"B","arguments":[]}`,
			want: Message{Type: TypeInvocation, Target: "B", Arguments: []json.RawMessage{}}},
		{name: "irrelevant fields not checked", rec: `{"type":6,"target":5,"arguments":"x","invocationId":{},"sequenceId":-1,"headers":7}`,
			want: Message{Type: TypePing}},
		{name: "missing arguments", rec: `{"type":1,"target":"T"}`, wantErr: "missing arguments"},
		{name: "arguments not array", rec: `{"type":1,"target":"T","arguments":{"0":1}}`, wantErr: "arguments must be an array"},
		{name: "arguments null", rec: `{"type":4,"invocationId":"1","target":"T","arguments":null}`, wantErr: "arguments must be an array"},
		{name: "missing target", rec: `{"type":1,"arguments":[]}`, wantErr: "missing target"},
		{name: "empty target", rec: `{"type":1,"target":"","arguments":[]}`, wantErr: "missing target"},
		{name: "target not string", rec: `{"type":1,"target":["T"],"arguments":[]}`, wantErr: "target must be a string"},
		{name: "invocationId number", rec: `{"type":1,"target":"T","arguments":[],"invocationId":0}`, wantErr: "invocationId must be a string"},
		{name: "invocationId null", rec: `{"type":1,"target":"T","arguments":[],"invocationId":null}`, wantErr: "invocationId must be a string"},
		{name: "streamIds not strings", rec: `{"type":1,"target":"T","arguments":[],"streamIds":[1]}`, wantErr: "streamIds must be an array of strings"},
		{name: "header value not string", rec: `{"type":1,"target":"T","arguments":[],"headers":{"a":1}}`, wantErr: `header "a" must be a string`},
		{name: "headers not object", rec: `{"type":1,"target":"T","arguments":[],"headers":[]}`, wantErr: "headers must be an object"},
		{name: "stream invocation without id", rec: `{"type":4,"target":"T","arguments":[]}`, wantErr: "missing invocationId"},

		// StreamItem, Completion, Cancel.
		{name: "stream item", rec: `{"type":2,"invocationId":"4","item":{"x":[1]}}`,
			want: Message{Type: TypeStreamItem, InvocationID: "4", HasInvocationID: true, Item: json.RawMessage(`{"x":[1]}`)}},
		{name: "stream item null", rec: `{"type":2,"invocationId":"4","item":null}`,
			want: Message{Type: TypeStreamItem, InvocationID: "4", HasInvocationID: true, Item: json.RawMessage(`null`)}},
		{name: "stream item without id", rec: `{"type":2,"item":1}`, wantErr: "missing invocationId"},
		{name: "completion result", rec: `{"type":3,"invocationId":"0","result":42}`,
			want: Message{Type: TypeCompletion, InvocationID: "0", HasInvocationID: true, Result: json.RawMessage(`42`)}},
		{name: "completion null result", rec: `{"type":3,"invocationId":"0","result":null}`,
			want: Message{Type: TypeCompletion, InvocationID: "0", HasInvocationID: true, Result: json.RawMessage(`null`)}},
		{name: "completion void", rec: `{"type":3,"invocationId":"1"}`,
			want: Message{Type: TypeCompletion, InvocationID: "1", HasInvocationID: true}},
		{name: "completion error", rec: `{"type":3,"invocationId":"1","error":"Client didn't provide a result."}`,
			want: Message{Type: TypeCompletion, InvocationID: "1", HasInvocationID: true, Error: "Client didn't provide a result.", HasError: true}},
		{name: "completion null error with result", rec: `{"type":3,"invocationId":"1","error":null,"result":1}`,
			want: Message{Type: TypeCompletion, InvocationID: "1", HasInvocationID: true, Result: json.RawMessage(`1`)}},
		{name: "completion both", rec: `{"type":3,"invocationId":"1","error":"e","result":1}`, wantErr: "both result and error"},
		{name: "completion error not string", rec: `{"type":3,"invocationId":"1","error":1}`, wantErr: "error must be a string"},
		{name: "completion without id", rec: `{"type":3,"result":1}`, wantErr: "missing invocationId"},
		{name: "cancel", rec: `{"type":5,"invocationId":"9"}`,
			want: Message{Type: TypeCancelInvocation, InvocationID: "9", HasInvocationID: true}},
		{name: "cancel without id", rec: `{"type":5}`, wantErr: "missing invocationId"},

		// Close.
		{name: "close error and reconnect", rec: `{"type":7,"error":"bye","allowReconnect":true}`,
			want: Message{Type: TypeClose, Error: "bye", HasError: true, AllowReconnect: true}},
		{name: "close nulls", rec: `{"type":7,"error":null,"allowReconnect":null}`, want: Message{Type: TypeClose}},
		{name: "close with headers", rec: `{"type":7,"headers":{"a":"b"}}`, want: Message{Type: TypeClose, Headers: map[string]string{"a": "b"}}},
		{name: "close allowReconnect string", rec: `{"type":7,"allowReconnect":"true"}`, wantErr: "allowReconnect must be a boolean"},

		// Ack and Sequence.
		{name: "ack zero", rec: `{"type":8,"sequenceId":0}`, want: Message{Type: TypeAck}},
		{name: "sequence max int64", rec: `{"type":9,"sequenceId":9223372036854775807}`, want: Message{Type: TypeSequence, SequenceID: 1<<63 - 1}},
		{name: "sequence overflow", rec: `{"type":9,"sequenceId":9223372036854775808}`, wantErr: "sequenceId must be a non-negative integer"},
		{name: "ack negative", rec: `{"type":8,"sequenceId":-1}`, wantErr: "sequenceId must be a non-negative integer"},
		{name: "ack fraction", rec: `{"type":8,"sequenceId":1.5}`, wantErr: "sequenceId must be a non-negative integer"},
		{name: "ack exponent", rec: `{"type":8,"sequenceId":1e2}`, wantErr: "sequenceId must be a non-negative integer"},
		{name: "ack string", rec: `{"type":8,"sequenceId":"2"}`, wantErr: "sequenceId must be a non-negative integer"},
		{name: "ack missing", rec: `{"type":8}`, wantErr: "missing sequenceId"},

		// Type and JSON errors.
		{name: "missing type", rec: `{"target":"T","arguments":[]}`, wantErr: "missing type"},
		{name: "type wrong case", rec: `{"Type":6}`, wantErr: "missing type"},
		{name: "type string", rec: `{"type":"6"}`, wantErr: "type must be an integer"},
		{name: "type fraction", rec: `{"type":6.0}`, wantErr: "type must be an integer"},
		{name: "type null", rec: `{"type":null}`, wantErr: "type must be an integer"},
		{name: "type unknown is not an error", rec: `{"type":42,"target":1,"arguments":"x","invocationId":"3"}`,
			want: Message{Type: 42, InvocationID: "3", HasInvocationID: true}},
		{name: "type zero is unknown", rec: `{"type":0}`, want: Message{Type: 0}},
		{name: "type negative is unknown", rec: `{"type":-1,"invocationId":5}`, want: Message{Type: -1}},
		{name: "type out of range", rec: `{"type":4294967297}`, wantErr: "type out of range"},
		{name: "invalid JSON", rec: `{"type":6`, wantErr: "invalid JSON: "},
		{name: "two values", rec: `{"type":6}{"type":6}`, wantErr: "invalid JSON: "},
		{name: "empty record", rec: ``, wantErr: "invalid JSON: "},
		{name: "not an object", rec: `[6]`, wantErr: "not a JSON object"},
		{name: "string at top", rec: `"type"`, wantErr: "not a JSON object"},
		{name: "invalid UTF-8", rec: "{\"type\":1,\"target\":\"T\",\"arguments\":[\"\xc3\x28\"]}", wantErr: "invalid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMessage([]byte(tt.rec))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseMessage(%s) error = %v, want containing %q", tt.rec, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "hub message: ") {
					t.Errorf("error %q lacks the hub message: prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseMessage(%s): %v", tt.rec, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("parseMessage(%s)\n got %+v\nwant %+v", tt.rec, got, tt.want)
			}
		})
	}
}

func TestParseMessage_PartialOnError(t *testing.T) {
	tests := []struct {
		name   string
		rec    string
		wantID string
		hasID  bool
		typ    int
	}{
		{name: "missing arguments", rec: `{"type":1,"target":"T","invocationId":"5"}`, wantID: "5", hasID: true, typ: 1},
		{name: "bad target", rec: `{"type":4,"target":1,"arguments":[],"invocationId":"6"}`, wantID: "6", hasID: true, typ: 4},
		{name: "missing type", rec: `{"invocationId":"7"}`, wantID: "7", hasID: true},
		{name: "non-string id", rec: `{"type":1,"invocationId":7}`, typ: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMessage([]byte(tt.rec))
			if err == nil {
				t.Fatal("expected an error")
			}
			if m.Type != tt.typ || m.InvocationID != tt.wantID || m.HasInvocationID != tt.hasID {
				t.Fatalf("partial message = %+v, want type %d id %q/%v", m, tt.typ, tt.wantID, tt.hasID)
			}
		})
	}
}

func TestParseMessage_DoesNotAliasInput(t *testing.T) {
	rec := []byte(`{"type":3,"invocationId":"1","result":{"a":"b"}}`)
	m, err := parseMessage(rec)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rec {
		rec[i] = 'X'
	}
	if string(m.Result) != `{"a":"b"}` || m.InvocationID != "1" {
		t.Fatalf("message changed with its input buffer: %+v", m)
	}
}

func TestScanInvocationID(t *testing.T) {
	tests := []struct {
		name   string
		rec    string
		wantID string
		ok     bool
	}{
		{name: "simple", rec: `{"type":1,"invocationId":"0"}`, wantID: "0", ok: true},
		{name: "after arguments", rec: `{"target":"A","arguments":[{"invocationId":"no"},"invocationId","{\"invocationId\":\"no\"}"],"invocationId":"12","type":1}`, wantID: "12", ok: true},
		{name: "nested only", rec: `{"a":{"invocationId":"no"},"b":[{"invocationId":"no"}]}`},
		{name: "as value not key", rec: `{"a":"invocationId","b":["invocationId","x"]}`},
		{name: "escaped key and value", rec: `{"invocation\u0049d":"\u0031\n\"q\""}`, wantID: "1\n\"q\"", ok: true},
		{name: "number value", rec: `{"invocationId":12}`},
		{name: "null value", rec: `{"invocationId":null}`},
		{name: "later non-string hides earlier", rec: `{"invocationId":"1","invocationId":2}`},
		{name: "later string wins", rec: `{"invocationId":"1","invocationId":"2"}`, wantID: "2", ok: true},
		{name: "top-level array", rec: `["invocationId","1"]`},
		{name: "malformed but findable", rec: `{"type":1,"arguments":[1,,2,],"target":,"invocationId":"3"`, wantID: "3", ok: true},
		{name: "truncated value", rec: `{"invocationId":"3`},
		{name: "missing colon", rec: `{"invocationId" "3"}`},
		{name: "after top-level closed", rec: `{"a":1} {"invocationId":"3"}`},
		{name: "whitespace", rec: " {\n\"invocationId\" :\t\"4\" } ", wantID: "4", ok: true},
		{name: "empty", rec: ``},
		{name: "too long", rec: `{"invocationId":"` + strings.Repeat("x", maxIDCapture+1) + `"}`},
		{name: "longest", rec: `{"invocationId":"` + strings.Repeat("x", maxIDCapture) + `"}`, wantID: strings.Repeat("x", maxIDCapture), ok: true},
		{name: "bad escape", rec: `{"invocationId":"\x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok := scanInvocationID([]byte(tt.rec))
			if id != tt.wantID || ok != tt.ok {
				t.Fatalf("scanInvocationID(%.80s) = %q, %v; want %q, %v", tt.rec, id, ok, tt.wantID, tt.ok)
			}
		})
	}
}

type splitEvent struct {
	rec  string
	info RecordInfo
}

// feedSplitter feeds each chunk and collects everything emitted, checking that
// pending() never exceeds max.
func feedSplitter(t *testing.T, s *recordSplitter, chunks ...[]byte) []splitEvent {
	t.Helper()
	var out []splitEvent
	for _, c := range chunks {
		s.Feed(c, func(rec []byte, info RecordInfo) {
			if info.Oversized != (rec == nil) {
				t.Errorf("Oversized=%v but rec nil=%v", info.Oversized, rec == nil)
			}
			out = append(out, splitEvent{string(rec), info})
		})
		if s.Pending() > s.max {
			t.Fatalf("pending() = %d > max %d", s.Pending(), s.max)
		}
	}
	return out
}

func normalRecord(rec string) splitEvent { return splitEvent{rec, RecordInfo{Size: len(rec)}} }

func oneByteChunks(s string) [][]byte {
	out := make([][]byte, len(s))
	for i := range s {
		out[i] = []byte{s[i]}
	}
	return out
}

func TestRecordSplitter_Feed(t *testing.T) {
	const ping = `{"type":6}`
	const invoke = `{"target":"Add","arguments":[40,2],"invocationId":"0","type":1}`
	big := `{"arguments":["` + strings.Repeat("a", 100) + `"],"invocationId":"7"}`
	tests := []struct {
		name        string
		max         int
		chunks      [][]byte
		want        []splitEvent
		wantPending int
	}{
		{name: "several records in one chunk", max: 100,
			chunks: [][]byte{[]byte(ping + recSep + invoke + recSep + ping + recSep)},
			want:   []splitEvent{normalRecord(ping), normalRecord(invoke), normalRecord(ping)}},
		{name: "one record split byte by byte", max: 100,
			chunks: oneByteChunks(invoke + recSep),
			want:   []splitEvent{normalRecord(invoke)}},
		{name: "records across chunk boundaries", max: 100,
			chunks: [][]byte{[]byte(ping + recSep + invoke[:10]), []byte(invoke[10:] + recSep + ping[:3]), nil, []byte(ping[3:] + recSep)},
			want:   []splitEvent{normalRecord(ping), normalRecord(invoke), normalRecord(ping)}},
		{name: "trailing partial record stays pending", max: 100,
			chunks:      [][]byte{[]byte(ping + recSep + `{"ty`)},
			want:        []splitEvent{normalRecord(ping)},
			wantPending: 4},
		{name: "empty records", max: 100,
			chunks: [][]byte{[]byte(recSep + recSep)},
			want:   []splitEvent{normalRecord(""), normalRecord("")}},
		{name: "oversized then normal in same chunk", max: 50,
			chunks: [][]byte{[]byte(big + recSep + ping + recSep)},
			want:   []splitEvent{{"", RecordInfo{Oversized: true, Size: len(big), InvocationID: "7", HasInvocationID: true}}, normalRecord(ping)}},
		{name: "oversized byte by byte then normal", max: 50,
			chunks: oneByteChunks(ping + recSep + big + recSep + ping + recSep),
			want:   []splitEvent{normalRecord(ping), {"", RecordInfo{Oversized: true, Size: len(big), InvocationID: "7", HasInvocationID: true}}, normalRecord(ping)}},
		{name: "oversized after buffered prefix", max: 50,
			chunks: [][]byte{[]byte(ping + recSep + big[:20]), []byte(big[20:] + recSep + ping + recSep)},
			want:   []splitEvent{normalRecord(ping), {"", RecordInfo{Oversized: true, Size: len(big), InvocationID: "7", HasInvocationID: true}}, normalRecord(ping)}},
		{name: "oversized without id", max: 5,
			chunks: [][]byte{[]byte(ping + recSep)},
			want:   []splitEvent{{"", RecordInfo{Oversized: true, Size: len(ping)}}}},
		{name: "exact max is not oversized", max: len(ping),
			chunks: [][]byte{[]byte(ping + recSep)},
			want:   []splitEvent{normalRecord(ping)}},
		{name: "exact max split is not oversized", max: len(ping),
			chunks: oneByteChunks(ping + recSep),
			want:   []splitEvent{normalRecord(ping)}},
		{name: "max+1 is oversized", max: len(ping) - 1,
			chunks: [][]byte{[]byte(ping + recSep)},
			want:   []splitEvent{{"", RecordInfo{Oversized: true, Size: len(ping)}}}},
		{name: "max+1 split is oversized", max: len(ping) - 1,
			chunks: oneByteChunks(ping + recSep),
			want:   []splitEvent{{"", RecordInfo{Oversized: true, Size: len(ping)}}}},
		{name: "incomplete oversized record pends nothing", max: 5,
			chunks: [][]byte{[]byte(`{"type":6,"a":1`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRecordSplitter(tt.max)
			got := feedSplitter(t, s, tt.chunks...)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("emitted\n got %+v\nwant %+v", got, tt.want)
			}
			if s.Pending() != tt.wantPending {
				t.Fatalf("pending() = %d, want %d", s.Pending(), tt.wantPending)
			}
		})
	}
}

// hugeInvocationRecord builds a JS-client-like invocation whose invocationId comes
// after an argument of about n bytes full of escaped quotes, braces and
// brackets inside strings, and a nested object with its own invocationId.
func hugeInvocationRecord(n int, id string) string {
	var b strings.Builder
	b.WriteString(`{"target":"Upload","arguments":[{"invocationId":"nested-1","deep":{"invocationId":"nested-2"}},"`)
	chunk := `\"invocationId\":\"fake\"}{[]]}\\ \u001e \"` // escaped quotes, braces, an escaped 0x1E
	for b.Len() < n {
		b.WriteString(chunk)
	}
	b.WriteString(`",["invocationId","nested-3"],{"a":"}","invocationId":"nested-4"}],"invocationId":`)
	b.WriteString(string(AppendJSONString(nil, id)))
	b.WriteString(`,"type":1}`)
	return b.String()
}

func TestRecordSplitter_OversizedInvocationIDAfterLargeArgument(t *testing.T) {
	rec := hugeInvocationRecord(100<<10, "42")
	if !json.Valid([]byte(rec)) {
		t.Fatal("test record is not valid JSON")
	}
	m, err := parseMessage([]byte(rec))
	if err != nil || m.InvocationID != "42" {
		t.Fatalf("reference parse: %+v, %v", m, err)
	}
	want := []splitEvent{
		{"", RecordInfo{Oversized: true, Size: len(rec), InvocationID: "42", HasInvocationID: true}},
		normalRecord(`{"type":6}`),
	}
	input := []byte(rec + recSep + `{"type":6}` + recSep)
	chunkings := map[string][]int{
		"one chunk":      {len(input)},
		"4 KB frames":    {4096},
		"odd sizes":      {1, 7, 33, 1000, 3},
		"byte by byte":   {1},
		"split near end": {len(rec) - 5, 3, 1},
	}
	for name, sizes := range chunkings {
		t.Run(name, func(t *testing.T) {
			s := newRecordSplitter(32 << 10)
			var chunks [][]byte
			for i, k := 0, 0; i < len(input); k++ {
				n := min(sizes[k%len(sizes)], len(input)-i)
				chunks = append(chunks, input[i:i+n])
				i += n
			}
			got := feedSplitter(t, s, chunks...)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("emitted\n got %+v\nwant %+v", got, want)
			}
		})
	}
	t.Run("scanInvocationID agrees", func(t *testing.T) {
		id, ok := scanInvocationID([]byte(rec))
		if id != "42" || !ok {
			t.Fatalf("scanInvocationID = %q, %v", id, ok)
		}
	})
	t.Run("escaped id", func(t *testing.T) {
		rec := hugeInvocationRecord(40<<10, "a\"b\\c\u00e9\U0001F600")
		s := newRecordSplitter(1024)
		got := feedSplitter(t, s, []byte(rec[:500]), []byte(rec[500:]+recSep))
		if len(got) != 1 || got[0].info.InvocationID != "a\"b\\c\u00e9\U0001F600" || !got[0].info.HasInvocationID {
			t.Fatalf("emitted %+v", got)
		}
	})
}

func TestRecordSplitter_MemoryBounded(t *testing.T) {
	const max = 32 << 10
	rec := []byte(hugeInvocationRecord(10<<20, "99"))
	tests := []struct {
		name  string
		chunk int
	}{
		{name: "64 KB chunks", chunk: 64 << 10},
		{name: "1000 byte chunks", chunk: 1000},
		{name: "single 10 MB chunk", chunk: len(rec)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRecordSplitter(max)
			var got []RecordInfo
			emit := func(rec []byte, info RecordInfo) { got = append(got, info) }
			for i := 0; i < len(rec); i += tt.chunk {
				s.Feed(rec[i:min(i+tt.chunk, len(rec))], emit)
				if s.Pending() > max {
					t.Fatalf("pending() = %d > %d after %d bytes", s.Pending(), max, i)
				}
				if cap(s.buf) > max {
					t.Fatalf("buffer capacity %d > %d", cap(s.buf), max)
				}
			}
			s.Feed([]byte(recSep), emit)
			if len(got) != 1 || !got[0].Oversized || got[0].Size != len(rec) || got[0].InvocationID != "99" {
				t.Fatalf("emitted %+v", got)
			}
			if s.Pending() != 0 {
				t.Fatalf("pending() = %d after the record", s.Pending())
			}
		})
	}
}

func TestRecordSplitter_MinimumMax(t *testing.T) {
	s := newRecordSplitter(0)
	got := feedSplitter(t, s, []byte("a"+recSep+"ab"+recSep))
	want := []splitEvent{normalRecord("a"), {"", RecordInfo{Oversized: true, Size: 2}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("emitted %+v, want %+v", got, want)
	}
}

// decodeOneRecord checks that out is exactly one 0x1E-terminated, valid UTF-8,
// valid JSON record and decodes it into a generic map.
func decodeOneRecord(t *testing.T, out []byte) map[string]any {
	t.Helper()
	if len(out) == 0 || out[len(out)-1] != RecordSeparator || bytes.Count(out, []byte(recSep)) != 1 {
		t.Fatalf("%q is not one 0x1E-terminated record", out)
	}
	body := out[:len(out)-1]
	if !utf8.Valid(body) || !json.Valid(body) {
		t.Fatalf("%q is not valid UTF-8 JSON", body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEncoders(t *testing.T) {
	tests := []struct {
		name  string
		got   []byte
		exact string
		want  map[string]any
	}{
		{name: "invocation with cursor", got: appendInvocation(nil, "Send", json.RawMessage(`["hi",{"a":1}]`), "e1:42"),
			exact: `{"type":1,"target":"Send","arguments":["hi",{"a":1}],"headers":{"cursor":"e1:42"}}` + recSep},
		{name: "invocation without cursor", got: appendInvocation(nil, "Send", json.RawMessage(`[]`), ""),
			exact: `{"type":1,"target":"Send","arguments":[]}` + recSep},
		{name: "invocation nil args", got: appendInvocation(nil, "Send", nil, ""),
			exact: `{"type":1,"target":"Send","arguments":[]}` + recSep},
		{name: "invocation appends to dst", got: appendInvocation([]byte(`{"type":6}`+recSep), "T", json.RawMessage(`[1]`), ""),
			exact: `{"type":6}` + recSep + `{"type":1,"target":"T","arguments":[1]}` + recSep},
		{name: "completion result", got: appendCompletion(nil, "0", json.RawMessage(`42`), ""),
			exact: `{"type":3,"invocationId":"0","result":42}` + recSep},
		{name: "completion null result", got: appendCompletion(nil, "0", json.RawMessage(`null`), ""),
			exact: `{"type":3,"invocationId":"0","result":null}` + recSep},
		{name: "completion void", got: appendCompletion(nil, "1", nil, ""),
			exact: `{"type":3,"invocationId":"1"}` + recSep},
		{name: "completion error wins over result", got: appendCompletion(nil, "2", json.RawMessage(`1`), "Unknown hub method 'X'"),
			exact: `{"type":3,"invocationId":"2","error":"Unknown hub method 'X'"}` + recSep},
		{name: "stream item", got: appendStreamItem(nil, "1", json.RawMessage(`0`)),
			exact: `{"type":2,"invocationId":"1","item":0}` + recSep},
		{name: "stream item empty", got: appendStreamItem(nil, "1", nil),
			exact: `{"type":2,"invocationId":"1","item":null}` + recSep},
		{name: "ping", got: appendPing(nil), exact: `{"type":6}` + recSep},
		{name: "close plain", got: appendClose(nil, "", false), exact: `{"type":7}` + recSep},
		{name: "close error", got: appendClose(nil, "Connection closed with an error.", false),
			exact: `{"type":7,"error":"Connection closed with an error."}` + recSep},
		{name: "close reconnect", got: appendClose(nil, "", true), exact: `{"type":7,"allowReconnect":true}` + recSep},
		{name: "close both", got: appendClose(nil, "bye", true), exact: `{"type":7,"error":"bye","allowReconnect":true}` + recSep},
		{name: "ack", got: appendAck(nil, 2), exact: `{"type":8,"sequenceId":2}` + recSep},
		{name: "sequence", got: appendSequence(nil, 1<<62), exact: `{"type":9,"sequenceId":4611686018427387904}` + recSep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if string(tt.got) != tt.exact {
				t.Fatalf("got  %q\nwant %q", tt.got, tt.exact)
			}
			last := tt.got[bytes.LastIndexByte(tt.got[:len(tt.got)-1], RecordSeparator)+1:]
			decodeOneRecord(t, last)
		})
	}
}

func TestEncoders_RoundTripThroughParser(t *testing.T) {
	// Server->client frames use the same shapes the parser accepts from
	// clients, so the parser can check them field by field.
	tests := []struct {
		name string
		out  []byte
		want Message
	}{
		{name: "invocation", out: appendInvocation(nil, "tgt\n\"x\"", json.RawMessage(`[1,"two",{"3":[4]}]`), "c\\1"),
			want: Message{Type: 1, Target: "tgt\n\"x\"", Arguments: rawArgs(`1`, `"two"`, `{"3":[4]}`), Headers: map[string]string{"cursor": "c\\1"}}},
		{name: "completion", out: appendCompletion(nil, "7\u2028", json.RawMessage(`{"ok":true}`), ""),
			want: Message{Type: 3, InvocationID: "7\u2028", HasInvocationID: true, Result: json.RawMessage(`{"ok":true}`)}},
		{name: "completion error", out: appendCompletion(nil, "7", nil, "boom\x00"),
			want: Message{Type: 3, InvocationID: "7", HasInvocationID: true, Error: "boom\x00", HasError: true}},
		{name: "close", out: appendClose(nil, "e", true), want: Message{Type: 7, Error: "e", HasError: true, AllowReconnect: true}},
		{name: "ack", out: appendAck(nil, 5), want: Message{Type: 8, SequenceID: 5}},
		{name: "sequence", out: appendSequence(nil, 6), want: Message{Type: 9, SequenceID: 6}},
		{name: "ping", out: appendPing(nil), want: Message{Type: 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decodeOneRecord(t, tt.out)
			got, err := parseMessage(tt.out[:len(tt.out)-1])
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestAppendJSONString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // exact output
		dec  string // what a JSON decoder must read back
	}{
		{name: "plain", in: "hello", want: `"hello"`, dec: "hello"},
		{name: "empty", in: "", want: `""`, dec: ""},
		{name: "quote and backslash", in: `a"b\c`, want: `"a\"b\\c"`, dec: `a"b\c`},
		{name: "short escapes", in: "\b\f\n\r\t", want: `"\b\f\n\r\t"`, dec: "\b\f\n\r\t"},
		{name: "other controls", in: "\x00\x01\x1e\x1f", want: `"\u0000\u0001\u001e\u001f"`, dec: "\x00\x01\x1e\x1f"},
		{name: "DEL and html stay", in: "\x7f<>&/", want: "\"\x7f<>&/\"", dec: "\x7f<>&/"},
		{name: "unicode stays raw", in: "héllo, 世界 \U0001F600", want: "\"héllo, 世界 \U0001F600\"", dec: "héllo, 世界 \U0001F600"},
		{name: "line separators escaped", in: "a\u2028b\u2029c", want: `"a\u2028b\u2029c"`, dec: "a\u2028b\u2029c"},
		{name: "invalid UTF-8 byte", in: "a\xffb", want: `"a\ufffdb"`, dec: "a\ufffdb"},
		{name: "truncated sequence", in: "\xe4\xb8", want: `"\ufffd\ufffd"`, dec: "\ufffd\ufffd"},
		{name: "surrogate encoded in UTF-8", in: "\xed\xa0\x80", want: `"\ufffd\ufffd\ufffd"`, dec: "\ufffd\ufffd\ufffd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendJSONString(nil, tt.in)
			if string(got) != tt.want {
				t.Fatalf("AppendJSONString(%q) = %s, want %s", tt.in, got, tt.want)
			}
			if !utf8.Valid(got) || !json.Valid(got) {
				t.Fatalf("output %q is not valid UTF-8 JSON", got)
			}
			var dec string
			if err := json.Unmarshal(got, &dec); err != nil || dec != tt.dec {
				t.Fatalf("decoded %q, %v; want %q", dec, err, tt.dec)
			}
			// Same decoded value as encoding/json produces for the same input.
			ref, _ := json.Marshal(tt.in)
			var refDec string
			if err := json.Unmarshal(ref, &refDec); err != nil || refDec != dec {
				t.Fatalf("encoding/json reads %q, we read %q", refDec, dec)
			}
			// And our own decoder agrees.
			if own, ok := unquoteJSON(got[1 : len(got)-1]); !ok || own != dec {
				t.Fatalf("unquoteJSON = %q, %v; want %q", own, ok, dec)
			}
		})
	}
}

func TestUnquoteJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
		ok   bool
	}{
		{name: "plain", in: `abc`, want: "abc", ok: true},
		{name: "escapes", in: `\"\\\/\b\f\n\r\t`, want: "\"\\/\b\f\n\r\t", ok: true},
		{name: "unicode escape", in: `\u00e9\u4e16`, want: "é世", ok: true},
		{name: "surrogate pair", in: `\ud83d\ude00`, want: "\U0001F600", ok: true},
		{name: "lone high surrogate", in: `\ud83dx`, want: "\ufffdx", ok: true},
		{name: "lone low surrogate", in: `\ude00`, want: "\ufffd", ok: true},
		{name: "high then non-low", in: `\ud83d\u0041`, want: "\ufffdA", ok: true},
		{name: "invalid UTF-8", in: "a\xffb", want: "a\ufffdb", ok: true},
		{name: "bad escape", in: `\x`},
		{name: "short unicode", in: `\u12`},
		{name: "bad hex", in: `\u12g4`},
		{name: "trailing backslash", in: `a\`},
		{name: "raw quote", in: `a"b`},
		{name: "raw control", in: "a\nb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := unquoteJSON([]byte(tt.in))
			if got != tt.want || ok != tt.ok {
				t.Fatalf("unquoteJSON(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
			if tt.ok {
				var ref string
				if err := json.Unmarshal([]byte(`"`+tt.in+`"`), &ref); err == nil && ref != got {
					t.Fatalf("encoding/json decodes %q, we decode %q", ref, got)
				}
			}
		})
	}
}

func TestJSONProtocol(t *testing.T) {
	var p Protocol = jsonProtocol{}
	if p.Name() != "json" || p.Binary() {
		t.Fatalf("name %q binary %v", p.Name(), p.Binary())
	}
	tests := []struct {
		name      string
		got, want []byte
	}{
		{name: "invocation", got: p.AppendInvocation(nil, "T", json.RawMessage(`[1]`), "c"), want: appendInvocation(nil, "T", json.RawMessage(`[1]`), "c")},
		{name: "completion", got: p.AppendCompletion(nil, "1", json.RawMessage(`2`), ""), want: appendCompletion(nil, "1", json.RawMessage(`2`), "")},
		{name: "ping", got: p.AppendPing(nil), want: appendPing(nil)},
		{name: "close", got: p.AppendClose(nil, "x", true), want: appendClose(nil, "x", true)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Equal(tt.got, tt.want) {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func BenchmarkAppendInvocation(b *testing.B) {
	args := json.RawMessage(`["alice","hello there, this is a chat message of moderate length",{"ts":1700000000,"room":"general"}]`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendInvocation(buf[:0], "ReceiveMessage", args, "e3f1:123456789")
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkParseMessage(b *testing.B) {
	rec := []byte(`{"arguments":["alice","hello there, this is a chat message of moderate length"],"invocationId":"12","streamIds":[],"target":"SendMessage","type":1}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := parseMessage(rec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecordSplitter_Oversized(b *testing.B) {
	rec := []byte(hugeInvocationRecord(1<<20, "1") + recSep)
	s := newRecordSplitter(32 << 10)
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < len(rec); i += 16 << 10 {
			s.Feed(rec[i:min(i+16<<10, len(rec))], func([]byte, RecordInfo) {})
		}
	}
}

// The parsers return messages that do not alias the record: invokeParallel
// hands them to another goroutine after the Splitter reuses its buffer.
func TestParseRecord_DoesNotAlias(t *testing.T) {
	for _, p := range []Protocol{jsonProtocol{}, msgpackProtocol{}} {
		framed := p.AppendInvocation(nil, "Broadcast", json.RawMessage(`["m",{"k":"v"}]`), "")
		var recs [][]byte
		p.NewSplitter(1<<16).Feed(framed, func(rec []byte, _ RecordInfo) { recs = append(recs, rec) })
		if len(recs) != 1 {
			t.Fatalf("%s: %d records, want 1", p.Name(), len(recs))
		}
		rec := recs[0]
		m, err := p.Parse(rec)
		if err != nil {
			t.Fatalf("%s: %v", p.Name(), err)
		}
		for i := range rec {
			rec[i] = 'X'
		}
		if m.Target != "Broadcast" || len(m.Arguments) != 2 || string(m.Arguments[0]) != `"m"` || string(m.Arguments[1]) != `{"k":"v"}` {
			t.Fatalf("%s: the message changed with the record: %q %q", p.Name(), m.Target, m.Arguments)
		}
	}
}

// Resting is true exactly between records: a splitter dropped then and
// replaced by a new one splits what follows the same way.
func TestSplitter_Resting(t *testing.T) {
	jsonRec := []byte(`{"type":6}` + "\x1e")
	framed := []byte{0x03, 0x91, 0x06, 0x00} // a MessagePack message of 3 bytes, with its length prefix
	for _, tc := range []struct {
		name   string
		split  func() Splitter
		chunks [][]byte
		want   []bool // Resting after each chunk
	}{
		{"json whole", func() Splitter { return JSON.NewSplitter(64) }, [][]byte{jsonRec}, []bool{true}},
		{"json in pieces", func() Splitter { return JSON.NewSplitter(64) },
			[][]byte{jsonRec[:3], jsonRec[3:], jsonRec[:5]}, []bool{false, true, false}},
		{"json oversized", func() Splitter { return JSON.NewSplitter(4) },
			[][]byte{jsonRec[:3], jsonRec[3:8], jsonRec[8:]}, []bool{false, false, true}},
		{"msgpack whole", func() Splitter { return MessagePack.NewSplitter(64) }, [][]byte{framed}, []bool{true}},
		{"msgpack prefix only", func() Splitter { return MessagePack.NewSplitter(1 << 20) },
			[][]byte{{0x80}, {0x01}}, []bool{false, false}},
		{"msgpack body in pieces", func() Splitter { return MessagePack.NewSplitter(64) },
			[][]byte{framed[:2], framed[2:]}, []bool{false, true}},
		{"msgpack oversized", func() Splitter { return MessagePack.NewSplitter(2) },
			[][]byte{framed[:2], framed[2:3], framed[3:]}, []bool{false, false, true}},
		{"msgpack bad prefix", func() Splitter { return MessagePack.NewSplitter(64) },
			[][]byte{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}, []bool{false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.split()
			if !s.Resting() {
				t.Fatal("a new splitter is not resting")
			}
			for i, c := range tc.chunks {
				s.Feed(c, func([]byte, RecordInfo) {})
				if got := s.Resting(); got != tc.want[i] {
					t.Fatalf("after chunk %d (% x): Resting() = %v, want %v", i, c, got, tc.want[i])
				}
			}
		})
	}
}
