package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// fakeReadiness answers Ready with a settable error and records the bound
// it was asked with.
type fakeReadiness struct {
	mu         sync.Mutex
	err        error
	maxContact time.Duration
	calls      int
}

func (f *fakeReadiness) Ready(maxContact time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.maxContact = maxContact
	return f.err
}

func (f *fakeReadiness) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeReadiness) asked() (time.Duration, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxContact, f.calls
}

func TestServer_Ready(t *testing.T) {
	t.Parallel()
	ready := &fakeReadiness{}
	h := newTestHub(t, func(c *Config) {
		c.APIKey = testAPIKey // /readyz must not need it
		c.Readiness = ready
		c.ReadyMaxContact = 7 * time.Second
	})

	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantReason string
	}{
		{name: "ready", wantStatus: http.StatusOK},
		{name: "no leader", err: errors.New("cluster: no leader known (this node is a Candidate)"),
			wantStatus: http.StatusServiceUnavailable, wantReason: "no leader known"},
		{name: "stale leader", err: errors.New("cluster: leader not heard from recently: last contact with the leader 7.2s ago (more than 7s)"),
			wantStatus: http.StatusServiceUnavailable, wantReason: "last contact with the leader 7.2s ago"},
		{name: "no cluster id", err: fmt.Errorf("cluster: not ready: %w", fsm.ErrNoEpoch),
			wantStatus: http.StatusServiceUnavailable, wantReason: "no cluster id applied yet"},
		{name: "ready again", wantStatus: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.set(tt.err)
			st, hdr, body := h.do(http.MethodGet, "/readyz", "", nil)
			if st != tt.wantStatus {
				t.Fatalf("readyz: status %d body %s, want %d", st, body, tt.wantStatus)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if tt.wantStatus == http.StatusOK {
				if m := restJSON(t, body); m["status"] != "ready" {
					t.Fatalf("readyz body %s, want status ready", body)
				}
			} else {
				e := restError(t, body)
				if e.Code != "ServiceUnavailable" || !strings.Contains(e.Message, tt.wantReason) {
					t.Fatalf("readyz body %s, want code ServiceUnavailable and a message containing %q", body, tt.wantReason)
				}
				if hdr.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				// Liveness is another question: the process still serves.
				if st, _, body := h.do(http.MethodGet, "/healthz", "", nil); st != http.StatusOK {
					t.Errorf("healthz while not ready: status %d body %s, want 200", st, body)
				}
			}
		})
	}
	if mc, calls := ready.asked(); mc != 7*time.Second || calls < len(tests) {
		t.Errorf("Readiness asked %d times with maxContact %s, want at least %d with 7s", calls, mc, len(tests))
	}

	ready.set(nil)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st, _, body := h.do(http.MethodGet, "/readyz", "", nil)
	if st != http.StatusServiceUnavailable || !strings.Contains(restError(t, body).Message, "shutting down") {
		t.Fatalf("readyz while closing with a ready cluster: status %d body %s, want 503 shutting down", st, body)
	}
}

func TestServer_ReadyWithoutPort(t *testing.T) {
	t.Parallel()
	// Without a Readiness port /readyz follows whether clients are taken.
	h := newTestHub(t)
	if st, _, body := h.do(http.MethodGet, "/readyz", "", nil); st != http.StatusOK {
		t.Fatalf("readyz: status %d body %s, want 200", st, body)
	}
	noEpoch := newTestHubInit(t, false)
	st, _, body := noEpoch.do(http.MethodGet, "/readyz", "", nil)
	if st != http.StatusServiceUnavailable || !strings.Contains(restError(t, body).Message, "no cluster id") {
		t.Fatalf("readyz without epoch: status %d body %s, want 503 naming the cluster id", st, body)
	}
}

func TestConfig_ReadyMaxContact(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		cfg := testConfig(t)
		cfg.ReadyMaxContact = d
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "ReadyMaxContact") {
			t.Errorf("ReadyMaxContact %s: Validate = %v, want an error naming ReadyMaxContact", d, err)
		}
	}
	if d := DefaultConfig().ReadyMaxContact; d != 5*time.Second {
		t.Errorf("default ReadyMaxContact %s, want 5s", d)
	}
}

// The hub's fake readiness must keep matching the port.
var _ Readiness = (*fakeReadiness)(nil)
