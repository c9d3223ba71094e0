package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// enospc is what a write to a full disk returns.
var enospc = &fs.PathError{Op: "write", Path: "/data/raft.db", Err: syscall.ENOSPC}

// TestDiskState: only errors from the operating system count, the first
// failure and the recovery are logged once each, and Err wraps ErrDiskFull
// and the cause.
func TestDiskState(t *testing.T) {
	t.Parallel()
	logs := &warnCounter{}
	d := &diskState{log: slog.New(logs), where: "/data"}
	d.record(errors.New("database not open"), true) // a store closed at shutdown
	if d.Err() != nil {
		t.Fatalf("a non-disk error counted: %v", d.Err())
	}
	d.record(enospc, false)
	d.record(enospc, true)
	err := d.Err()
	if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "/data") {
		t.Fatalf("Err: %v, want ErrDiskFull wrapping ENOSPC and naming the data folder", err)
	}
	if n := logs.matching("writes to the disk fail"); n != 1 {
		t.Fatalf("%d error lines for two failed writes, want 1", n)
	}
	d.record(nil, false) // a small write fitting in the pages bbolt has
	if d.Err() == nil {
		t.Fatal("a small write cleared the failure")
	}
	d.record(nil, true)
	if d.Err() != nil {
		t.Fatalf("still failing after an append succeeded: %v", d.Err())
	}
	if n := logs.matching("writes to the disk"); n != 1 { // the recovery is at info
		t.Fatalf("%d warning-or-error lines in all, want 1", n)
	}
}

// TestDiskState_Readiness: a node whose writes fail is not ready, whatever
// its Raft state, and says why.
func TestDiskState_Readiness(t *testing.T) {
	t.Parallel()
	disk := (&diskState{err: enospc, since: time.Now(), where: "/data"}).Err()
	for _, st := range []raft.RaftState{raft.Leader, raft.Follower} {
		err := readiness(readyView{state: st, leaderID: "a", lastContact: time.Now(), epoch: "c1", disk: disk}, time.Now(), time.Second)
		if !errors.Is(err, ErrDiskFull) {
			t.Errorf("%s with a failing disk: ready = %v, want ErrDiskFull", st, err)
		}
	}
}

// TestWatchedStores: Raft's writes through the wrappers reach the disk
// state; reads and the optional interface pass through.
func TestWatchedStores(t *testing.T) {
	t.Parallel()
	d := &diskState{log: slog.New(&warnCounter{}), where: "/data"}
	logs := watchedLogs{LogStore: failingLogs{raft.NewInmemStore()}, d: d}
	if err := logs.StoreLog(&raft.Log{Index: 1, Data: []byte("x")}); !errors.Is(err, syscall.ENOSPC) || d.Err() == nil {
		t.Fatalf("StoreLog: %v, disk %v", err, d.Err())
	}
	stable := watchedStable{StableStore: raft.NewInmemStore(), d: d}
	if err := stable.SetUint64([]byte("CurrentTerm"), 2); err != nil || d.Err() == nil {
		t.Fatalf("SetUint64: %v, disk %v; want it to leave the failure", err, d.Err())
	}
	ok := watchedLogs{LogStore: raft.NewInmemStore(), d: d}
	if err := ok.StoreLogs([]*raft.Log{{Index: 1, Data: []byte("x")}}); err != nil || d.Err() != nil {
		t.Fatalf("StoreLogs: %v, disk %v; want it to clear the failure", err, d.Err())
	}
	if _, ok := any(logs).(raft.MonotonicLogStore); !ok || logs.IsMonotonic() {
		t.Fatal("IsMonotonic: want the interface, false for a store that is not")
	}
}

// failingLogs fails every write with ENOSPC.
type failingLogs struct{ raft.LogStore }

func (failingLogs) StoreLog(*raft.Log) error      { return enospc }
func (failingLogs) StoreLogs([]*raft.Log) error   { return enospc }
func (failingLogs) DeleteRange(_, _ uint64) error { return enospc }

// TestNode_DiskFullRefusesWrites: a node whose writes fail refuses
// submissions at once, is not ready, and its probe notices when writes
// succeed again; then it publishes again.
func TestNode_DiskFullRefusesWrites(t *testing.T) {
	t.Parallel()
	s := startSolo(t, nil)
	n := s.node
	// The new leader's last write of its own (raiseFormat) is an append,
	// which clears a failure: fail the disk after it, or Ready may find
	// the failure cleared already.
	waitFor(t, "the leader to record the log format", func() error {
		if f := s.machine.Format(); f < fsm.LogFormat {
			return fmt.Errorf("format %d, want %d", f, fsm.LogFormat)
		}
		return nil
	})
	n.disk.record(enospc, true)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	start := time.Now()
	_, err := n.Publish(ctx, testCommand("while-full"))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Publish with the disk full: %v, want ErrDiskFull", err)
	}
	t.Logf("refused after %s: %v", time.Since(start), err)
	if err := n.Ready(time.Second); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Ready with the disk full: %v", err)
	}
	// The real disk has room: the probe's write succeeds.
	waitFor(t, "the probe to find the disk writable", func() error { return n.Ready(time.Second) })
	if _, err := n.Publish(ctx, testCommand("after")); err != nil {
		t.Fatalf("Publish once the disk is writable: %v", err)
	}
	if s.logs.matching("writes to the disk fail") != 1 {
		t.Errorf("the failure was not logged once at error level")
	}
}

// TestDiskHook: while the DiskFailFileEnv file exists, every watched write
// fails with EIO before reaching the store, and the disk state says so;
// once it is gone, an append goes through and clears the failure.
func TestDiskHook(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "diskfail")
	h := newDiskHook(func(k string) string {
		if k == DiskFailFileEnv {
			return file
		}
		return ""
	})
	if h == nil || h.err() != nil {
		t.Fatalf("hook %v: want one, off (no file yet)", h)
	}
	if newDiskHook(func(string) string { return "" }) != nil {
		t.Fatal("a hook without the variable")
	}
	d := &diskState{log: slog.New(&warnCounter{}), where: "/data", hook: h}
	store := raft.NewInmemStore()
	logs := watchedLogs{LogStore: store, d: d}
	stable := watchedStable{StableStore: store, d: d}
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.poll(nil)
	if err := logs.StoreLogs([]*raft.Log{{Index: 1, Data: []byte("x")}}); !errors.Is(err, syscall.EIO) || !errors.Is(d.Err(), ErrDiskFull) {
		t.Fatalf("StoreLogs with the hook on: %v, disk %v; want EIO and a failing disk", err, d.Err())
	}
	if err := stable.SetUint64([]byte("CurrentTerm"), 2); !errors.Is(err, syscall.EIO) {
		t.Fatalf("SetUint64 with the hook on: %v", err)
	}
	if last, _ := store.LastIndex(); last != 0 {
		t.Fatalf("the store got index %d while writes failed", last)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	h.poll(nil)
	if err := logs.StoreLogs([]*raft.Log{{Index: 1, Data: []byte("x")}}); err != nil || d.Err() != nil {
		t.Fatalf("StoreLogs with the hook off: %v, disk %v; want it stored and the failure cleared", err, d.Err())
	}
}
