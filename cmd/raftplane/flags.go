package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/raftplane/raftplane"
)

// options is what the command line asks for: the node's Config, and the
// flags of the command itself.
type options struct {
	cfg        raftplane.Config
	configFile string // -config
	version    bool   // -version: print it and exit (version.go)
	// source says where each option not left at its default came from:
	// "the command line", "RAFTPLANE_X" or "FILE:LINE", for errors.
	source map[string]string
}

// The command's own flags, not settings of the node (so no config-file
// keys); -config has an environment variable, -version has none.
const (
	configUsage  = "TOML configuration file: every flag is a key of the same name (see `raftplane config defaults`); flags and RAFTPLANE_* variables override it"
	versionUsage = "print the version, commit and Go version, and exit (also: raftplane version)"
	configEnv    = "RAFTPLANE_CONFIG"
)

// newFlagSet returns the flags of a node, bound to o.
func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("raftplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(stderr) }
	fs.StringVar(&o.configFile, "config", "", configUsage)
	fs.BoolVar(&o.version, "version", false, versionUsage)
	for _, opt := range raftplane.Options() {
		fs.Var(opt.Value(&o.cfg), opt.Name, opt.Usage)
	}
	return fs
}

// parseFlags fills a Config from, in order of precedence, the command line,
// the environment, the -config file and the defaults.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	// First pass: -config, -version, and which flags the command line sets.
	first := &options{cfg: raftplane.DefaultConfig()}
	fs := newFlagSet(first, stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))
	}
	if first.version {
		return first, nil
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })

	o := &options{cfg: raftplane.DefaultConfig(), configFile: first.configFile, source: map[string]string{}}
	if !onCommandLine["config"] {
		o.configFile = os.Getenv(configEnv)
	}
	if o.configFile != "" {
		lines, err := applyConfigFile(&o.cfg, o.configFile)
		if err != nil {
			return nil, err
		}
		for key, line := range lines {
			o.source[key] = fmt.Sprintf("%s:%d", o.configFile, line)
		}
	}
	var envErrs []error
	for _, opt := range raftplane.Options() {
		v, ok := os.LookupEnv(opt.Env())
		if !ok || onCommandLine[opt.Name] {
			continue
		}
		if err := opt.Value(&o.cfg).Set(v); err != nil {
			envErrs = append(envErrs, fmt.Errorf("%s=%q: %w", opt.Env(), v, err))
			continue
		}
		o.source[opt.Name] = opt.Env()
	}
	if err := errors.Join(envErrs...); err != nil {
		return nil, err
	}
	// Second pass: the command line, over the file and the environment.
	// It parsed once already, so it cannot fail now.
	second := newFlagSet(o, io.Discard)
	if err := second.Parse(args); err != nil {
		return nil, err
	}
	for name := range onCommandLine {
		o.source[name] = "the command line"
	}
	return o, nil
}

// explain adds to each of Validate's errors where the option came from,
// when it was not the command line: an operator looking at a service's
// flags must learn the bad value is in a file or the environment.
func (o *options) explain(err error) error {
	var out []error
	for _, e := range flatten(err) {
		var oe *raftplane.OptionError
		if errors.As(e, &oe) {
			if src := o.source[oe.Option]; src != "" && src != "the command line" {
				e = fmt.Errorf("%w (set in %s)", e, src)
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// flatten splits errors.Join's error into its parts.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// printUsage is -help: the subcommands, where settings come from, then the
// flags by area.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: raftplane [flags]                          run a node
       raftplane status [-http host:port] [-api-key key]   print a node's view of the cluster
       raftplane config check FILE                 check a configuration file, naming each problem's key and line
       raftplane config defaults                   print a configuration file of the defaults, commented
       raftplane certs ca|node ...                 make the CA and node certificates for TLS
       raftplane snapshot save|inspect|restore ... back up a running node, check a backup, seed a new cluster from one
       raftplane recover -data DIR [-peers ...]    after losing a majority of voters for good: make a stopped survivor lead alone
       raftplane version                           print the version, commit and Go version

Every flag is also an environment variable (-http is RAFTPLANE_HTTP,
-max-message-size is RAFTPLANE_MAX_MESSAGE_SIZE, ...) and a key of the -config
file (http, max-message-size, ...). The command line wins over the environment,
which wins over the file, which wins over the defaults.

General:
`)
	printFlag(w, "config", "file", configUsage, "")
	printFlag(w, "version", "", versionUsage, "")
	defaults := raftplane.DefaultConfig()
	for _, g := range raftplane.Groups() {
		fmt.Fprintf(w, "\n%s:\n", g)
		for _, opt := range raftplane.Options() {
			if opt.Group != g {
				continue
			}
			v := opt.Value(&defaults)
			typ := v.Type()
			if b, ok := v.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				typ = "" // -name alone sets it
			}
			printFlag(w, opt.Name, typ, opt.Usage, defaultText(v))
		}
	}
}

// printFlag prints one flag as flag.PrintDefaults does.
func printFlag(w io.Writer, name, typ, usage, def string) {
	line := "  -" + name
	if typ != "" {
		line += " " + typ
	}
	fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
	if def != "" {
		fmt.Fprintf(w, " (default %s)", def)
	}
	fmt.Fprintln(w)
}

// defaultText is the "(default ...)" of a value; none for an empty or
// false one.
func defaultText(v raftplane.Value) string {
	s := v.String()
	switch {
	case s == "" || (v.Type() == "bool" && s == "false"):
		return ""
	case v.Type() == "string":
		return fmt.Sprintf("%q", s)
	}
	return s
}
