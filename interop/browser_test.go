//go:build unix

package interop

import (
	"context"
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
// the official client's browser bundles (the client and the MessagePack
// protocol) from node_modules and connects to a three-node cluster on other
// origins (allowed with -allowed-origins), over every transport x protocol
// pair: WebSockets, Server-Sent Events and long polling with JSON, WebSockets
// and long polling with MessagePack. A real headless Chromium runs it and the
// test reads the page's result.
func TestBrowser_ChromiumCrossOrigin(t *testing.T) {
	node := requireNodeClient(t)
	if !hasNodePackage("playwright-core") {
		skipOrFail(t, "interop/node_modules/playwright-core missing: run `cd interop && npm ci`")
	}
	requireMsgpack(t)
	chrome := chromiumPath(t)
	bundles := map[string]string{
		"/signalr.js":                  filepath.Join("node_modules", "@microsoft", "signalr", "dist", "browser", "signalr.js"),
		"/signalr-protocol-msgpack.js": filepath.Join("node_modules", "@microsoft", "signalr-protocol-msgpack", "dist", "browser", "signalr-protocol-msgpack.js"),
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	origin := "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	for path, file := range bundles {
		if _, err := os.Stat(file); err != nil {
			t.Fatalf("browser bundle: %v", err)
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, file) })
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join("browser", "index.html"))
	})
	page := &http.Server{Handler: mux}
	go func() { _ = page.Serve(ln) }()
	t.Cleanup(func() { page.Close() })

	bin := buildServer(t)
	nodes := startCluster(t, bin, 3, "-allowed-origins", origin)
	var hubs []string
	for _, s := range nodes {
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
