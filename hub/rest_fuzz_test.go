package hub

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzRESTRequest: any method, path under /api/v1/, query and body gets an
// answer below 500 (a 4xx that says why), never a panic. The server's
// publisher is the synchronous fake over a real machine, so sends and
// group changes are applied as they would be on a node.
func FuzzRESTRequest(f *testing.F) {
	for _, s := range [][3]string{
		{"status", "", ""},
		{"cluster", "", ""},
		{"hubs/chat", "", `{"target":"t","arguments":[1,"a",{}]}`},
		{"hubs/chat", "", `{"target":"t","arguments":{}}`},
		{"hubs/chat", "", `{"target":"","arguments":[]}`},
		{"hubs/chat", "", `{"target":"t","excluded":["a",""]}`},
		{"hubs/chat", "", `{"target":"t","excluded":null,"arguments":null}`},
		{"hubs/chat", "", `not json`},
		{"hubs/chat/groups/g", "", `{"target":"t"}`},
		{"hubs/chat/users/u", "", `{"target":"t"}`},
		{"hubs/chat/connections/c", "", `{"target":"t"}`},
		{"hubs/chat/groups/g/connections/c", "", ""},
		{"hubs/chat/connections/c", "reason=" + strings.Repeat("r", 2000), ""},
		{"hubs/chat/groups/g/messages", "after=testepoc:1:1&limit=5", ""},
		{"hubs/chat/groups/g/messages", "after=garbage&limit=-1", ""},
		{"hubs/chat/groups/g/messages", "limit=99999999999999999999", ""},
		{"hubs/chat/groups/g/messages", "after=other:1:1", ""},
		{"hubs/chat/groups/g/messages", "after=testepoc:0:0", ""},
		{"hubs/chat/groups/g/messages", "after=testepoc:18446744073709551615:18446744073709551615", ""},
		{"hubs/bad%20hub/users/u", "", `{"target":"t"}`},
		{"hubs/" + strings.Repeat("h", 200), "", `{"target":"t"}`},
		{"hubs/chat/groups/" + strings.Repeat("g", 2000), "", `{"target":"t"}`},
		{"hubs//groups/g", "", ""},
	} {
		for m := range 4 {
			f.Add(uint8(m), s[0], s[1], s[2])
		}
	}
	srv := fuzzServer(f)
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead}
	f.Fuzz(func(t *testing.T, m uint8, path, query, body string) {
		hdr := http.Header{"Content-Type": {"application/json"}}
		rec := serveRaw(srv, methods[int(m)%len(methods)], "/api/v1/"+path, query, hdr, body)
		checkAnswer(t, "REST "+methods[int(m)%len(methods)]+" "+path, rec)
	})
}
