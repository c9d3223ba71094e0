package hub

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestCORS_Preflight(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example.com"} })
	hdr := http.Header{
		"Origin":                         {"https://app.example.com"},
		"Access-Control-Request-Method":  {"POST"},
		"Access-Control-Request-Headers": {"x-requested-with,x-signalr-user-agent,authorization,content-type"},
	}
	for _, path := range []string{"/hubs/chat/negotiate?negotiateVersion=1", "/hubs/chat?id=x"} {
		st, rh, b := h.do(http.MethodOptions, path, "", hdr)
		if st != http.StatusNoContent {
			t.Fatalf("preflight %s: %d %s", path, st, b)
		}
		want := map[string]string{
			"Access-Control-Allow-Origin":      "https://app.example.com",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Methods":     "GET, POST, DELETE, OPTIONS",
			"Access-Control-Allow-Headers":     "x-requested-with,x-signalr-user-agent,authorization,content-type",
		}
		for k, v := range want {
			if got := rh.Get(k); got != v {
				t.Errorf("preflight %s: %s %q, want %q", path, k, got, v)
			}
		}
		if !strings.Contains(strings.Join(rh.Values("Vary"), ","), "Origin") {
			t.Errorf("preflight %s: Vary %q lacks Origin", path, rh.Values("Vary"))
		}
	}
}

func TestCORS_Requests(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example.com"} })
	allowed := http.Header{"Origin": {"https://app.example.com"}}
	st, rh, b := h.do(http.MethodPost, "/hubs/chat/negotiate?negotiateVersion=1", "", allowed)
	if st != http.StatusOK || rh.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		rh.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("negotiate from an allowed origin: %d %v %s", st, rh, b)
	}
	foreign := http.Header{"Origin": {"https://evil.example.org"}}
	if st, rh, b := h.do(http.MethodPost, "/hubs/chat/negotiate?negotiateVersion=1", "", foreign); st != http.StatusForbidden ||
		rh.Get("Access-Control-Allow-Origin") != "" || !strings.Contains(string(b), `"message"`) {
		t.Errorf("negotiate from a foreign origin: %d %v %s, want a 403 JSON error", st, rh, b)
	}
	tok, _ := h.negotiateToken("")
	if st, _, _ := h.do(http.MethodGet, hubPath(tok), "", foreign); st != http.StatusForbidden {
		t.Errorf("long poll from a foreign origin: %d, want 403", st)
	}
	if _, st, _ := h.dial(testHubName, "id="+url.QueryEscape(tok), foreign); st != http.StatusForbidden {
		t.Errorf("WebSocket from a foreign origin: %d, want 403", st)
	}
	if _, st, err := h.dial(testHubName, "id="+url.QueryEscape(tok), allowed); err != nil {
		t.Errorf("WebSocket from an allowed origin: %d %v", st, err)
	}
	// Same-origin requests and clients without an Origin pass without CORS headers.
	same := http.Header{"Origin": {h.ts.URL}}
	if st, rh, _ := h.do(http.MethodPost, "/hubs/chat/negotiate?negotiateVersion=1", "", same); st != http.StatusOK ||
		rh.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("same-origin negotiate: %d, ACAO %q", st, rh.Get("Access-Control-Allow-Origin"))
	}
	// The REST API is not subject to the browser origin policy.
	if st, _, _ := h.do(http.MethodGet, "/healthz", "", foreign); st != http.StatusOK {
		t.Errorf("healthz with a foreign Origin: %d", st)
	}
}

func TestCORS_DefaultAndWildcard(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	foreign := http.Header{"Origin": {"https://app.example.com"}}
	if st, _, _ := h.do(http.MethodPost, "/hubs/chat/negotiate?negotiateVersion=1", "", foreign); st != http.StatusForbidden {
		t.Errorf("default config, foreign origin: %d, want 403", st)
	}
	if st, _, _ := h.do(http.MethodOptions, "/hubs/chat/negotiate", "", http.Header{
		"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"POST"}}); st != http.StatusForbidden {
		t.Errorf("default config, foreign preflight: %d, want 403", st)
	}
	hw := newTestHub(t, func(c *Config) { c.AllowedOrigins = []string{"*"} })
	st, rh, _ := hw.do(http.MethodPost, "/hubs/chat/negotiate?negotiateVersion=1", "", foreign)
	if st != http.StatusOK || rh.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf(`"*": %d, ACAO %q, want the origin echoed`, st, rh.Get("Access-Control-Allow-Origin"))
	}
}
