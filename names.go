package raftplane

import (
	"errors"
	"regexp"
	"strings"
)

// The parts (hub, cluster, fsm, gossip) validate their own configs and name
// their Go fields ("MaxVoters (2) must be odd, from 1 to 7"): right for a
// Go caller of that package, wrong for an operator, who set -voters. The
// functions here turn each of those errors into an *OptionError of the
// option that sets the field, and every other field the message names into
// its flag, from the fields Options lists. So the parts' checks stay the
// only checks, and a new check there is named here without a change.

// leadingField matches a message that starts with a field name, maybe
// indexed, then maybe its value in parentheses and a colon:
// "MaxVoters (2) must be odd", "JWKSURL: ...", "JWTPublicKeys[0]: ...".
var leadingField = regexp.MustCompile(`^([A-Z][A-Za-z0-9]*)(\[\d+\])?(?: \(([^)]*)\))?:? ?(.*)$`)

// fieldWord matches what may be a Go field name inside a message; only
// the names of known fields are replaced.
var fieldWord = regexp.MustCompile(`\b[A-Z][A-Za-z0-9]+\b`)

// optionOfField maps the fields under prefix ("Hub.") to the option that
// sets them.
func optionOfField(prefix string) map[string]string {
	m := map[string]string{}
	for _, o := range Options() {
		for _, f := range o.fields {
			if name, ok := strings.CutPrefix(f, prefix); ok && !strings.Contains(name, ".") {
				if _, dup := m[name]; !dup {
					m[name] = o.Name
				}
			}
		}
	}
	return m
}

// phrases names the option of the few messages that start with no field.
var phrases = map[string]string{
	"every transport is disabled": "transports",
}

// nameOptions splits a part's validation error into its problems and names
// the option of each, using the fields Options lists under prefix.
func nameOptions(err error, prefix string) []error {
	return nameWith(err, optionOfField(prefix))
}

// gossipFields maps gossip.Config's fields, which no option sets one to one
// (New derives them), to the options they come from.
var gossipFields = map[string]string{
	"BindAddr":      "gossip",
	"AdvertiseAddr": "advertise",
	"SecretKey":     "gossip-key",
}

// nameGossip is nameOptions for gossip.Config.
func nameGossip(err error) []error { return nameWith(err, gossipFields) }

func nameWith(err error, fields map[string]string) []error {
	var out []error
	for _, leaf := range problems(err) {
		out = append(out, nameOne(leaf, fields))
	}
	return out
}

// problems flattens an error into its single problems: it unwraps joined
// errors, and the "hub config: " style wrappers around them.
func problems(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	if inner := errors.Unwrap(err); inner != nil {
		if _, joined := inner.(interface{ Unwrap() []error }); joined {
			return problems(inner)
		}
	}
	return []error{err}
}

// partPrefixes are the prefixes the parts put before their messages.
var partPrefixes = []string{"hub config: ", "cluster config: ", "gossip config: ", "fsm: ", "hub: ", "cluster: ", "gossip: "}

// nameOne turns one problem into an *OptionError when its message starts
// with a field some option sets, and names the options of the other
// fields it mentions.
func nameOne(err error, fields map[string]string) error {
	msg := err.Error()
	for _, p := range partPrefixes {
		msg = strings.TrimPrefix(msg, p)
	}
	rename := func(s string) string {
		return fieldWord.ReplaceAllStringFunc(s, func(w string) string {
			if o, ok := fields[w]; ok {
				return "-" + o
			}
			return w
		})
	}
	if m := leadingField.FindStringSubmatch(msg); m != nil {
		if o, ok := fields[m[1]]; ok {
			rest := rename(m[4])
			if strings.HasPrefix(rest, "and ") || strings.HasPrefix(rest, ", ") {
				// The message lists several fields ("KeepAliveInterval
				// (0s), ClientTimeout (30s) and ... must be positive"):
				// keep the sentence whole, with the first as a flag too.
				value := ""
				if m[3] != "" {
					value = " (" + m[3] + ")"
				}
				if !strings.HasPrefix(rest, ",") {
					rest = " " + rest
				}
				return &OptionError{Option: o, Err: errors.New("-" + o + value + rest)}
			}
			if m[3] != "" {
				rest = m[3] + " " + rest // "MaxVoters (2) must be odd": "2 must be odd"
			}
			if m[2] != "" {
				rest = "item " + strings.Trim(m[2], "[]") + ": " + rest // "JWTPublicKeys[0]: ..."
			}
			return &OptionError{Option: o, Err: errors.New(strings.TrimSpace(rest))}
		}
	}
	for phrase, o := range phrases {
		if strings.Contains(msg, phrase) {
			return &OptionError{Option: o, Err: errors.New(rename(msg))}
		}
	}
	return errors.New(rename(msg))
}
