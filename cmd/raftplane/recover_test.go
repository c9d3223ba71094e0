package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/cluster"
)

func TestRecover_BadInvocations(t *testing.T) {
	noID := t.TempDir()
	for args, want := range map[string]string{
		"":                                   "-data is required",
		"-data d extra":                      "unexpected argument",
		"-data " + noID:                      "no -node-id",
		"-data d -node-id n -log-level loud": "-log-level",
		"-data d -node-id n -peers a=1.2.3.4:7000 -peers-file f": "not both",
		"-data d -node-id n -peers a":                            "want id=host:port",
		"-data d -node-id n -peers-file /nonexistent/peers.json": "-peers-file",
		"-data " + noID + " -node-id n":                          "no raft.db",
		"-data " + noID + " -node-id n -dry-run":                 "no raft.db",
	} {
		var out bytes.Buffer
		err := runRecover(strings.Fields(args), &out, &out)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("recover %s: %v, want an error with %q", args, err, want)
		}
	}
	if entries, _ := os.ReadDir(noID); len(entries) != 0 {
		t.Errorf("a refused recovery wrote into the folder: %v", entries)
	}
}

// TestRecover_InProcess: a dry run changes nothing; a peers.json in
// hashicorp/raft's format is read; the recovered node leads alone with the
// same stream and continues past the gap.
func TestRecover_InProcess(t *testing.T) {
	data, raft := t.TempDir(), "127.0.0.1:"+freePort(t)
	args := []string{"-data", data, "-http", "127.0.0.1:0", "-raft", raft, "-gossip", "127.0.0.1:" + freePort(t)}
	n := startNode(t, args...)
	var last string
	for i := range 10 {
		last = broadcast(t, n.base, "say", i)
	}
	before := getStatus(t, n.base)
	n.stop(t)
	id, err := os.ReadFile(filepath.Join(data, "node-id"))
	if err != nil {
		t.Fatal(err)
	}
	self := strings.TrimSpace(string(id))

	var out bytes.Buffer
	if err := runRecover([]string{"-data", data, "-dry-run"}, &out, &out); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out.String())
	}
	if want := self + "=" + raft; strings.Count(out.String(), want) != 2 || !strings.Contains(out.String(), "nothing changed") ||
		!strings.Contains(out.String(), "last log index: ") {
		t.Errorf("dry run said:\n%s", out.String())
	}
	peers := filepath.Join(t.TempDir(), "peers.json")
	os.WriteFile(peers, []byte(`[{"id": "`+self+`", "address": "`+raft+`", "non_voter": false}, {"id": "other", "address": "10.9.9.9:7000", "non_voter": true}]`), 0o600)
	out.Reset()
	if err := runRecover([]string{"-data", data, "-peers-file", peers, "-dry-run"}, &out, &out); err != nil ||
		!strings.Contains(out.String(), "other=10.9.9.9:7000 (Nonvoter)") {
		t.Errorf("dry run with a peers file: %v\n%s", err, out.String())
	}

	out.Reset()
	if err := runRecover([]string{"-data", data}, &out, &out); err != nil {
		t.Fatalf("recover: %v\n%s", err, out.String())
	}
	t.Logf("recover said:\n%s", out.String())
	r := startNode(t, args...)
	// The node is up before its election (the data already names the
	// cluster): wait for it to lead.
	var after status
	deadline := time.Now().Add(30 * time.Second)
	for after = getStatus(t, r.base); after.Node.State != "Leader" && time.Now().Before(deadline); after = getStatus(t, r.base) {
		time.Sleep(20 * time.Millisecond)
	}
	if after.Stream.Epoch != before.Stream.Epoch || after.Stream.LastCursor != before.Stream.LastCursor || after.Node.State != "Leader" {
		t.Errorf("after the recovery %+v, before %+v", after, before)
	}
	next := broadcast(t, r.base, "say", "again")
	_, c := cursorOf(t, next)
	_, l := cursorOf(t, last)
	if c.Index < l.Index+cluster.DefaultIndexGap {
		t.Errorf("first cursor after the recovery %s, last before %s: not past the gap", next, last)
	}
}
