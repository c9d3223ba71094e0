package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "raftplane.toml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestParseFlags_Precedence: a flag wins over the environment, which wins
// over the file, which wins over the default; each source alone sets it.
func TestParseFlags_Precedence(t *testing.T) {
	const file = "keepalive = \"11s\"\nmax-message-size = 2048\njoin = [\"10.0.0.1:7946\", \"10.0.0.2:7946\"]\nno-sync = true\n"
	tests := []struct {
		name   string
		file   string // "" no -config
		env    map[string]string
		args   []string
		check  func(c raftplane.Config) any
		want   any
		source string // where explain says the keepalive came from
	}{
		{name: "default", check: func(c raftplane.Config) any { return c.Hub.KeepAliveInterval }, want: 15 * time.Second},
		{name: "file over default", file: file, check: func(c raftplane.Config) any { return c.Hub.KeepAliveInterval }, want: 11 * time.Second, source: ":1"},
		{name: "env over file", file: file, env: map[string]string{"RAFTPLANE_KEEPALIVE": "12s"},
			check: func(c raftplane.Config) any { return c.Hub.KeepAliveInterval }, want: 12 * time.Second, source: "RAFTPLANE_KEEPALIVE"},
		{name: "flag over env and file", file: file, env: map[string]string{"RAFTPLANE_KEEPALIVE": "12s"}, args: []string{"-keepalive", "13s"},
			check: func(c raftplane.Config) any { return c.Hub.KeepAliveInterval }, want: 13 * time.Second, source: "the command line"},
		{name: "env alone", env: map[string]string{"RAFTPLANE_KEEPALIVE": "12s"},
			check: func(c raftplane.Config) any { return c.Hub.KeepAliveInterval }, want: 12 * time.Second},
		{name: "file keeps what the flags leave", file: file, args: []string{"-keepalive", "13s"},
			check: func(c raftplane.Config) any { return c.Hub.MaxMessageSize }, want: 2048},
		{name: "file list", file: file, check: func(c raftplane.Config) any { return c.Join }, want: []string{"10.0.0.1:7946", "10.0.0.2:7946"}},
		{name: "flag list replaces the file's", file: file, args: []string{"-join", "10.0.0.9:7946"},
			check: func(c raftplane.Config) any { return c.Join }, want: []string{"10.0.0.9:7946"}},
		{name: "file bool, env turns it off", file: file, env: map[string]string{"RAFTPLANE_NO_SYNC": "false"},
			check: func(c raftplane.Config) any { return c.Cluster.NoSync }, want: false},
		{name: "RAFTPLANE_CONFIG names the file", env: map[string]string{"RAFTPLANE_CONFIG": "FILE"},
			check: func(c raftplane.Config) any { return c.Hub.KeepAliveInterval }, want: 11 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, file)
			args := tt.args
			if tt.file != "" {
				args = append([]string{"-config", path}, args...)
			}
			for k, v := range tt.env {
				t.Setenv(k, strings.ReplaceAll(v, "FILE", path))
			}
			o, err := parseFlags(args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.check(o.cfg); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if tt.source != "" && !strings.HasSuffix(o.source["keepalive"], tt.source) {
				t.Fatalf("source of keepalive %q, want one ending in %q", o.source["keepalive"], tt.source)
			}
		})
	}
}

// TestRun_ConfigFileErrors: a bad file stops the start with the key and
// line of each problem; a value the file sets that Validate refuses says
// it came from the file.
func TestRun_ConfigFileErrors(t *testing.T) {
	path := writeFile(t, "data = \""+filepath.ToSlash(t.TempDir())+"\"\nkeepalive = 15\nvoter = 3\n")
	err := run(t.Context(), []string{"-config", path}, io.Discard, nil)
	for _, want := range []string{path + ":2: keepalive: want a duration in quotes", path + ":3: voter: unknown key (did you mean voters?)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want %q", err, want)
		}
	}
	path = writeFile(t, "data = \""+filepath.ToSlash(t.TempDir())+"\"\n\nvoters = 2\n")
	err = run(t.Context(), []string{"-config", path}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "-voters: 2 must be odd, from 1 to 7 (set in "+path+":3)") {
		t.Fatalf("err = %v", err)
	}
	if err := run(t.Context(), []string{"-config", path + ".missing"}, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "-config") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestConfigCheck: `raftplane config check` names the key and line of
// every problem, and exits non-zero; a good file is "ok".
func TestConfigCheck(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // lines of the output, "F" standing for the file name
	}{
		{name: "good", file: "http = \"127.0.0.1:6000\"\nvoters = 5\ntransports = [\"websockets\", \"sse\"]\n", want: []string{"F: ok"}},
		{name: "unknown key", file: "# comment\nhttp-addr = \"x:1\"\n", want: []string{"F:2: http-addr: unknown key (did you mean http?)"}},
		{name: "far from any key", file: "colour = \"blue\"\n", want: []string{"F:1: colour: unknown key (see `raftplane -help` for the keys)"}},
		{name: "wrong types", file: "max-message-size = \"32k\"\nkeepalive = 15\ninsecure = \"yes\"\njoin = [1]\ndata = 3\n", want: []string{
			"F:1: max-message-size: want an integer, not a string",
			`F:2: keepalive: want a duration in quotes, like "15s", not an integer`,
			"F:3: insecure: want true or false, not a string",
			`F:4: join: want a list of strings, like ["a", "b"]; 1 is an integer`,
			"F:5: data: want a string in quotes, not an integer"}},
		{name: "bad values", file: "keepalive = \"soon\"\ntransports = \"pigeon\"\n", want: []string{
			`F:1: keepalive: "soon" is not a duration (like 500ms, 15s, 2m)`,
			`F:2: transports: unknown transport "pigeon": want websockets, sse or longpolling`}},
		{name: "set twice", file: "voters = 3\nvoters = 5\n", want: []string{"F:2: voters: set twice (first on line 1)"}},
		{name: "sections", file: "[hub]\nkeepalive = \"1s\"\n", want: []string{"F:1: [hub]: there are no sections: every key is a flag name at the top level"}},
		{name: "not TOML", file: "voters = 3\nhttp = \n", want: []string{"F:2: not valid TOML"}},
		{name: "validation, with lines", file: "voters = 2\n\nkeepalive = \"40s\"\n", want: []string{
			"F:1: voters: 2 must be odd, from 1 to 7",
			"F:3: keepalive: 40s must be less than -client-timeout (30s)"}},
		{name: "validation of a default the file makes wrong", file: "client-timeout = \"10s\"\n", want: []string{
			"F: keepalive: 15s must be less than -client-timeout (10s)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.file)
			var out bytes.Buffer
			err := runConfig([]string{"check", path}, &out, io.Discard)
			if (err == nil) != (tt.want[0] == "F: ok") {
				t.Fatalf("err = %v, output:\n%s", err, out.String())
			}
			text := out.String()
			for _, w := range tt.want {
				if !strings.Contains(text, strings.Replace(w, "F", path, 1)) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
		})
	}
	if err := runConfig([]string{"check"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Fatalf("config check without a file: %v", err)
	}
}

// TestConfigDefaults: the defaults file lists every option once, under its
// group, commented out; uncommented, it checks ok and loads to
// DefaultConfig.
func TestConfigDefaults(t *testing.T) {
	var out bytes.Buffer
	if err := runConfig([]string{"defaults"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, o := range raftplane.Options() {
		if n := strings.Count(text, "\n# "+o.Name+" = "); n != 1 {
			t.Errorf("%s appears %d times", o.Name, n)
		}
	}
	uncommented := regexp.MustCompile(`(?m)^# ([a-z0-9-]+ = )`).ReplaceAllString(text, "$1")
	path := writeFile(t, uncommented)
	var check bytes.Buffer
	if err := runConfig([]string{"check", path}, &check, io.Discard); err != nil {
		t.Fatalf("the defaults do not check: %v\n%s", err, check.String())
	}
	cfg := raftplane.DefaultConfig()
	if _, err := applyConfigFile(&cfg, path); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, raftplane.DefaultConfig()) {
		t.Fatalf("the defaults file loads to\n%+v\nnot\n%+v", cfg, raftplane.DefaultConfig())
	}
}

// TestUsage_GroupsFlags: -help lists the flags by area, in order, each
// once.
func TestUsage_GroupsFlags(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-help"}, &out, nil); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	last := -1
	for _, g := range append([]raftplane.Group{"General"}, raftplane.Groups()...) {
		i := strings.Index(text, "\n"+string(g)+":\n")
		if i < 0 || i < last {
			t.Fatalf("group %q missing or out of order:\n%s", g, text)
		}
		last = i
	}
	for _, o := range raftplane.Options() {
		if n := len(regexp.MustCompile(`(?m)^  -`+regexp.QuoteMeta(o.Name)+`( |$)`).FindAllString(text, -1)); n != 1 {
			t.Errorf("-%s listed %d times", o.Name, n)
		}
	}
	if !strings.Contains(text, "  -voters int\n") || !strings.Contains(text, "(default 3)") || !strings.Contains(text, "  -insecure\n") {
		t.Fatalf("flag lines not in flag's format:\n%s", text)
	}
}

// TestREADME_FlagsAndConfigExample: the README's flag table names every
// flag, and its configuration file example checks.
func TestREADME_FlagsAndConfigExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, o := range raftplane.Options() {
		if !strings.Contains(readme, "`-"+o.Name+"`") {
			t.Errorf("README's Flags table lacks `-%s`", o.Name)
		}
	}
	m := regexp.MustCompile("(?s)```toml\n(# /etc/raftplane.toml\n.*?)```").FindStringSubmatch(readme)
	if m == nil {
		t.Fatal("README has no configuration file example")
	}
	var out bytes.Buffer
	if err := runConfig([]string{"check", writeFile(t, m[1])}, &out, io.Discard); err != nil {
		t.Fatalf("README's example: %v\n%s", err, out.String())
	}
}
