//go:build unix

package interop

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// chromiumPath finds Debian's chromium (or $CHROMIUM).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		skipOrFail(t, "chromium not found: install Debian's chromium package (apt-get install chromium) or set CHROMIUM")
	}
	return p
}

// TestBrowser_ChromiumCrossOrigin serves a page from one origin that loads
// the official client's browser bundle from node_modules and connects to a
// three-node cluster on other origins (allowed with -allowed-origins), over
// WebSockets, Server-Sent Events and long polling; a real headless Chromium
// runs it and the test reads the page's result.
func TestBrowser_ChromiumCrossOrigin(t *testing.T) {
	node := requireNodeClient(t)
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		skipOrFail(t, "interop/node_modules/playwright-core missing: run `cd interop && npm ci`")
	}
	chrome := chromiumPath(t)
	bundle := filepath.Join("node_modules", "@microsoft", "signalr", "dist", "browser", "signalr.js")
	if _, err := os.Stat(bundle); err != nil {
		t.Fatalf("browser bundle: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	origin := "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/signalr.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, bundle) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join("browser", "index.html"))
	})
	page := &http.Server{Handler: mux}
	go func() { _ = page.Serve(ln) }()
	t.Cleanup(func() { page.Close() })

	bin := buildServer(t)
	args := []string{"-allowed-origins", origin}
	nodes := make([]*server, 3)
	nodes[0] = startServerAt(t, bin, "node1", nodeAddrs(t), args...)
	waitReady(t, nodes[0], readyTimeout)
	for i := 1; i < 3; i++ {
		nodes[i] = startServerAt(t, bin, fmt.Sprintf("node%d", i+1), nodeAddrs(t), append(args, "-join", nodes[0].Addrs.Gossip)...)
	}
	var hubs []string
	for _, s := range nodes {
		waitReady(t, s, readyTimeout)
		hubs = append(hubs, s.URL)
	}

	ctx, cancel := context.WithTimeout(context.Background(), nodeTestTimeout)
	defer cancel()
	pageURL := origin + "/?" + url.Values{"hubs": {strings.Join(hubs, ",")}}.Encode()
	out, err := runNode(ctx, node, ".", []string{"PAGE_URL=" + pageURL, "CHROMIUM=" + chrome}, "--test", "browser.test.mjs")
	if err != nil {
		t.Fatalf("node --test browser.test.mjs: %v\n%s", err, out)
	}
	t.Logf("browser.test.mjs:\n%s", out)
}
