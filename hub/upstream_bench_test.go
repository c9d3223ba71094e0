package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkInvoke is the cost of one invocation, from the client's send to
// its Completion, over loopback with the in-process log (the fake
// publisher: no Raft round trip, so this is the hub's own cost): a
// built-in (one publish), a Go method that sends one message (one group),
// and an upstream method (an HTTP round trip to an in-process upstream,
// nothing in the log).
func BenchmarkInvoke(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var inv struct {
			ID string `json:"invocationId"`
		}
		body := new(bytes.Buffer)
		_, _ = body.ReadFrom(r.Body)
		_ = json.Unmarshal(body.Bytes(), &inv)
		_, _ = w.Write([]byte(`{"type":3,"invocationId":"` + inv.ID + `","result":1}` + "\x1e"))
	}))
	b.Cleanup(up.Close)
	app := Handlers{Methods: map[string]Method{"Say": func(ctx *Context, args Args) (any, error) {
		return nil, ctx.Clients().Others().Send("said", 1)
	}}}
	for _, tc := range []struct{ name, method string }{
		{"builtin", "Broadcast"},
		{"go", "Say"},
		{"upstream", "Echo"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ws := benchConn(b, app, func(c *Config) {
				c.Upstream = up.URL + "/{event}"
				c.APIKey = "bench"
			})
			args := `[]`
			if tc.method == "Broadcast" {
				args = `["m"]`
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				id := strconv.Itoa(i)
				rec := `{"type":1,"invocationId":"` + id + `","target":"` + tc.method + `","arguments":` + args + "}\x1e"
				if err := ws.WriteMessage(websocket.TextMessage, []byte(rec)); err != nil {
					b.Fatal(err)
				}
				benchAwait(b, ws, `"invocationId":"`+id+`"`)
			}
		})
	}
}

// benchConn starts a hub with the handlers and returns a WebSocket past
// its JSON handshake.
func benchConn(b *testing.B, app Handlers, opt func(*Config)) *websocket.Conn {
	b.Helper()
	cfg := testConfig(b)
	cfg.Logger = nil // quiet: a log line per call would be measured
	opt(&cfg)
	m := newTestMachine(b)
	s, err := New(cfg, newFakePublisher(b, m, true), m)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Handle(testHubName, app); err != nil {
		b.Fatal(err)
	}
	s.Start()
	ts := httptest.NewServer(s)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		_ = s.Close(ctx)
		ts.Close()
	})
	resp, err := http.Post(ts.URL+"/hubs/"+testHubName+"/negotiate?negotiateVersion=1", "text/plain", nil)
	if err != nil {
		b.Fatal(err)
	}
	var n negotiateReply
	err = json.NewDecoder(resp.Body).Decode(&n)
	resp.Body.Close()
	if err != nil || n.ConnectionToken == nil {
		b.Fatalf("negotiate: %v", err)
	}
	u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/hubs/" + testHubName + "?" + url.Values{"id": {*n.ConnectionToken}}.Encode()
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ws.Close() })
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e")); err != nil {
		b.Fatal(err)
	}
	benchAwait(b, ws, "{}")
	return ws
}

// benchAwait reads frames until one holds want.
func benchAwait(b *testing.B, ws *websocket.Conn, want string) {
	_ = ws.SetReadDeadline(time.Now().Add(testWait))
	for {
		_, p, err := ws.ReadMessage()
		if err != nil {
			b.Fatalf("waiting for %s: %v", want, err)
		}
		if bytes.Contains(p, []byte(want)) {
			if bytes.Contains(p, []byte(`"error"`)) {
				b.Fatalf("error: %s", p)
			}
			return
		}
	}
}
