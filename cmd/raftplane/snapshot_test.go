package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/fsm"
)

func TestParseWithFile(t *testing.T) {
	for _, args := range [][]string{{"f.snap", "-data", "d"}, {"-data", "d", "f.snap"}, {"-data=d", "f.snap"}} {
		fs, data := dataFlags()
		file, err := parseWithFile(fs, args)
		if err != nil || file != "f.snap" || *data != "d" {
			t.Errorf("%q: file %q data %q err %v", args, file, *data, err)
		}
	}
	for args, want := range map[string]string{"": "no FILE", "a b": "one FILE only", "a -nope": "not defined"} {
		fs, _ := dataFlags()
		if _, err := parseWithFile(fs, strings.Fields(args)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", args, err, want)
		}
	}
}

// dataFlags is a flag set with one -data flag.
func dataFlags() (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs, fs.String("data", "", "")
}

func TestSnapshot_BadInvocations(t *testing.T) {
	ctx := context.Background()
	var out, errw bytes.Buffer
	for args, want := range map[string]string{
		"":                                      "say save, inspect or restore",
		"backup x":                              "unknown subcommand",
		"save":                                  "no FILE",
		"save -api-key a -api-key-file b f":     "not both",
		"save -timeout 0s f":                    "must be positive",
		"save -ca-file /nonexistent f":          "-ca-file",
		"inspect /nonexistent/f":                "no such file",
		"restore f":                             "-data is required",
		"restore -data d -raft 0.0.0.0:7000 f":  "listens on all interfaces",
		"restore -data d -raft 127.0.0.1:0 f":   "must be fixed",
		"restore -data d -raft nonsense f":      "-raft",
		"restore -data d /nonexistent/f.snap":   "no such file",
		"restore -data d -index-gap -1 f.snap":  "invalid value",
		"save -http 127.0.0.1:1 -timeout 1s f1": "snapshot save",
	} {
		err := runSnapshot(ctx, strings.Fields(args), &out, &errw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("snapshot %s: %v, want an error with %q", args, err, want)
		}
	}
	if err := runSnapshot(ctx, []string{"help"}, &out, &errw); err != nil || !strings.Contains(out.String(), "snapshot restore") {
		t.Errorf("help: %v\n%s", err, out.String())
	}
}

// TestSnapshotSave_RefusesWhatIsNotABackup: a node's error, or a body
// that is not a whole backup, leaves no file behind.
func TestSnapshotSave_RefusesWhatIsNotABackup(t *testing.T) {
	m, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	snap, err := m.Snapshot() // no cluster id: a backup of nothing
	if err != nil {
		t.Fatal(err)
	}
	var empty bytes.Buffer
	if err := cluster.WriteBackup(&empty, cluster.BackupHeader{}, snap); err != nil {
		t.Fatal(err)
	}
	bodies := map[string]struct {
		code int
		body []byte
		want string
	}{
		"refused":   {http.StatusUnauthorized, []byte(`{"code":"Unauthorized","message":"missing API key"}`), "401 Unauthorized"},
		"garbage":   {http.StatusOK, []byte("hello"), "not a whole backup"},
		"truncated": {http.StatusOK, empty.Bytes()[:empty.Len()-3], "not a whole backup"},
		"no state":  {http.StatusOK, empty.Bytes(), "holds no cluster id"},
	}
	for name, b := range bodies {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/v1/snapshot" || r.Header.Get("Authorization") != "Bearer k" {
					w.WriteHeader(http.StatusTeapot)
					return
				}
				w.WriteHeader(b.code)
				w.Write(b.body)
			}))
			defer srv.Close()
			dir := t.TempDir()
			file := filepath.Join(dir, "out.snap")
			var out bytes.Buffer
			err := runSnapshot(context.Background(), []string{"save", "-http", srv.URL, "-api-key", "k", file}, &out, &out)
			if err == nil || !strings.Contains(err.Error(), b.want) {
				t.Fatalf("got %v, want %q", err, b.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// TestSnapshot_SaveRestoreInProcess: save from a running node, inspect,
// restore into a new data folder, and a node started there serves the
// same stream under the same cluster id, and continues past the gap.
func TestSnapshot_SaveRestoreInProcess(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, "-data", t.TempDir(), "-http", "127.0.0.1:0", "-raft", "127.0.0.1:"+freePort(t), "-gossip", "127.0.0.1:"+freePort(t))
	var last string
	for i := range 20 {
		last = broadcast(t, n.base, "say", i)
	}
	before := getStatus(t, n.base)
	file := filepath.Join(t.TempDir(), "b.snap")
	var out bytes.Buffer
	// No -api-key on the node: backups go to loopback clients.
	if err := runSnapshot(ctx, []string{"save", "-http", n.base, file}, &out, &out); err != nil {
		t.Fatalf("save: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "last "+last) || !strings.Contains(out.String(), "cluster id      "+before.Stream.Epoch) {
		t.Errorf("save said:\n%s", out.String())
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the file: %v %v", fi, err)
	}
	out.Reset()
	if err := runSnapshot(ctx, []string{"inspect", file}, &out, &out); err != nil || !strings.Contains(out.String(), "checksum verified") {
		t.Fatalf("inspect: %v\n%s", err, out.String())
	}
	n.stop(t)

	data, raft := filepath.Join(t.TempDir(), "restored"), "127.0.0.1:"+freePort(t)
	out.Reset()
	if err := runSnapshot(ctx, []string{"restore", file, "-data", data, "-raft", raft, "-node-id", "phoenix"}, &out, &out); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	if id, err := os.ReadFile(filepath.Join(data, "node-id")); err != nil || string(id) != "phoenix\n" {
		t.Errorf("node-id %q %v", id, err)
	}
	// A second restore into the same folder is refused.
	if err := runSnapshot(ctx, []string{"restore", file, "-data", data, "-raft", raft}, &out, &out); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore into a used folder: %v", err)
	}
	r := startNode(t, "-data", data, "-http", "127.0.0.1:0", "-raft", raft, "-gossip", "127.0.0.1:"+freePort(t))
	after := getStatus(t, r.base)
	if after.Stream.Epoch != before.Stream.Epoch || after.Stream.LastCursor != before.Stream.LastCursor || after.Stream.Cached != before.Stream.Cached {
		t.Errorf("restored %+v, saved %+v", after.Stream, before.Stream)
	}
	next := broadcast(t, r.base, "say", "again")
	_, c := cursorOf(t, next)
	_, l := cursorOf(t, last)
	if c.Index < l.Index+cluster.DefaultIndexGap {
		t.Errorf("first cursor after the restore %s, last before %s: not past the gap", next, last)
	}
}
