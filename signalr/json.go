// This file holds the JSON hub protocol ("json", text frames): 0x1E record
// framing (recordSplitter, with a constant-memory size limit), parsing of
// hub messages (jsonfast.go reads the server's own shapes in one pass) and
// their encoding, and the JSON helpers the handshake shares.

package signalr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// ---------------------------------------------------------------------------
// Parsing client->server messages

// parseMessage parses one JSON record (without 0x1E).
//
// Unknown fields are ignored; property order is free; property names are
// case-sensitive; a repeated property takes its last value (like
// encoding/json). Fields that do not belong to the message's type (rules.go)
// are ignored without being checked. Missing or non-integer "type" is an error. An integer
// type outside 1-9 is NOT an error: the message is returned with only Type
// (and InvocationID if present) set, and the caller should ignore it, as the
// official clients and the .NET server do (forward compatibility). For types
// 1 and 4, target must be a non-empty string and arguments an array; types 2-5
// need an invocationId; for 8 and 9 sequenceId must be a non-negative integer.
// The record must be valid UTF-8 (frames we forward go out as WebSocket text).
//
// On error the returned message is partially filled: Type (if readable) and
// InvocationID/HasInvocationID (if the record is valid JSON with a string
// top-level invocationId), so the caller can answer with a Completion error.
// parseMessage never panics.
func parseMessage(rec []byte) (Message, error) {
	if m, ok := parseFast(rec); ok {
		return m, nil
	}
	return parseMessageGeneral(rec)
}

// parseMessageGeneral is parseMessage without the fast path (jsonfast.go).
// (A codec: one branch per field name and per message type, each checked
// as the protocol says, read in one pass; hence its length and branches.)
func parseMessageGeneral(rec []byte) (Message, error) {
	var m Message
	if err := checkJSON("hub message", rec); err != nil {
		return m, err
	}
	// Copy once so the raw fields and strings never alias the caller's buffer.
	buf := bytes.Clone(rec)
	it, ok := newObjectIter(buf)
	if !ok {
		return m, errors.New("hub message: not a JSON object")
	}
	var f struct {
		typ, id, target, args, streamIDs, item, result, errMsg, allowReconnect, seq, headers []byte
	}
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		switch string(memberName(k)) {
		case "type":
			f.typ = v
		case "invocationId":
			f.id = v
		case "target":
			f.target = v
		case "arguments":
			f.args = v
		case "streamIds":
			f.streamIDs = v
		case "item":
			f.item = v
		case "result":
			f.result = v
		case "error":
			f.errMsg = v
		case "allowReconnect":
			f.allowReconnect = v
		case "sequenceId":
			f.seq = v
		case "headers":
			f.headers = v
		}
	}
	if f.id != nil {
		m.InvocationID, m.HasInvocationID = jsonStringValue(f.id)
	}
	if f.typ == nil {
		return m, errors.New("hub message: missing type")
	}
	t, err := jsonInt(f.typ)
	if err != nil {
		return m, errors.New("hub message: type must be an integer")
	}
	if t < -1<<31 || t > 1<<31-1 {
		return m, errors.New("hub message: type out of range")
	}
	m.Type = int(t)
	r, known := ruleOf(m.Type)
	if !known {
		return m, nil // unknown type: for the caller to ignore
	}
	if r.invocationID != absent {
		if f.id != nil && !m.HasInvocationID {
			return m, errors.New("hub message: invocationId must be a string")
		}
		if r.invocationID == required && !m.HasInvocationID {
			return m, errors.New("hub message: missing invocationId")
		}
	}
	if r.headers && f.headers != nil {
		if m.Headers, err = parseHeaders(f.headers); err != nil {
			return m, err
		}
	}

	switch r.body {
	case bodyInvocation:
		if f.target == nil {
			return m, errors.New("hub message: missing target")
		}
		if m.Target, ok = jsonStringValue(f.target); !ok {
			return m, errors.New("hub message: target must be a string")
		}
		if m.Target == "" {
			return m, errors.New("hub message: missing target")
		}
		if f.args == nil {
			return m, errors.New("hub message: missing arguments")
		}
		if f.args[0] != '[' {
			return m, errors.New("hub message: arguments must be an array")
		}
		m.Arguments = make([]json.RawMessage, 0, 4)
		ai := newArrayIter(f.args)
		for {
			v, ok := ai.next()
			if !ok {
				break
			}
			m.Arguments = append(m.Arguments, json.RawMessage(v))
		}
		if f.streamIDs != nil && !isNull(f.streamIDs) {
			if f.streamIDs[0] != '[' {
				return m, errors.New("hub message: streamIds must be an array of strings")
			}
			si := newArrayIter(f.streamIDs)
			for {
				v, ok := si.next()
				if !ok {
					break
				}
				s, ok := jsonStringValue(v)
				if !ok {
					return m, errors.New("hub message: streamIds must be an array of strings")
				}
				m.StreamIDs = append(m.StreamIDs, s)
			}
		}
	case bodyItem:
		if f.item != nil {
			m.Item = json.RawMessage(f.item)
		}
	case bodyCompletion:
		if f.errMsg != nil && !isNull(f.errMsg) {
			if m.Error, ok = jsonStringValue(f.errMsg); !ok {
				return m, errors.New("hub message: error must be a string")
			}
			m.HasError = true
			if f.result != nil {
				return m, errors.New("hub message: completion has both result and error")
			}
		}
		if f.result != nil {
			m.Result = json.RawMessage(f.result)
		}
	case bodyClose:
		if f.errMsg != nil && !isNull(f.errMsg) {
			if m.Error, ok = jsonStringValue(f.errMsg); !ok {
				return m, errors.New("hub message: error must be a string")
			}
			m.HasError = true
		}
		if f.allowReconnect != nil {
			switch string(f.allowReconnect) {
			case "true":
				m.AllowReconnect = true
			case "false", "null":
			default:
				return m, errors.New("hub message: allowReconnect must be a boolean")
			}
		}
	case bodySequence:
		if f.seq == nil {
			return m, errors.New("hub message: missing sequenceId")
		}
		n, err := jsonInt(f.seq)
		if err != nil || n < 0 {
			return m, errors.New("hub message: sequenceId must be a non-negative integer")
		}
		m.SequenceID = n
	}
	return m, nil
}

// parseHeaders decodes a "headers" value: an object of string values, or null.
func parseHeaders(v []byte) (map[string]string, error) {
	if isNull(v) {
		return nil, nil
	}
	it, ok := newObjectIter(v)
	if !ok {
		return nil, errors.New("hub message: headers must be an object")
	}
	var h map[string]string
	for {
		k, hv, ok := it.next()
		if !ok {
			break
		}
		key, _ := unquoteJSON(k)
		s, ok := jsonStringValue(hv)
		if !ok {
			return nil, fmt.Errorf("hub message: header %q must be a string", key)
		}
		if h == nil {
			h = make(map[string]string, 2)
		}
		h[key] = s
	}
	return h, nil
}

// checkJSON reports whether rec is valid UTF-8 and a single valid JSON value,
// naming the problem. The detailed message for invalid JSON is produced only on
// the error path.
func checkJSON(what string, rec []byte) error {
	if !utf8.Valid(rec) {
		return fmt.Errorf("%s: invalid UTF-8", what)
	}
	if json.Valid(rec) {
		return nil
	}
	var v struct{}
	err := json.Unmarshal(rec, &v)
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%s: invalid JSON: %v (at offset %d)", what, se, se.Offset)
	case err != nil:
		return fmt.Errorf("%s: invalid JSON: %v", what, err)
	default:
		return fmt.Errorf("%s: invalid JSON", what)
	}
}

// ---------------------------------------------------------------------------
// Helpers over already-validated JSON. Every function here assumes its input
// passed json.Valid; they stay in bounds on any input but give meaningless
// results for invalid JSON.

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the value that starts at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return len(b)
	}
}

// objectIter walks the members of a valid JSON object.
type objectIter struct {
	b []byte
	i int
}

// newObjectIter starts at the first non-space byte of b, which must be '{'.
func newObjectIter(b []byte) (objectIter, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return objectIter{}, false
	}
	return objectIter{b: b, i: i + 1}, true
}

// next returns the next member: key is the raw key without quotes (escapes
// not decoded), val the raw value.
func (it *objectIter) next() (key, val []byte, ok bool) {
	b := it.b
	i := skipSpace(b, it.i)
	if i < len(b) && b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		it.i = len(b)
		return nil, nil, false
	}
	ks := i
	i = skipString(b, i)
	if i-ks < 2 {
		it.i = len(b)
		return nil, nil, false
	}
	key = b[ks+1 : i-1]
	i = skipSpace(b, i)
	if i < len(b) && b[i] == ':' {
		i++
	}
	i = skipSpace(b, i)
	vs := i
	i = skipValue(b, i)
	if i <= vs {
		it.i = len(b)
		return nil, nil, false
	}
	it.i = i
	return key, b[vs:i], true
}

// arrayIter walks the elements of a valid JSON array.
type arrayIter struct {
	b []byte
	i int
}

func newArrayIter(b []byte) arrayIter {
	i := skipSpace(b, 0)
	if i < len(b) && b[i] == '[' {
		i++
	} else {
		i = len(b)
	}
	return arrayIter{b: b, i: i}
}

func (it *arrayIter) next() ([]byte, bool) {
	b := it.b
	i := skipSpace(b, it.i)
	if i < len(b) && b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	if i >= len(b) || b[i] == ']' {
		it.i = len(b)
		return nil, false
	}
	vs := i
	i = skipValue(b, i)
	if i <= vs {
		it.i = len(b)
		return nil, false
	}
	it.i = i
	return b[vs:i], true
}

// memberName returns the decoded key; raw keys without escapes are returned
// as is (no allocation).
func memberName(k []byte) []byte {
	if bytes.IndexByte(k, '\\') < 0 {
		return k
	}
	s, ok := unquoteJSON(k)
	if !ok {
		return nil
	}
	return []byte(s)
}

func isNull(v []byte) bool { return string(v) == "null" }

// jsonStringValue decodes v if it is a JSON string value.
func jsonStringValue(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	return unquoteJSON(v[1 : len(v)-1])
}

var errNotInteger = errors.New("not an integer")

// jsonInt parses a JSON number literal without fraction or exponent into an
// int64. Anything else (strings, null, 1.0, 1e3, overflow) is an error.
func jsonInt(v []byte) (int64, error) {
	if len(v) == 0 {
		return 0, errNotInteger
	}
	neg := v[0] == '-'
	d := v
	if neg {
		d = v[1:]
	}
	if len(d) == 0 || len(d) > 19 {
		return 0, errNotInteger
	}
	var n uint64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, errNotInteger
		}
		n = n*10 + uint64(c-'0')
	}
	if neg {
		if n > 1<<63 {
			return 0, errNotInteger
		}
		return -int64(n), nil
	}
	if n > 1<<63-1 {
		return 0, errNotInteger
	}
	return int64(n), nil
}

// unquoteJSON decodes the contents of a JSON string (without the quotes),
// following encoding/json: invalid UTF-8 and unpaired surrogate escapes become
// U+FFFD. It reports false for malformed escapes and raw control characters.
// (One branch per escape and UTF-8 case, as encoding/json's own unquote.)
func unquoteJSON(s []byte) (string, bool) {
	i := 0
	for i < len(s) {
		c := s[i]
		if c == '\\' || c == '"' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		i++
	}
	if i == len(s) {
		return string(s), true
	}
	b := make([]byte, 0, len(s)+8)
	b = append(b, s[:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return "", false
			}
			switch s[i+1] {
			case '"', '\\', '/':
				b = append(b, s[i+1])
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := hex4(s[i:])
				if r < 0 {
					return "", false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if r2 := hex4(s[i:]); r2 >= 0 {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							b = utf8.AppendRune(b, dec)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
				continue
			default:
				return "", false
			}
			i += 2
		case c == '"' || c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
		}
	}
	return string(b), true
}

// hex4 decodes a `\uXXXX` escape at the start of s, or returns -1.
func hex4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// ---------------------------------------------------------------------------
// Framing

// recordSplitter turns an incoming byte stream (arriving in arbitrary chunks:
// several records per WebSocket frame or one record across frames) into
// 0x1E-terminated records. It enforces a maximum record size in constant
// memory: a record longer than max bytes is not buffered; the splitter keeps
// scanning it with idScanner to find its top-level "invocationId" (which the
// JS client writes after the arguments) and reports it when its 0x1E arrives.
// 0x1E never appears unescaped inside valid JSON, so splitting on the raw byte
// is correct.
//
// A recordSplitter is not safe for concurrent use, and emit must not call
// feed on the same splitter.
type recordSplitter struct {
	max      int
	buf      []byte    // bytes of the current record while it is at most max long
	over     bool      // the current record exceeded max and is being scanned
	overSize int       // bytes of the current oversized record seen so far
	scan     idScanner // used only for oversized records
}

// newRecordSplitter returns a splitter for records of at most max bytes
// (excluding the 0x1E). max values below 1 are treated as 1.
func newRecordSplitter(max int) *recordSplitter {
	if max < 1 {
		max = 1
	}
	return &recordSplitter{max: max}
}

// feed consumes p and calls emit once per complete record, in order. For a
// normal record, rec is the record without its 0x1E (valid only during the
// call: copy it to keep it), info.Oversized is false and info.Size is
// len(rec). For an oversized record, rec is nil, info.Oversized is true,
// info.Size is its total length and info.InvocationID/HasInvocationID are the
// top-level invocationId the scanner found, if any. Bytes after the last 0x1E
// are kept (at most max of them) for the next call.
func (s *recordSplitter) Feed(p []byte, emit func(rec []byte, info RecordInfo)) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, RecordSeparator)
		if s.over {
			if i < 0 {
				s.scan.scan(p)
				s.overSize += len(p)
				return
			}
			s.scan.scan(p[:i])
			p = p[i+1:]
			s.emitOversized(s.overSize+i, emit)
			continue
		}
		if len(s.buf) == 0 {
			// Fast path: records that lie entirely in p are emitted without copying.
			if i >= 0 {
				if i <= s.max {
					emit(p[:i], RecordInfo{Size: i})
				} else {
					s.scan.reset()
					s.scan.scan(p[:i])
					s.emitOversized(i, emit)
				}
				p = p[i+1:]
				continue
			}
			if len(p) <= s.max {
				s.appendBuf(p)
				return
			}
			s.startOversized(p)
			return
		}
		if i >= 0 {
			if len(s.buf)+i <= s.max {
				s.appendBuf(p[:i])
				rec := s.buf
				s.buf = s.buf[:0]
				p = p[i+1:]
				emit(rec, RecordInfo{Size: len(rec)})
				continue
			}
			n := len(s.buf)
			s.startOversized(p[:i])
			p = p[i+1:]
			s.emitOversized(n+i, emit)
			continue
		}
		if len(s.buf)+len(p) <= s.max {
			s.appendBuf(p)
			return
		}
		s.startOversized(p)
		return
	}
}

// appendBuf appends p to the pending record. The caller guarantees the result
// is at most max bytes, and capacity never grows beyond max.
func (s *recordSplitter) appendBuf(p []byte) {
	need := len(s.buf) + len(p)
	if need > cap(s.buf) {
		c := max(2*cap(s.buf), need, 512)
		c = min(c, s.max)
		nb := make([]byte, len(s.buf), c)
		copy(nb, s.buf)
		s.buf = nb
	}
	s.buf = append(s.buf, p...)
}

// startOversized switches to scanning mode: the buffered bytes and p are
// scanned and the buffer is emptied.
func (s *recordSplitter) startOversized(p []byte) {
	s.scan.reset()
	s.scan.scan(s.buf)
	s.scan.scan(p)
	s.over = true
	s.overSize = len(s.buf) + len(p)
	s.buf = s.buf[:0]
}

func (s *recordSplitter) emitOversized(size int, emit func([]byte, RecordInfo)) {
	id, ok := s.scan.result()
	s.over = false
	s.overSize = 0
	s.scan.reset()
	emit(nil, RecordInfo{Oversized: true, Size: size, InvocationID: id, HasInvocationID: ok})
}

// pending reports how many bytes of an incomplete record are buffered. It is
// never more than max; while an oversized record is being skipped it is 0.
func (s *recordSplitter) Pending() int { return len(s.buf) }

// Resting reports whether no record is in progress (Splitter).
func (s *recordSplitter) Resting() bool { return len(s.buf) == 0 && !s.over }

// Err returns nil: 0x1E framing always resynchronises.
func (s *recordSplitter) Err() error { return nil }

// scanInvocationID runs the same lenient scanner the splitter uses for
// oversized records over a complete record (e.g. a malformed one), so the
// server can still answer a malformed invocation with a Completion error when
// an id is findable. It finds the last string-valued "invocationId" member of
// the top-level object; a non-string value for a later duplicate hides an
// earlier one, as in parseMessage.
func scanInvocationID(rec []byte) (id string, ok bool) {
	var s idScanner
	s.scan(rec)
	return s.result()
}

// ---------------------------------------------------------------------------
// idScanner: a lenient, incremental JSON lexer that finds the top-level
// "invocationId" string in constant memory. It tracks strings, escapes and
// nesting depth; it never fails, it only stops finding things in garbage.

const (
	maxKeyCapture = 80   // raw bytes of a key; "invocationId" fully \u-escaped is 72
	maxIDCapture  = 1024 // raw bytes of an invocationId value
)

// Member states at depth 1 of a top-level object.
const (
	mExpectKey = iota
	mInKey
	mExpectColon
	mExpectValue
	mInValue
	mAfterValue
)

// What the current string is being captured into.
const (
	capNone = iota
	capKey
	capValue
)

type idScanner struct {
	depth     int  // 0 outside the top-level container, 1 inside it, ...
	topObject bool // the top-level container is an object
	done      bool // the top-level container has been closed
	inString  bool
	escape    bool
	member    int // mExpectKey...; meaningful at depth 1 of a top-level object
	capture   int // capNone, capKey or capValue
	isIDKey   bool

	key         [maxKeyCapture]byte
	keyLen      int
	keyOverflow bool
	val         []byte // bounded by maxIDCapture; allocated on first use
	valOverflow bool

	id    string
	hasID bool
}

func (s *idScanner) reset() {
	val := s.val[:0]
	*s = idScanner{val: val}
}

func (s *idScanner) result() (string, bool) { return s.id, s.hasID }

// scan consumes p. It can be called any number of times; the result does not
// depend on how the input is chunked. (A state machine, one case per state
// and byte class: its branches are its table.)
func (s *idScanner) scan(p []byte) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if s.inString {
			if s.escape {
				s.escape = false
				s.captureByte(c)
				continue
			}
			switch c {
			case '\\':
				s.escape = true
				s.captureByte(c)
			case '"':
				s.inString = false
				s.endString()
			default:
				if s.capture != capNone {
					s.captureByte(c)
					continue
				}
				// Skip the body of a string we do not care about quickly.
				j := i + 1
				for j < len(p) && p[j] != '"' && p[j] != '\\' {
					j++
				}
				i = j - 1
			}
			continue
		}
		if s.done {
			return
		}
		switch c {
		case '"':
			s.inString = true
			s.startString()
		case '{', '[':
			if s.depth == 0 {
				s.topObject = c == '{'
				s.depth = 1
				s.member = mExpectKey
				continue
			}
			if s.depth == 1 {
				s.beginValue(false)
			}
			s.depth++
		case '}', ']':
			if s.depth == 0 {
				continue
			}
			s.depth--
			if s.depth == 0 {
				s.done = true
			} else if s.depth == 1 {
				s.member = mAfterValue
			}
		case ',':
			if s.depth == 1 {
				s.member = mExpectKey
				s.isIDKey = false
			}
		case ':':
			if s.depth == 1 && s.member == mExpectColon {
				s.member = mExpectValue
			}
		case ' ', '\t', '\n', '\r':
		default:
			if s.depth == 1 {
				s.beginValue(false)
			}
		}
	}
}

// beginValue is called at depth 1 when a value starts. A non-string value for
// an invocationId key hides any earlier string value (last one wins).
func (s *idScanner) beginValue(isString bool) {
	if !s.topObject || s.member != mExpectValue {
		return
	}
	s.member = mInValue
	if !s.isIDKey {
		return
	}
	if isString {
		s.capture = capValue
		s.val = s.val[:0]
		s.valOverflow = false
		return
	}
	s.id, s.hasID = "", false
}

func (s *idScanner) startString() {
	if s.depth != 1 || !s.topObject {
		return
	}
	switch s.member {
	case mExpectKey:
		s.member = mInKey
		s.capture = capKey
		s.keyLen = 0
		s.keyOverflow = false
	case mExpectValue:
		s.beginValue(true)
	}
}

func (s *idScanner) captureByte(c byte) {
	switch s.capture {
	case capKey:
		if s.keyLen < len(s.key) {
			s.key[s.keyLen] = c
			s.keyLen++
		} else {
			s.keyOverflow = true
		}
	case capValue:
		if len(s.val) < maxIDCapture {
			if s.val == nil {
				s.val = make([]byte, 0, 32)
			}
			s.val = append(s.val, c)
		} else {
			s.valOverflow = true
		}
	}
}

func (s *idScanner) endString() {
	if s.depth != 1 || !s.topObject {
		return
	}
	switch s.capture {
	case capKey:
		s.capture = capNone
		s.member = mExpectColon
		s.isIDKey = false
		if !s.keyOverflow {
			k := memberName(s.key[:s.keyLen])
			s.isIDKey = string(k) == "invocationId"
		}
	case capValue:
		s.capture = capNone
		s.member = mAfterValue
		s.id, s.hasID = "", false
		if !s.valOverflow {
			s.id, s.hasID = unquoteJSON(s.val)
		}
	default:
		if s.member == mInValue {
			s.member = mAfterValue
		}
	}
}

// ---------------------------------------------------------------------------
// Encoding server->client messages. Every encoder appends one complete record,
// including the trailing 0x1E, to dst and returns the extended slice.

// appendInvocation writes exactly
//
//	{"type":1,"target":<target>,"arguments":<args>,"headers":{"cursor":<cursor>}}
//
// where args is a raw, already validated JSON array appended verbatim (an
// empty args is written as []). When cursor == "" headers is omitted.
func appendInvocation(dst []byte, target string, args json.RawMessage, cursor string) []byte {
	dst = append(dst, `{"type":1,"target":`...)
	dst = AppendJSONString(dst, target)
	dst = append(dst, `,"arguments":`...)
	if len(args) == 0 {
		dst = append(dst, '[', ']')
	} else {
		dst = append(dst, args...)
	}
	if cursor != "" {
		dst = append(dst, `,"headers":{"cursor":`...)
		dst = AppendJSONString(dst, cursor)
		dst = append(dst, '}')
	}
	return append(dst, '}', RecordSeparator)
}

// appendCompletion writes a Completion. result is raw JSON appended verbatim;
// a nil or empty result is a void completion (no result field). errMsg != ""
// writes "error" and no result.
func appendCompletion(dst []byte, invocationID string, result json.RawMessage, errMsg string) []byte {
	dst = append(dst, `{"type":3,"invocationId":`...)
	dst = AppendJSONString(dst, invocationID)
	switch {
	case errMsg != "":
		dst = append(dst, `,"error":`...)
		dst = AppendJSONString(dst, errMsg)
	case len(result) > 0:
		dst = append(dst, `,"result":`...)
		dst = append(dst, result...)
	}
	return append(dst, '}', RecordSeparator)
}

// appendStreamItem writes {"type":2,"invocationId":<id>,"item":<item>}; item is
// raw JSON appended verbatim (empty means null). Not part of the protocol
// seam yet: the server does not stream to clients today.
func appendStreamItem(dst []byte, invocationID string, item json.RawMessage) []byte {
	dst = append(dst, `{"type":2,"invocationId":`...)
	dst = AppendJSONString(dst, invocationID)
	dst = append(dst, `,"item":`...)
	if len(item) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, item...)
	}
	return append(dst, '}', RecordSeparator)
}

// appendClientInvocation writes
//
//	{"type":1,"invocationId":<id>,"target":<target>,"arguments":<args>}
//
// without framing, as a client sends it: invocationId only when hasID, args
// a raw JSON array appended verbatim (empty means []).
func appendClientInvocation(dst []byte, id string, hasID bool, target string, args json.RawMessage) []byte {
	dst = append(dst, `{"type":1,`...)
	if hasID {
		dst = append(dst, `"invocationId":`...)
		dst = AppendJSONString(dst, id)
		dst = append(dst, ',')
	}
	dst = append(dst, `"target":`...)
	dst = AppendJSONString(dst, target)
	dst = append(dst, `,"arguments":`...)
	if len(args) == 0 {
		dst = append(dst, '[', ']')
	} else {
		dst = append(dst, args...)
	}
	return append(dst, '}')
}

// appendPing writes {"type":6}.
func appendPing(dst []byte) []byte {
	return append(dst, `{"type":6}`+"\x1e"...)
}

// appendClose writes {"type":7,"error":<errMsg>,"allowReconnect":true},
// omitting an empty error and a false allowReconnect.
func appendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	dst = append(dst, `{"type":7`...)
	if errMsg != "" {
		dst = append(dst, `,"error":`...)
		dst = AppendJSONString(dst, errMsg)
	}
	if allowReconnect {
		dst = append(dst, `,"allowReconnect":true`...)
	}
	return append(dst, '}', RecordSeparator)
}

// appendAck writes {"type":8,"sequenceId":N}.
func appendAck(dst []byte, seq int64) []byte {
	dst = append(dst, `{"type":8,"sequenceId":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	return append(dst, '}', RecordSeparator)
}

// appendSequence writes {"type":9,"sequenceId":N}.
func appendSequence(dst []byte, seq int64) []byte {
	dst = append(dst, `{"type":9,"sequenceId":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	return append(dst, '}', RecordSeparator)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string. Like encoding/json it escapes
// '"', '\\', control characters (short forms for \b \f \n \r \t, \u00XX
// otherwise) and U+2028/U+2029, and replaces each invalid UTF-8 byte with
// \ufffd; '<', '>' and '&' are left as they are. The output is always valid
// UTF-8.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
