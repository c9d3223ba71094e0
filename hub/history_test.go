package hub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

type historyReply struct {
	Messages []struct {
		Cursor    string          `json:"cursor"`
		Target    string          `json:"target"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"messages"`
	Next    string `json:"next"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Oldest  string `json:"oldest"`
}

func (h *testHub) history(t *testing.T, query string) (int, historyReply) {
	t.Helper()
	st, _, body := h.do(http.MethodGet, "/api/v1/hubs/"+testHubName+"/groups/room/messages"+query, "", nil)
	var r historyReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("history %s: %v: %s", query, err, body)
	}
	return st, r
}

func sendREST(t *testing.T, h *testHub, path, body string) string {
	t.Helper()
	st, _, b := h.do(http.MethodPost, "/api/v1/hubs/"+testHubName+path, body, nil)
	if st != http.StatusOK {
		t.Fatalf("POST %s: %d %s", path, st, b)
	}
	var r struct{ Cursor string }
	_ = json.Unmarshal(b, &r)
	return r.Cursor
}

func TestServer_GroupHistory(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	var room []string
	for i := range 5 {
		room = append(room, sendREST(t, h, "/groups/room", fmt.Sprintf(`{"target":"say","arguments":[%d]}`, i)))
		sendREST(t, h, "/groups/other", `{"target":"say","arguments":["x"]}`) // not in room's history
		sendREST(t, h, "", `{"target":"news"}`)                               // broadcasts neither
	}

	st, all := h.history(t, "")
	if st != http.StatusOK || len(all.Messages) != 5 {
		t.Fatalf("full history: status %d, %d messages: %+v", st, len(all.Messages), all)
	}
	for i, m := range all.Messages {
		if m.Cursor != room[i] || m.Target != "say" || string(m.Arguments) != fmt.Sprintf("[%d]", i) {
			t.Fatalf("message %d = %+v, want cursor %s say([%d])", i, m, room[i], i)
		}
	}

	st, after := h.history(t, "?after="+room[1])
	if st != http.StatusOK || len(after.Messages) != 3 || after.Messages[0].Cursor != room[2] {
		t.Fatalf("after %s: status %d %+v", room[1], st, after)
	}

	// Paging: limit 2 twice, continuing from "next", covers the rest exactly.
	_, p1 := h.history(t, "?limit=2&after="+room[0])
	_, p2 := h.history(t, "?limit=2&after="+p1.Next)
	var got []string
	for _, m := range append(p1.Messages, p2.Messages...) {
		got = append(got, m.Cursor)
	}
	if strings.Join(got, ",") != strings.Join(room[1:5], ",") {
		t.Fatalf("paged cursors %v, want %v", got, room[1:5])
	}

	for _, tc := range []struct {
		name, query string
		status      int
	}{
		{"malformed cursor", "?after=nonsense", http.StatusBadRequest},
		{"bad limit", "?limit=0", http.StatusBadRequest},
		{"limit too big", "?limit=100000", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, r := h.history(t, tc.query); st != tc.status {
				t.Fatalf("status %d (%+v), want %d", st, r, tc.status)
			}
		})
	}

	t.Run("other cluster's cursor is gone", func(t *testing.T) {
		st, r := h.history(t, "?after=otherepoch:3:0")
		if st != http.StatusGone || !strings.Contains(r.Message, "another cluster") || r.Oldest == "" {
			t.Fatalf("status %d %+v, want 410 naming another cluster with the oldest cursor", st, r)
		}
	})
}

func TestServer_GroupHistoryExpiredCursor(t *testing.T) {
	t.Parallel()
	m, err := fsm.New(fsm.Config{CacheMaxEntries: 3, CacheMaxBytes: 1 << 20, CacheMaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := startTestHub(t, testConfig(t), m, newFakePublisher(t, m, true))
	first := sendREST(t, h, "/groups/room", `{"target":"say","arguments":[0]}`)
	for i := 1; i < 6; i++ {
		sendREST(t, h, "/groups/room", fmt.Sprintf(`{"target":"say","arguments":[%d]}`, i))
	}
	st, r := h.history(t, "?after="+first)
	if st != http.StatusGone || !strings.Contains(r.Message, "cursor expired") || r.Oldest == "" {
		t.Fatalf("status %d %+v, want 410 cursor expired with the oldest cursor", st, r)
	}
	// The oldest cursor it names is a valid place to resume from.
	st, r2 := h.history(t, "?after="+r.Oldest)
	if st != http.StatusOK || len(r2.Messages) != 3 {
		t.Fatalf("resume from oldest %s: status %d %+v, want the 3 cached messages", r.Oldest, st, r2)
	}
}
