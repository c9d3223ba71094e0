package hub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestSnapshot_Endpoint(t *testing.T) {
	state := bytes.Repeat([]byte("state "), 50_000) // larger than any buffer on the way
	var calls atomic.Int32
	h := newTestHub(t, func(c *Config) {
		c.APIKey = "k"
		c.Snapshot = func(ctx context.Context, w io.Writer) error {
			calls.Add(1)
			_, err := w.Write(state)
			return err
		}
	})
	if code, _, body := h.do("GET", "/api/v1/snapshot", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("without the API key: %d %s", code, body)
	}
	if calls.Load() != 0 {
		t.Fatal("the backup was taken for an unauthorised request")
	}
	code, hdr, body := h.do("GET", "/api/v1/snapshot", "", http.Header{"Authorization": {"Bearer k"}})
	if code != http.StatusOK || !bytes.Equal(body, state) {
		t.Fatalf("got %d, %d bytes", code, len(body))
	}
	if ct, cd := hdr.Get("Content-Type"), hdr.Get("Content-Disposition"); ct != "application/octet-stream" ||
		!strings.Contains(cd, "raftplane-"+h.m.Epoch()+"-") {
		t.Errorf("Content-Type %q, Content-Disposition %q", ct, cd)
	}
	if code, _, _ := h.do("POST", "/api/v1/snapshot", "", http.Header{"Authorization": {"Bearer k"}}); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", code)
	}
}

func TestSnapshot_NotServed(t *testing.T) {
	h := newTestHub(t)
	if code, _, body := h.do("GET", "/api/v1/snapshot", "", nil); code != http.StatusNotFound || !strings.Contains(string(body), "does not serve backups") {
		t.Fatalf("no hook: %d %s", code, body)
	}
}

// TestSnapshot_LoopbackOnlyWithoutAPIKey: with no API key the backup (the
// cluster secret, every cached message) goes to this host only.
func TestSnapshot_LoopbackOnlyWithoutAPIKey(t *testing.T) {
	h := newTestHub(t, func(c *Config) {
		c.Snapshot = func(ctx context.Context, w io.Writer) error { _, err := io.WriteString(w, "x"); return err }
	})
	for remote, want := range map[string]int{"10.1.2.3:5555": http.StatusForbidden, "[2001:db8::1]:80": http.StatusForbidden,
		"127.0.0.1:5555": http.StatusOK, "[::1]:5555": http.StatusOK, "garbage": http.StatusForbidden} {
		req := httptest.NewRequest("GET", "/api/v1/snapshot", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.srv.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("from %s: %d %s, want %d", remote, rec.Code, rec.Body, want)
		}
	}
}

func TestSnapshot_Failures(t *testing.T) {
	fail := errors.New("disk on fire")
	var after atomic.Bool
	h := newTestHub(t, func(c *Config) {
		c.Snapshot = func(ctx context.Context, w io.Writer) error {
			if !after.Load() {
				return fail
			}
			if _, err := w.Write(bytes.Repeat([]byte("y"), 1<<20)); err != nil {
				return err
			}
			return fail
		}
	})
	// Before the first byte: a JSON error.
	code, _, body := h.do("GET", "/api/v1/snapshot", "", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "disk on fire") {
		t.Fatalf("got %d %s", code, body)
	}
	if e := restError(t, body); e.Code == "" {
		t.Errorf("not a JSON error: %s", body)
	}
	// After it: the transfer is cut off, never a clean end.
	after.Store(true)
	resp, err := h.ts.Client().Get(h.ts.URL + "/api/v1/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a failed backup arrived as a complete response")
	}
}
