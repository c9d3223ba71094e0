package raftplane

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestServeDebug(t *testing.T) {
	lg := slog.New(slog.DiscardHandler)
	if addr, stop, err := serveDebug("", lg); err != nil || addr != "" {
		t.Fatalf("no address: got %q, %v; want nothing served", addr, err)
	} else {
		stop()
	}
	addr, stop, err := serveDebug("127.0.0.1:0", lg)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "goroutine profile:") {
		t.Fatalf("goroutine profile: %s %.80q", resp.Status, b)
	}
	if _, _, err := serveDebug(addr, lg); err == nil {
		t.Fatal("a second listener on the same address: no error")
	}
}
