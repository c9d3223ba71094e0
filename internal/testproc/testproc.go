//go:build unix

// Package testproc runs the real raftplane binary (or another command of
// this module) for tests: build it once per test binary, start it with
// arguments, copy its output line by line into the test log, wait until it
// is ready on GET /readyz, stop it gracefully (SIGTERM, then SIGKILL and a
// test error after a timeout) and kill it at the test's end whatever
// happened. The interop, deploy and stranger tests start their processes
// through it.
package testproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Main is the import path of the raftplane command.
const Main = "github.com/raftplane/raftplane/cmd/raftplane"

// Defaults for Options and WaitReady.
const (
	// BuildTimeout bounds one go build.
	BuildTimeout = 5 * time.Minute
	// DefaultStopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	DefaultStopTimeout = 10 * time.Second
	// PollEvery is how often WaitReady asks.
	PollEvery = 50 * time.Millisecond
)

// builds holds one build per package, shared by every test of the binary;
// the folder is removed by Cleanup (call it from TestMain), or left in the
// system's temporary folder.
var builds = struct {
	sync.Mutex
	dir  string
	pkgs map[string]*build
}{pkgs: map[string]*build{}}

type build struct {
	once sync.Once
	path string
	err  error
}

// Build builds the package pkg of this module (Main for raftplane) once per
// test binary and returns the binary's path. A failed build fails t (every
// test asking for it, with the compiler's output).
func Build(t testing.TB, pkg string) string {
	t.Helper()
	path, err := BuildErr(pkg)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// BuildErr is Build for callers without a test (TestMain).
func BuildErr(pkg string) (string, error) {
	builds.Lock()
	b := builds.pkgs[pkg]
	if b == nil {
		b = &build{}
		builds.pkgs[pkg] = b
	}
	builds.Unlock()
	b.once.Do(func() { b.path, b.err = goBuild(pkg) })
	return b.path, b.err
}

func goBuild(pkg string) (string, error) {
	goBin, err := exec.LookPath("go") // go test puts $GOROOT/bin first on PATH
	if err != nil {
		return "", fmt.Errorf("testproc: no go command on PATH: %w", err)
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	builds.Lock()
	if builds.dir == "" {
		builds.dir, err = os.MkdirTemp("", "testproc-")
	}
	dir := builds.dir
	builds.Unlock()
	if err != nil {
		return "", fmt.Errorf("testproc: %w", err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testproc: go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// moduleRoot is the folder of this module's go.mod, found from this file.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("testproc: cannot locate the module")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("testproc: no go.mod at %s: %w", root, err)
	}
	return root, nil
}

// Cleanup removes the built binaries; TestMain calls it after m.Run.
func Cleanup() {
	builds.Lock()
	defer builds.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir = ""
		builds.pkgs = map[string]*build{}
	}
}

// Options say how to start a process. Only Name is needed.
type Options struct {
	// Name prefixes each logged line (a node name).
	Name string
	// Args are the command-line arguments.
	Args []string
	// Env is added to the test process's environment.
	Env []string
	// Dir is the working folder; empty: the test's.
	Dir string
	// Output, if set, gets a copy of everything the process writes (a log
	// file kept across restarts, say), besides the test log.
	Output io.Writer
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL and a
	// test error; 0 means DefaultStopTimeout.
	StopTimeout time.Duration
	// Quiet keeps the output out of the test log (Output and Proc.Output
	// still get it).
	Quiet bool
}

// Proc is one running process. Its methods are safe for concurrent use.
type Proc struct {
	Name string
	opts Options
	cmd  *exec.Cmd
	out  *lines

	exited chan struct{} // closed once the process has exited
	err    error         // its exit error, set before exited is closed

	mu       sync.Mutex
	stopping bool // Stop or Kill was called: the exit is planned
}

// Start starts bin with opts and returns once it runs. At the test's end
// the process is stopped (Stop) if it still runs, and a process that exited
// without Stop or Kill is a test error (a crash).
func Start(t testing.TB, bin string, opts Options) *Proc {
	t.Helper()
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	p := &Proc{Name: opts.Name, opts: opts, exited: make(chan struct{})}
	p.out = &lines{t: t, prefix: opts.Name, quiet: opts.Quiet, copy: opts.Output}
	p.cmd = exec.Command(bin, opts.Args...)
	p.cmd.Dir = opts.Dir
	if len(opts.Env) > 0 {
		p.cmd.Env = append(os.Environ(), opts.Env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// A child that keeps the output open must not hold up Wait for ever.
	p.cmd.WaitDelay = opts.StopTimeout
	t.Logf("%s: starting %s %q", opts.Name, filepath.Base(bin), opts.Args)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", opts.Name, err)
	}
	// Owned by the process: it returns when the process exits, which Stop,
	// Kill or the cleanup below bring about.
	go func() {
		p.err = p.cmd.Wait()
		p.out.flush()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if p.Exited() && !p.planned() {
			t.Errorf("%s: exited before the test stopped it: %v", p.Name, p.err)
		}
		p.Stop(t)
	})
	return p
}

// Run runs bin with opts to its end, for a run that must exit by itself
// (a failing start, -help): it returns the output and the exit error (nil
// for status 0). A process still running after timeout is killed and
// fails the test.
func Run(t testing.TB, bin string, timeout time.Duration, opts Options) (string, error) {
	t.Helper()
	p := Start(t, bin, opts)
	p.mu.Lock()
	p.stopping = true // its exit is the point
	p.mu.Unlock()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.Kill(t)
		t.Fatalf("%s: still running after %v; killed", p.Name, timeout)
	}
	return p.Output(), p.err
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.exited }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Err is the exit error, once Done is closed (nil for status 0).
func (p *Proc) Err() error {
	<-p.exited
	return p.err
}

// Crashed reports whether the process exited without Stop or Kill.
func (p *Proc) Crashed() bool { return p.Exited() && !p.planned() }

// Output is everything the process has written so far.
func (p *Proc) Output() string { return p.out.String() }

func (p *Proc) planned() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopping
}

// Stop sends SIGTERM and waits for the exit; after StopTimeout it sends
// SIGKILL and reports the hung shutdown as a test error. It returns the
// exit error. Safe to call more than once, and after Kill.
func (p *Proc) Stop(t testing.TB) error {
	t.Helper()
	return p.signal(t, syscall.SIGTERM)
}

// Kill is kill -9: no graceful shutdown. It waits for the exit.
func (p *Proc) Kill(t testing.TB) {
	t.Helper()
	_ = p.signal(t, syscall.SIGKILL)
}

func (p *Proc) signal(t testing.TB, sig syscall.Signal) error {
	t.Helper()
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	if p.Exited() {
		return p.err
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("%s: %v: %v", p.Name, sig, err)
	}
	timer := time.NewTimer(p.opts.StopTimeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		return p.err
	case <-timer.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	t.Errorf("%s: did not exit within %v of %v; killed", p.Name, p.opts.StopTimeout, sig)
	return p.err
}

// WaitReady polls GET base+"/readyz" until it answers 200, failing the
// test when timeout passes or p exits first (p may be nil: another
// process's readiness).
func WaitReady(t testing.TB, p *Proc, base string, timeout time.Duration) {
	t.Helper()
	WaitFor(t, p, timeout, base+"/readyz", func() error {
		resp, err := readyClient.Get(base + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s", resp.Status, bytes.TrimSpace(body))
		}
		return nil
	})
}

var readyClient = &http.Client{Timeout: 2 * time.Second}

// WaitFor polls cond every PollEvery until it returns nil, failing the test
// with cond's last error when timeout passes, or at once when p (if not
// nil) exits.
func WaitFor(t testing.TB, p *Proc, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(PollEvery)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if p != nil && p.Exited() {
			t.Fatalf("%s: exited while waiting for %s: %v (last: %v)", p.Name, what, p.err, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		<-tick.C
	}
}

// NewLineLog returns a writer that sends each complete line written to it
// to t's log, prefixed: for the output of a process started otherwise
// (one that needs a process group, say). Call Flush once the process has
// exited, before the test ends.
func NewLineLog(t testing.TB, prefix string) *LineLog {
	return &LineLog{l: &lines{t: t, prefix: prefix}}
}

// LineLog is NewLineLog's writer.
type LineLog struct{ l *lines }

func (w *LineLog) Write(b []byte) (int, error) { return w.l.Write(b) }

// Flush logs an incomplete last line.
func (w *LineLog) Flush() { w.l.flush() }

// lines writes each complete line to the test log, prefixed, keeps all of
// the output, and copies it to copy when set.
type lines struct {
	t      testing.TB
	prefix string
	quiet  bool
	copy   io.Writer

	mu   sync.Mutex
	part []byte // an incomplete last line
	all  bytes.Buffer
}

func (l *lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(b)
	if l.copy != nil {
		_, _ = l.copy.Write(b)
	}
	if l.quiet {
		return len(b), nil
	}
	l.part = append(l.part, b...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		l.t.Logf("%s: %s", l.prefix, bytes.TrimRight(l.part[:i], "\r"))
		l.part = l.part[i+1:]
	}
	return len(b), nil
}

func (l *lines) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.part) > 0 && !l.quiet {
		l.t.Logf("%s: %s", l.prefix, l.part)
	}
	l.part = nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}
