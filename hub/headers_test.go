package hub

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestCursorHeader_JavaClient: the official Java client cannot take hub
// message headers (it throws "Headers not implemented yet."): a connection
// whose User-Agent names it gets its Invocations without the cursor
// header, as ASP.NET Core sends them; every other client gets the cursor.
func TestCursorHeader_JavaClient(t *testing.T) {
	h := newTestHub(t)
	java := http.Header{"User-Agent": {"Microsoft SignalR/9.0 (9.0.3; Linux; Java; 17.0.13; Eclipse Adoptium)"}}
	jc := h.connectWith(testHubName, url.Values{"negotiateVersion": {"1"}, "user": {"j"}}, java)
	js := h.connect(testHubName, "s")
	js.callOK("Broadcast", "news", 1)
	got := jc.waitInvocations("news", 1)[0]
	if strings.Contains(got.Raw, "headers") {
		t.Fatalf("the Java client got %s, want no headers", got.Raw)
	}
	if other := js.waitInvocations("news", 1)[0]; other.Headers["cursor"] == "" {
		t.Fatalf("another client got %s, want the cursor header", other.Raw)
	}
	for ua, want := range map[string]bool{
		"Microsoft SignalR/9.0 (9.0.3; Linux; Java; 17)":                             true,
		"Microsoft SignalR/8.0 (8.0.0; Unknown OS; NodeJS; Unknown Runtime Version)": false,
		"Java/17 (a crawler)": false, "": false,
	} {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("User-Agent", ua)
		if got := refusesHeaders(r); got != want {
			t.Errorf("refusesHeaders(%q) = %v, want %v", ua, got, want)
		}
	}
}
