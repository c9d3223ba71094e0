package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPeerSecurity(t *testing.T) {
	const lo, all, lan = "127.0.0.1:7000", "0.0.0.0:7000", "10.0.0.1:7946"
	tests := []struct {
		name    string
		p       peerSecurity
		wantErr []string // substrings; nil: no error
	}{
		{name: "one-node default on loopback", p: peerSecurity{raftBind: lo, gossipBind: "127.0.0.1:7946"}},
		{name: "localhost by name", p: peerSecurity{raftBind: "localhost:7000", gossipBind: "localhost:7946"}},
		{name: "ipv6 loopback", p: peerSecurity{raftBind: "[::1]:7000", gossipBind: "[::1]:7946"}},
		{name: "other loopback ips", p: peerSecurity{raftBind: "127.0.0.2:7000", gossipBind: "127.0.0.3:7946"}},
		{name: "all interfaces, nothing set", p: peerSecurity{raftBind: all, gossipBind: "0.0.0.0:7946"},
			wantErr: []string{"-raft 0.0.0.0:7000 and -gossip 0.0.0.0:7946", "peer TLS", "gossip key", "-insecure"}},
		{name: "empty host is every interface", p: peerSecurity{raftBind: ":7000", gossipBind: "127.0.0.1:7946"},
			wantErr: []string{"-raft :7000 listens beyond"}},
		{name: "a host name may resolve anywhere", p: peerSecurity{raftBind: "node1.example:7000", gossipBind: "127.0.0.1:7946"},
			wantErr: []string{"-raft node1.example:7000"}},
		{name: "gossip alone exposed", p: peerSecurity{raftBind: lo, gossipBind: lan},
			wantErr: []string{"-gossip 10.0.0.1:7946 listens"}},
		{name: "gossip key without peer TLS", p: peerSecurity{raftBind: all, gossipBind: lan, gossipKey: true},
			wantErr: []string{"without peer TLS"}},
		{name: "peer TLS without gossip key", p: peerSecurity{raftBind: all, gossipBind: lan, peerTLS: true},
			wantErr: []string{"set -gossip-key"}},
		{name: "peer TLS without gossip key, even on loopback", p: peerSecurity{raftBind: lo, gossipBind: "127.0.0.1:7946", peerTLS: true},
			wantErr: []string{"set -gossip-key"}},
		{name: "production: both", p: peerSecurity{raftBind: all, gossipBind: lan, peerTLS: true, gossipKey: true}},
		{name: "trusted network", p: peerSecurity{raftBind: all, gossipBind: lan, insecure: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPeerSecurity(tt.p)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error mentioning %q, got none", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	api := write("api", "  s3cret\n")
	empty := write("empty", "\n")

	o := &options{apiKeyFile: api}
	if err := o.loadSecrets(); err != nil || o.apiKey != "s3cret" {
		t.Fatalf("api key from file: %q, %v", o.apiKey, err)
	}
	o = &options{apiKey: "x", apiKeyFile: api}
	if err := o.loadSecrets(); err == nil || !strings.Contains(err.Error(), "-api-key and -api-key-file are both set") {
		t.Fatalf("both set: %v", err)
	}
	o = &options{jwtKeyFile: empty}
	if err := o.loadSecrets(); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty file: %v", err)
	}
	o = &options{gossipKeyFile: filepath.Join(dir, "missing")}
	if err := o.loadSecrets(); err == nil || !strings.Contains(err.Error(), "-gossip-key-file") {
		t.Fatalf("missing file: %v", err)
	}
}

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
