// This file owns the MessagePack SignalR hub protocol ("messagepack", binary
// WebSocket frames): VarInt length-prefix framing (binarySplitter, with the
// same constant-memory size limit as recordSplitter), parsing of
// client->server messages into the protocol-agnostic hubMessage, encoding of
// server->client messages (msgpackProtocol implements the protocol seam), and
// the conversion of arguments between MessagePack and the JSON the log keeps.
// Like protocol.go it is pure code: no I/O, no goroutines, no locks. The
// wire facts are ASP.NET Core's HubProtocol.md (the MessagePack encoding)
// in github.com/dotnet/aspnetcore, src/SignalR/docs/specs.
//
// The few hooks the connection code uses (splitter, newSplitter, splitErr,
// canBinary, setBinaryFrames, protocolByName, parseRecord,
// scanRecordInvocationID) are at the end of the file.
//
// Library: github.com/vmihailenco/msgpack/v5 decodes and encodes the values.
// Its Decoder trusts declared lengths (it allocates up to 1 MB for a string
// that claims to be longer than the input), so every value is checked
// against the bytes actually left in the record (mpReader.guard) before the
// library reads it: memory stays proportional to the record.

package hub

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

	"github.com/vmihailenco/msgpack/v5"
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

// mpReader reads MessagePack values from one complete record with the
// library's Decoder, checking every declared length against what is left.
type mpReader struct {
	rec []byte
	br  bytes.Reader
	d   *msgpack.Decoder
	// lenient: the record may be cut short (the head of an oversized
	// message), so array and map counts are not checked against it; the
	// elements are read one by one and the first one missing is an error.
	lenient bool
}

func newMPReader(rec []byte) *mpReader {
	r := &mpReader{rec: rec}
	r.br.Reset(rec)
	r.d = msgpack.GetDecoder()
	// *bytes.Reader is an io.ByteScanner: the Decoder reads it directly,
	// without buffering, so br.Len() is always the decoder's position.
	r.d.Reset(&r.br)
	return r
}

func (r *mpReader) release() {
	msgpack.PutDecoder(r.d)
	r.d = nil
}

// rest returns the bytes not read yet.
func (r *mpReader) rest() []byte { return r.rec[len(r.rec)-r.br.Len():] }

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
// the library allocates for it can exceed the record's size.
func (r *mpReader) guard() (byte, error) {
	b := r.rest()
	if len(b) == 0 {
		return 0, errTruncated
	}
	c := b[0]
	var hdr, per int // header size; minimum bytes per declared unit
	var n uint64     // declared units
	switch {
	case c <= 0x7f || c >= 0xe0, c == mpNil, c == mpFalse, c == mpTrue:
		return c, nil
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
		return c, fmt.Errorf("invalid MessagePack code 0x%02x", c)
	}
	if len(b) < hdr {
		return c, errTruncated
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
		return c, nil
	}
	if n*uint64(per) > uint64(len(b)-hdr) {
		return c, errTruncated
	}
	return c, nil
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
		n, err := r.d.DecodeArrayLen()
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
		n, err := r.d.DecodeMapLen()
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
	return r.d.Skip()
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
		u, err := r.d.DecodeUint64()
		if err == nil && u > math.MaxInt64 {
			err = errors.New("integer out of range")
		}
		return int64(u), err
	}
	return r.d.DecodeInt64()
}

// strOrNil reads a str, or nil (isNil).
func (r *mpReader) strOrNil() (s string, isNil bool, err error) {
	c, err := r.guard()
	if err != nil {
		return "", false, err
	}
	switch {
	case c == mpNil:
		return "", true, r.d.DecodeNil()
	case mpIsStr(c):
		s, err = r.d.DecodeString()
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
	return r.d.DecodeArrayLen()
}

// headers reads a headers map (string to string) or nil.
func (r *mpReader) headers() (map[string]string, error) {
	c, err := r.guard()
	if err != nil {
		return nil, err
	}
	if c == mpNil {
		return nil, r.d.DecodeNil()
	}
	if !mpIsMap(c) {
		return nil, fmt.Errorf("headers must be a map, got %s", mpKind(c))
	}
	n, err := r.d.DecodeMapLen()
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
		return append(dst, "null"...), r.d.DecodeNil()
	case c == mpFalse || c == mpTrue:
		v, err := r.d.DecodeBool()
		return strconv.AppendBool(dst, v), err
	case c == mpUint64:
		v, err := r.d.DecodeUint64()
		return strconv.AppendUint(dst, v, 10), err
	case mpIsInt(c):
		v, err := r.d.DecodeInt64()
		return strconv.AppendInt(dst, v, 10), err
	case c == mpFloat32:
		v, err := r.d.DecodeFloat32()
		if err != nil {
			return dst, err
		}
		return appendJSONFloat(dst, float64(v), 32)
	case c == mpFloat64:
		v, err := r.d.DecodeFloat64()
		if err != nil {
			return dst, err
		}
		return appendJSONFloat(dst, v, 64)
	case mpIsStr(c):
		s, err := r.d.DecodeString()
		return appendJSONString(dst, s), err
	case mpIsBin(c):
		b, err := r.d.DecodeBytes()
		if err != nil {
			return dst, err
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"'), nil
	case mpIsArray(c):
		n, err := r.d.DecodeArrayLen()
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
		n, err := r.d.DecodeMapLen()
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
			k, err := r.d.DecodeString()
			if err != nil {
				return dst, err
			}
			dst = appendJSONString(dst, k)
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
		tm, err := r.d.DecodeTime()
		if err != nil {
			return dst, fmt.Errorf("%w: invalid timestamp: %v", errUnsupportedArg, err)
		}
		tm = tm.UTC()
		layout := time.RFC3339Nano
		if tm.Nanosecond()%int(time.Millisecond) == 0 {
			layout = "2006-01-02T15:04:05.000Z07:00"
		}
		return appendJSONString(dst, tm.Format(layout)), nil
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
	defer r.release()
	out, err := r.appendJSON(make([]byte, 0, len(b)+8), 0)
	if err != nil {
		return nil, err
	}
	if r.br.Len() != 0 {
		return nil, errors.New("trailing bytes after the value")
	}
	return out, nil
}

// sliceWriter is the io.Writer (and io.ByteWriter, so the library writes to
// it directly) that the encoders append to.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *sliceWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

// mpWriter is an Encoder over a sliceWriter.
type mpWriter struct {
	w   sliceWriter
	enc *msgpack.Encoder
}

func newMPWriter(dst []byte) *mpWriter {
	m := &mpWriter{w: sliceWriter{b: dst}, enc: msgpack.GetEncoder()}
	m.enc.Reset(&m.w)
	return m
}

// done returns the bytes and recycles the encoder.
func (m *mpWriter) done() []byte {
	msgpack.PutEncoder(m.enc)
	m.enc = nil
	return m.w.b
}

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
		return m.enc.EncodeNil()
	case bool:
		return m.enc.EncodeBool(v)
	case string:
		return m.enc.EncodeString(v)
	case json.Number:
		s := string(v)
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return m.enc.EncodeInt(i)
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return m.enc.EncodeUint(u)
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return err
		}
		return m.enc.EncodeFloat64(f) // ErrRange: ±Inf (or 0 on underflow)
	case json.Delim:
		if v != '[' && v != '{' {
			return fmt.Errorf("unexpected %v", v)
		}
		isMap := v == '{'
		// The element count comes first in MessagePack: leave room for the
		// largest header (5 bytes), write the elements, then put the real
		// header in front and move the elements down.
		start := len(m.w.b)
		m.w.b = append(m.w.b, 0, 0, 0, 0, 0)
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
				if err := m.enc.EncodeString(k); err != nil {
					return err
				}
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
		copy(m.w.b[start+len(h):], m.w.b[body:])
		copy(m.w.b[start:], h)
		m.w.b = m.w.b[:len(m.w.b)-(5-len(h))]
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
func (s *binarySplitter) err() error { return s.bad }

// pending reports how many bytes of an incomplete message are buffered
// (never more than max; 0 while an oversized message is skipped).
func (s *binarySplitter) pending() int { return len(s.buf) }

// feed consumes p and calls emit once per complete message, in order, with
// the same contract as recordSplitter.feed: rec is the body without its
// prefix, valid only during the call; an oversized message has rec == nil,
// info.Oversized, info.Size and, when found, its invocation id. After a bad
// prefix feed consumes nothing more.
func (s *binarySplitter) feed(p []byte, emit func(rec []byte, info recordInfo)) {
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
				emit(p[:0], recordInfo{})
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
			emit(nil, recordInfo{Oversized: true, Size: s.size, InvocationID: id, HasInvocationID: ok})
			continue
		}
		if len(s.buf) == 0 && len(p) >= s.size {
			// Fast path: the whole body is in p.
			s.inBody = false
			rec := p[:s.size]
			p = p[s.size:]
			emit(rec, recordInfo{Size: len(rec)})
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
		emit(rec, recordInfo{Size: len(rec)})
	}
}

// ---------------------------------------------------------------------------
// Parsing client->server messages

// minElements is the shortest array each message type may have.
var minElements = [...]int{
	typeInvocation:       5, // [1, headers, id|nil, target, args, streamIds?]
	typeStreamItem:       4, // [2, headers, id, item]
	typeCompletion:       4, // [3, headers, id, kind, result?]
	typeStreamInvocation: 5, // [4, headers, id, target, args, streamIds?]
	typeCancelInvocation: 3, // [5, headers, id]
	typePing:             1, // [6]
	typeClose:            2, // [7, error|nil, allowReconnect?]
	typeAck:              2, // [8, sequenceId]
	typeSequence:         2, // [9, sequenceId]
}

// Completion result kinds.
const (
	resultError = 1
	resultVoid  = 2
	resultValue = 3
)

// parseMsgpackMessage parses one MessagePack record (the body after its
// length prefix) into the same hubMessage the JSON protocol produces:
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
// allocates in proportion to the record.
func parseMsgpackMessage(rec []byte) (hubMessage, error) {
	var m hubMessage
	r := newMPReader(rec)
	defer r.release()
	fail := func(format string, a ...any) (hubMessage, error) {
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
	if m.Type < typeInvocation || m.Type > typeSequence {
		return m, nil // unknown type: for the caller to ignore
	}
	if n < minElements[m.Type] {
		return fail("message type %d needs at least %d elements, got %d", m.Type, minElements[m.Type], n)
	}
	read := 1
	if m.Type <= typeCancelInvocation {
		if m.Headers, err = r.headers(); err != nil {
			return fail("%v", err)
		}
		id, isNil, err := r.strOrNil()
		if err != nil {
			return fail("invocationId must be a string")
		}
		if isNil {
			if m.Type != typeInvocation {
				return fail("missing invocationId")
			}
		} else {
			m.InvocationID, m.HasInvocationID = id, true
		}
		read = 3
	}

	switch m.Type {
	case typeInvocation, typeStreamInvocation:
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
				_ = r.d.DecodeNil()
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
	case typeStreamItem:
		if m.Item, err = r.valueJSON(); err != nil {
			return fail("item: %v", err)
		}
		read = 4
	case typeCompletion:
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
				m.Error = s
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
	case typeClose:
		s, isNil, err := r.strOrNil()
		if err != nil {
			return fail("error must be a string")
		}
		if !isNil {
			m.Error = s
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
			_ = r.d.Skip()
			read = 3
		}
	case typeAck, typeSequence:
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
	if r.br.Len() != 0 {
		return fail("%d bytes after the message", r.br.Len())
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
	defer r.release()
	r.lenient = true
	n, err := r.arrayLen()
	if err != nil || n < 3 {
		return "", false
	}
	t, err := r.int()
	if err != nil || (t != typeInvocation && t != typeStreamInvocation) {
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

var _ protocol = msgpackProtocol{}

func (msgpackProtocol) name() string { return "messagepack" }
func (msgpackProtocol) binary() bool { return true }

// beginFrame leaves room for the largest length prefix and returns where
// the message starts.
func beginFrame(m *mpWriter) int {
	start := len(m.w.b)
	m.w.b = append(m.w.b, 0, 0, 0, 0, 0)
	return start
}

// endFrame writes the prefix for the body after start and moves the body
// next to it.
func endFrame(m *mpWriter, start int) {
	body := start + maxVarIntLen
	var pb [maxVarIntLen]byte
	p := appendVarInt(pb[:0], len(m.w.b)-body)
	copy(m.w.b[start+len(p):], m.w.b[body:])
	copy(m.w.b[start:], p)
	m.w.b = m.w.b[:len(m.w.b)-(maxVarIntLen-len(p))]
}

// appendInvocation writes [1, {"cursor": cursor}, nil, target, args, []] (headers
// {} when cursor is ""). args is the JSON array from the log, converted to
// MessagePack. The log only holds JSON that was validated when it was
// published, so the conversion cannot fail in practice; if it did, the
// recipient would get the invocation with no arguments rather than nothing.
func (msgpackProtocol) appendInvocation(dst []byte, target string, args json.RawMessage, cursor string) []byte {
	m := newMPWriter(dst)
	start := beginFrame(m)
	// Six elements, as ASP.NET Core writes them: the last, streamIds, is
	// empty (signalrcore reads it and drops a frame of five).
	m.w.b = append(m.w.b, 0x96, typeInvocation)
	if cursor == "" {
		m.w.b = append(m.w.b, 0x80)
	} else {
		m.w.b = append(m.w.b, 0x81)
		_ = m.enc.EncodeString("cursor")
		_ = m.enc.EncodeString(cursor)
	}
	m.w.b = append(m.w.b, mpNil)
	_ = m.enc.EncodeString(target)
	at := len(m.w.b)
	if len(args) == 0 || m.appendJSONAsMsgpack(args) != nil || !mpIsArray(m.w.b[at]) {
		m.w.b = append(m.w.b[:at], 0x90)
	}
	m.w.b = append(m.w.b, 0x90) // streamIds
	endFrame(m, start)
	return m.done()
}

// appendCompletion writes [3, {}, id, 1, errMsg] when errMsg != "", else
// [3, {}, id, 3, result] with the JSON result converted, or [3, {}, id, 2]
// (void) when result is empty. A result that cannot be converted (never the
// server's own results) is sent as an error completion.
func (msgpackProtocol) appendCompletion(dst []byte, invocationID string, result json.RawMessage, errMsg string) []byte {
	m := newMPWriter(dst)
	start := beginFrame(m)
	writeHead := func(elems, kind byte) {
		m.w.b = append(m.w.b, 0x90|elems, typeCompletion, 0x80)
		_ = m.enc.EncodeString(invocationID)
		m.w.b = append(m.w.b, kind)
	}
	switch {
	case errMsg != "":
		writeHead(5, resultError)
		_ = m.enc.EncodeString(errMsg)
	case len(result) > 0:
		at := len(m.w.b)
		writeHead(5, resultValue)
		if err := m.appendJSONAsMsgpack(result); err != nil {
			m.w.b = m.w.b[:at]
			writeHead(5, resultError)
			_ = m.enc.EncodeString(errUnsupportedArg.Error() + " in the result")
		}
	default:
		writeHead(4, resultVoid)
	}
	endFrame(m, start)
	return m.done()
}

// appendPing writes [6]: exactly 02 91 06.
func (msgpackProtocol) appendPing(dst []byte) []byte {
	return append(dst, 0x02, 0x91, typePing)
}

// appendAck writes [8, seq].
func (msgpackProtocol) appendAck(dst []byte, seq uint64) []byte {
	return appendSeqMessage(dst, typeAck, seq)
}

// appendSequence writes [9, seq].
func (msgpackProtocol) appendSequence(dst []byte, seq uint64) []byte {
	return appendSeqMessage(dst, typeSequence, seq)
}

func appendSeqMessage(dst []byte, typ byte, seq uint64) []byte {
	m := newMPWriter(dst)
	start := beginFrame(m)
	m.w.b = append(m.w.b, 0x92, typ)
	_ = m.enc.EncodeUint(seq)
	endFrame(m, start)
	return m.done()
}

// appendClose writes [7, errMsg|nil, allowReconnect].
func (msgpackProtocol) appendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	m := newMPWriter(dst)
	start := beginFrame(m)
	m.w.b = append(m.w.b, 0x93, typeClose)
	if errMsg == "" {
		m.w.b = append(m.w.b, mpNil)
	} else {
		_ = m.enc.EncodeString(errMsg)
	}
	_ = m.enc.EncodeBool(allowReconnect)
	endFrame(m, start)
	return m.done()
}

// ---------------------------------------------------------------------------
// Hooks for the connection code (websocket.go, methods.go, dispatch.go).

// protocolByName returns the hub protocol a handshake names, or nil.
func protocolByName(name string) protocol {
	switch name {
	case "json":
		return jsonProtocol{}
	case "messagepack":
		return msgpackProtocol{}
	}
	return nil
}

// splitter turns a transport's incoming bytes into hub message records:
// recordSplitter for JSON, binarySplitter for MessagePack.
type splitter interface {
	feed(p []byte, emit func(rec []byte, info recordInfo))
}

// newSplitter returns the splitter for the protocol a handshake names.
func newSplitter(protocolName string, max int) splitter {
	if protocolName == "messagepack" {
		return newBinarySplitter(max)
	}
	return newRecordSplitter(max)
}

// splitErr returns the error that stopped a splitter for good (a bad
// MessagePack length prefix: the stream cannot be resynchronised), or nil.
func splitErr(s splitter) error {
	if b, ok := s.(*binarySplitter); ok {
		return b.err()
	}
	return nil
}

// binaryCapable is implemented by readers whose transport carries binary
// frames (wsReader: its binary field). A transport without it (Server-Sent
// Events is text only) refuses a binary protocol at the handshake.
type binaryCapable interface {
	canBinary() bool
}

// canBinary reports whether rd's transport can carry a binary protocol.
func canBinary(rd reader) bool {
	b, ok := rd.(binaryCapable)
	return ok && b.canBinary()
}

// binaryFramer is implemented by transports that can send binary frames
// (wsTransport).
type binaryFramer interface {
	setBinary(on bool)
}

// setBinaryFrames makes tr send binary frames from now on, if it can. It
// must be called before the connection's writer starts.
func setBinaryFrames(tr transport, on bool) {
	if b, ok := tr.(binaryFramer); ok {
		b.setBinary(on)
	}
}

// parseRecord parses a record with the connection's protocol.
func parseRecord(p protocol, rec []byte) (hubMessage, error) {
	if _, ok := p.(msgpackProtocol); ok {
		return parseMsgpackMessage(rec)
	}
	return parseMessage(rec)
}

// scanRecordInvocationID finds the invocation id of a malformed record with
// the connection's protocol.
func scanRecordInvocationID(p protocol, rec []byte) (string, bool) {
	if _, ok := p.(msgpackProtocol); ok {
		return scanMsgpackInvocationID(rec)
	}
	return scanInvocationID(rec)
}
