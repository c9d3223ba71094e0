package hub

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestErrorCode(t *testing.T) {
	tests := []struct {
		status int
		want   string
	}{
		{http.StatusBadRequest, "BadRequest"},
		{http.StatusUnauthorized, "Unauthorized"},
		{http.StatusForbidden, "Forbidden"},
		{http.StatusNotFound, "NotFound"},
		{http.StatusMethodNotAllowed, "MethodNotAllowed"},
		{http.StatusGone, "Gone"},
		{http.StatusRequestEntityTooLarge, "RequestEntityTooLarge"},
		{http.StatusUnsupportedMediaType, "UnsupportedMediaType"},
		{http.StatusTooManyRequests, "TooManyRequests"},
		{http.StatusInternalServerError, "InternalServerError"},
		{http.StatusServiceUnavailable, "ServiceUnavailable"},
		{http.StatusGatewayTimeout, "GatewayTimeout"},
		{http.StatusTeapot, "Imateapot"}, // "I'm a teapot": punctuation goes too
		{599, "Error"},
	}
	for _, tt := range tests {
		if got := errorCode(tt.status); got != tt.want {
			t.Errorf("errorCode(%d) = %q, want %q", tt.status, got, tt.want)
		}
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	writeError(rec, http.StatusServiceUnavailable, "no leader")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" ||
		rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("writeError 503: status %d headers %v", rec.Code, rec.Header())
	}
	if e := restError(t, rec.Body.Bytes()); e.Code != "ServiceUnavailable" || e.Message != "no leader" {
		t.Fatalf("writeError 503: body %s", rec.Body)
	}

	rec = httptest.NewRecorder()
	writeError(rec, http.StatusBadRequest, "bad JSON")
	if rec.Header().Get("Retry-After") != "" {
		t.Error("400 with Retry-After")
	}
	if e := restError(t, rec.Body.Bytes()); e.Code != "BadRequest" {
		t.Fatalf("writeError 400: body %s, want code BadRequest", rec.Body)
	}
}

// The mux's own 404 and 405 answers are JSON errors too; a 405 keeps its
// Allow header.
func TestServer_RouteErrorsAreJSON(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.APIKey = testAPIKey })
	auth := bearerHeader(testAPIKey)
	tests := []struct {
		name       string
		method     string
		path       string
		hdr        http.Header
		wantStatus int
		wantCode   string
		wantAllow  []string // methods the Allow header must list
		wantInMsg  string
	}{
		{name: "unknown path", method: http.MethodGet, path: "/nope", wantStatus: 404, wantCode: "NotFound", wantInMsg: "/nope"},
		{name: "unknown API path", method: http.MethodGet, path: "/api/v1/nope", hdr: auth, wantStatus: 404, wantCode: "NotFound"},
		{name: "unknown path under a hub", method: http.MethodGet, path: "/hubs/chat/negotiate/extra", wantStatus: 404, wantCode: "NotFound"},
		{name: "wrong method on healthz", method: http.MethodPost, path: "/healthz", wantStatus: 405, wantCode: "MethodNotAllowed",
			wantAllow: []string{"GET", "HEAD"}, wantInMsg: "POST"},
		{name: "wrong method on readyz", method: http.MethodDelete, path: "/readyz", wantStatus: 405, wantCode: "MethodNotAllowed",
			wantAllow: []string{"GET"}},
		{name: "wrong method on a send", method: http.MethodGet, path: "/api/v1/hubs/chat", hdr: auth, wantStatus: 405, wantCode: "MethodNotAllowed",
			wantAllow: []string{"POST"}},
		{name: "wrong method on a group", method: http.MethodPatch, path: "/api/v1/hubs/chat/groups/g", hdr: auth, wantStatus: 405,
			wantCode: "MethodNotAllowed", wantAllow: []string{"GET", "POST"}},
		{name: "handler error keeps its code", method: http.MethodPost, path: "/api/v1/hubs/chat", hdr: auth, wantStatus: 400, wantCode: "BadRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, hdr, body := h.do(tt.method, tt.path, "", tt.hdr)
			if st != tt.wantStatus {
				t.Fatalf("%s %s: status %d body %s, want %d", tt.method, tt.path, st, body, tt.wantStatus)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			e := restError(t, body)
			if e.Code != tt.wantCode || !strings.Contains(e.Message, tt.wantInMsg) {
				t.Fatalf("body %s, want code %s and a message containing %q", body, tt.wantCode, tt.wantInMsg)
			}
			allow := hdr.Get("Allow")
			for _, m := range tt.wantAllow {
				if !strings.Contains(allow, m) {
					t.Errorf("Allow %q, want it to list %s", allow, m)
				}
			}
		})
	}

	// A path the mux cleans is still redirected, not turned into an error.
	req, err := http.NewRequest(http.MethodGet, h.ts.URL+"/api/v1//status", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *h.ts.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/api/v1/status" {
		t.Fatalf("GET /api/v1//status: status %d Location %q, want a redirect to /api/v1/status", resp.StatusCode, resp.Header.Get("Location"))
	}
}
