package client

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The fast path. A subscriber spends most of its CPU decoding messages, and
// encoding/json is slow at it (reflection, a map for the headers, a copy of
// every argument). Servers write invocations and completions in one shape,
// raftplane's appendInvocation and appendCompletion exactly:
//
//	{"type":1,"target":"T","arguments":[...],"headers":{"cursor":"C"}}
//	{"type":3,"invocationId":"I","result":R}   (or "error":"E", or neither)
//
// parseFast reads that shape without reflection; for anything else (other
// field orders, escapes in strings, other types, malformed JSON) it reports
// false and the caller decodes with encoding/json, so the result never
// depends on which path ran (FuzzParseFast checks that). The arguments and
// result it returns alias rec; the cursor header goes to inMessage.cursor,
// not to a map.

// parseFast decodes rec into m if rec has the common shape.
func parseFast(rec []byte, m *inMessage) bool {
	switch {
	case bytes.HasPrefix(rec, []byte(`{"type":1,"target":`)):
		return parseFastInvocation(rec[len(`{"type":1,"target":`):], m)
	case bytes.HasPrefix(rec, []byte(`{"type":3,"invocationId":`)):
		return parseFastCompletion(rec[len(`{"type":3,"invocationId":`):], m)
	}
	return false
}

func parseFastInvocation(p []byte, m *inMessage) bool {
	target, p, ok := plainString(p)
	if !ok {
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
			args = append(args, json.RawMessage(p[:n]))
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
	var cursor string
	if q, ok := cut(p, `,"headers":{"cursor":`); ok {
		if cursor, q, ok = plainString(q); !ok {
			return false
		}
		if p, ok = cut(q, "}"); !ok {
			return false
		}
	}
	if string(p) != "}" {
		return false
	}
	*m = inMessage{Type: typeInvocation, Target: target, Arguments: args, cursor: cursor}
	return true
}

func parseFastCompletion(p []byte, m *inMessage) bool {
	id, p, ok := plainString(p)
	if !ok {
		return false
	}
	out := inMessage{Type: typeCompletion, InvocationID: &id}
	switch {
	case string(p) == "}":
	case bytes.HasPrefix(p, []byte(`,"error":`)):
		msg, q, ok := plainString(p[len(`,"error":`):])
		if !ok || string(q) != "}" {
			return false
		}
		out.Error = &msg
	case bytes.HasPrefix(p, []byte(`,"result":`)):
		p = p[len(`,"result":`):]
		n := valueEnd(p)
		if n <= 0 || string(p[n:]) != "}" || !validValue(p[:n]) {
			return false
		}
		out.Result = json.RawMessage(p[:n])
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
// characters at the start of p; it returns its value and what follows.
func plainString(p []byte) (string, []byte, bool) {
	if len(p) == 0 || p[0] != '"' {
		return "", p, false
	}
	for i := 1; i < len(p); i++ {
		switch c := p[i]; {
		case c == '"':
			if !utf8.Valid(p[1:i]) { // encoding/json would replace the bad bytes
				return "", p, false
			}
			return string(p[1:i]), p[i+1:], true
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
