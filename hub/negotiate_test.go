package hub

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
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

// fuzzServer is an unstarted Server over a machine with an epoch, for
// fuzz targets that call ServeHTTP in process (negotiate and the REST
// API need no dispatcher).
func fuzzServer(f *testing.F, opts ...func(*Config)) *Server {
	f.Helper()
	cfg := testConfig(f)
	cfg.Logger = nil // quiet: millions of requests
	for _, o := range opts {
		o(&cfg)
	}
	m := newTestMachine(f)
	srv, err := New(cfg, newFakePublisher(f, m, true), m)
	if err != nil {
		f.Fatal(err)
	}
	return srv
}

// serveRaw sends a request built from raw parts, which httptest.NewRequest
// would refuse to parse, straight to the server.
func serveRaw(srv *Server, method, path, rawQuery string, hdr http.Header, body string) *httptest.ResponseRecorder {
	r := &http.Request{
		Method:     method,
		URL:        &url.URL{Path: path, RawQuery: rawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       "raftplane.test",
		RemoteAddr: "192.0.2.1:1234",
		Body:       io.NopCloser(strings.NewReader(body)),
	}
	r.ContentLength = int64(len(body))
	for k, vs := range hdr {
		r.Header[k] = vs
	}
	r = r.WithContext(context.Background())
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, r)
	return rec
}

// checkAnswer fails unless a response is below 500 and, when it is an
// error, says why: a JSON body with a message (ours), or the mux's own
// text answer for a path or method it does not route.
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s: status %d, want below 500; body %s", what, rec.Code, rec.Body)
	}
	if rec.Code < 400 {
		return
	}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") && rec.Body.Len() > 0 {
		return // net/http's ServeMux: 404 page not found, 405
	}
	var e apiError
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" || e.Code == "" {
		t.Fatalf("%s: status %d with body %q, want a JSON code and message", what, rec.Code, rec.Body)
	}
}

// FuzzNegotiate: any hub name and query (negotiateVersion,
// useStatefulReconnect, user, access_token, ...) gets a 200 with a token
// for that hub or a .NET-style "error" field, or a 4xx that says why;
// never a panic or a 5xx.
func FuzzNegotiate(f *testing.F) {
	for _, s := range [][2]string{
		{"chat", "negotiateVersion=1"},
		{"chat", "negotiateVersion=1&useStatefulReconnect=true"},
		{"chat", "NegotiateVersion=0&USESTATEFULRECONNECT=TRUE"},
		{"chat", "negotiateVersion=-1"},
		{"chat", "negotiateVersion=99999999999999999999999"},
		{"chat", "negotiateVersion=%zz"},
		{"chat", "negotiateVersion=1&user=" + strings.Repeat("u", 300)},
		{"chat", "user=a&user=b&negotiateVersion=1&negotiateVersion=0"},
		{"chat", "access_token=x.y.z&id=abc"},
		{"a b", ""},
		{"", ";;;&&&==="},
		{strings.Repeat("h", 200), "negotiateVersion=1"},
		{"chat/../x", "negotiateVersion=1"},
	} {
		f.Add(s[0], s[1])
	}
	srv := fuzzServer(f, func(c *Config) { c.MaxConnectionsPerIP = 0 })
	f.Fuzz(func(t *testing.T, hub, query string) {
		rec := serveRaw(srv, http.MethodPost, "/hubs/"+hub+"/negotiate", query, nil, "")
		checkAnswer(t, "negotiate", rec)
		if rec.Code != http.StatusOK {
			return
		}
		var resp struct {
			negotiateResponse
			Error string `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("200 with body %q: %v", rec.Body, err)
		}
		if resp.Error != "" {
			return // an invalid negotiateVersion, answered as the .NET server does
		}
		raw := resp.ConnectionToken
		if resp.NegotiateVersion == 0 {
			raw = resp.ConnectionID
		}
		tok, err := srv.parseToken(raw)
		if err != nil {
			t.Fatalf("negotiate gave a token that does not parse: %v; body %s", err, rec.Body)
		}
		if tok.Hub != hub && validHub(hub) == nil {
			t.Fatalf("token for hub %q, negotiated for %q", tok.Hub, hub)
		}
		if resp.UseStatefulReconnect && resp.NegotiateVersion < 1 {
			t.Fatalf("stateful reconnect granted at negotiate version %d", resp.NegotiateVersion)
		}
	})
}

// FuzzConnectQuery: the transport endpoint's query (id, user, resume, ...)
// on the HTTP transports' methods gets a 4xx that says why, never a panic
// or a 5xx. (A WebSocket upgrade needs a real connection: the Connect
// tests cover its refusals.)
func FuzzConnectQuery(f *testing.F) {
	for _, s := range []string{
		"id=abc", "id=", "ID=abc&id=def", "id=" + strings.Repeat("A", 4096), "id=a.b", "id=%00",
		"resume=abc&id=x", "user=u&id=x", "id=abc&access_token=x",
	} {
		f.Add(uint8(0), "chat", s, false)
	}
	srv := fuzzServer(f)
	methods := []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut, http.MethodOptions}
	f.Fuzz(func(t *testing.T, m uint8, hub, query string, sse bool) {
		hdr := http.Header{}
		if sse {
			hdr.Set("Accept", "text/event-stream")
		}
		rec := serveRaw(srv, methods[int(m)%len(methods)], "/hubs/"+hub, query, hdr, "{}\x1e")
		checkAnswer(t, "connect", rec)
	})
}
