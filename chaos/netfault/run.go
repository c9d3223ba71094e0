package netfault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// CommandTimeout bounds every command the package runs.
const CommandTimeout = 5 * time.Second

// Record is one command the package ran, for the journal.
type Record struct {
	Cmd    string        // the command line, shell-quoted
	Start  time.Time     // when it started
	Dur    time.Duration // how long it took
	Output string        // combined stdout and stderr, trimmed
	Err    error         // nil on success
}

// String renders the record as one journal line.
func (r Record) String() string {
	s := fmt.Sprintf("%s (%s)", r.Cmd, r.Dur.Round(10*time.Microsecond))
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// ErrUnsupported is wrapped by faults the machine cannot express (see Caps).
var ErrUnsupported = errors.New("not supported on this machine")

// CmdError is a command that failed.
type CmdError struct {
	Cmd    string
	Output string
	Err    error
}

func (e *CmdError) Error() string {
	if e.Output == "" {
		return fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, e.Output)
}

func (e *CmdError) Unwrap() error { return e.Err }

// quote renders argv as a shell command line (for reading and replaying,
// never for execution: the package runs commands without a shell).
func quote(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+%", r))
		}) < 0 {
			parts[i] = a
			continue
		}
		parts[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(parts, " ")
}

// exe runs one command with CommandTimeout and returns its record.
func exe(argv ...string) Record {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	r := Record{Cmd: quote(argv), Start: time.Now()}
	err := cmd.Run()
	r.Dur = time.Since(r.Start)
	r.Output = strings.TrimSpace(out.String())
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", CommandTimeout, ctx.Err())
	}
	if err != nil {
		r.Err = &CmdError{Cmd: r.Cmd, Output: r.Output, Err: err}
	}
	return r
}

// batch collects the commands of one operation: it runs them, journals
// them, and remembers the command lines and the first error.
type batch struct {
	n    *Net
	cmds []string
	err  error
}

// run runs argv; a failure is recorded as the batch's error unless one of
// the tolerate substrings appears in the command's output.
func (b *batch) run(argv ...string) Record {
	r := exe(argv...)
	b.cmds = append(b.cmds, r.Cmd)
	b.n.journal(r)
	if r.Err != nil && b.err == nil {
		b.err = r.Err
	}
	return r
}

// tolerant runs argv and ignores a failure whose output contains one of
// the given substrings (an object already gone, for example).
func (b *batch) tolerant(tolerate []string, argv ...string) Record {
	r := exe(argv...)
	b.cmds = append(b.cmds, r.Cmd)
	b.n.journal(r)
	if r.Err != nil && !contains(r.Output, tolerate) && b.err == nil {
		b.err = r.Err
	}
	return r
}

func contains(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// Output of ip, tc and nft when the object to remove is already gone.
var gone = []string{
	"No such file or directory",
	"Cannot find device",
	// the host end of a veth whose namespace end went with its namespace:
	// the kernel removes it asynchronously, so it can vanish mid-delete
	"No such device",
	"does not exist",
	"Cannot delete qdisc with handle of zero",
	"No such process",
	"Invalid handle",
}
