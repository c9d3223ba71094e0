package raftplane

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Value is what an Option reads and writes in a Config: a flag.Value (Set
// parses the text a flag, an environment variable or a configuration file
// gives; String prints the current value in the same syntax) that also
// names its type, for -help and the configuration file.
type Value interface {
	Set(string) error
	String() string
	// Type is "string", "int", "bool", "duration" or "list" (a
	// comma-separated list; an array in the configuration file).
	Type() string
}

// The value types below wrap a pointer into a Config. Their String methods
// accept a nil pointer, since the flag package calls String on a zero Value
// to detect defaults.

type stringValue struct{ p *string }

func (v stringValue) Set(s string) error { *v.p = s; return nil }
func (v stringValue) Type() string       { return "string" }
func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

// numValue is an integer of type T; the text may be decimal, or 0x, 0o
// or 0b prefixed, with _ between digits (as in Go and TOML).
type numValue[T ~int | ~int64 | ~uint64] struct{ p *T }

func (v numValue[T]) Type() string { return "int" }
func (v numValue[T]) Set(s string) error {
	s = strings.TrimSpace(s)
	var n T
	if unsigned := ^n > 0; unsigned {
		u, err := strconv.ParseUint(s, 0, 64)
		if n = T(u); err != nil || uint64(n) != u {
			return fmt.Errorf("%q is not a non-negative integer", s)
		}
	} else {
		i, err := strconv.ParseInt(s, 0, 64)
		if n = T(i); err != nil || int64(n) != i {
			return fmt.Errorf("%q is not an integer", s)
		}
	}
	*v.p = n
	return nil
}
func (v numValue[T]) String() string {
	if v.p == nil {
		return "0"
	}
	return fmt.Sprint(*v.p)
}

// boolValue is a bool; "-name" alone sets it (IsBoolFlag). invert stores
// the opposite, for an option that turns on what a Disable field turns
// off.
type boolValue struct {
	p      *bool
	invert bool
}

func (v boolValue) Type() string     { return "bool" }
func (v boolValue) IsBoolFlag() bool { return true }
func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*v.p = b != v.invert
	return nil
}
func (v boolValue) String() string {
	if v.p == nil {
		return strconv.FormatBool(v.invert)
	}
	return strconv.FormatBool(*v.p != v.invert)
}

type durationValue struct{ p *time.Duration }

func (v durationValue) Type() string { return "duration" }
func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a duration (like 500ms, 15s, 2m)", s)
	}
	*v.p = d
	return nil
}
func (v durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

// listValue is a comma-separated list; empty items are dropped, and an
// empty text is an empty list.
type listValue struct{ p *[]string }

func (v listValue) Type() string       { return "list" }
func (v listValue) Set(s string) error { *v.p = SplitList(s); return nil }
func (v listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

// funcValue is a value with its own parsing: the options that fill
// several fields, or a field of another shape.
type funcValue struct {
	typ string
	set func(string) error
	get func() string
}

func (v funcValue) Type() string { return v.typ }
func (v funcValue) Set(s string) error {
	return v.set(s)
}
func (v funcValue) String() string {
	if v.get == nil {
		return ""
	}
	return v.get()
}

// SplitList splits a comma-separated list, trimming white space and
// dropping empty items: how every list option reads its text (an empty
// text is an empty list). The certs subcommand reads its lists with it too,
// so a list means the same in every flag of the binary.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
