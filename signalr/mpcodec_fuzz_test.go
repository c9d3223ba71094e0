package signalr

import (
	"bytes"
	"math"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzMPPrimitives checks the hand-written MessagePack primitives against
// a well-kept library, both ways: what the library encodes, the readers
// decode to the same value; what the writers encode, the library decodes
// to the same value, in the library's shortest form (the official
// clients' too).
func FuzzMPPrimitives(f *testing.F) {
	f.Add(int64(0), uint64(0), 0.0, "", []byte(nil), false)
	f.Add(int64(-33), uint64(255), 1.5, "x", []byte{1}, true)
	f.Add(int64(math.MinInt64), uint64(math.MaxUint64), math.Inf(-1), string(make([]byte, 300)), make([]byte, 70000), true)
	f.Add(int64(-129), uint64(65536), math.Copysign(0, -1), "héllo", []byte{0xc1}, false)
	f.Fuzz(func(t *testing.T, i int64, u uint64, fl float64, s string, b []byte, bo bool) {
		lib := func(v any) []byte {
			var buf bytes.Buffer
			enc := msgpack.NewEncoder(&buf)
			enc.UseCompactInts(true)
			enc.UseCompactFloats(false)
			if err := enc.Encode(v); err != nil {
				t.Fatalf("library encode %v: %v", v, err)
			}
			return buf.Bytes()
		}
		rd := func(p []byte) *mpReader { return &mpReader{rec: p} }

		if got, err := rd(lib(i)).decodeInt64(); err != nil || got != i {
			t.Errorf("decodeInt64(lib %d) = %d, %v", i, got, err)
		}
		if got, err := rd(lib(u)).decodeUint64(); err != nil || got != u {
			t.Errorf("decodeUint64(lib %d) = %d, %v", u, got, err)
		}
		if got, err := rd(lib(fl)).decodeFloat64(); err != nil || math.Float64bits(got) != math.Float64bits(fl) && !(math.IsNaN(got) && math.IsNaN(fl)) {
			t.Errorf("decodeFloat64(lib %v) = %v, %v", fl, got, err)
		}
		if got, err := rd(lib(s)).decodeString(); err != nil || got != s {
			t.Errorf("decodeString(lib %q) = %q, %v", s, got, err)
		}
		if got, err := rd(lib(b)).decodeBytes(); err != nil || !bytes.Equal(got, b) {
			t.Errorf("decodeBytes(lib %d bytes) = %d bytes, %v", len(b), len(got), err)
		}
		if got, err := rd(lib(bo)).decodeBool(); err != nil || got != bo {
			t.Errorf("decodeBool(lib %v) = %v, %v", bo, got, err)
		}

		w := newMPWriter(nil)
		w.encodeInt(i)
		w.encodeUint(u)
		w.encodeFloat64(fl)
		w.encodeString(s)
		w.encodeBool(bo)
		w.encodeNil()
		dec := msgpack.NewDecoder(bytes.NewReader(w.b))
		if got, err := dec.DecodeInt64(); err != nil || got != i {
			t.Errorf("library DecodeInt64(encodeInt %d) = %d, %v", i, got, err)
		}
		if got, err := dec.DecodeUint64(); err != nil || got != u {
			t.Errorf("library DecodeUint64(encodeUint %d) = %d, %v", u, got, err)
		}
		if got, err := dec.DecodeFloat64(); err != nil || math.Float64bits(got) != math.Float64bits(fl) && !(math.IsNaN(got) && math.IsNaN(fl)) {
			t.Errorf("library DecodeFloat64(encodeFloat64 %v) = %v, %v", fl, got, err)
		}
		if got, err := dec.DecodeString(); err != nil || got != s {
			t.Errorf("library DecodeString(encodeString %q) = %q, %v", s, got, err)
		}
		if got, err := dec.DecodeBool(); err != nil || got != bo {
			t.Errorf("library DecodeBool(encodeBool %v) = %v, %v", bo, got, err)
		}
		if err := dec.DecodeNil(); err != nil {
			t.Errorf("library DecodeNil(encodeNil): %v", err)
		}
		// Shortest form, as the library's compact encoding (for a negative
		// int; a non-negative one may be written as an int or a uint).
		if i < 0 {
			wi := newMPWriter(nil)
			wi.encodeInt(i)
			if want := lib(i); !bytes.Equal(wi.b, want) {
				t.Errorf("encodeInt(%d) = %x, the library's compact form is %x", i, wi.b, want)
			}
		}
		wu := newMPWriter(nil)
		wu.encodeUint(u)
		if want := lib(u); !bytes.Equal(wu.b, want) {
			t.Errorf("encodeUint(%d) = %x, the library's compact form is %x", u, wu.b, want)
		}
	})
}
