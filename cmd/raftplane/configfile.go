package main

// The configuration file (-config FILE) is TOML, with every flag as a key of
// the same name at the top level:
//
//	http = "0.0.0.0:5000"
//	advertise = "10.0.0.5"
//	join = ["10.0.0.6:7946", "10.0.0.7:7946"]
//	keepalive = "10s"
//	max-connections = 50000
//
// Why TOML, for operators: it has comments (JSON has none, and a config
// file without them cannot carry the why of a setting); it is typed without
// surprises (YAML reads `no` as false and `1:30` as a number, and its
// indentation is meaning), and it is flat like the flags, so a key is the
// flag's name and nothing else; and it is what the tools they already run
// use (Telegraf, containerd, InfluxDB, Cargo). The
// parser is github.com/pelletier/go-toml/v2, the most used Go TOML library,
// kept up to date and without dependencies of its own; its syntax tree
// (package unstable, pinned by go.mod) gives every key's line, which
// `raftplane config check` names in each problem. Values go through the
// same parsers as the flags (raftplane.Option.Value), so a file, a flag
// and a variable can never disagree on what a value means.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/raftplane/raftplane"
)

// fileProblem is one problem of a configuration file, named by its key
// and line when known: "raftplane.toml:12: voters: 2 must be odd".
type fileProblem struct {
	file string
	line int    // 0: not tied to a line
	key  string // "": not tied to a key
	err  error
}

func (p *fileProblem) Error() string {
	var b strings.Builder
	b.WriteString(p.file)
	if p.line > 0 {
		fmt.Fprintf(&b, ":%d", p.line)
	}
	b.WriteString(": ")
	if p.key != "" {
		b.WriteString(p.key + ": ")
	}
	b.WriteString(p.err.Error())
	return b.String()
}

func (p *fileProblem) Unwrap() error { return p.err }

// setting is one key of a file, its value as a flag would give it.
type setting struct {
	opt  raftplane.Option
	text string
	line int
}

// parseConfigFile reads the settings of a file, and every problem: bad
// TOML, tables, unknown or repeated keys, values of the wrong type.
func parseConfigFile(file string, data []byte) ([]setting, []error) {
	var (
		p        unstable.Parser
		settings []setting
		problems []error
		seen     = map[string]int{}
		inTable  = false
	)
	problem := func(line int, key string, format string, args ...any) {
		problems = append(problems, &fileProblem{file: file, line: line, key: key, err: fmt.Errorf(format, args...)})
	}
	p.Reset(data)
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			key, line := keyOf(&p, e)
			problem(line, "", "[%s]: there are no sections: every key is a flag name at the top level", key)
			inTable = true
			continue
		case unstable.KeyValue:
		default:
			continue
		}
		key, line := keyOf(&p, e)
		if inTable {
			continue // under a section already reported
		}
		if first, dup := seen[key]; dup {
			problem(line, key, "set twice (first on line %d)", first)
			continue
		}
		seen[key] = line
		opt, ok := raftplane.LookupOption(key)
		if !ok {
			problem(line, key, "unknown key%s", suggest(key))
			continue
		}
		text, err := valueText(e.Value(), opt.Value(new(raftplane.Config)).Type())
		if err != nil {
			problem(line, key, "%w", err)
			continue
		}
		settings = append(settings, setting{opt: opt, text: text, line: line})
	}
	if err := p.Error(); err != nil {
		problem(errorLine(&p, data, err), "", "not valid TOML: %w", err)
	}
	return settings, problems
}

// keyOf returns an expression's (maybe dotted) key and its line.
func keyOf(p *unstable.Parser, e *unstable.Node) (string, int) {
	var parts []string
	line := 0
	it := e.Key()
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = p.Shape(n.Raw).Start.Line
		}
		parts = append(parts, string(n.Data))
	}
	return strings.Join(parts, "."), line
}

// errorLine is the line of a parse error, or the last line when the
// parser points at nothing (the end of the input).
func errorLine(p *unstable.Parser, data []byte, err error) int {
	var pe *unstable.ParserError
	if errors.As(err, &pe) && len(pe.Highlight) > 0 {
		return p.Shape(p.Range(pe.Highlight)).Start.Line
	}
	return bytes.Count(data, []byte("\n")) + 1
}

// valueText turns a TOML value into the text a flag of type typ takes,
// refusing a value of another TOML type with what was wanted.
func valueText(v *unstable.Node, typ string) (string, error) {
	want := map[string]string{
		"string":   "a string in quotes",
		"int":      "an integer",
		"bool":     "true or false",
		"duration": `a duration in quotes, like "15s"`,
		"list":     `a list of strings, like ["a", "b"]`,
	}[typ]
	switch {
	case v.Kind == unstable.String && (typ == "string" || typ == "duration" || typ == "list"):
		return string(v.Data), nil
	case v.Kind == unstable.Integer && typ == "int":
		return string(v.Data), nil
	case v.Kind == unstable.Bool && typ == "bool":
		return string(v.Data), nil
	case v.Kind == unstable.Array && typ == "list":
		var items []string
		it := v.Children()
		for it.Next() {
			n := it.Node()
			if n.Kind != unstable.String {
				return "", fmt.Errorf("want %s; %s is %s", want, n.Data, kindName(n.Kind))
			}
			if strings.Contains(string(n.Data), ",") {
				return "", fmt.Errorf("%q: an item may not hold a comma", n.Data)
			}
			items = append(items, string(n.Data))
		}
		return strings.Join(items, ","), nil
	}
	return "", fmt.Errorf("want %s, not %s", want, kindName(v.Kind))
}

// kindName names a TOML value's type, with its article.
func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a float"
	case unstable.Bool:
		return "a boolean"
	case unstable.Array:
		return "an array"
	case unstable.InlineTable:
		return "an inline table"
	}
	return "a date or time"
}

// applyConfigFile sets cfg from a configuration file and returns the line
// of each key it set; any problem fails it, with every problem listed.
func applyConfigFile(cfg *raftplane.Config, file string) (map[string]int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-config: %w", err)
	}
	settings, problems := parseConfigFile(file, data)
	lines := map[string]int{}
	for _, s := range settings {
		if err := s.opt.Value(cfg).Set(s.text); err != nil {
			problems = append(problems, &fileProblem{file: file, line: s.line, key: s.opt.Name, err: err})
			continue
		}
		lines[s.opt.Name] = s.line
	}
	return lines, errors.Join(problems...)
}

// suggest names the option closest to an unknown key, when one is close.
func suggest(key string) string {
	best, bestD := "", 4 // further than 3 edits is no suggestion
	for _, o := range raftplane.Options() {
		if d := editDistance(key, o.Name); d < bestD {
			best, bestD = o.Name, d
		}
	}
	if best == "" {
		// "http-addr" for "http": the longest option the key starts with.
		for _, o := range raftplane.Options() {
			if strings.HasPrefix(key, o.Name+"-") && len(o.Name) > len(best) {
				best = o.Name
			}
		}
	}
	if best == "" {
		return " (see `raftplane -help` for the keys)"
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// runConfig is `raftplane config check FILE` and `raftplane config
// defaults`.
func runConfig(args []string, stdout, stderr io.Writer) error {
	const usage = "usage: raftplane config check FILE | raftplane config defaults"
	switch {
	case len(args) == 2 && args[0] == "check":
		return checkConfigFile(args[1], stdout)
	case len(args) == 1 && args[0] == "defaults":
		return writeDefaults(stdout)
	case len(args) == 1 && (args[0] == "-help" || args[0] == "-h" || args[0] == "help"):
		fmt.Fprintln(stderr, usage)
		return nil
	}
	return errors.New(usage)
}

// checkConfigFile prints every problem of a file, each naming its key and
// line, and fails when there is one. It checks the file alone, over the
// defaults (not the environment), and does not read the files it names.
func checkConfigFile(file string, stdout io.Writer) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	settings, problems := parseConfigFile(file, data)
	cfg := raftplane.DefaultConfig()
	lines := map[string]int{}
	for _, s := range settings {
		if err := s.opt.Value(&cfg).Set(s.text); err != nil {
			problems = append(problems, &fileProblem{file: file, line: s.line, key: s.opt.Name, err: err})
			continue
		}
		lines[s.opt.Name] = s.line
	}
	// The settings that parsed, checked together (one that did not parse
	// kept its default, so it adds nothing here).
	for _, e := range flatten(cfg.Validate()) {
		if e == nil {
			continue
		}
		var oe *raftplane.OptionError
		if errors.As(e, &oe) {
			problems = append(problems, &fileProblem{file: file, line: lines[oe.Option], key: oe.Option, err: oe.Err})
		} else {
			problems = append(problems, &fileProblem{file: file, err: e})
		}
	}
	sort.SliceStable(problems, func(i, j int) bool {
		return problems[i].(*fileProblem).line < problems[j].(*fileProblem).line
	})
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %d problem(s)", file, len(problems))
	}
	fmt.Fprintf(stdout, "%s: ok\n", file)
	return nil
}

// writeDefaults prints a configuration file of every key at its default,
// commented out, under its help, by group.
func writeDefaults(w io.Writer) error {
	var b strings.Builder
	b.WriteString(`# raftplane configuration file (TOML): use it with raftplane -config FILE.
# Every key is a flag of raftplane -help, without the dash. The values below are
# the defaults, commented out: uncomment and change what you need.
# A flag on the command line wins over a RAFTPLANE_* environment variable, which
# wins over this file, which wins over the defaults.
# Check a file with: raftplane config check FILE
`)
	defaults := raftplane.DefaultConfig()
	for _, g := range raftplane.Groups() {
		fmt.Fprintf(&b, "\n# ---- %s ----\n", g)
		for _, opt := range raftplane.Options() {
			if opt.Group != g {
				continue
			}
			b.WriteString("\n")
			for _, l := range wrap(opt.Usage, 78) {
				b.WriteString("# " + l + "\n")
			}
			fmt.Fprintf(&b, "# %s = %s\n", opt.Name, tomlValue(opt.Value(&defaults)))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// tomlValue writes a value as a TOML literal of its type.
func tomlValue(v raftplane.Value) string {
	s := v.String()
	switch v.Type() {
	case "int", "bool":
		return s
	case "list":
		if s == "all" || s == "none" { // -client-methods' keywords
			return tomlString(s)
		}
		var items []string
		for _, it := range strings.Split(s, ",") {
			if it != "" {
				items = append(items, tomlString(it))
			}
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return tomlString(s)
}

// tomlString quotes s as a TOML basic string; JSON's escapes are TOML's.
func tomlString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSpace(b.String())
}

// wrap splits text into lines of at most width bytes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}
