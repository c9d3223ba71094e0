package hub

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/raftplane/raftplane/fsm"
)

const testAPIKey = "rest-api-key"

// restJSON decodes a REST body into a map, failing the test if it is not
// a JSON object.
func restJSON(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	return m
}

// restError requires an apiError body with a message.
func restError(t *testing.T, body []byte) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("error body %q: want {\"code\":...,\"message\":...} (%v)", body, err)
	}
	if strings.ContainsAny(e.Code, " '-") {
		t.Fatalf("error body %q: code %q, want the status text without spaces (\"BadRequest\")", body, e.Code)
	}
	return e
}

func TestServer_REST(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) {
		c.APIKey = testAPIKey
		c.MaxBodySize = 2048
	})
	auth := bearerHeader(testAPIKey)
	alice := h.connect(testHubName, "alice")
	bob := h.connect(testHubName, "bob")
	clients := []*wsClient{alice, bob}
	names := map[*wsClient]string{alice: "alice", bob: "bob"}
	api := "/api/v1/hubs/" + testHubName

	t.Run("API key", func(t *testing.T) {
		tests := []struct {
			name string
			hdr  http.Header
			want int
		}{
			{name: "missing", hdr: nil, want: 401},
			{name: "invalid", hdr: bearerHeader("wrong"), want: 401},
			{name: "not bearer", hdr: http.Header{"Authorization": {"Basic " + testAPIKey}}, want: 401},
			{name: "valid", hdr: auth, want: 200},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				for _, req := range []struct{ method, path, body string }{
					{"GET", "/api/v1/status", ""},
					{"POST", api, `{"target":"keyed","arguments":[]}`},
				} {
					st, hdr, body := h.do(req.method, req.path, req.body, tt.hdr)
					if st != tt.want {
						t.Fatalf("%s %s: status %d, want %d; body %s", req.method, req.path, st, tt.want, body)
					}
					if st == 401 {
						restError(t, body)
						if hdr.Get("WWW-Authenticate") == "" {
							t.Errorf("401 without WWW-Authenticate")
						}
						if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
							t.Errorf("401 Content-Type %q", hdr.Get("Content-Type"))
						}
					}
				}
			})
		}
		h.fence(testHubName, clients...)
		for _, c := range clients {
			if n := len(c.invocations("keyed")); n != 1 { // only the valid-key request
				t.Errorf("%s got %d copies of the keyed send, want 1", names[c], n)
			}
		}
	})

	// alice joins group "rg" through the REST API for the group sends.
	if st, _, body := h.do("PUT", api+"/groups/rg/connections/"+alice.connID, "", auth); st != 200 {
		t.Fatalf("PUT group membership: status %d body %s", st, body)
	}

	sends := []struct {
		name     string
		path     string
		body     string
		target   string
		wantArgs string
		to       []*wsClient
	}{
		{name: "hub", path: api, body: `{"target":"t-all","arguments":[1]}`, target: "t-all", wantArgs: `[1]`, to: clients},
		{name: "arguments absent", path: api, body: `{"target":"t-noargs"}`, target: "t-noargs", wantArgs: `[]`, to: clients},
		{name: "arguments null", path: api, body: `{"target":"t-null","arguments":null}`, target: "t-null", wantArgs: `[]`, to: clients},
		{name: "arguments compacted", path: api, body: `{"target":"t-ws","arguments":[ 1 , "a" ]}`, target: "t-ws", wantArgs: `[1,"a"]`, to: clients},
		{name: "excluded", path: api, body: `{"target":"t-excl","arguments":[],"excluded":["` + alice.connID + `"]}`, target: "t-excl", wantArgs: `[]`, to: []*wsClient{bob}},
		{name: "group", path: api + "/groups/rg", body: `{"target":"t-group","arguments":["g"]}`, target: "t-group", wantArgs: `["g"]`, to: []*wsClient{alice}},
		{name: "user", path: api + "/users/bob", body: `{"target":"t-user","arguments":[{"k":true}]}`, target: "t-user", wantArgs: `[{"k":true}]`, to: []*wsClient{bob}},
		{name: "connection", path: api + "/connections/" + alice.connID, body: `{"target":"t-conn","arguments":[null]}`, target: "t-conn", wantArgs: `[null]`, to: []*wsClient{alice}},
		{name: "unknown user reaches nobody", path: api + "/users/nobody", body: `{"target":"t-nobody"}`, target: "t-nobody", wantArgs: `[]`, to: nil},
	}
	for _, tt := range sends {
		t.Run("send/"+tt.name, func(t *testing.T) {
			st, _, body := h.do("POST", tt.path, tt.body, auth)
			if st != 200 {
				t.Fatalf("status %d, want 200; body %s", st, body)
			}
			var r struct {
				Cursor string `json:"cursor"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			mustCursor(t, r.Cursor)
			want := invocationRaw(tt.target, tt.wantArgs, r.Cursor)
			for _, c := range tt.to {
				if got := c.waitInvocations(tt.target, 1); got[0].Raw != want {
					t.Errorf("%s got %s, want %s", names[c], got[0].Raw, want)
				}
			}
			h.fence(testHubName, clients...)
			for _, c := range clients {
				wantN := 0
				if slices.Contains(tt.to, c) {
					wantN = 1
				}
				if n := len(c.invocations(tt.target)); n != wantN {
					t.Errorf("%s got %d copies, want %d", names[c], n, wantN)
				}
			}
		})
	}

	t.Run("idempotency key", func(t *testing.T) {
		post := func(key, target string) (int, string) {
			hdr := bearerHeader(testAPIKey)
			if key != "" {
				hdr.Set(IdempotencyHeader, key)
			}
			st, _, body := h.do("POST", api, `{"target":"`+target+`"}`, hdr)
			var r struct {
				Cursor string `json:"cursor"`
			}
			_ = json.Unmarshal(body, &r)
			return st, r.Cursor
		}
		st1, c1 := post("k-1", "t-idem")
		st2, c2 := post("k-1", "t-idem") // a retry: applied once, same cursor
		st3, c3 := post("k-2", "t-idem") // another key: applied
		if st1 != 200 || st2 != 200 || st3 != 200 {
			t.Fatalf("statuses %d %d %d, want 200", st1, st2, st3)
		}
		if c1 == "" || c2 != c1 || c3 == c1 {
			t.Fatalf("cursors %q %q %q: want the retry to answer the first's cursor and another key a new one", c1, c2, c3)
		}
		if st, _ := post(strings.Repeat("k", maxIdempotencyKeyLen+1), "t-idem"); st != 400 {
			t.Errorf("an oversized key: status %d, want 400", st)
		}
		h.fence(testHubName, clients...)
		for _, c := range clients {
			if n := len(c.invocations("t-idem")); n != 2 {
				t.Errorf("%s got %d copies of the keyed sends, want 2 (one per key)", names[c], n)
			}
		}
	})

	big := `{"target":"t-big","arguments":["` + strings.Repeat("b", 3000) + `"]}`
	bad := []struct {
		name, method, path, body string
		want                     int
		msg                      string
	}{
		{name: "unknown connection", method: "POST", path: api + "/connections/nope", body: `{"target":"x"}`, want: 404, msg: "nope"},
		{name: "bad JSON", method: "POST", path: api, body: `{"target":`, want: 400, msg: "invalid JSON"},
		{name: "not an object", method: "POST", path: api, body: `[1]`, want: 400, msg: "invalid JSON"},
		{name: "empty body", method: "POST", path: api, body: ``, want: 400},
		{name: "missing target", method: "POST", path: api, body: `{"arguments":[1]}`, want: 400, msg: "target"},
		{name: "empty target", method: "POST", path: api, body: `{"target":"","arguments":[1]}`, want: 400, msg: "target"},
		{name: "target too long", method: "POST", path: api, body: `{"target":"` + strings.Repeat("t", maxTargetLen+1) + `"}`, want: 400, msg: "target"},
		{name: "arguments not an array", method: "POST", path: api, body: `{"target":"x","arguments":{"a":1}}`, want: 400, msg: "array"},
		{name: "arguments a string", method: "POST", path: api, body: `{"target":"x","arguments":"[1]"}`, want: 400, msg: "array"},
		{name: "excluded holds an empty id", method: "POST", path: api, body: `{"target":"x","excluded":[""]}`, want: 400, msg: "excluded"},
		{name: "body over MaxBodySize", method: "POST", path: api, body: big, want: 413, msg: "2048"},
		{name: "bad hub name", method: "POST", path: "/api/v1/hubs/bad%20hub", body: `{"target":"x"}`, want: 400, msg: "hub"},
		{name: "group add unknown connection", method: "PUT", path: api + "/groups/g/connections/nope", want: 404},
		{name: "group remove unknown connection", method: "DELETE", path: api + "/groups/g/connections/nope", want: 404},
		{name: "close unknown connection", method: "DELETE", path: api + "/connections/nope", want: 404},
		{name: "get unknown connection", method: "GET", path: api + "/connections/nope", want: 404},
		{name: "get unknown user", method: "GET", path: api + "/users/nobody", want: 404},
		{name: "get empty group", method: "GET", path: api + "/groups/empty", want: 404},
		{name: "close reason too long", method: "DELETE", path: api + "/connections/" + bob.connID + "?reason=" + strings.Repeat("r", 1025), want: 400, msg: "reason"},
	}
	for _, tt := range bad {
		t.Run("error/"+tt.name, func(t *testing.T) {
			st, hdr, body := h.do(tt.method, tt.path, tt.body, auth)
			if st != tt.want {
				t.Fatalf("status %d, want %d; body %s", st, tt.want, body)
			}
			if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Errorf("Content-Type %q, want JSON", hdr.Get("Content-Type"))
			}
			e := restError(t, body)
			if !strings.Contains(e.Message, tt.msg) {
				t.Errorf("message %q, want it to mention %q", e.Message, tt.msg)
			}
		})
	}
	h.fence(testHubName, clients...)
	if n := len(alice.invocations("t-big")) + len(bob.invocations("t-big")); n != 0 {
		t.Errorf("an oversized body was delivered %d times", n)
	}

	t.Run("group membership", func(t *testing.T) {
		g := api + "/groups/members"
		if st, _, body := h.do("PUT", g+"/connections/"+bob.connID, "", auth); st != 200 {
			t.Fatalf("PUT: status %d body %s", st, body)
		}
		st, _, body := h.do("GET", g, "", auth)
		if st != 200 {
			t.Fatalf("GET group: status %d body %s", st, body)
		}
		var list struct {
			Connections []string `json:"connections"`
		}
		if err := json.Unmarshal(body, &list); err != nil || !slices.Equal(list.Connections, []string{bob.connID}) {
			t.Fatalf("GET group = %s, want [%s] (%v)", body, bob.connID, err)
		}
		if st, _, body := h.do("POST", g, `{"target":"m-in"}`, auth); st != 200 {
			t.Fatalf("send: status %d body %s", st, body)
		}
		bob.waitInvocations("m-in", 1)

		if st, _, body := h.do("DELETE", g+"/connections/"+bob.connID, "", auth); st != 200 {
			t.Fatalf("DELETE: status %d body %s", st, body)
		}
		if st, _, body := h.do("GET", g, "", auth); st != 404 {
			t.Fatalf("GET group after DELETE: status %d body %s, want 404", st, body)
		}
		if st, _, body := h.do("POST", g, `{"target":"m-out"}`, auth); st != 200 {
			t.Fatalf("send: status %d body %s", st, body)
		}
		h.fence(testHubName, clients...)
		if n := len(bob.invocations("m-out")); n != 0 {
			t.Fatalf("bob got %d group messages after the REST DELETE", n)
		}
	})

	t.Run("get connection", func(t *testing.T) {
		st, _, body := h.do("GET", api+"/connections/"+alice.connID, "", auth)
		if st != 200 {
			t.Fatalf("status %d body %s", st, body)
		}
		var ci struct {
			ConnectionID string   `json:"connectionId"`
			User         string   `json:"user"`
			Node         string   `json:"node"`
			Groups       []string `json:"groups"`
			Opened       string   `json:"opened"`
		}
		if err := json.Unmarshal(body, &ci); err != nil {
			t.Fatal(err)
		}
		if ci.ConnectionID != alice.connID || ci.User != "alice" || ci.Node != h.cfg.NodeID || !slices.Equal(ci.Groups, []string{"rg"}) {
			t.Errorf("GET connection = %s", body)
		}
		mustCursor(t, ci.Opened)
	})

	t.Run("get user", func(t *testing.T) {
		st, _, body := h.do("GET", api+"/users/alice", "", auth)
		if st != 200 {
			t.Fatalf("status %d body %s", st, body)
		}
		var list struct {
			Connections []string `json:"connections"`
		}
		if err := json.Unmarshal(body, &list); err != nil || !slices.Equal(list.Connections, []string{alice.connID}) {
			t.Fatalf("GET user = %s, want [%s] (%v)", body, alice.connID, err)
		}
	})

	t.Run("status", func(t *testing.T) {
		st, _, body := h.do("GET", "/api/v1/status", "", auth)
		if st != 200 {
			t.Fatalf("status %d body %s", st, body)
		}
		var s struct {
			Stream struct {
				Epoch      string `json:"epoch"`
				LastCursor string `json:"last_cursor"`
				Applied    uint64 `json:"applied_index"`
			} `json:"stream"`
			Hub struct {
				LocalConnections *int `json:"local_connections"`
			} `json:"hub"`
		}
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatal(err)
		}
		if s.Stream.Epoch != testEpoch {
			t.Errorf("stream.epoch = %q, want %q", s.Stream.Epoch, testEpoch)
		}
		last := mustCursor(t, s.Stream.LastCursor)
		if p := h.m.Position(); last != p.Last || s.Stream.Applied != p.Applied {
			t.Errorf("last_cursor %s applied %d, machine has %s %d", last, s.Stream.Applied, p.Last, p.Applied)
		}
		if s.Hub.LocalConnections == nil || *s.Hub.LocalConnections != h.srv.LocalConnections() || *s.Hub.LocalConnections < 2 {
			t.Errorf("hub.local_connections = %v, want %d", s.Hub.LocalConnections, h.srv.LocalConnections())
		}
	})

	t.Run("publisher failure", func(t *testing.T) {
		h.pub.setFail(errors.New("no leader"))
		defer h.pub.setFail(nil)
		st, hdr, body := h.do("POST", api, `{"target":"t-fail"}`, auth)
		if st != 503 || hdr.Get("Retry-After") == "" {
			t.Fatalf("status %d Retry-After %q body %s, want 503 with Retry-After", st, hdr.Get("Retry-After"), body)
		}
		restError(t, body)
	})

	t.Run("close connection", func(t *testing.T) {
		carol := h.connect(testHubName, "carol")
		st, _, body := h.do("DELETE", api+"/connections/"+carol.connID+"?reason=kicked", "", auth)
		if st != 200 {
			t.Fatalf("status %d body %s", st, body)
		}
		m := carol.waitClose()
		if !strings.Contains(m.Error, "kicked") || m.AllowReconnect {
			t.Errorf("close message %s, want the reason and no allowReconnect", m.Raw)
		}
		carol.waitDone()
		if _, ok := h.m.Connection(testHubName, carol.connID); ok {
			t.Error("closed connection still in the registry")
		}
		if st, _, body := h.do("GET", api+"/connections/"+carol.connID, "", auth); st != 404 {
			t.Errorf("GET closed connection: status %d body %s", st, body)
		}
		// The others are untouched.
		if st, _, body := h.do("POST", api, `{"target":"after-kick"}`, auth); st != 200 {
			t.Fatalf("send: status %d body %s", st, body)
		}
		for _, c := range clients {
			c.waitInvocations("after-kick", 1)
		}
		waitFor(t, "the server to drop carol", func() bool { return h.srv.LocalConnections() == 2 })
		// The departure was recorded once, by the REST call, not again by
		// the handler.
		n := 0
		for _, c := range h.pub.commands(fsm.KindConnClose) {
			if c.Conn == carol.connID {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d ConnClose commands for carol, want 1", n)
		}
	})

	for _, c := range clients {
		checkCursorsIncrease(t, names[c], c)
		c.checkFraming()
	}
}

func TestServer_RESTWithoutAPIKey(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	c := h.connect(testHubName, "")
	st, _, body := h.do("POST", "/api/v1/hubs/"+testHubName, `{"target":"open","arguments":["x"]}`, nil)
	if st != 200 {
		t.Fatalf("status %d body %s", st, body)
	}
	c.waitInvocations("open", 1)
	if st, _, body := h.do("GET", "/api/v1/status", "", nil); st != 200 {
		t.Fatalf("status: %d %s", st, body)
	} else if m := restJSON(t, body); m["stream"] == nil || m["hub"] == nil {
		t.Fatalf("status body %s lacks stream or hub", body)
	}
}

func FuzzParseSendBody(f *testing.F) {
	for _, s := range []string{
		`{"target":"t","arguments":[1]}`,
		`{"target":"t"}`,
		`{"target":"t","arguments":null}`,
		`{"target":"t","arguments":[ 1 , {"a" : [2]} , "x\u0000" ]}`,
		`{"target":"t","arguments":{"a":1}}`,
		`{"target":"t","arguments":"[1]"}`,
		`{"target":"","arguments":[]}`,
		`{"target":"t","excluded":["a",""]}`,
		`{"target":"t","excluded":["a","b"],"arguments":[true,false,null]}`,
		`{"target":1}`,
		`{"target":"t","arguments":[1,]}`,
		`[1]`,
		`null`,
		``,
		`{"Target":"case","ARGUMENTS":[7]}`,
		`{"target":"t","arguments":[1],"target":"u"}`,
		"{\"target\":\"\xff\",\"arguments\":[\"\xfe\"]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sb, err := parseSendBody(b)
		if err != nil {
			return
		}
		if sb.Target == "" || len(sb.Target) > maxTargetLen {
			t.Fatalf("accepted target %q", sb.Target)
		}
		if !json.Valid(sb.Arguments) {
			t.Fatalf("accepted arguments %q are not valid JSON", sb.Arguments)
		}
		if len(sb.Arguments) == 0 || sb.Arguments[0] != '[' {
			t.Fatalf("accepted arguments %q are not an array", sb.Arguments)
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(sb.Arguments, &arr); err != nil {
			t.Fatalf("accepted arguments %q are not a JSON array: %v", sb.Arguments, err)
		}
		for _, x := range sb.Excluded {
			if x == "" {
				t.Fatalf("accepted an empty excluded id")
			}
		}
		// What the server accepted, written back out, is accepted again
		// with the same meaning.
		again, err := json.Marshal(sb)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", sb, err)
		}
		sb2, err := parseSendBody(again)
		if err != nil {
			t.Fatalf("re-encoded body %s refused: %v", again, err)
		}
		// Same meaning, not the same bytes: json.Marshal escapes <, > and &
		// inside raw arguments.
		var v1, v2 any
		_ = json.Unmarshal(sb.Arguments, &v1)
		_ = json.Unmarshal(sb2.Arguments, &v2)
		if sb2.Target != sb.Target || !reflect.DeepEqual(v1, v2) || !slices.Equal(sb2.Excluded, sb.Excluded) {
			t.Fatalf("round trip changed %+v into %+v", sb, sb2)
		}
	})
}
