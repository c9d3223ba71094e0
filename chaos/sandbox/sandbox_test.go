package sandbox_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftplane/raftplane/chaos/sandbox"
)

// Helper modes: the test binary re-executed by the tests below.
const envMode = "RAFTPLANE_SANDBOX_TEST_MODE"

var sb sandbox.Result

func TestMain(m *testing.M) {
	if mode := os.Getenv(envMode); mode != "" {
		helper(mode)
		return
	}
	os.Exit(sandbox.Run(func(r sandbox.Result) int { sb = r; return m.Run() }))
}

func helper(mode string) {
	r, err := sandbox.Enter()
	switch mode {
	case "report": // print what Enter said, whatever it was
		fmt.Printf("inside=%v nested=%v err=%v\n", r.Inside, r.Nested, err)
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(90)
	}
	if !r.Inside {
		if !r.Available {
			fmt.Fprintln(os.Stderr, "helper:", r.Reason)
			os.Exit(91)
		}
		os.Exit(r.ExitCode)
	}
	switch {
	case mode == "leak":
		// Start a process in a network namespace, report, and exit
		// without stopping it: the kernel must kill it with us.
		if out, err := exec.Command("ip", "netns", "add", "leak").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "ip netns add: %v %s\n", err, out)
			os.Exit(92)
		}
		cmd := exec.Command("ip", "netns", "exec", "leak", "sleep", "60")
		cmd.Stdout = os.Stdout // the test's pipe: EOF only once sleep is gone
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(93)
		}
		fmt.Println("started", cmd.Process.Pid)
		os.Exit(0)
	case strings.HasPrefix(mode, "exit"):
		code, _ := strconv.Atoi(strings.TrimPrefix(mode, "exit"))
		os.Exit(code)
	case mode == "wait":
		fmt.Println("ready")
		time.Sleep(30 * time.Second)
		os.Exit(0)
	}
	os.Exit(94)
}

// helperCmd runs the test binary in a helper mode, with the sandbox marker
// replaced by marker ("" removes it: a fresh sandbox).
func helperCmd(t *testing.T, mode, marker string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, sandbox.EnvMarker+"=") && !strings.HasPrefix(kv, "GORACE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if marker != "" {
		cmd.Env = append(cmd.Env, sandbox.EnvMarker+"="+marker)
	}
	// Under -race, skip the race runtime's 1 s sleep at exit.
	cmd.Env = append(cmd.Env, envMode+"="+mode, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.Stderr = os.Stderr
	return cmd
}

func TestInside(t *testing.T) {
	sb.Require(t)
	t.Logf("%s; notes: %v", sb, sb.Notes)
	if pid := os.Getpid(); pid != 1 {
		t.Errorf("pid %d, want 1 (first process of the PID namespace)", pid)
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var runFS, procOK bool
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		sep := 6
		for sep < len(f) && f[sep] != "-" {
			sep++
		}
		if sep+1 >= len(f) {
			continue
		}
		if f[4] == "/run" {
			runFS = f[sep+1] == "tmpfs"
		}
		if f[4] == "/proc" && f[sep+1] == "proc" {
			procOK = true
		}
	}
	if !runFS || !procOK {
		t.Errorf("mounts: /run tmpfs %v, /proc proc %v", runFS, procOK)
	}
	// /proc is this namespace's: PID 1 is us.
	if comm, err := os.ReadFile("/proc/1/cmdline"); err != nil || !strings.HasPrefix(string(comm), os.Args[0]+"\x00") {
		t.Errorf("/proc/1/cmdline = %q, %v", comm, err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 || ifs[0].Name != "lo" || ifs[0].Flags&net.FlagUp == 0 {
		t.Errorf("interfaces %v, want lo, up, alone", ifs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // lo works
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		t.Errorf("dial on lo: %v", err)
	} else {
		c.Close()
	}
	ln.Close()
}

func TestNested(t *testing.T) {
	sb.Require(t)
	out, err := helperCmd(t, "report", os.Getenv(sandbox.EnvMarker)).Output()
	if err != nil || strings.TrimSpace(string(out)) != "inside=true nested=true err=<nil>" {
		t.Errorf("nested Enter: %q %v", out, err)
	}
}

func TestStaleMarker(t *testing.T) {
	sb.Require(t)
	for _, marker := range []string{"child:3:0", "ready:pid:[1]", "bogus"} {
		out, err := helperCmd(t, "report", marker).Output()
		s := strings.TrimSpace(string(out))
		if err != nil || !strings.HasPrefix(s, "inside=false nested=false err=sandbox:") {
			t.Errorf("marker %q: %q %v, want an error", marker, s, err)
		} else {
			t.Logf("marker %q: %s", marker, s)
		}
	}
}

func TestExitCode(t *testing.T) {
	sb.Require(t)
	for _, code := range []int{0, 7} {
		err := helperCmd(t, "exit"+strconv.Itoa(code), "").Run()
		got := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			got = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if got != code {
			t.Errorf("child exited %d, parent %d", code, got)
		}
	}
}

// TestNoLeak starts a sandbox (nested in ours) that starts `sleep 60` in a
// network namespace and exits at once. The sleep holds the write end of a
// pipe: EOF proves it died with the sandbox.
func TestNoLeak(t *testing.T) {
	sb.Require(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := helperCmd(t, "leak", "")
	cmd.Stdout = pw
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	done := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(pr)
		done <- string(b)
	}()
	select {
	case out := <-done:
		if !strings.HasPrefix(out, "started ") {
			t.Errorf("helper said %q", out)
		}
		t.Logf("sandbox child said %q; everything was gone %s later", strings.TrimSpace(out), time.Since(t0).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Error("the sleep outlived its sandbox (pipe still open after 5 s)")
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("leak helper: %v", err)
	}
}

// TestSignalForwarded: SIGTERM to the parent reaches the sandbox child.
func TestSignalForwarded(t *testing.T) {
	sb.Require(t)
	cmd := helperCmd(t, "wait", "")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	t0 := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Logf("after SIGTERM: %v in %s", err, time.Since(t0).Round(time.Millisecond))
		if err == nil {
			t.Error("helper exited 0 after SIGTERM")
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Error("SIGTERM was not forwarded: helper still running after 5 s")
	}
}

type fakeTB struct{ skipped, failed string }

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestRequire(t *testing.T) {
	r := sandbox.Result{Reason: "clone: operation not permitted"}
	t.Setenv("CI", "")
	var f fakeTB
	r.Require(&f)
	if f.skipped == "" || f.failed != "" || !strings.Contains(f.skipped, "operation not permitted") {
		t.Errorf("without CI: %+v", f)
	}
	t.Setenv("CI", "true")
	f = fakeTB{}
	r.Require(&f)
	if f.failed == "" || f.skipped != "" {
		t.Errorf("with CI=true: %+v", f)
	}
	f = fakeTB{}
	sandbox.Result{Inside: true, Available: true}.Require(&f)
	if f != (fakeTB{}) {
		t.Errorf("inside: %+v", f)
	}
}
