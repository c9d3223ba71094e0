package signalr

import (
	"fmt"
	"math"
	"time"
)

// The MessagePack primitives, written here so that the package needs
// nothing outside the standard library. A decode method is called only
// after guard has accepted the value at the reader's position (its code is
// of the right kind, and the record holds its header and payload); each one
// consumes that value. An encode method appends one value in its shortest
// form, as the MessagePack spec and the official clients write it.

// take consumes the value at the position and returns its code, its header
// (code included) and, for a str, bin or ext, its payload. For an array or
// a map it consumes only the header; n is the element or entry count.
func (r *mpReader) take() (c byte, hdr, payload []byte, n uint64, err error) {
	c, h, n, err := r.head()
	if err != nil {
		return c, nil, nil, 0, err
	}
	b := r.rest()
	size := 0
	if mpIsStr(c) || mpIsBin(c) || mpIsExt(c) {
		size = int(n)
	}
	r.pos += h + size
	return c, b[:h], b[h : h+size], n, nil
}

func (r *mpReader) decodeNil() error {
	_, _, _, _, err := r.take()
	return err
}

func (r *mpReader) decodeBool() (bool, error) {
	c, _, _, _, err := r.take()
	return c == mpTrue, err
}

// decodeUint64 reads a positive fixint or a uint of any width.
func (r *mpReader) decodeUint64() (uint64, error) {
	c, hdr, _, _, err := r.take()
	if err != nil {
		return 0, err
	}
	if c <= 0x7f {
		return uint64(c), nil
	}
	return beUint(hdr[1:]), nil
}

// decodeInt64 reads an integer of any encoding; a uint64 above MaxInt64
// wraps, as the callers check for it first.
func (r *mpReader) decodeInt64() (int64, error) {
	c, hdr, _, _, err := r.take()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c >= mpUint8 && c <= mpUint64:
		return int64(beUint(hdr[1:])), nil
	}
	// int8 ... int64: sign-extend from the encoded width.
	shift := 64 - 8*uint(len(hdr)-1)
	return int64(beUint(hdr[1:])<<shift) >> shift, nil
}

func (r *mpReader) decodeFloat32() (float32, error) {
	_, hdr, _, _, err := r.take()
	if err != nil {
		return 0, err
	}
	return math.Float32frombits(uint32(beUint(hdr[1:5]))), nil
}

func (r *mpReader) decodeFloat64() (float64, error) {
	_, hdr, _, _, err := r.take()
	if err != nil {
		return 0, err
	}
	return math.Float64frombits(beUint(hdr[1:9])), nil
}

// decodeString reads a str; invalid UTF-8 is kept as it is.
func (r *mpReader) decodeString() (string, error) {
	_, _, payload, _, err := r.take()
	return string(payload), err
}

// decodeBytes reads a bin. The bytes alias the record.
func (r *mpReader) decodeBytes() ([]byte, error) {
	_, _, payload, _, err := r.take()
	return payload, err
}

func (r *mpReader) decodeArrayLen() (int, error) {
	_, _, _, n, err := r.take()
	return int(n), err
}

func (r *mpReader) decodeMapLen() (int, error) {
	_, _, _, n, err := r.take()
	return int(n), err
}

// skipScalar consumes one value that is not an array or a map.
func (r *mpReader) skipScalar() error {
	_, _, _, _, err := r.take()
	return err
}

// decodeTime reads a timestamp extension (type -1) of 4, 8 or 12 bytes, the
// three layouts of the MessagePack spec. The caller has checked the type.
func (r *mpReader) decodeTime() (time.Time, error) {
	_, _, b, _, err := r.take()
	if err != nil {
		return time.Time{}, err
	}
	switch len(b) {
	case 4: // seconds, uint32
		return time.Unix(int64(beUint(b)), 0), nil
	case 8: // nanoseconds in the top 30 bits, seconds in the low 34
		v := beUint(b)
		return time.Unix(int64(v&0x00000003ffffffff), int64(v>>34)), nil
	case 12: // nanoseconds, uint32; seconds, int64
		return time.Unix(int64(beUint(b[4:])), int64(beUint(b[:4]))), nil
	}
	return time.Time{}, fmt.Errorf("msgpack: invalid ext len=%d decoding time", len(b))
}

func (m *mpWriter) encodeNil() { m.b = append(m.b, mpNil) }

func (m *mpWriter) encodeBool(v bool) {
	if v {
		m.b = append(m.b, mpTrue)
		return
	}
	m.b = append(m.b, mpFalse)
}

// encodeUint writes n as a positive fixint or the narrowest uint.
func (m *mpWriter) encodeUint(n uint64) {
	switch {
	case n <= math.MaxInt8:
		m.b = append(m.b, byte(n))
	case n <= math.MaxUint8:
		m.b = append(m.b, mpUint8, byte(n))
	case n <= math.MaxUint16:
		m.b = append(m.b, mpUint8+1, byte(n>>8), byte(n))
	case n <= math.MaxUint32:
		m.b = append(m.b, mpUint8+2, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	default:
		m.b = append(m.b, mpUint64)
		m.b = appendBE(m.b, n, 8)
	}
}

// encodeInt writes n as encodeUint does when it is not negative, else as a
// negative fixint or the narrowest int.
func (m *mpWriter) encodeInt(n int64) {
	switch {
	case n >= 0:
		m.encodeUint(uint64(n))
	case n >= -32:
		m.b = append(m.b, byte(n))
	case n >= math.MinInt8:
		m.b = append(m.b, mpInt8, byte(n))
	case n >= math.MinInt16:
		m.b = append(m.b, mpInt8+1)
		m.b = appendBE(m.b, uint64(n), 2)
	case n >= math.MinInt32:
		m.b = append(m.b, mpInt8+2)
		m.b = appendBE(m.b, uint64(n), 4)
	default:
		m.b = append(m.b, mpInt64)
		m.b = appendBE(m.b, uint64(n), 8)
	}
}

func (m *mpWriter) encodeFloat64(f float64) {
	m.b = append(m.b, mpFloat64)
	m.b = appendBE(m.b, math.Float64bits(f), 8)
}

// encodeString writes a fixstr, str8, str16 or str32.
func (m *mpWriter) encodeString(s string) {
	n := len(s)
	switch {
	case n < 32:
		m.b = append(m.b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		m.b = append(m.b, mpStr8, byte(n))
	case n <= math.MaxUint16:
		m.b = append(m.b, mpStr16, byte(n>>8), byte(n))
	default:
		m.b = append(m.b, mpStr32)
		m.b = appendBE(m.b, uint64(n), 4)
	}
	m.b = append(m.b, s...)
}

// appendBE appends the low size bytes of v, big-endian.
func appendBE(dst []byte, v uint64, size int) []byte {
	for i := size - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*uint(i))))
	}
	return dst
}
