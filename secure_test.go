package raftplane

import (
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

func TestReadSecretFiles(t *testing.T) {
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
	key := write("gossip", "c2l4dGVlbiBieXRlcyBrZXk=\n") // "sixteen bytes key": 17 bytes, not an AES key

	c := &Config{APIKeyFile: api}
	if err := c.readSecretFiles(); err != nil || c.APIKey != "s3cret" {
		t.Fatalf("api key from file: %q, %v", c.APIKey, err)
	}
	c = &Config{APIKey: "x", APIKeyFile: api}
	if err := c.readSecretFiles(); err == nil || !strings.Contains(err.Error(), "-api-key and -api-key-file are both set") {
		t.Fatalf("both set: %v", err)
	}
	c = &Config{JWTKeyFile: empty}
	if err := c.readSecretFiles(); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty file: %v", err)
	}
	c = &Config{GossipKeyFile: filepath.Join(dir, "missing")}
	if err := c.readSecretFiles(); err == nil || !strings.Contains(err.Error(), "-gossip-key-file") {
		t.Fatalf("missing file: %v", err)
	}
	c = &Config{GossipKeyFile: key}
	if err := c.readSecretFiles(); err == nil || !strings.Contains(err.Error(), "-gossip-key-file: 17 bytes") {
		t.Fatalf("a gossip key file of the wrong length: %v", err)
	}
}
