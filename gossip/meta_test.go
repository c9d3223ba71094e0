package gossip

import (
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestMeta_RoundTrip(t *testing.T) {
	tests := []struct {
		name string
		meta Meta
	}{
		{"minimal", Meta{ID: "n1"}},
		{"full", Meta{ID: "6f1c2a9e-5b7d-4c1e-9a1b-2f3e4d5c6b7a", RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1:8080", ClusterID: "c-42", Leaving: true, Version: MetaVersion}},
		{"ipv6", Meta{ID: "n6", RaftAddr: "[::1]:7000", HTTPAddr: "[fe80::1]:80"}},
		{"hostnames", Meta{ID: "n2", RaftAddr: "raft.example:7000", HTTPAddr: "api.example:443"}},
		{"unicode and html", Meta{ID: "nœud-<1>&", ClusterID: "grappe ☃ \u2028"}},
		{"near the limit", Meta{ID: "big", ClusterID: strings.Repeat("c", memberlist.MetaMaxSize-100)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.meta.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if len(b) > memberlist.MetaMaxSize {
				t.Fatalf("encoded %d bytes", len(b))
			}
			got, err := DecodeMeta(b)
			if err != nil {
				t.Fatalf("DecodeMeta(%s): %v", b, err)
			}
			if got != tt.meta {
				t.Fatalf("round trip: got %+v, want %+v", got, tt.meta)
			}
		})
	}
}

func TestMeta_JSONFieldNames(t *testing.T) {
	b, err := Meta{ID: "a", RaftAddr: "h:1", HTTPAddr: "h:2", ClusterID: "c", Leaving: true, Version: 3}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"a","raft":"h:1","http":"h:2","cluster":"c","leaving":true,"ver":3}`
	if string(b) != want {
		t.Fatalf("Encode = %s, want %s", b, want)
	}
}

func TestMeta_Invalid(t *testing.T) {
	tests := []struct {
		name string
		meta Meta
		want string
	}{
		{"no id", Meta{RaftAddr: "h:1"}, "ID is empty"},
		{"raft without port", Meta{ID: "a", RaftAddr: "h"}, "RaftAddr"},
		{"http without port", Meta{ID: "a", HTTPAddr: "h"}, "HTTPAddr"},
		{"bad utf8", Meta{ID: "a\xff"}, "UTF-8"},
		{"negative version", Meta{ID: "a", Version: -1}, "negative"},
		{"too big", Meta{ID: "a", ClusterID: strings.Repeat("c", 500)}, "512-byte"},
		{"too big once escaped", Meta{ID: "a", ClusterID: strings.Repeat("\x01", 100)}, "512-byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.meta.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestDecodeMeta_Rejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"null", "null"},
		{"empty object", "{}"},
		{"empty id", `{"id":""}`},
		{"not json", "hello"},
		{"trailing data", `{"id":"a"} x`},
		{"id not a string", `{"id":1}`},
		{"float version", `{"id":"a","ver":1.5}`},
		{"bad raft addr", `{"id":"a","raft":"nope"}`},
		{"oversized input", `{"id":"a","cluster":"` + strings.Repeat("c", 600) + `"}`},
		{"re-encodes too big", `{"id":"a","cluster":"` + strings.Repeat(`\u0001`, 80) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := DecodeMeta([]byte(tt.in)); err == nil {
				t.Fatalf("DecodeMeta(%q) = %+v, want an error", tt.in, m)
			}
		})
	}
}

func TestDecodeMeta_IgnoresUnknownFields(t *testing.T) {
	m, err := DecodeMeta([]byte(`{"id":"a","raft":"h:1","zone":"eu-1","ver":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Meta{ID: "a", RaftAddr: "h:1", Version: 2}); m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{
		{ID: "a"},
		{ID: "6f1c2a9e", RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1:8080", ClusterID: "c", Leaving: true, Version: 1},
		{ID: "x<y>", ClusterID: "☃\u2028"},
	} {
		b, err := m.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"id":"a","cluster":"\u0001\u0001"}`))
	f.Add([]byte(`{"ID":"a","id":"b","raft":"[::1]:1"}`))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded %+v from %q but cannot re-encode: %v", m, b, err)
		}
		if len(enc) > memberlist.MetaMaxSize {
			t.Fatalf("decoded meta re-encodes to %d bytes", len(enc))
		}
		again, err := DecodeMeta(enc)
		if err != nil {
			t.Fatalf("re-encoded meta %q does not decode: %v", enc, err)
		}
		if again != m {
			t.Fatalf("round trip changed %+v into %+v", m, again)
		}
	})
}
