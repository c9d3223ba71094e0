package raftplane

import (
	"testing"
	"time"
)

// TestValues: each value type parses what flags, variables and the file
// give, refuses the rest with the text it got, and prints what it holds.
func TestValues(t *testing.T) {
	var (
		i   int
		i64 int64
		u   uint64
		b   bool
		d   time.Duration
		l   []string
		off bool
	)
	tests := []struct {
		v      Value
		in     string
		ok     bool
		printd string
	}{
		{numValue[int]{&i}, "1_000", true, "1000"},
		{numValue[int]{&i}, "0x10", true, "16"},
		{numValue[int]{&i}, " -1 ", true, "-1"},
		{numValue[int]{&i}, "1k", false, ""},
		{numValue[int64]{&i64}, "9223372036854775807", true, "9223372036854775807"},
		{numValue[int64]{&i64}, "9223372036854775808", false, ""},
		{numValue[uint64]{&u}, "18446744073709551615", true, "18446744073709551615"},
		{numValue[uint64]{&u}, "-1", false, ""},
		{boolValue{p: &b}, "true", true, "true"},
		{boolValue{p: &b}, "yes", false, ""},
		{boolValue{p: &off, invert: true}, "false", true, "false"},
		{durationValue{&d}, "1m30s", true, "1m30s"},
		{durationValue{&d}, "90", false, ""},
		{listValue{&l}, " a, ,b ", true, "a,b"},
		{listValue{&l}, "", true, ""},
	}
	for _, tt := range tests {
		err := tt.v.Set(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("%s Set(%q): %v, want ok %v", tt.v.Type(), tt.in, err, tt.ok)
			continue
		}
		if tt.ok && tt.v.String() != tt.printd {
			t.Errorf("%s Set(%q): prints %q, want %q", tt.v.Type(), tt.in, tt.v.String(), tt.printd)
		}
	}
	if !off {
		t.Error("an inverted bool set false holds true")
	}
	// The flag package calls String on zero values.
	for _, v := range []Value{numValue[int]{}, boolValue{}, durationValue{}, listValue{}, stringValue{}, funcValue{}} {
		_ = v.String()
	}
}
