package signalr

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The fast path. A subscriber spends most of its CPU decoding the server's
// messages, and the general parser makes several passes (UTF-8, JSON
// validity, members). Servers write invocations and completions in one
// shape, appendInvocation's and appendCompletion's exactly:
//
//	{"type":1,"target":"T","arguments":[...],"headers":{"cursor":"C"}}
//	{"type":3,"invocationId":"I","result":R}   (or "error":"E", or neither)
//
// parseFast reads that shape in one pass; for anything else (other field
// orders, whitespace, escapes in strings, other types, invalid input) it
// reports false and parseMessage goes on with the general parser, so the
// result never depends on which path ran (FuzzParseFast checks that).

// parseFast decodes rec if it has the common shape. Like parseMessage, it
// returns a message that does not alias rec.
func parseFast(rec []byte) (Message, bool) {
	var m Message
	switch {
	case bytes.HasPrefix(rec, []byte(`{"type":1,"target":`)):
		if !utf8.Valid(rec) {
			return m, false
		}
		buf := bytes.Clone(rec)
		return m, parseFastInvocation(buf[len(`{"type":1,"target":`):], &m)
	case bytes.HasPrefix(rec, []byte(`{"type":3,"invocationId":`)):
		if !utf8.Valid(rec) {
			return m, false
		}
		buf := bytes.Clone(rec)
		return m, parseFastCompletion(buf[len(`{"type":3,"invocationId":`):], &m)
	}
	return m, false
}

func parseFastInvocation(p []byte, m *Message) bool {
	target, p, ok := plainString(p)
	if !ok || target == "" {
		return false
	}
	if p, ok = cut(p, `,"arguments":[`); !ok {
		return false
	}
	args := make([]json.RawMessage, 0, 4)
	if q, ok := cut(p, "]"); ok {
		p = q
	} else {
		for {
			n := valueEnd(p)
			if n <= 0 || !validValue(p[:n]) {
				return false
			}
			args = append(args, json.RawMessage(p[:n:n]))
			p = p[n:]
			if q, ok := cut(p, ","); ok {
				p = q
				continue
			}
			if p, ok = cut(p, "]"); !ok {
				return false
			}
			break
		}
	}
	var headers map[string]string
	if q, ok := cut(p, `,"headers":{"cursor":`); ok {
		var cursor string
		if cursor, q, ok = plainString(q); !ok {
			return false
		}
		if p, ok = cut(q, "}"); !ok {
			return false
		}
		headers = map[string]string{"cursor": cursor}
	}
	if string(p) != "}" {
		return false
	}
	*m = Message{Type: TypeInvocation, Target: target, Arguments: args, Headers: headers}
	return true
}

func parseFastCompletion(p []byte, m *Message) bool {
	id, p, ok := plainString(p)
	if !ok {
		return false
	}
	out := Message{Type: TypeCompletion, InvocationID: id, HasInvocationID: true}
	switch {
	case string(p) == "}":
	case bytes.HasPrefix(p, []byte(`,"error":`)):
		msg, q, ok := plainString(p[len(`,"error":`):])
		if !ok || string(q) != "}" {
			return false
		}
		out.Error, out.HasError = msg, true
	case bytes.HasPrefix(p, []byte(`,"result":`)):
		p = p[len(`,"result":`):]
		n := valueEnd(p)
		if n <= 0 || string(p[n:]) != "}" || !validValue(p[:n]) {
			return false
		}
		out.Result = json.RawMessage(p[:n:n])
	default:
		return false
	}
	*m = out
	return true
}

// cut removes prefix from p.
func cut(p []byte, prefix string) ([]byte, bool) {
	if len(p) < len(prefix) || string(p[:len(prefix)]) != prefix {
		return p, false
	}
	return p[len(prefix):], true
}

// plainString reads a JSON string with no escapes and no control
// characters at the start of p (valid UTF-8: parseFast checked the record);
// it returns its value and what follows.
func plainString(p []byte) (string, []byte, bool) {
	if len(p) == 0 || p[0] != '"' {
		return "", p, false
	}
	for i := 1; i < len(p); i++ {
		switch c := p[i]; {
		case c == '"':
			return string(p[1:i]), p[i+1:], true // the caller checked UTF-8
		case c == '\\' || c < 0x20:
			return "", p, false
		}
	}
	return "", p, false
}

// valueEnd returns the length of the JSON value at the start of p (not
// validated: the caller checks it with json.Valid), or 0 if it does not end.
func valueEnd(p []byte) int {
	depth := 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '"':
			i++
			for ; i < len(p) && p[i] != '"'; i++ {
				if p[i] == '\\' {
					i++
				}
			}
			if i >= len(p) {
				return 0
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of a bare value
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	if depth == 0 {
		return len(p)
	}
	return 0
}

// validValue reports whether v is one valid JSON value. Plain strings,
// integers and literals, the usual arguments, are checked here; anything
// else goes to json.Valid.
func validValue(v []byte) bool {
	switch {
	case len(v) >= 2 && v[0] == '"':
		for _, c := range v[1 : len(v)-1] {
			if c == '"' || c == '\\' || c < 0x20 {
				return json.Valid(v)
			}
		}
		return v[len(v)-1] == '"'
	case string(v) == "true" || string(v) == "false" || string(v) == "null":
		return true
	case len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9'):
		d := v
		if d[0] == '-' {
			d = d[1:]
		}
		if len(d) == 0 || len(d) > 1 && d[0] == '0' {
			return json.Valid(v)
		}
		for _, c := range d {
			if c < '0' || c > '9' {
				return json.Valid(v) // fractions, exponents
			}
		}
		return true
	}
	return json.Valid(v)
}
