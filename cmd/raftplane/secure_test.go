package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The refusal happens before anything listens or is written to the data
// folder beyond the folder itself.
func TestRun_RefusesExposedPeerPortsWithoutTLS(t *testing.T) {
	dir := t.TempDir()
	err := run(context.Background(), []string{"-data", dir, "-http", "127.0.0.1:0", "-raft", "0.0.0.0:0",
		"-gossip", "127.0.0.1:0", "-advertise", "127.0.0.1"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "-insecure") {
		t.Fatalf("want a refusal naming the fix, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); !os.IsNotExist(err) {
		t.Fatalf("a refused start left raft.db behind: %v", err)
	}
}
