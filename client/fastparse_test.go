package client

import (
	"encoding/json"
	"reflect"
	"testing"
)

var fastParseSeeds = []string{
	`{"type":1,"target":"m","arguments":[1,2,"x"],"headers":{"cursor":"ep:1:0"}}`,
	`{"type":1,"target":"m","arguments":[]}`,
	`{"type":1,"target":"m","arguments":[{"a":[1,{"b":"]"}]},null,true,-1.5e3,"q\"uote"]}`,
	`{"type":1,"target":"m","arguments":[1 ,2]}`,
	`{"type":1,"target":"m","arguments":[1x]}`,
	`{"type":1,"target":"m\u00e9","arguments":[]}`,
	`{"type":1,"target":"m","arguments":[],"headers":{"cursor":"c","x":"y"}}`,
	`{"type":1,"target":"m","arguments":[],"extra":1}`,
	`{"type":3,"invocationId":"1","result":"ep:3:0"}`,
	`{"type":3,"invocationId":"1","result":null}`,
	`{"type":3,"invocationId":"1","error":"boom"}`,
	`{"type":3,"invocationId":"1"}`,
	`{"type":3,"invocationId":"1","result":{"a":1}}`,
	`{"type":3,"invocationId":"1","result":[1,2}`,
	`{"type":6}`,
	"{\"type\":1,\"target\":\"\xff\",\"arguments\":[]}",
}

// TestParseFast: the common shapes take the fast path, and it decodes them
// as encoding/json does.
func TestParseFast(t *testing.T) {
	for _, tc := range []struct {
		rec  string
		fast bool
	}{
		{fastParseSeeds[0], true},
		{fastParseSeeds[1], true},
		{fastParseSeeds[2], true},
		{fastParseSeeds[8], true},
		{fastParseSeeds[9], true},
		{fastParseSeeds[10], true},
		{fastParseSeeds[11], true},
		{fastParseSeeds[3], false},  // whitespace: encoding/json's job
		{fastParseSeeds[5], false},  // escapes
		{fastParseSeeds[6], false},  // another header
		{fastParseSeeds[14], false}, // a Ping
	} {
		var m inMessage
		if got := parseFast([]byte(tc.rec), &m); got != tc.fast {
			t.Errorf("parseFast(%s) = %v, want %v", tc.rec, got, tc.fast)
		}
	}
	checkFastParse(t, []byte(fastParseSeeds[0]))
}

// FuzzParseFast: whenever the fast path accepts a record, encoding/json
// accepts it too and decodes the same message.
func FuzzParseFast(f *testing.F) {
	for _, s := range fastParseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, rec []byte) { checkFastParse(t, rec) })
}

func checkFastParse(t *testing.T, rec []byte) {
	var fast inMessage
	if !parseFast(rec, &fast) {
		return
	}
	var slow inMessage
	if err := json.Unmarshal(rec, &slow); err != nil {
		t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", rec, err)
	}
	// The fast path keeps the cursor header out of a map; compare what the
	// client reads, and an empty argument list as encoding/json has it.
	if fast.cursorHeader() != slow.cursorHeader() {
		t.Fatalf("%q: cursor %q, encoding/json %q", rec, fast.cursorHeader(), slow.cursorHeader())
	}
	fast.cursor, slow.Headers = "", nil
	if len(fast.Arguments) == 0 && len(slow.Arguments) == 0 && (fast.Arguments == nil) == (slow.Arguments == nil) {
		fast.Arguments, slow.Arguments = nil, nil
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q:\nfast %+v\nslow %+v", rec, fast, slow)
	}
}

func BenchmarkParseInvocation(b *testing.B) {
	rec := []byte(`{"type":1,"target":"m","arguments":[3,1234,5678901,"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],"headers":{"cursor":"0123456789abcdef:123456:17"}}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m inMessage
			if !parseFast(rec, &m) {
				b.Fatal("not the fast shape")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m inMessage
			if err := json.Unmarshal(rec, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
