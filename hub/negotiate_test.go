package hub

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestServer_Negotiate(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)

	tests := []struct {
		name        string
		method      string
		hub         string
		query       string
		wantStatus  int
		wantVersion int  // when wantStatus is 200 and wantError is empty
		wantToken   bool // a separate connectionToken
		wantError   string
	}{
		{name: "v1", method: "POST", hub: testHubName, query: "negotiateVersion=1", wantStatus: 200, wantVersion: 1, wantToken: true},
		{name: "v1 case-insensitive key", method: "POST", hub: testHubName, query: "NEGOTIATEVERSION=1", wantStatus: 200, wantVersion: 1, wantToken: true},
		{name: "version above 1 is clamped", method: "POST", hub: testHubName, query: "negotiateVersion=7", wantStatus: 200, wantVersion: 1, wantToken: true},
		{name: "version missing is 0", method: "POST", hub: testHubName, wantStatus: 200, wantVersion: 0},
		{name: "explicit version 0", method: "POST", hub: testHubName, query: "negotiateVersion=0", wantStatus: 200, wantVersion: 0},
		{name: "version not a number", method: "POST", hub: testHubName, query: "negotiateVersion=abc", wantStatus: 200, wantError: "abc"},
		{name: "negative version", method: "POST", hub: testHubName, query: "negotiateVersion=-1", wantStatus: 200, wantError: "-1"},
		{name: "GET", method: "GET", hub: testHubName, query: "negotiateVersion=1", wantStatus: 405},
		{name: "PUT", method: "PUT", hub: testHubName, query: "negotiateVersion=1", wantStatus: 405},
		{name: "bad hub name", method: "POST", hub: "bad%20hub", query: "negotiateVersion=1", wantStatus: 404},
		{name: "hub name too long", method: "POST", hub: strings.Repeat("h", 129), query: "negotiateVersion=1", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/hubs/" + tt.hub + "/negotiate"
			if tt.query != "" {
				path += "?" + tt.query
			}
			st, hdr, body := h.do(tt.method, path, "", nil)
			if st != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", st, tt.wantStatus, body)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(body, &raw); err != nil {
				t.Fatalf("body %s is not a JSON object: %v", body, err)
			}
			if st != http.StatusOK {
				if _, ok := raw["message"]; !ok {
					t.Errorf("error body %s has no message", body)
				}
				if st == http.StatusMethodNotAllowed && hdr.Get("Allow") != "POST" {
					t.Errorf("Allow = %q, want POST", hdr.Get("Allow"))
				}
				return
			}
			if tt.wantError != "" {
				var e struct {
					Error string `json:"error"`
				}
				_ = json.Unmarshal(body, &e)
				if !strings.Contains(e.Error, tt.wantError) {
					t.Fatalf("body %s: want an error mentioning %q", body, tt.wantError)
				}
				if len(raw) != 1 {
					t.Errorf("error reply %s has fields besides error", body)
				}
				return
			}
			var r negotiateReply
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			if r.Error != nil {
				t.Fatalf("unexpected error %q", *r.Error)
			}
			if r.NegotiateVersion == nil || *r.NegotiateVersion != tt.wantVersion {
				t.Fatalf("negotiateVersion = %v, want %d (body %s)", r.NegotiateVersion, tt.wantVersion, body)
			}
			if r.ConnectionID == "" {
				t.Fatalf("no connectionId in %s", body)
			}
			if tt.wantToken {
				if r.ConnectionToken == nil || *r.ConnectionToken == "" {
					t.Fatalf("no connectionToken in %s", body)
				}
				if *r.ConnectionToken == r.ConnectionID {
					t.Errorf("connectionToken equals connectionId %q; want separate values", r.ConnectionID)
				}
				if len(r.ConnectionID) != 22 {
					t.Errorf("connectionId %q has %d characters, want 22", r.ConnectionID, len(r.ConnectionID))
				}
			} else if _, ok := raw["connectionToken"]; ok {
				t.Errorf("version 0 reply %s has a connectionToken", body)
			}
			var ws *transportInfo
			for i := range r.AvailableTransports {
				if r.AvailableTransports[i].Transport == "WebSockets" {
					ws = &r.AvailableTransports[i]
				}
			}
			if ws == nil {
				t.Fatalf("availableTransports %+v has no WebSockets", r.AvailableTransports)
			}
			if strings.Join(ws.TransferFormats, ",") != "Text,Binary" {
				t.Errorf("WebSockets transferFormats = %v, want [Text Binary]", ws.TransferFormats)
			}
		})
	}

	t.Run("distinct ids", func(t *testing.T) {
		a := h.negotiateOK(testHubName, "negotiateVersion=1", nil)
		b := h.negotiateOK(testHubName, "negotiateVersion=1", nil)
		if a.ConnectionID == b.ConnectionID || *a.ConnectionToken == *b.ConnectionToken {
			t.Fatalf("two negotiates returned the same id or token: %+v %+v", a, b)
		}
	})

	t.Run("version 0 connectionId works as id", func(t *testing.T) {
		r := h.negotiateOK(testHubName, "", nil)
		c, st, err := h.dial(testHubName, url.Values{"id": {r.ConnectionID}}.Encode(), nil)
		if err != nil {
			t.Fatalf("dial with the v0 connectionId (status %d): %v", st, err)
		}
		c.handshakeOK()
		if cur := c.callOK("Broadcast", "v0", 1); cur == "" {
			t.Fatal("empty cursor")
		}
		c.waitInvocations("v0", 1)
	})
}

func TestServer_NegotiateWithoutEpoch(t *testing.T) {
	t.Parallel()
	h := newTestHubInit(t, false)
	st, hdr, body := h.do(http.MethodPost, "/hubs/chat/negotiate?negotiateVersion=1", "", nil)
	if st != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503; body %s", st, body)
	}
	if hdr.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || e.Message == "" {
		t.Errorf("body %s: want a JSON error with a message (%v)", body, err)
	}
	// A skipNegotiation connect is refused the same way.
	if _, st, err := h.dial(testHubName, "", nil); err == nil || st != http.StatusServiceUnavailable {
		t.Errorf("WebSocket connect without epoch: status %d err %v, want 503", st, err)
	}
}

func TestServer_Connect(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)

	token := func(t *testing.T, hub string) string {
		t.Helper()
		r := h.negotiateOK(hub, "negotiateVersion=1", nil)
		return *r.ConnectionToken
	}
	flip := func(b byte) byte {
		if b == 'A' {
			return 'B'
		}
		return 'A'
	}
	otherSecret := func() *Server {
		cfg := testConfig(t)
		cfg.TokenSecret = []byte("another-secret-of-enough-bytes")
		s, err := New(cfg, h.pub, h.m)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	tests := []struct {
		name       string
		hub        string
		id         func(t *testing.T) string
		wantStatus int
	}{
		{name: "garbled id", hub: testHubName, id: func(*testing.T) string { return "not-a-token" }, wantStatus: 404},
		{name: "unknown well-formed id", hub: testHubName, id: func(*testing.T) string { return newConnectionID() + "." + newConnectionID() }, wantStatus: 404},
		{name: "tampered payload", hub: testHubName, id: func(t *testing.T) string {
			b := []byte(token(t, testHubName))
			b[3] = flip(b[3])
			return string(b)
		}, wantStatus: 404},
		{name: "tampered signature", hub: testHubName, id: func(t *testing.T) string {
			b := []byte(token(t, testHubName))
			b[len(b)-2] = flip(b[len(b)-2])
			return string(b)
		}, wantStatus: 404},
		{name: "signed with another secret", hub: testHubName, id: func(*testing.T) string {
			return otherSecret().signToken(connToken{ID: newConnectionID(), Hub: testHubName, Issued: time.Now()})
		}, wantStatus: 404},
		{name: "token for another hub", hub: "other", id: func(t *testing.T) string { return token(t, testHubName) }, wantStatus: 404},
		{name: "expired token", hub: testHubName, id: func(*testing.T) string {
			return h.srv.signToken(connToken{ID: newConnectionID(), Hub: testHubName, Issued: time.Now().Add(-time.Hour)})
		}, wantStatus: 404},
		{name: "bad hub name", hub: "bad%20hub", id: func(t *testing.T) string { return token(t, testHubName) }, wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := url.Values{"id": {tt.id(t)}}.Encode()
			c, st, err := h.dial(tt.hub, q, nil)
			if err == nil {
				c.close()
				t.Fatalf("connect succeeded, want status %d", tt.wantStatus)
			}
			if st != tt.wantStatus {
				t.Fatalf("status %d, want %d (%v)", st, tt.wantStatus, err)
			}
		})
	}

	t.Run("second WebSocket with the same token", func(t *testing.T) {
		tok := token(t, testHubName)
		q := url.Values{"id": {tok}}.Encode()
		first, st, err := h.dial(testHubName, q, nil)
		if err != nil {
			t.Fatalf("first connect (status %d): %v", st, err)
		}
		first.handshakeOK()
		if _, st, err := h.dial(testHubName, q, nil); err == nil || st != http.StatusConflict {
			t.Fatalf("second connect: status %d err %v, want 409", st, err)
		}
		// The refused attempt did not disturb the first connection.
		first.callOK("Broadcast", "still-here")
		first.waitInvocations("still-here", 1)
	})

	t.Run("second WebSocket before the first handshakes", func(t *testing.T) {
		tok := token(t, testHubName)
		q := url.Values{"id": {tok}}.Encode()
		first, st, err := h.dial(testHubName, q, nil)
		if err != nil {
			t.Fatalf("first connect (status %d): %v", st, err)
		}
		if _, st, err := h.dial(testHubName, q, nil); err == nil || st != http.StatusConflict {
			t.Fatalf("second connect: status %d err %v, want 409", st, err)
		}
		first.handshakeOK()
	})

	t.Run("skipNegotiation", func(t *testing.T) {
		c, st, err := h.dial(testHubName, "user=skipper", nil)
		if err != nil {
			t.Fatalf("connect without id (status %d): %v", st, err)
		}
		c.handshakeOK()
		c.callOK("SendToUser", "skipper", "direct", true)
		c.waitInvocations("direct", 1)
	})

	t.Run("plain HTTP on the hub path", func(t *testing.T) {
		// Without an upgrade a GET is a long poll or an SSE stream: an unknown id is 404.
		if st, _, b := h.do(http.MethodGet, "/hubs/chat?id=x", "", nil); st != http.StatusNotFound {
			t.Errorf("GET without upgrade, unknown id: status %d, want 404; body %s", st, b)
		}
		if st, _, b := h.do(http.MethodPut, "/hubs/chat?id=x", "", nil); st != http.StatusMethodNotAllowed {
			t.Errorf("PUT: status %d, want 405; body %s", st, b)
		}
	})
}
