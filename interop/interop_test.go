//go:build unix

// Package interop runs the official SignalR clients against a real raftplane process.
package interop

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

const nodeTestTimeout = 2 * time.Minute

// requireNodeClient returns the node binary, or skips (fails under CI=true) when node or the
// npm packages (cd interop && npm ci) are missing.
func requireNodeClient(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node not found on PATH: install Node.js 20+, then run `cd interop && npm ci`")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "@microsoft", "signalr", "package.json")); err != nil {
		installNodePackages(t)
	}
	return node
}

// hasNodePackage reports whether node_modules holds the npm package name (e.g. "playwright-core").
func hasNodePackage(name string) bool {
	_, err := os.Stat(filepath.Join("node_modules", filepath.FromSlash(name), "package.json"))
	return err == nil
}

var npmOnce sync.Once

// installNodePackages runs `npm ci` from the committed lock file once per
// test binary, so that `go test ./...` alone works on a machine with Node.
func installNodePackages(t *testing.T) {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		skipOrFail(t, "interop/node_modules missing and npm not found: install Node.js 20+ and npm, then run `cd interop && npm ci`")
	}
	var out []byte
	npmOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err = exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error").CombinedOutput()
	})
	if _, serr := os.Stat(filepath.Join("node_modules", "@microsoft", "signalr", "package.json")); serr != nil {
		skipOrFail(t, "`npm ci` in interop did not install @microsoft/signalr (%v): %s", err, out)
	}
}

// TestOfficialJSClient runs basic.test.mjs (the official @microsoft/signalr client) and, when
// @microsoft/signalr-protocol-msgpack is installed, msgpack.test.mjs (the same client with the
// MessagePack protocol) against a single open-mode node with an API key for the REST API.
func TestOfficialJSClient(t *testing.T) {
	node := requireNodeClient(t)
	bin := buildServer(t)
	apiKey := randomKey(t)
	srv := startServer(t, bin, "node1", "-api-key", apiKey)

	files := []string{"basic.test.mjs"}
	if _, err := os.Stat(filepath.Join("node_modules", "@microsoft", "signalr-protocol-msgpack", "package.json")); err == nil {
		files = append(files, "msgpack.test.mjs") // MessagePack hub protocol
		// SSE and long polling (JSON, and MessagePack over long polling)
		files = append(files, "transports.test.mjs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeTestTimeout)
	defer cancel()
	out, err := runNode(ctx, node, ".", []string{
		"RAFTPLANE_URL=" + srv.URL,
		"RAFTPLANE_API_KEY=" + apiKey,
	}, append([]string{"--test"}, files...)...)
	if err != nil {
		t.Fatalf("node --test %v: %v\n%s", files, err, out)
	}
	t.Logf("node --test %v:\n%s", files, out)
}
