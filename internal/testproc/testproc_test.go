//go:build unix

package testproc

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A shell that logs, waits for SIGTERM and exits 0: Stop ends it
// gracefully, its lines are kept.
func TestStartStop(t *testing.T) {
	p := Start(t, "/bin/sh", Options{Name: "sh", Args: []string{"-c",
		"trap 'echo bye; exit 0' TERM; echo hello; while :; do sleep 0.05; done"}})
	WaitFor(t, p, 10*time.Second, "the greeting", func() error {
		if !strings.Contains(p.Output(), "hello\n") {
			return errString("no greeting yet")
		}
		return nil
	})
	if err := p.Stop(t); err != nil {
		t.Errorf("Stop: %v, want a clean exit", err)
	}
	if !strings.Contains(p.Output(), "bye") || p.Crashed() {
		t.Errorf("output %q, crashed %v", p.Output(), p.Crashed())
	}
	if err := p.Stop(t); err != nil { // a second Stop is harmless
		t.Errorf("second Stop: %v", err)
	}
}

// Run returns the output and the exit error of a process that ends by
// itself.
func TestRun(t *testing.T) {
	out, err := Run(t, "/bin/sh", 10*time.Second, Options{Name: "sh", Args: []string{"-c", "echo out; echo err >&2; exit 3"}})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("err %v, want exit status 3", err)
	}
	if !strings.Contains(out, "out\n") || !strings.Contains(out, "err\n") {
		t.Errorf("output %q", out)
	}
}

// WaitReady waits for a 200 from /readyz.
func TestWaitReady(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-ready:
		default:
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
		}
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	close(ready)
	WaitReady(t, nil, "http://"+l.Addr().String(), 10*time.Second)
}

type errString string

func (e errString) Error() string { return string(e) }
