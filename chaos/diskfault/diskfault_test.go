package diskfault

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/raftplane/raftplane/chaos/sandbox"
)

var sb sandbox.Result

// TestMain runs the tests inside the chaos sandbox: the disks are mounted
// in its private mount namespace, never on the host.
func TestMain(m *testing.M) {
	os.Exit(sandbox.Run(func(r sandbox.Result) int { sb = r; return m.Run() }))
}

// TestDisks: a disk holds what is written to it up to its size, Fill
// leaves nothing (a write fails with ENOSPC), Unfill gives the space back,
// and Teardown keeps the contents beside the mount point without the fill.
func TestDisks(t *testing.T) {
	sb.Require(t)
	base := t.TempDir()
	dirs := []string{filepath.Join(base, "n0"), filepath.Join(base, "n1")}
	d, err := Setup(dirs, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(d.Dir(0), "data", "raft.db")
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, []byte("log"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmds, err := d.Fill(0)
	if err != nil || len(cmds) != 1 {
		t.Fatalf("Fill: %v %v", cmds, err)
	}
	t.Logf("%s", cmds[0])
	if free, err := d.Free(0); err != nil || free != 0 {
		t.Fatalf("free after Fill: %d, %v", free, err)
	}
	err = os.WriteFile(filepath.Join(d.Dir(0), "data", "more"), make([]byte, 4096), 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a write to the full disk: %v, want ENOSPC", err)
	}
	if free, err := d.Free(1); err != nil || free < 7<<20 {
		t.Fatalf("the other disk has %d bytes free (%v): filling one filled another", free, err)
	}
	if _, err := d.UnfillAll(); err != nil {
		t.Fatal(err)
	}
	if free, err := d.Free(0); err != nil || free < 7<<20 {
		t.Fatalf("free after Unfill: %d, %v", free, err)
	}
	if err := d.Teardown(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[0]+".kept", "data", "raft.db")); err != nil || string(b) != "log" {
		t.Fatalf("kept copy: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dirs[0], "data")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the mount point still holds the disk's files after Teardown: %v", err)
	}
	if _, err := Setup([]string{filepath.Join(base, "tiny")}, 1000); err == nil {
		t.Fatal("a 1000-byte disk was accepted")
	}
}
