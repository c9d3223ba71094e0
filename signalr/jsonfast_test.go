package signalr

import (
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
	`{"type":1,"target":"","arguments":[]}`,
	"{\"type\":1,\"target\":\"m\",\"arguments\":[\"\xff\"]}",
}

// TestParseFast: the common shapes take the fast path, and it decodes them
// as the general parser does.
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
		{fastParseSeeds[3], false},  // whitespace: the general parser's job
		{fastParseSeeds[5], false},  // escapes
		{fastParseSeeds[6], false},  // another header
		{fastParseSeeds[14], false}, // a Ping
		{fastParseSeeds[16], false}, // an empty target is an error
		{fastParseSeeds[17], false}, // invalid UTF-8 is an error
	} {
		if _, got := parseFast([]byte(tc.rec)); got != tc.fast {
			t.Errorf("parseFast(%s) = %v, want %v", tc.rec, got, tc.fast)
		}
	}
	for _, s := range fastParseSeeds {
		checkFastParse(t, []byte(s))
	}
}

// FuzzParseFast: whenever the fast path accepts a record, the general
// parser accepts it too and decodes the same message.
func FuzzParseFast(f *testing.F) {
	for _, s := range fastParseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, rec []byte) { checkFastParse(t, rec) })
}

func checkFastParse(t *testing.T, rec []byte) {
	fast, ok := parseFast(rec)
	if !ok {
		return
	}
	slow, err := parseMessageGeneral(rec)
	if err != nil {
		t.Fatalf("fast path accepted %q, the general parser refuses it: %v", rec, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q:\nfast %+v\nslow %+v", rec, fast, slow)
	}
}

func BenchmarkParseServerInvocation(b *testing.B) {
	rec := []byte(`{"type":1,"target":"m","arguments":[3,1234,5678901,"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],"headers":{"cursor":"0123456789abcdef:123456:17"}}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := parseFast(rec); !ok {
				b.Fatal("not the fast shape")
			}
		}
	})
	b.Run("general", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseMessageGeneral(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
