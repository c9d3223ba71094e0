//go:build linux

package sandbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// Marker values: the parent starts the child with "child:<fd>:<rootless>",
// where fd is the child's end of the status pipe; the child, once set up,
// replaces it with "ready:<pid namespace>" for the processes it starts.
const (
	markChild = "child:"
	markReady = "ready:"
	statusFD  = 3 // ExtraFiles[0]
)

// Enter enters the sandbox; see the package documentation.
func Enter() (Result, error) {
	if v := os.Getenv(EnvMarker); v != "" {
		return inside(v)
	}
	return outside()
}

// outside re-executes the binary in fresh namespaces and waits for it. As
// root it tries without a user namespace first (the plain, most capable
// form), then with one.
func outside() (Result, error) {
	attempts := []bool{true}
	if os.Getuid() == 0 {
		attempts = []bool{false, true}
	}
	var reasons []string
	for _, userns := range attempts {
		r, reason, err := runChild(userns)
		if err != nil {
			return r, err
		}
		if reason == "" {
			return r, nil
		}
		what := "without a user namespace"
		if userns {
			what = "with a user namespace"
		}
		reasons = append(reasons, what+": "+reason)
	}
	return Result{Reason: strings.Join(reasons, "; ")}, nil
}

// runChild starts the sandbox child and waits for it. A non-empty reason
// means the sandbox could not be created (the clone failed, or the child
// could not set itself up) and nothing ran; err is for everything else.
func runChild(userns bool) (r Result, reason string, err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return Result{}, "", fmt.Errorf("sandbox: status pipe: %w", err)
	}
	defer pr.Close()

	flags := uintptr(syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID)
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if userns {
		flags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	attr.Cloneflags = flags
	rootless := "0"
	if userns {
		rootless = "1"
	}
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        os.Args,
		Env:         append(environWithout(EnvMarker), EnvMarker+"="+markChild+strconv.Itoa(statusFD)+":"+rootless),
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		ExtraFiles:  []*os.File{pw},
		SysProcAttr: attr,
	}

	// Pdeathsig is tied to the OS thread that forked the child
	// (golang/go#27505): start and wait on one locked thread, and never
	// unlock it, so the runtime retires the thread only after Wait.
	// Catch termination signals from now on; they are relayed once the
	// child exists.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)

	started := make(chan error, 1)
	waited := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		pw.Close()
		return Result{}, "clone: " + explainClone(err), nil
	}
	pw.Close()

	relayDone := make(chan struct{})
	defer close(relayDone)
	go relay(sigs, cmd.Process, relayDone)

	line, _ := bufio.NewReader(pr).ReadString('\n')
	line = strings.TrimSpace(line)
	werr := <-waited
	code, cerr := exitCode(cmd, werr)
	if line != "ok" {
		switch {
		case strings.HasPrefix(line, "fail "):
			return Result{}, strings.TrimPrefix(line, "fail "), nil
		case cerr != nil:
			return Result{}, "sandbox child: " + cerr.Error(), nil
		default:
			return Result{}, fmt.Sprintf("sandbox child exited with code %d before it was set up", code), nil
		}
	}
	if cerr != nil {
		return Result{Available: true, ExitCode: 1, Rootless: userns}, "", fmt.Errorf("sandbox: waiting for the child: %w", cerr)
	}
	return Result{Available: true, ExitCode: code, Rootless: userns}, "", nil
}

// relay forwards signals to p until done is closed. (Ctrl-C in a
// terminal reaches the child too, through the process group; a second copy
// does no harm.)
func relay(sigs <-chan os.Signal, p *os.Process, done <-chan struct{}) {
	for {
		select {
		case s := <-sigs:
			_ = p.Signal(s)
		case <-done:
			return
		}
	}
}

func exitCode(cmd *exec.Cmd, werr error) (int, error) {
	if cmd.ProcessState == nil {
		return 1, werr
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return 1, werr
	}
	return cmd.ProcessState.ExitCode(), nil
}

func explainClone(err error) string {
	s := err.Error()
	switch {
	case errors.Is(err, syscall.EPERM):
		s += " (namespaces are not permitted here: unprivileged user namespaces may be " +
			"disabled (kernel.unprivileged_userns_clone=0, Ubuntu's AppArmor " +
			"restrict_unprivileged_userns) or blocked by a seccomp profile such as Docker's default; " +
			"run as root (sudo) or allow user namespaces)"
	case errors.Is(err, syscall.ENOSPC):
		s += " (user.max_user_namespaces or a similar limit is 0 or exhausted)"
	case errors.Is(err, syscall.EINVAL):
		s += " (the kernel lacks one of the namespace types)"
	}
	return s
}

func environWithout(key string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, key+"=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// inside handles a process started with the marker set.
func inside(v string) (Result, error) {
	switch {
	case strings.HasPrefix(v, markReady):
		want := strings.TrimPrefix(v, markReady)
		got, err := os.Readlink("/proc/self/ns/pid")
		if err != nil {
			return Result{}, fmt.Errorf("sandbox: %s=%q but the PID namespace cannot be read: %w", EnvMarker, v, err)
		}
		if got != want {
			return Result{}, fmt.Errorf("sandbox: %s=%q but this process is in %s: refusing to run outside the sandbox (unset %s)", EnvMarker, v, got, EnvMarker)
		}
		return Result{Inside: true, Nested: true, Available: true}, nil
	case strings.HasPrefix(v, markChild):
		parts := strings.Split(strings.TrimPrefix(v, markChild), ":")
		if len(parts) != 2 {
			return Result{}, fmt.Errorf("sandbox: malformed %s=%q", EnvMarker, v)
		}
		fd, err := strconv.Atoi(parts[0])
		if err != nil {
			return Result{}, fmt.Errorf("sandbox: malformed %s=%q", EnvMarker, v)
		}
		if os.Getpid() != 1 {
			return Result{}, fmt.Errorf("sandbox: %s=%q but this process is not PID 1 of a new PID namespace: refusing to run outside the sandbox (unset %s)", EnvMarker, v, EnvMarker)
		}
		status := os.NewFile(uintptr(fd), "sandbox-status")
		if status == nil {
			return Result{}, fmt.Errorf("sandbox: no status descriptor %d", fd)
		}
		defer status.Close()
		r := Result{Inside: true, Available: true, Rootless: parts[1] == "1"}
		notes, err := setUp()
		if err != nil {
			fmt.Fprintf(status, "fail %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
			return Result{}, err
		}
		r.Notes = notes
		ns, err := os.Readlink("/proc/self/ns/pid")
		if err != nil {
			fmt.Fprintf(status, "fail reading /proc/self/ns/pid: %v\n", err)
			return Result{}, err
		}
		os.Setenv(EnvMarker, markReady+ns)
		if _, err := fmt.Fprintln(status, "ok"); err != nil {
			return Result{}, fmt.Errorf("sandbox: reporting to the parent: %w", err)
		}
		return r, nil
	default:
		return Result{}, fmt.Errorf("sandbox: unknown %s=%q", EnvMarker, v)
	}
}

// setUp prepares the child's namespaces: private mounts, /run, /proc, lo.
func setUp() (notes []string, err error) {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("sandbox: making / private: %w", err)
	}
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
		return nil, fmt.Errorf("sandbox: mounting a tmpfs on /run: %w", err)
	}
	// ip netns uses /var/run/netns; where /var/run is not the usual
	// symlink to /run, give it a tmpfs too so nothing lands on the host.
	if fi, err := os.Lstat("/var/run"); err == nil && fi.IsDir() {
		if err := syscall.Mount("tmpfs", "/var/run", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
			return nil, fmt.Errorf("sandbox: mounting a tmpfs on /var/run: %w", err)
		}
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("sandbox: mounting proc on /proc: %w", err)
	}
	if err := syscall.Mount("sysfs", "/sys", "sysfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		notes = append(notes, fmt.Sprintf("sysfs not remounted on /sys (%v): /sys/class/net shows the host's interfaces", err))
	}
	if err := loUp(); err != nil {
		return notes, fmt.Errorf("sandbox: bringing lo up: %w", err)
	}
	return notes, nil
}

// loUp sets IFF_UP on lo with SIOCGIFFLAGS/SIOCSIFFLAGS.
func loUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var ifr [40]byte // struct ifreq: name[16], then a union; flags is a short at 16
	copy(ifr[:], "lo")
	if err := ioctl(fd, syscall.SIOCGIFFLAGS, &ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	flags := binary.NativeEndian.Uint16(ifr[16:18]) | syscall.IFF_UP
	binary.NativeEndian.PutUint16(ifr[16:18], flags)
	if err := ioctl(fd, syscall.SIOCSIFFLAGS, &ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}

func ioctl(fd int, req uintptr, ifr *[40]byte) error {
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(ifr)))
	if e != 0 {
		return e
	}
	return nil
}
