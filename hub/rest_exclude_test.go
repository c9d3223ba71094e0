package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/raftplane/raftplane/fsm"
)

// TestServer_RESTExcludedLimit: with a body limit large enough to carry
// them, more excluded ids than the log takes (fsm.MaxExclude) get a 400
// that says so, before anything is published. Such a send was committed
// once, and every replica panicked decoding it.
func TestServer_RESTExcludedLimit(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) {
		c.APIKey = testAPIKey
		c.MaxBodySize = 8 << 20
	})
	body := func(ids []string) string {
		b, err := json.Marshal(map[string]any{"target": "t", "arguments": []any{1}, "excluded": ids})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	many := func(n int) []string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("c%d", i)
		}
		return ids
	}
	api := "/api/v1/hubs/" + testHubName
	tests := []struct {
		name    string
		path    string
		ids     []string
		status  int
		message string
	}{
		{name: "at the limit", path: api, ids: many(fsm.MaxExclude), status: http.StatusOK},
		{name: "one over the limit", path: api, ids: many(fsm.MaxExclude + 1), status: http.StatusBadRequest,
			message: `"excluded" holds 65537 connection ids, more than the limit of 65536`},
		{name: "one over the limit, group send", path: api + "/groups/g", ids: many(fsm.MaxExclude + 1), status: http.StatusBadRequest,
			message: `more than the limit of 65536`},
		{name: "id too long", path: api, ids: []string{strings.Repeat("x", maxGroupLen+1)}, status: http.StatusBadRequest,
			message: `"excluded" holds a connection id longer than 1024 bytes`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := h.pub.calls.Load()
			st, hdr, b := h.do("POST", tc.path, body(tc.ids), bearerHeader(testAPIKey))
			if st != tc.status {
				t.Fatalf("status %d, want %d; body %.200s", st, tc.status, b)
			}
			if st == http.StatusOK {
				return
			}
			if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Errorf("Content-Type %q", hdr.Get("Content-Type"))
			}
			if e := restError(t, b); !strings.Contains(e.Message, tc.message) {
				t.Fatalf("message %q, want %q", e.Message, tc.message)
			}
			if got := h.pub.calls.Load(); got != calls {
				t.Fatalf("%d Publish calls for a refused send", got-calls)
			}
		})
	}
}

// TestServer_RESTPublishErrors: a command the cluster refuses as invalid
// is the client's error (400); an entry the log rejected is the server's
// (500), and says the command was not applied.
func TestServer_RESTPublishErrors(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.APIKey = testAPIKey })
	for _, tc := range []struct {
		err     error
		status  int
		message string
	}{
		{fmt.Errorf("%w: publish without a target", fsm.ErrInvalid), http.StatusBadRequest, "publish without a target"},
		{fmt.Errorf("%w: entry 7: bad", fsm.ErrRejected), http.StatusInternalServerError, "it was not applied"},
		{errors.New("something else"), http.StatusServiceUnavailable, "cluster unavailable"},
	} {
		h.pub.setFail(tc.err)
		st, _, b := h.do("POST", "/api/v1/hubs/"+testHubName, `{"target":"t"}`, bearerHeader(testAPIKey))
		if st != tc.status {
			t.Errorf("Publish error %v: status %d, want %d", tc.err, st, tc.status)
			continue
		}
		if e := restError(t, b); !strings.Contains(e.Message, tc.message) {
			t.Errorf("Publish error %v: message %q, want %q", tc.err, e.Message, tc.message)
		}
	}
	h.pub.setFail(nil)
}
