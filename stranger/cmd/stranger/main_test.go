package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Bad flags get exit status 2 and a message naming the flag; nothing runs.
func TestRunRefusesBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no target", nil, "set -raft and/or -gossip"},
		{"unknown attack", []string{"-raft", "127.0.0.1:1", "-attacks", "nuke"}, `unknown attack "nuke"`},
		{"append without -http", []string{"-raft", "127.0.0.1:1", "-attacks", "append"}, "append needs -http"},
		{"raft attack without -raft", []string{"-gossip", "127.0.0.1:1", "-attacks", "stats"}, "stats needs -raft"},
		{"gossip-join without -gossip", []string{"-raft", "127.0.0.1:1", "-attacks", "gossip-join"}, "gossip-join needs -gossip"},
		{"bad tls mode", []string{"-raft", "127.0.0.1:1", "-tls", "maybe"}, `-tls "maybe"`},
		{"cert without files", []string{"-raft", "127.0.0.1:1", "-tls", "cert"}, "needs -cert-file and -key-file"},
		{"files without cert mode", []string{"-raft", "127.0.0.1:1", "-cert-file", "c.pem", "-key-file", "k.pem"}, "need -tls cert"},
		{"bad gossip key", []string{"-gossip", "127.0.0.1:1", "-gossip-key", "%%"}, "-gossip-key: not base64"},
		{"bad timeout", []string{"-raft", "127.0.0.1:1", "-timeout", "0s"}, "-timeout (0s) must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tt.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("ran attacks: %s", stdout.String())
			}
		})
	}
}
