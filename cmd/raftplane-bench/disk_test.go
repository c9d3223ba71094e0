package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDiskFloor runs the probe briefly on a real folder: every tick of
// every writer is a sync or a skip, the quantiles are ordered, the median
// of a tick lies within its syncs' range, and the files are gone after.
func TestDiskFloor(t *testing.T) {
	dir := t.TempDir()
	l, err := diskFloor(context.Background(), dir, 3, 200, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if l.Scenario != "disk" || l.Label != "disk3-s2" || l.Writers != 3 || l.Rate != 200 || l.RecordBytes != diskRecordBytes {
		t.Fatalf("line %+v", l)
	}
	ticks := 100 // 200/s for 0.5 s
	if l.Syncs+l.Skipped > 3*ticks || l.Syncs < 3*(ticks-l.Skipped) || l.Syncs == 0 {
		t.Fatalf("%d syncs and %d skipped ticks of %d ticks x 3 writers", l.Syncs, l.Skipped, ticks)
	}
	if l.SyncP50us > l.SyncP99us || l.QuorumP50us > l.QuorumP99us || l.QuorumP99us > l.QuorumP999us {
		t.Fatalf("quantiles out of order: %+v", l)
	}
	if l.DurationS < 0.45 {
		t.Fatalf("the probe ran %.2f s, want its 0.5 s", l.DurationS)
	}
	left, err := os.ReadDir(dir)
	if err != nil || len(left) != 0 {
		t.Fatalf("left behind in %s: %v %v", dir, left, err)
	}
}

// TestDiskFloor_Errors: bad parameters, a folder that cannot hold files
// and a cancelled context all fail with an error.
func TestDiskFloor_Errors(t *testing.T) {
	if _, err := diskFloor(context.Background(), t.TempDir(), 0, 1000, time.Second); err == nil {
		t.Error("0 writers: no error")
	}
	if _, err := diskFloor(context.Background(), filepath.Join(t.TempDir(), "absent"), 3, 1000, time.Second); err == nil {
		t.Error("absent folder: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := diskFloor(ctx, t.TempDir(), 3, 1000, time.Second); err == nil {
		t.Error("cancelled: no error")
	}
}

// TestAppendDiskLine: the line it appends parses as the table's input.
func TestAppendDiskLine(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run.jsonl")
	if err := os.WriteFile(out, []byte(`{"label":"rp3-s2-client","scenario":"fanout","target_rate":1000}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := appendDiskLine(context.Background(), out, 300*time.Millisecond, io.Discard); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ls, err := parsePeersJSONL(f)
	if err != nil || len(ls) != 2 || ls[1].Scenario != "disk" || ls[1].Writers != 3 || ls[1].Rate != 1000 {
		t.Fatalf("%v %+v", err, ls)
	}
	if tb := buildPeersTable(ls); len(tb.disk) != 1 {
		t.Fatalf("table's disk lines: %+v", tb.disk)
	}
}
