// Package sandbox runs a test binary inside fresh Linux namespaces (network,
// mount and PID, plus a user namespace when not root), so that nothing the
// chaos suite builds or starts can touch the host's network or outlive the
// run.
//
// A TestMain calls Enter. Outside the sandbox, Enter re-executes the current
// binary (/proc/self/exe, same arguments and environment, plus EnvMarker)
// with CLONE_NEWNET|CLONE_NEWNS|CLONE_NEWPID, waits for it and returns its
// exit code; the caller exits with it. Inside, Enter makes the mount tree
// private, mounts a tmpfs on /run (ip netns needs /run/netns), a fresh proc
// on /proc and, best effort, a sysfs on /sys, brings lo up and returns
// Inside=true; the caller runs its tests there.
//
//	func TestMain(m *testing.M) {
//		r, err := sandbox.Enter()
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		if !r.Inside && r.Available {
//			os.Exit(r.ExitCode) // the tests ran inside, in the child
//		}
//		sb = r // tests call sb.Require(t): skip, or fail when CI=true
//		os.Exit(m.Run())
//	}
//
// # Lifetime
//
// The sandbox's first process is PID 1 of its PID namespace. When it exits,
// for whatever reason (tests done, panic, test timeout, SIGKILL), the kernel
// kills every other process in the namespace, and with the last of them the
// network namespaces go away too. Its parent holds it with Pdeathsig
// SIGKILL, started and waited from one locked OS thread (golang/go#27505:
// Pdeathsig fires when the creating thread exits, not the process), and
// forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to it.
//
// # Reaping
//
// PID 1 inherits orphaned processes, and the sandbox does not run a
// reaper. None is needed for the suite: every process the harness starts is
// its own child through os/exec and is waited by it (`ip netns exec` execs
// the node binary, so the node is that child, not a grandchild), and ip,
// nft, tc and ss do not leave daemons behind. A catch-all reaper
// (wait4(-1)) would be harmful: it would steal exit statuses from
// exec.Cmd.Wait, which then fails with ECHILD. An orphan that does turn into a
// zombie costs one PID slot until the sandbox exits, which frees it.
//
// # Nested processes
//
// Once set up, the first process changes EnvMarker to name its PID
// namespace, so that a process it starts (a node that is the test binary
// itself, say) and that calls Enter gets Inside=true and Nested=true without
// setting anything up again. Enter refuses a marker that does not match where
// the process really is (a stale variable in a shell, for example), so a
// test cannot mistake the host for the sandbox.
package sandbox

import (
	"fmt"
	"os"
)

// EnvMarker is the environment variable that tells a process it runs
// inside the sandbox. Its value is private to this package.
const EnvMarker = "RAFTPLANE_CHAOS_SANDBOX"

// Result says where Enter left the process.
type Result struct {
	// Inside is true when this process runs inside the sandbox: the caller
	// goes on to run its tests.
	Inside bool
	// Nested is true (with Inside) in a process started by the sandbox's
	// first process: nothing was set up again.
	Nested bool
	// Available is false when the sandbox could not be created; Reason
	// says why, and the caller runs on the host and must skip (or, with
	// CI=true, fail) whatever needs the sandbox. It is true when Inside,
	// and in the parent after the child ran.
	Available bool
	// Reason says why the sandbox is unavailable.
	Reason string
	// ExitCode is, in the parent, the child's exit status (128+signal if
	// a signal killed it): the caller exits with it.
	ExitCode int
	// Rootless is true when a user namespace maps the caller's uid to root
	// (the caller was not root, or root without the capabilities to create
	// namespaces directly).
	Rootless bool
	// Notes are non-fatal set-up remarks (a sysfs that could not be
	// mounted, for example).
	Notes []string
}

// TB is the part of testing.TB that Require needs.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// CI reports whether the environment says it is a CI run (CI=true), where a
// missing sandbox is a failure rather than a skip.
func CI() bool { return os.Getenv("CI") == "true" }

// Require skips the test when the process is not inside the sandbox, or
// fails it when CI=true.
func (r Result) Require(tb TB) {
	tb.Helper()
	if r.Inside {
		return
	}
	msg := fmt.Sprintf("chaos sandbox unavailable: %s", r.Reason)
	if r.Reason == "" {
		msg = "chaos sandbox: not inside the sandbox (did TestMain call sandbox.Enter?)"
	}
	if CI() {
		tb.Fatalf("%s (CI=true: failing instead of skipping)", msg)
		return
	}
	tb.Skipf("%s", msg)
}

// String is a one-line description for logs.
func (r Result) String() string {
	switch {
	case r.Inside && r.Nested:
		return "inside the chaos sandbox (nested process)"
	case r.Inside:
		s := "inside the chaos sandbox"
		if r.Rootless {
			s += " (rootless: user namespace)"
		}
		return s
	case r.Available:
		return fmt.Sprintf("chaos sandbox child exited with code %d", r.ExitCode)
	default:
		return "chaos sandbox unavailable: " + r.Reason
	}
}

// Run is the body of a TestMain: it enters the sandbox and returns the exit
// code to leave with. In the parent that is the child's code (the tests ran
// inside); inside, or where the sandbox is unavailable, it calls run with
// where Enter left the process and returns its code.
func Run(run func(Result) int) int {
	r, err := Enter()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if !r.Inside && r.Available {
		return r.ExitCode
	}
	return run(r)
}
