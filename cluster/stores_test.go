package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// legacyFolder writes a data folder as raftplane v0.3 left it: the log in
// raft.db, entries at indexes (term = index/10+1), and a term in the
// stable store.
func legacyFolder(t *testing.T, indexes ...uint64) string {
	t.Helper()
	dir := t.TempDir()
	b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, i := range indexes {
		if err := b.StoreLog(legacyEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	return dir
}

func legacyEntry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: i/10 + 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d", i)}
}

// checkLog says whether st's log holds exactly indexes, as legacyEntry
// wrote them.
func checkLog(t *testing.T, st *Stores, indexes ...uint64) {
	t.Helper()
	first, _ := st.Logs.FirstIndex()
	last, _ := st.Logs.LastIndex()
	if first != indexes[0] || last != indexes[len(indexes)-1] {
		t.Fatalf("log holds %d-%d, want %d-%d", first, last, indexes[0], indexes[len(indexes)-1])
	}
	if st.WAL.Len() != len(indexes) {
		t.Fatalf("log holds %d entries, want %d", st.WAL.Len(), len(indexes))
	}
	for _, i := range indexes {
		var l raft.Log
		if err := st.Logs.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if want := legacyEntry(i); l.Term != want.Term || string(l.Data) != string(want.Data) {
			t.Fatalf("entry %d: term %d data %q", i, l.Term, l.Data)
		}
	}
}

func TestOpenStores_MigratesLegacyLog(t *testing.T) {
	// A gap (a snapshot installed over a shorter log) and more entries than
	// one migration batch.
	var indexes []uint64
	for i := uint64(1); i <= 300; i++ {
		indexes = append(indexes, i)
	}
	indexes = append(indexes, 5000, 5001, 5002)
	dir := legacyFolder(t, indexes...)

	for range 2 { // the second open finds wal/ and changes nothing
		st, err := OpenStores(dir, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkLog(t, st, indexes...)
		if last, _ := st.Bolt.LastIndex(); last != 0 {
			t.Fatalf("raft.db still holds log entries up to %d", last)
		}
		if term, err := st.Bolt.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
			t.Fatalf("stable store: term %d, %v", term, err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, walMigrating)); !os.IsNotExist(err) {
		t.Fatalf("%s left behind: %v", walMigrating, err)
	}
}

func TestOpenStores_MigrationInterrupted(t *testing.T) {
	t.Run("before the rename", func(t *testing.T) {
		dir := legacyFolder(t, 1, 2, 3)
		// A half-filled wal.migrating: the next start migrates from scratch.
		if err := os.MkdirAll(filepath.Join(dir, walMigrating), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, walMigrating, "00000000000000000001.wal"), []byte("torn"), 0o644); err != nil {
			t.Fatal(err)
		}
		st, err := OpenStores(dir, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		checkLog(t, st, 1, 2, 3)
	})
	t.Run("after the rename", func(t *testing.T) {
		dir := legacyFolder(t, 1, 2, 3)
		st, err := OpenStores(dir, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		// raft.db still holding the entries wal/ has: they are dropped.
		for i := uint64(1); i <= 3; i++ {
			if err := st.Bolt.StoreLog(legacyEntry(i)); err != nil {
				t.Fatal(err)
			}
		}
		st.Close()
		if st, err = OpenStores(dir, true, nil); err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		checkLog(t, st, 1, 2, 3)
		if last, _ := st.Bolt.LastIndex(); last != 0 {
			t.Fatalf("raft.db still holds log entries up to %d", last)
		}
	})
}

// An older release run on a migrated folder writes its log to raft.db
// again; which log is right is for an operator to say, so opening fails,
// naming both, and changes nothing.
func TestOpenStores_BothLogsDiffer(t *testing.T) {
	dir := legacyFolder(t, 1, 2, 3)
	st, err := OpenStores(dir, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(3); i <= 4; i++ {
		if err := st.Bolt.StoreLog(&raft.Log{Index: i, Term: 9, Type: raft.LogCommand}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	_, err = OpenStores(dir, true, nil)
	if err == nil || !strings.Contains(err.Error(), "raft.db holds log entries 3-4") {
		t.Fatalf("open: %v", err)
	}
	b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if last, _ := b.LastIndex(); last != 4 {
		t.Fatalf("raft.db's log changed: last %d", last)
	}
}

func TestOpenStores_Fresh(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStores(dir, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if has, err := raft.HasExistingState(st.Logs, st.Bolt, st.Snaps); err != nil || has {
		t.Fatalf("fresh folder: state %v, %v", has, err)
	}
	if _, err := OpenStores(dir, true, nil); err == nil {
		t.Fatal("a second open of the same folder succeeded")
	}
}

// bbolt keeps the pages it frees: the move compacts raft.db, or it would
// keep the old log's size for good. A compaction that stopped is left
// behind as raft.db.compact and removed at the next open.
func TestOpenStores_MigrationCompactsRaftDB(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "raft.db")
	b, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 8<<10)
	for i := uint64(1); i <= 400; i++ {
		if err := b.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: big}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	b.Close()
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+compactSuffix, []byte("left by a compaction that stopped"), 0o600); err != nil {
		t.Fatal(err)
	}

	st, err := OpenStores(dir, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() >= before.Size()/4 {
		t.Fatalf("raft.db is %d bytes after the move, %d before", after.Size(), before.Size())
	}
	if term, err := st.Bolt.GetUint64([]byte("CurrentTerm")); err != nil || term != 3 {
		t.Fatalf("stable store after the compaction: term %d, %v", term, err)
	}
	if st.WAL.Len() != 400 {
		t.Fatalf("the log holds %d entries, want 400", st.WAL.Len())
	}
	if _, err := os.Stat(path + compactSuffix); !os.IsNotExist(err) {
		t.Fatalf("%s left behind: %v", compactSuffix, err)
	}
}
