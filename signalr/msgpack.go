// This file holds the MessagePack hub protocol ("messagepack", binary
// WebSocket frames): VarInt length-prefix framing (binarySplitter, with the
// same constant-memory size limit as recordSplitter), parsing of messages
// into the protocol-agnostic Message, encoding (msgpackProtocol implements
// Protocol), and the conversion of arguments between MessagePack and the
// JSON a Message carries. The wire facts are ASP.NET Core's HubProtocol.md
// (the MessagePack encoding).
//
// The values are decoded and encoded by mpcodec.go (standard library only).
// Every value is checked against the bytes actually left in the record
// (mpReader.guard) before it is read: memory stays proportional to the
// record, whatever lengths it declares.

package signalr

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// ---------------------------------------------------------------------------
// Argument conversion between MessagePack and JSON
//
// The log keeps invocation arguments as a JSON array (fsm.Command.Args), so a
// MessagePack client's arguments are converted to JSON when they arrive, and
// the JSON arguments of a logged message are converted to MessagePack once
// per message for MessagePack recipients. The rules:
//
//	MessagePack             -> JSON
//	nil                        null
//	bool                       true / false
//	int / uint (any width)     integer literal (exact, uint64 included)
//	float32 / float64          number, shortest form that round-trips
//	                           (float32 at float32 precision); an integral
//	                           float such as 2.0 becomes 2. NaN and ±Inf have
//	                           no JSON form: error.
//	str                        string (invalid UTF-8 becomes U+FFFD)
//	bin                        string holding the bytes in standard base64
//	                           (with padding): JSON has no binary type, so a
//	                           MessagePack recipient gets a string back
//	array                      array
//	map with string keys       object, keys in the order they were sent
//	map with other keys        error "unsupported argument type"
//	timestamp ext (-1)         string, ISO 8601 UTC ("2024-05-01T10:00:00.000Z"
//	                           with millisecond precision, as JavaScript's
//	                           Date.toJSON writes; more digits when the
//	                           timestamp has them): the JS client encodes a
//	                           Date this way, the JSON protocol as that string
//	other ext types            error "unsupported argument type"
//	nesting deeper than maxArgDepth: error
//
//	JSON                    -> MessagePack
//	null / true / false        nil / bool
//	number without fraction    int (smallest encoding) if it fits int64, else
//	or exponent                uint if it fits uint64, else float64
//	other number               float64 (1.0 and 1e3 are floats; a number
//	                           beyond float64's range becomes ±Inf)
//	string                     str
//	array                      array
//	object                     map with str keys, in source order (an
//	                           ordered walk over json.Decoder tokens, never a
//	                           Go map)
//
// Conversion errors wrap errUnsupportedArg, so an invocation carrying such a
// value is answered with a Completion error that says "unsupported argument
// type".

// errUnsupportedArg is wrapped by every argument conversion error.
var errUnsupportedArg = errors.New("unsupported argument type")

// maxArgDepth bounds the nesting of a MessagePack argument (the JSON side is
// bounded by encoding/json's limit of 10000, which this stays well under).
const maxArgDepth = 1000

// errTruncated: a value claims more bytes than the record holds.
var errTruncated = errors.New("truncated MessagePack value")

// mpReader reads MessagePack values from one complete record (mpcodec.go
// decodes them), checking every declared length against what is left.
type mpReader struct {
	rec []byte
	pos int // bytes of rec read so far
	// lenient: the record may be cut short (the head of an oversized
	// message), so array and map counts are not checked against it; the
	// elements are read one by one and the first one missing is an error.
	lenient bool
}

func newMPReader(rec []byte) *mpReader { return &mpReader{rec: rec} }

// rest returns the bytes not read yet.
func (r *mpReader) rest() []byte { return r.rec[r.pos:] }

// left returns how many bytes are not read yet.
func (r *mpReader) left() int { return len(r.rec) - r.pos }

// MessagePack format codes used here (see the MessagePack spec).
const (
	mpNil      = 0xc0
	mpNever    = 0xc1
	mpFalse    = 0xc2
	mpTrue     = 0xc3
	mpBin8     = 0xc4
	mpBin16    = 0xc5
	mpBin32    = 0xc6
	mpExt8     = 0xc7
	mpExt16    = 0xc8
	mpExt32    = 0xc9
	mpFloat32  = 0xca
	mpFloat64  = 0xcb
	mpUint8    = 0xcc
	mpUint64   = 0xcf
	mpInt8     = 0xd0
	mpInt64    = 0xd3
	mpFixExt1  = 0xd4
	mpFixExt16 = 0xd8
	mpStr8     = 0xd9
	mpStr16    = 0xda
	mpStr32    = 0xdb
	mpArray16  = 0xdc
	mpArray32  = 0xdd
	mpMap16    = 0xde
	mpMap32    = 0xdf
)

func mpIsInt(c byte) bool   { return c <= 0x7f || c >= 0xe0 || (c >= mpUint8 && c <= mpInt64) }
func mpIsStr(c byte) bool   { return (c >= 0xa0 && c <= 0xbf) || (c >= mpStr8 && c <= mpStr32) }
func mpIsBin(c byte) bool   { return c >= mpBin8 && c <= mpBin32 }
func mpIsArray(c byte) bool { return (c >= 0x90 && c <= 0x9f) || c == mpArray16 || c == mpArray32 }
func mpIsMap(c byte) bool   { return (c >= 0x80 && c <= 0x8f) || c == mpMap16 || c == mpMap32 }
func mpIsExt(c byte) bool {
	return (c >= mpExt8 && c <= mpExt32) || (c >= mpFixExt1 && c <= mpFixExt16)
}

// beUint reads a big-endian unsigned integer of len(b) bytes.
func beUint(b []byte) uint64 {
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	return n
}

// guard returns the code of the next value after checking that the record
// holds its header and at least as many bytes as it declares: a str, bin or
// ext's payload, one byte per array element, two per map entry. So nothing
// decoded from it can take more memory than the record's size.
func (r *mpReader) guard() (byte, error) {
	c, _, _, err := r.head()
	return c, err
}

// head is guard that also returns the value's header size and its declared
// units: payload bytes of a str, bin or ext, elements of an array, entries
// of a map. (One case per MessagePack format code: the spec's table.)
func (r *mpReader) head() (c byte, hdr int, n uint64, err error) {
	b := r.rest()
	if len(b) == 0 {
		return 0, 0, 0, errTruncated
	}
	c = b[0]
	var per int // minimum bytes per declared unit
	switch {
	case c <= 0x7f || c >= 0xe0, c == mpNil, c == mpFalse, c == mpTrue:
		return c, 1, 0, nil
	case c >= 0x80 && c <= 0x8f:
		hdr, per, n = 1, 2, uint64(c&0x0f)
	case c >= 0x90 && c <= 0x9f:
		hdr, per, n = 1, 1, uint64(c&0x0f)
	case c >= 0xa0 && c <= 0xbf:
		hdr, per, n = 1, 1, uint64(c&0x1f)
	case c == mpBin8 || c == mpStr8:
		hdr, per = 2, 1
	case c == mpBin16 || c == mpStr16:
		hdr, per = 3, 1
	case c == mpBin32 || c == mpStr32:
		hdr, per = 5, 1
	case c == mpArray16:
		hdr, per = 3, 1
	case c == mpArray32:
		hdr, per = 5, 1
	case c == mpMap16:
		hdr, per = 3, 2
	case c == mpMap32:
		hdr, per = 5, 2
	case c == mpExt8:
		hdr, per = 3, 1 // length, type
	case c == mpExt16:
		hdr, per = 4, 1
	case c == mpExt32:
		hdr, per = 6, 1
	case c >= mpFixExt1 && c <= mpFixExt16:
		hdr, per, n = 2, 1, 1<<(c-mpFixExt1)
	case c == mpFloat32:
		hdr = 5
	case c == mpFloat64:
		hdr = 9
	case c >= mpUint8 && c <= mpUint64:
		hdr = 1 + 1<<(c-mpUint8)
	case c >= mpInt8 && c <= mpInt64:
		hdr = 1 + 1<<(c-mpInt8)
	default: // 0xc1, never used
		return c, 0, 0, fmt.Errorf("invalid MessagePack code 0x%02x", c)
	}
	if len(b) < hdr {
		return c, 0, 0, errTruncated
	}
	switch c {
	case mpBin8, mpStr8, mpExt8:
		n = uint64(b[1])
	case mpBin16, mpStr16, mpArray16, mpMap16, mpExt16:
		n = beUint(b[1:3])
	case mpBin32, mpStr32, mpArray32, mpMap32, mpExt32:
		n = beUint(b[1:5])
	}
	if r.lenient && (mpIsArray(c) || mpIsMap(c)) {
		return c, hdr, n, nil
	}
	if n*uint64(per) > uint64(len(b)-hdr) {
		return c, 0, 0, errTruncated
	}
	return c, hdr, n, nil
}

// kind names a code for error messages.
func mpKind(c byte) string {
	switch {
	case c == mpNil:
		return "nil"
	case c == mpFalse || c == mpTrue:
		return "a boolean"
	case mpIsInt(c):
		return "an integer"
	case c == mpFloat32 || c == mpFloat64:
		return "a float"
	case mpIsStr(c):
		return "a string"
	case mpIsBin(c):
		return "binary"
	case mpIsArray(c):
		return "an array"
	case mpIsMap(c):
		return "a map"
	case mpIsExt(c):
		return "an extension type"
	}
	return fmt.Sprintf("code 0x%02x", c)
}

// skip skips one value of any type.
func (r *mpReader) skip(depth int) error {
	if depth > maxArgDepth {
		return errors.New("nested too deeply")
	}
	c, err := r.guard()
	if err != nil {
		return err
	}
	switch {
	case mpIsArray(c):
		n, err := r.decodeArrayLen()
		if err != nil {
			return err
		}
		for range n {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case mpIsMap(c):
		n, err := r.decodeMapLen()
		if err != nil {
			return err
		}
		for range 2 * n {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
		}
		return nil
	}
	return r.skipScalar()
}

// int reads an integer of any encoding into an int64.
func (r *mpReader) int() (int64, error) {
	c, err := r.guard()
	if err != nil {
		return 0, err
	}
	if !mpIsInt(c) {
		return 0, fmt.Errorf("expected an integer, got %s", mpKind(c))
	}
	if c == mpUint64 {
		u, err := r.decodeUint64()
		if err == nil && u > math.MaxInt64 {
			err = errors.New("integer out of range")
		}
		return int64(u), err
	}
	return r.decodeInt64()
}

// strOrNil reads a str, or nil (isNil).
func (r *mpReader) strOrNil() (s string, isNil bool, err error) {
	c, err := r.guard()
	if err != nil {
		return "", false, err
	}
	switch {
	case c == mpNil:
		return "", true, r.decodeNil()
	case mpIsStr(c):
		s, err = r.decodeString()
		return s, false, err
	}
	return "", false, fmt.Errorf("expected a string, got %s", mpKind(c))
}

// str reads a str (nil is an error).
func (r *mpReader) str() (string, error) {
	s, isNil, err := r.strOrNil()
	if err == nil && isNil {
		err = errors.New("expected a string, got nil")
	}
	return s, err
}

// arrayLen reads an array header (nil is an error).
func (r *mpReader) arrayLen() (int, error) {
	c, err := r.guard()
	if err != nil {
		return 0, err
	}
	if !mpIsArray(c) {
		return 0, fmt.Errorf("expected an array, got %s", mpKind(c))
	}
	return r.decodeArrayLen()
}

// headers reads a headers map (string to string) or nil.
func (r *mpReader) headers() (map[string]string, error) {
	c, err := r.guard()
	if err != nil {
		return nil, err
	}
	if c == mpNil {
		return nil, r.decodeNil()
	}
	if !mpIsMap(c) {
		return nil, fmt.Errorf("headers must be a map, got %s", mpKind(c))
	}
	n, err := r.decodeMapLen()
	if err != nil {
		return nil, err
	}
	var h map[string]string
	for range n {
		k, err := r.str()
		if err != nil {
			return nil, fmt.Errorf("header name: %w", err)
		}
		v, err := r.str()
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", k, err)
		}
		if h == nil {
			h = make(map[string]string, n)
		}
		h[k] = v
	}
	return h, nil
}

// appendJSON converts the next value to JSON (rules above) and appends it.
// (One branch per MessagePack family: a codec's table.)
func (r *mpReader) appendJSON(dst []byte, depth int) ([]byte, error) {
	if depth > maxArgDepth {
		return dst, fmt.Errorf("%w: nested deeper than %d levels", errUnsupportedArg, maxArgDepth)
	}
	c, err := r.guard()
	if err != nil {
		return dst, err
	}
	switch {
	case c == mpNil:
		return append(dst, "null"...), r.decodeNil()
	case c == mpFalse || c == mpTrue:
		v, err := r.decodeBool()
		return strconv.AppendBool(dst, v), err
	case c == mpUint64:
		v, err := r.decodeUint64()
		return strconv.AppendUint(dst, v, 10), err
	case mpIsInt(c):
		v, err := r.decodeInt64()
		return strconv.AppendInt(dst, v, 10), err
	case c == mpFloat32:
		v, err := r.decodeFloat32()
		if err != nil {
			return dst, err
		}
		return appendJSONFloat(dst, float64(v), 32)
	case c == mpFloat64:
		v, err := r.decodeFloat64()
		if err != nil {
			return dst, err
		}
		return appendJSONFloat(dst, v, 64)
	case mpIsStr(c):
		s, err := r.decodeString()
		return AppendJSONString(dst, s), err
	case mpIsBin(c):
		b, err := r.decodeBytes()
		if err != nil {
			return dst, err
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"'), nil
	case mpIsArray(c):
		n, err := r.decodeArrayLen()
		if err != nil {
			return dst, err
		}
		dst = append(dst, '[')
		for i := range n {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = r.appendJSON(dst, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case mpIsMap(c):
		n, err := r.decodeMapLen()
		if err != nil {
			return dst, err
		}
		dst = append(dst, '{')
		for i := range n {
			if i > 0 {
				dst = append(dst, ',')
			}
			kc, err := r.guard()
			if err != nil {
				return dst, err
			}
			if !mpIsStr(kc) {
				return dst, fmt.Errorf("%w: a map key must be a string, got %s", errUnsupportedArg, mpKind(kc))
			}
			k, err := r.decodeString()
			if err != nil {
				return dst, err
			}
			dst = AppendJSONString(dst, k)
			dst = append(dst, ':')
			if dst, err = r.appendJSON(dst, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case mpIsExt(c):
		if mpExtType(r.rest()) != -1 {
			return dst, fmt.Errorf("%w: MessagePack extension type %d", errUnsupportedArg, mpExtType(r.rest()))
		}
		tm, err := r.decodeTime()
		if err != nil {
			return dst, fmt.Errorf("%w: invalid timestamp: %v", errUnsupportedArg, err)
		}
		tm = tm.UTC()
		layout := time.RFC3339Nano
		if tm.Nanosecond()%int(time.Millisecond) == 0 {
			layout = "2006-01-02T15:04:05.000Z07:00"
		}
		return AppendJSONString(dst, tm.Format(layout)), nil
	}
	return dst, fmt.Errorf("%w: %s", errUnsupportedArg, mpKind(c))
}

// mpExtType returns the type byte of the ext value at the start of b (which
// guard has checked holds the whole header).
func mpExtType(b []byte) int8 {
	switch b[0] {
	case mpExt8:
		return int8(b[2])
	case mpExt16:
		return int8(b[3])
	case mpExt32:
		return int8(b[5])
	}
	return int8(b[1])
}

// appendJSONFloat appends f like encoding/json does (bits is 32 for a
// float32). NaN and ±Inf are errors: JSON cannot hold them.
func appendJSONFloat(dst []byte, f float64, bits int) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, fmt.Errorf("%w: %v cannot be represented in JSON", errUnsupportedArg, f)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

// msgpackToJSON converts one complete MessagePack value to JSON.
func msgpackToJSON(b []byte) (json.RawMessage, error) {
	r := newMPReader(b)
	out, err := r.appendJSON(make([]byte, 0, len(b)+8), 0)
	if err != nil {
		return nil, err
	}
	if r.left() != 0 {
		return nil, errors.New("trailing bytes after the value")
	}
	return out, nil
}

// mpWriter appends MessagePack to a byte slice (mpcodec.go encodes the
// values).
type mpWriter struct {
	b []byte
}

func newMPWriter(dst []byte) *mpWriter { return &mpWriter{b: dst} }

// done returns the bytes.
func (m *mpWriter) done() []byte { return m.b }

// appendJSONAsMsgpack appends the MessagePack form of the JSON value js
// (rules above).
func (m *mpWriter) appendJSONAsMsgpack(js []byte) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if err := m.jsonValue(dec, tok); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func (m *mpWriter) jsonValue(dec *json.Decoder, tok json.Token) error {
	switch v := tok.(type) {
	case nil:
		m.encodeNil()
		return nil
	case bool:
		m.encodeBool(v)
		return nil
	case string:
		m.encodeString(v)
		return nil
	case json.Number:
		s := string(v)
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			m.encodeInt(i)
			return nil
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			m.encodeUint(u)
			return nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return err
		}
		m.encodeFloat64(f) // ErrRange: ±Inf (or 0 on underflow)
		return nil
	case json.Delim:
		if v != '[' && v != '{' {
			return fmt.Errorf("unexpected %v", v)
		}
		isMap := v == '{'
		// The element count comes first in MessagePack: leave room for the
		// largest header (5 bytes), write the elements, then put the real
		// header in front and move the elements down.
		start := len(m.b)
		m.b = append(m.b, 0, 0, 0, 0, 0)
		n := 0
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return err
			}
			if isMap {
				k, ok := t.(string)
				if !ok {
					return errors.New("object key is not a string")
				}
				m.encodeString(k)
				if t, err = dec.Token(); err != nil {
					return err
				}
			}
			if err := m.jsonValue(dec, t); err != nil {
				return err
			}
			n++
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return err
		}
		var hb [5]byte
		h := appendContainerHeader(hb[:0], isMap, n)
		body := start + 5
		copy(m.b[start+len(h):], m.b[body:])
		copy(m.b[start:], h)
		m.b = m.b[:len(m.b)-(5-len(h))]
		return nil
	}
	return fmt.Errorf("unexpected JSON token %T", tok)
}

// appendContainerHeader appends an array or map header for n elements.
func appendContainerHeader(dst []byte, isMap bool, n int) []byte {
	fix, c16, c32 := byte(0x90), byte(mpArray16), byte(mpArray32)
	if isMap {
		fix, c16, c32 = 0x80, mpMap16, mpMap32
	}
	switch {
	case n < 16:
		return append(dst, fix|byte(n))
	case n <= math.MaxUint16:
		return append(dst, c16, byte(n>>8), byte(n))
	}
	return append(dst, c32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// jsonToMsgpack converts one JSON value to MessagePack.
func jsonToMsgpack(js []byte) ([]byte, error) {
	m := newMPWriter(nil)
	err := m.appendJSONAsMsgpack(js)
	b := m.done()
	if err != nil {
		return nil, err
	}
	return b, nil
}

// ---------------------------------------------------------------------------
// Framing: VarInt length prefix + MessagePack array.

// maxVarIntLen is the longest length prefix; the largest length is 2 GB - 1
// (FF FF FF FF 07).
const (
	maxVarIntLen     = 5
	maxBinaryMessage = 1<<31 - 1
)

// errBadPrefix wraps every invalid length prefix.
var errBadPrefix = errors.New("invalid MessagePack length prefix")

// appendVarInt appends n (0 <= n <= maxBinaryMessage) as a VarInt: 7-bit
// groups, least significant first, the high bit meaning "more follow".
func appendVarInt(dst []byte, n int) []byte {
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	return append(dst, byte(n))
}

// parseVarInt decodes the length prefix at the start of b. size is the
// prefix's length in bytes, 0 when b holds only the start of a prefix. A
// prefix longer than 5 bytes or a length over 2 GB is an error (as in the JS
// client, "Messages bigger than 2GB are not supported").
func parseVarInt(b []byte) (n, size int, err error) {
	var v uint64
	for i := range maxVarIntLen {
		if i >= len(b) {
			return 0, 0, nil
		}
		c := b[i]
		if i == maxVarIntLen-1 && c > 0x07 {
			if c&0x80 != 0 {
				return 0, 0, fmt.Errorf("%w: longer than %d bytes", errBadPrefix, maxVarIntLen)
			}
			return 0, 0, fmt.Errorf("%w: messages bigger than 2GB are not supported", errBadPrefix)
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return int(v), i + 1, nil
		}
	}
	panic("unreachable")
}

// ParseLengthPrefix decodes the VarInt length prefix at the start of b, as
// MessagePack framing writes it: the length n of the message that follows
// and the size of the prefix in bytes, 0 when b holds only the start of a
// prefix. A prefix longer than 5 bytes or a length over 2 GB is an error.
func ParseLengthPrefix(b []byte) (n, size int, err error) { return parseVarInt(b) }

// oversizedHead is how many leading bytes of an oversized message the
// splitter keeps to find its invocation id: the array header, the type, the
// headers map (the JS client sends an empty one) and an id of up to
// maxIDCapture bytes all fit.
const oversizedHead = 2048

// binarySplitter turns an incoming byte stream (arriving in arbitrary
// chunks: several messages per WebSocket frame, or one message across
// frames) into MessagePack records, the bodies after their length prefixes.
// Like recordSplitter it enforces a maximum in constant memory: the length
// is known up front, so a message longer than max is not buffered; its bytes
// are skipped, keeping only the first oversizedHead of them, where the
// invocation id of an Invocation or StreamInvocation (element 2, before the
// arguments) is found. The message is reported when its last byte has been
// skipped, so the next one parses normally.
//
// A prefix over 5 bytes or 2 GB cannot be skipped: there is no way to find
// the next message in a binary stream. The splitter then stops for good and
// err() reports it; the connection must be closed.
//
// A binarySplitter is not safe for concurrent use, and emit must not call
// feed on the same splitter.
type binarySplitter struct {
	max int
	bad error // sticky framing error

	pfx  [maxVarIntLen]byte // a prefix split across chunks
	pfxN int

	inBody bool // the current message's prefix has been read
	size   int  // the current message's length
	buf    []byte

	over bool   // the current message exceeds max and is being skipped
	left int    // bytes of it still to skip
	head []byte // its first bytes, at most oversizedHead
}

// newBinarySplitter returns a splitter for messages of at most max bytes
// (excluding the prefix). max values below 1 are treated as 1.
func newBinarySplitter(max int) *binarySplitter {
	if max < 1 {
		max = 1
	}
	return &binarySplitter{max: max}
}

// err returns the framing error that stopped the splitter, or nil.
func (s *binarySplitter) Err() error { return s.bad }

// pending reports how many bytes of an incomplete message are buffered
// (never more than max; 0 while an oversized message is skipped).
func (s *binarySplitter) Pending() int { return len(s.buf) }

// Resting reports whether no message is in progress and no framing error
// stopped the splitter (Splitter).
func (s *binarySplitter) Resting() bool {
	return s.bad == nil && s.pfxN == 0 && !s.inBody && !s.over
}

// feed consumes p and calls emit once per complete message, in order, with
// the same contract as recordSplitter.feed: rec is the body without its
// prefix, valid only during the call; an oversized message has rec == nil,
// info.Oversized, info.Size and, when found, its invocation id. After a bad
// prefix feed consumes nothing more.
func (s *binarySplitter) Feed(p []byte, emit func(rec []byte, info RecordInfo)) {
	for len(p) > 0 && s.bad == nil {
		if !s.inBody {
			var n, size int
			var err error
			if s.pfxN == 0 {
				n, size, err = parseVarInt(p)
				if err == nil && size == 0 {
					s.pfxN = copy(s.pfx[:], p) // len(p) < maxVarIntLen here
					return
				}
				p = p[size:]
			} else {
				s.pfx[s.pfxN] = p[0]
				s.pfxN++
				p = p[1:]
				n, size, err = parseVarInt(s.pfx[:s.pfxN])
				if err == nil && size == 0 {
					continue
				}
				s.pfxN = 0
			}
			if err != nil {
				s.bad = err
				s.buf = nil
				return
			}
			s.inBody, s.size = true, n
			if n > s.max {
				s.over, s.left, s.head = true, n, s.head[:0]
			} else if n == 0 {
				s.inBody = false
				emit(p[:0], RecordInfo{})
				continue
			}
		}
		if s.over {
			k := min(s.left, len(p))
			if room := oversizedHead - len(s.head); room > 0 {
				if s.head == nil {
					s.head = make([]byte, 0, oversizedHead)
				}
				s.head = append(s.head, p[:min(k, room)]...)
			}
			s.left -= k
			p = p[k:]
			if s.left > 0 {
				return
			}
			id, ok := scanMsgpackInvocationID(s.head)
			s.over, s.inBody = false, false
			s.head = s.head[:0]
			emit(nil, RecordInfo{Oversized: true, Size: s.size, InvocationID: id, HasInvocationID: ok})
			continue
		}
		if len(s.buf) == 0 && len(p) >= s.size {
			// Fast path: the whole body is in p.
			s.inBody = false
			rec := p[:s.size]
			p = p[s.size:]
			emit(rec, RecordInfo{Size: len(rec)})
			continue
		}
		if cap(s.buf) < s.size {
			nb := make([]byte, len(s.buf), max(s.size, min(512, s.max)))
			copy(nb, s.buf)
			s.buf = nb
		}
		k := min(s.size-len(s.buf), len(p))
		s.buf = append(s.buf, p[:k]...)
		p = p[k:]
		if len(s.buf) < s.size {
			return
		}
		s.inBody = false
		rec := s.buf
		s.buf = s.buf[:0]
		emit(rec, RecordInfo{Size: len(rec)})
	}
}

// ---------------------------------------------------------------------------
// Parsing client->server messages

// Completion result kinds.
const (
	resultError = 1
	resultVoid  = 2
	resultValue = 3
)

// parseMsgpackMessage parses one MessagePack record (the body after its
// length prefix) into the same Message the JSON protocol produces:
// arguments, a StreamItem's item and a Completion's result are converted to
// JSON (rules above), so the rest of the server is protocol-agnostic.
//
// Layouts (HubProtocol.md, MessagePack encoding): Invocation [1, headers, id|nil, target, args, streamIds]
// with an optional 6th element streamIds (the JS client sends 5);
// StreamItem [2, headers, id, item]; Completion [3, headers, id, kind,
// result?] with kind 1 error (a string), 2 void, 3 value; StreamInvocation
// like Invocation with a required id; CancelInvocation [5, headers, id];
// Ping [6]; Close [7, error|nil, allowReconnect?] (the JS client sends 2);
// Ack [8, seq]; Sequence [9, seq]. headers is a map of string to string, or
// nil. Elements after the ones a type defines are ignored; bytes after the
// array are an error. An integer type outside 1-9 is not an error: the
// message comes back with only Type set, for the caller to ignore.
//
// On error the message is partially filled (Type, and InvocationID when it
// was read), as parseMessage does. parseMsgpackMessage never panics, and
// allocates in proportion to the record. (A codec: one branch per message
// type and per array element, each checked, in one pass; hence its length
// and branches.)
func parseMsgpackMessage(rec []byte) (Message, error) {
	var m Message
	r := newMPReader(rec)
	fail := func(format string, a ...any) (Message, error) {
		return m, fmt.Errorf("hub message: "+format, a...)
	}
	n, err := r.arrayLen()
	if err != nil {
		return fail("%v", err)
	}
	if n < 1 {
		return fail("empty array")
	}
	t, err := r.int()
	if err != nil {
		return fail("type must be an integer")
	}
	if t < -1<<31 || t > 1<<31-1 {
		return fail("type out of range")
	}
	m.Type = int(t)
	rl, known := ruleOf(m.Type)
	if !known {
		return m, nil // unknown type: for the caller to ignore
	}
	if n < rl.minElements {
		return fail("message type %d needs at least %d elements, got %d", m.Type, rl.minElements, n)
	}
	read := 1
	if rl.invocationID != absent {
		if m.Headers, err = r.headers(); err != nil {
			return fail("%v", err)
		}
		id, isNil, err := r.strOrNil()
		if err != nil {
			return fail("invocationId must be a string")
		}
		if isNil {
			if rl.invocationID == required {
				return fail("missing invocationId")
			}
		} else {
			m.InvocationID, m.HasInvocationID = id, true
		}
		read = 3
	}

	switch rl.body {
	case bodyInvocation:
		if m.Target, err = r.str(); err != nil {
			return fail("target must be a string")
		}
		if m.Target == "" {
			return fail("missing target")
		}
		k, err := r.arrayLen()
		if err != nil {
			return fail("arguments must be an array")
		}
		// Convert every argument into one buffer, then slice it.
		buf := make([]byte, 0, len(r.rest())+k+8)
		ends := make([]int, 0, k)
		for i := range k {
			if buf, err = r.appendJSON(buf, 1); err != nil {
				return fail("argument %d: %v", i+1, err)
			}
			ends = append(ends, len(buf))
		}
		m.Arguments = make([]json.RawMessage, 0, max(k, 1))
		start := 0
		for _, end := range ends {
			m.Arguments = append(m.Arguments, json.RawMessage(buf[start:end:end]))
			start = end
		}
		read = 5
		if n >= 6 {
			c, err := r.guard()
			if err != nil {
				return fail("%v", err)
			}
			if c == mpNil {
				_ = r.decodeNil()
			} else {
				k, err := r.arrayLen()
				if err != nil {
					return fail("streamIds must be an array of strings")
				}
				for range k {
					s, err := r.str()
					if err != nil {
						return fail("streamIds must be an array of strings")
					}
					m.StreamIDs = append(m.StreamIDs, s)
				}
			}
			read = 6
		}
	case bodyItem:
		if m.Item, err = r.valueJSON(); err != nil {
			return fail("item: %v", err)
		}
		read = 4
	case bodyCompletion:
		kind, err := r.int()
		if err != nil {
			return fail("result kind must be an integer")
		}
		read = 4
		switch kind {
		case resultError:
			if n < 5 {
				return fail("error completion without an error")
			}
			s, isNil, err := r.strOrNil()
			if err != nil {
				return fail("error must be a string")
			}
			if !isNil {
				m.Error, m.HasError = s, true
			}
			read = 5
		case resultVoid:
		case resultValue:
			if n < 5 {
				return fail("completion without a result")
			}
			if m.Result, err = r.valueJSON(); err != nil {
				return fail("result: %v", err)
			}
			read = 5
		default:
			return fail("invalid result kind %d", kind)
		}
	case bodyClose:
		s, isNil, err := r.strOrNil()
		if err != nil {
			return fail("error must be a string")
		}
		if !isNil {
			m.Error, m.HasError = s, true
		}
		read = 2
		if n >= 3 {
			c, err := r.guard()
			if err != nil {
				return fail("%v", err)
			}
			switch c {
			case mpTrue:
				m.AllowReconnect = true
			case mpFalse, mpNil:
			default:
				return fail("allowReconnect must be a boolean")
			}
			_ = r.skipScalar()
			read = 3
		}
	case bodySequence:
		seq, err := r.int()
		if err != nil || seq < 0 {
			return fail("sequenceId must be a non-negative integer")
		}
		m.SequenceID = seq
		read = 2
	}
	for ; read < n; read++ {
		if err := r.skip(1); err != nil {
			return fail("%v", err)
		}
	}
	if r.left() != 0 {
		return fail("%d bytes after the message", r.left())
	}
	return m, nil
}

// valueJSON converts the next value to JSON in its own buffer.
func (r *mpReader) valueJSON() (json.RawMessage, error) {
	b, err := r.appendJSON(make([]byte, 0, 16), 1)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// scanMsgpackInvocationID finds the invocation id of an Invocation or
// StreamInvocation from the start of its record, which may be cut short
// (the first bytes of an oversized message) or malformed further on: it
// reads only the array header, the type, the headers (skipped, whatever
// they are) and element 2, which must be a string of at most maxIDCapture
// bytes.
func scanMsgpackInvocationID(rec []byte) (string, bool) {
	r := newMPReader(rec)
	r.lenient = true
	n, err := r.arrayLen()
	if err != nil || n < 3 {
		return "", false
	}
	t, err := r.int()
	if err != nil || (t != TypeInvocation && t != TypeStreamInvocation) {
		return "", false
	}
	if r.skip(1) != nil {
		return "", false
	}
	id, err := r.str() // guard has checked the string lies within rec
	if err != nil || len(id) > maxIDCapture {
		return "", false
	}
	return id, true
}

// ---------------------------------------------------------------------------
// Encoding server->client messages

// msgpackProtocol is the MessagePack hub protocol ("messagepack", binary
// frames, VarInt framing). Every encoder appends one complete message,
// length prefix included.
type msgpackProtocol struct{}

func (msgpackProtocol) Name() string                      { return "messagepack" }
func (msgpackProtocol) Binary() bool                      { return true }
func (msgpackProtocol) NewSplitter(max int) Splitter      { return newBinarySplitter(max) }
func (msgpackProtocol) Parse(rec []byte) (Message, error) { return parseMsgpackMessage(rec) }
func (msgpackProtocol) ScanInvocationID(rec []byte) (string, bool) {
	return scanMsgpackInvocationID(rec)
}

// beginFrame leaves room for the largest length prefix and returns where
// the message starts.
func beginFrame(m *mpWriter) int {
	start := len(m.b)
	m.b = append(m.b, 0, 0, 0, 0, 0)
	return start
}

// endFrame writes the prefix for the body after start and moves the body
// next to it.
func endFrame(m *mpWriter, start int) {
	body := start + maxVarIntLen
	var pb [maxVarIntLen]byte
	p := appendVarInt(pb[:0], len(m.b)-body)
	copy(m.b[start+len(p):], m.b[body:])
	copy(m.b[start:], p)
	m.b = m.b[:len(m.b)-(maxVarIntLen-len(p))]
}

// appendInvocation writes [1, {"cursor": cursor}, nil, target, args, []] (headers
// {} when cursor is ""). args is the JSON array from the log, converted to
// MessagePack. The log only holds JSON that was validated when it was
// published, so the conversion cannot fail in practice; if it did, the
// recipient would get the invocation with no arguments rather than nothing.
func (msgpackProtocol) AppendInvocation(dst []byte, target string, args json.RawMessage, cursor string) []byte {
	m := newMPWriter(dst)
	start := beginFrame(m)
	// Six elements, as ASP.NET Core writes them: the last, streamIds, is
	// empty (signalrcore reads it and drops a frame of five).
	m.b = append(m.b, 0x96, TypeInvocation)
	if cursor == "" {
		m.b = append(m.b, 0x80)
	} else {
		m.b = append(m.b, 0x81)
		m.encodeString("cursor")
		m.encodeString(cursor)
	}
	m.b = append(m.b, mpNil)
	m.encodeString(target)
	at := len(m.b)
	if len(args) == 0 || m.appendJSONAsMsgpack(args) != nil || !mpIsArray(m.b[at]) {
		m.b = append(m.b[:at], 0x90)
	}
	m.b = append(m.b, 0x90) // streamIds
	endFrame(m, start)
	return m.done()
}

// appendCompletion writes [3, {}, id, 1, errMsg] when errMsg != "", else
// [3, {}, id, 3, result] with the JSON result converted, or [3, {}, id, 2]
// (void) when result is empty. A result that cannot be converted (never the
// server's own results) is sent as an error completion.
func (msgpackProtocol) AppendCompletion(dst []byte, invocationID string, result json.RawMessage, errMsg string) []byte {
	m := newMPWriter(dst)
	start := beginFrame(m)
	writeHead := func(elems, kind byte) {
		m.b = append(m.b, 0x90|elems, TypeCompletion, 0x80)
		m.encodeString(invocationID)
		m.b = append(m.b, kind)
	}
	switch {
	case errMsg != "":
		writeHead(5, resultError)
		m.encodeString(errMsg)
	case len(result) > 0:
		at := len(m.b)
		writeHead(5, resultValue)
		if err := m.appendJSONAsMsgpack(result); err != nil {
			m.b = m.b[:at]
			writeHead(5, resultError)
			m.encodeString(errUnsupportedArg.Error() + " in the result")
		}
	default:
		writeHead(4, resultVoid)
	}
	endFrame(m, start)
	return m.done()
}

// appendPing writes [6]: exactly 02 91 06.
func (msgpackProtocol) AppendPing(dst []byte) []byte {
	return append(dst, 0x02, 0x91, TypePing)
}

// appendAck writes [8, seq].
func (msgpackProtocol) AppendAck(dst []byte, seq uint64) []byte {
	return appendSeqMessage(dst, TypeAck, seq)
}

// appendSequence writes [9, seq].
func (msgpackProtocol) AppendSequence(dst []byte, seq uint64) []byte {
	return appendSeqMessage(dst, TypeSequence, seq)
}

func appendSeqMessage(dst []byte, typ byte, seq uint64) []byte {
	m := newMPWriter(dst)
	start := beginFrame(m)
	m.b = append(m.b, 0x92, typ)
	m.encodeUint(seq)
	endFrame(m, start)
	return m.done()
}

// appendClose writes [7, errMsg|nil, allowReconnect].
func (msgpackProtocol) AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	m := newMPWriter(dst)
	start := beginFrame(m)
	m.b = append(m.b, 0x93, TypeClose)
	if errMsg == "" {
		m.b = append(m.b, mpNil)
	} else {
		m.encodeString(errMsg)
	}
	m.encodeBool(allowReconnect)
	endFrame(m, start)
	return m.done()
}

// AppendClientInvocation writes [1, {}, id|nil, target, args] without
// framing, the five elements the JS client sends; args is a JSON array
// (empty means []), converted.
func (msgpackProtocol) AppendClientInvocation(dst []byte, id string, hasID bool, target string, args json.RawMessage) ([]byte, error) {
	m := newMPWriter(dst)
	m.b = append(m.b, 0x95, TypeInvocation, 0x80)
	if hasID {
		m.encodeString(id)
	} else {
		m.b = append(m.b, mpNil)
	}
	m.encodeString(target)
	if len(args) == 0 {
		return append(m.b, 0x90), nil
	}
	if err := m.appendJSONAsMsgpack(args); err != nil {
		return dst, err
	}
	return m.done(), nil
}
