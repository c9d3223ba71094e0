//go:build unix

package interop

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftplane/raftplane/internal/testproc"
)

// buildChat builds the chat example (a Go program embedding raftplane with
// hub methods of its own), once per test binary, and returns its path.
func buildChat(t *testing.T) string {
	t.Helper()
	return testproc.Build(t, "github.com/raftplane/raftplane/examples/chat")
}

// signalRBundle is the official client's browser bundle from node_modules.
func signalRBundle(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("node_modules", "@microsoft", "signalr", "dist", "browser", "signalr.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		skipOrFail(t, "the browser bundle is missing (%v): run `cd interop && npm ci`", err)
	}
	return p
}

// TestOfficialJSClient_AppMethods: the official client against three nodes
// of the chat example: its Go methods answer with results and errors, their
// sends reach clients on every node in one order (JSON and MessagePack);
// -client-methods none leaves no built-in; OnConnected refuses an anonymous
// client with its message; and a stateful-reconnect client whose node is
// killed (kill -9) while its invocations are in flight resends them to
// another node, where each is applied once: the room gets every message
// exactly once, in order.
func TestOfficialJSClient_AppMethods(t *testing.T) {
	node := requireNodeClient(t)
	requireMsgpack(t)
	bin := buildChat(t)
	nodes := startCluster(t, bin, 3, "-chat-burst", "100000", "-chat-every", "1ms")
	var backends, urls []string
	for _, n := range nodes {
		backends = append(backends, n.HTTPAddr)
		urls = append(urls, n.URL)
	}
	lb := startSkippingBalancer(t, backends...)
	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("conn")
		for _, n := range nodes {
			var ci struct {
				Node string `json:"node"`
			}
			if err := getJSON(n, "/api/v1/hubs/chat/connections/"+id, &ci); err != nil {
				continue
			}
			for i, holder := range nodes {
				if st, err := getStatus(holder); err == nil && st.Node.NodeID == ci.Node {
					holder.Kill(t)
					fmt.Fprintf(w, "%d", i)
					return
				}
			}
		}
		http.Error(w, "no node holds "+id, http.StatusNotFound)
	}))
	defer control.Close()
	ctx, cancel := context.WithTimeout(context.Background(), nodeTestTimeout)
	defer cancel()
	out, err := runNode(ctx, node, ".", []string{"RAFTPLANE_URL=" + lb.URL(), "RAFTPLANE_NODES=" + strings.Join(urls, ","),
		"RAFTPLANE_CONTROL=" + control.URL}, "--test", "app.test.mjs")
	if err != nil {
		t.Fatalf("node --test app.test.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestChatExample_Chromium: the chat example's page, with the official
// client in a real headless Chromium, open on two nodes as two users: each
// sees what the other types, and the page shows a refusal of the
// application (an empty message) as an error line.
func TestChatExample_Chromium(t *testing.T) {
	node := requireNodeClient(t)
	if !hasNodePackage("playwright-core") {
		skipOrFail(t, "interop/node_modules/playwright-core missing: run `cd interop && npm ci`")
	}
	chrome := chromiumPath(t)
	bin := buildChat(t)
	nodes := startCluster(t, bin, 3, "-signalr-js", signalRBundle(t))
	ctx, cancel := context.WithTimeout(context.Background(), nodeTestTimeout)
	defer cancel()
	shot := filepath.Join(t.TempDir(), "chat.png")
	out, err := runNode(ctx, node, ".", []string{"CHAT_URLS=" + nodes[0].URL + "," + nodes[1].URL, "CHROMIUM=" + chrome,
		"SCREENSHOT=" + shot}, "--test", "chat-browser.test.mjs")
	if err != nil {
		t.Fatalf("node --test chat-browser.test.mjs: %v\n%s", err, out)
	}
	t.Logf("%s\nscreenshot of bob's page: %s", out, shot)
}
