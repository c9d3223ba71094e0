package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/raftplane/raftplane/cluster/wal"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Stores are a node's Raft stores in its data folder: the log in wal/
// (cluster/wal: append-only segment files), Raft's stable store (the term
// and the vote) in raft.db (bbolt), and the snapshots folder. Node.Open
// (unless given Config.RaftStores), the offline recovery and the restore of
// a backup all open them here, so they agree on the file names, the options
// and the snapshots kept.
//
// Through v0.3.0 the log lived in raft.db too. bbolt commits a batch with two
// fdatasyncs and rewrites pages all over the file; an append-only file
// commits with one fdatasync of the bytes appended, which is most of a
// commit's time on the leader and on each follower (docs/performance.md).
// OpenStores moves an older folder's log into wal/ the first time
// (migrateLog).
type Stores struct {
	Bolt  *raftboltdb.BoltStore // the stable store
	WAL   *wal.Log              // the log
	Logs  raft.LogStore         // WAL behind a cache of the newest entries
	Snaps *raft.FileSnapshotStore
}

// snapshotsRetained is how many snapshots the store keeps.
const snapshotsRetained = 2

// walDir is the log's folder in the data folder, and walMigrating the
// folder a migration fills before renaming it to walDir.
const (
	walDir       = "wal"
	walMigrating = "wal.migrating"
)

// OpenStores opens (creating them if missing) the Raft stores of dataDir.
// A second process on the same folder fails after a second instead of
// waiting for the first to exit. Close releases them.
func OpenStores(dataDir string, noSync bool, lg *slog.Logger) (*Stores, error) {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	dbPath, logDir := filepath.Join(dataDir, "raft.db"), filepath.Join(dataDir, walDir)
	// A compaction that stopped (compactBolt) left raft.db as it was.
	if err := os.Remove(dbPath + compactSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	haveWAL, err := exists(logDir)
	if err != nil {
		return nil, fmt.Errorf("cluster: open the log: %w", err)
	}
	var legacy []uint64
	if !haveWAL {
		if legacy, err = boltLogIndexes(dbPath); err != nil {
			return nil, err
		}
	}
	store, err := openBolt(dbPath, noSync, dataDir)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Stores, error) {
		store.Close()
		return nil, err
	}
	if len(legacy) > 0 {
		if err := migrateLog(store, legacy, dataDir, noSync, lg); err != nil {
			return fail(err)
		}
	}
	log, err := wal.Open(logDir, wal.Options{NoSync: noSync})
	if err != nil {
		return fail(fmt.Errorf("cluster: open the log: %w", err))
	}
	if n := log.Repaired(); n > 0 {
		lg.Warn("cut a half-written batch off the end of the log (the process stopped while writing it; Raft had not acknowledged it)",
			"log", logDir, "bytes", n)
	}
	dropped, err := dropMigrated(store, log, lg)
	if err != nil {
		log.Close()
		return fail(err)
	}
	if dropped {
		// bbolt never returns pages to the file system: without a rewrite
		// raft.db would keep the old log's size for good.
		store.Close()
		if before, after, err := compactBolt(dbPath, noSync); err != nil {
			lg.Warn("could not compact raft.db after moving the log out of it; it keeps its size", "err", err)
		} else {
			lg.Info("compacted raft.db after moving the log out of it", "bytes_before", before, "bytes_after", after)
		}
		if store, err = openBolt(dbPath, noSync, dataDir); err != nil {
			log.Close()
			return nil, err
		}
	}
	logs, err := raft.NewLogCache(logCacheSize, log)
	if err != nil {
		log.Close()
		return fail(err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, snapshotsRetained, newHCLog(lg, "snapshot"))
	if err != nil {
		log.Close()
		return fail(fmt.Errorf("cluster: snapshot store: %w", err))
	}
	return &Stores{Bolt: store, WAL: log, Logs: logs, Snaps: snaps}, nil
}

// Close closes the log and raft.db (the snapshot store holds no open file).
func (s *Stores) Close() error { return errors.Join(s.WAL.Close(), s.Bolt.Close()) }

// openBolt opens raft.db.
func openBolt(path string, noSync bool, dataDir string) (*raftboltdb.BoltStore, error) {
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:   path,
		NoSync: noSync,
		// bbolt rewrites its whole free list on every commit unless told
		// not to (Consul offers the same as raft_boltdb NoFreelistSync).
		// The timeout makes a second process on the same data folder fail
		// instead of hang.
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
	})
	if err != nil {
		return nil, boltError(err, dataDir)
	}
	return store, nil
}

func boltError(err error, dataDir string) error {
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("cluster: open raft.db: %w (is a raftplane process still running on %s?)", err, dataDir)
	}
	return fmt.Errorf("cluster: open raft.db: %w", err)
}

// boltLogIndexes lists the indexes of the log entries raft.db holds (the
// log of a folder written before the log moved to wal/), in order; none
// when the file does not exist. raft-boltdb reads entries by index only, and
// its log may have gaps (after a snapshot was installed), so the keys come
// from a read-only pass over its bucket first.
func boltLogIndexes(path string) ([]uint64, error) {
	if ok, err := exists(path); err != nil || !ok {
		return nil, err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, boltError(err, filepath.Dir(path))
	}
	defer db.Close()
	var idx []uint64
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("logs")) // raft-boltdb's bucket of log entries
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("a log key of %d bytes", len(k))
			}
			idx = append(idx, binary.BigEndian.Uint64(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: read the log in raft.db: %w", err)
	}
	return idx, nil
}

// migrateBatch is how many entries the migration writes per append.
const migrateBatch = 256

// migrateLog copies the log entries at indexes (ascending) from raft.db
// into a new wal/ folder. It fills wal.migrating and renames it, so a
// crash leaves either no wal/ (the next start migrates again from the
// start) or a complete one (the next start drops the copies left in
// raft.db: dropMigrated).
func migrateLog(store *raftboltdb.BoltStore, indexes []uint64, dataDir string, noSync bool, lg *slog.Logger) error {
	tmp := filepath.Join(dataDir, walMigrating)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("cluster: move the log to %s: %w", walDir, err)
	}
	w, err := wal.Open(tmp, wal.Options{NoSync: noSync})
	if err != nil {
		return fmt.Errorf("cluster: move the log to %s: %w", walDir, err)
	}
	var batch []*raft.Log
	flush := func() error {
		err := w.StoreLogs(batch)
		batch = batch[:0]
		return err
	}
	for _, i := range indexes {
		if n := len(batch); n == migrateBatch || n > 0 && batch[n-1].Index+1 != i {
			if err := flush(); err != nil { // a gap starts a new segment in wal
				w.Close()
				return fmt.Errorf("cluster: move the log to %s: %w", walDir, err)
			}
		}
		l := new(raft.Log)
		if err := store.GetLog(i, l); err != nil || l.Index != i {
			w.Close()
			return fmt.Errorf("cluster: move the log to %s: read entry %d of raft.db: %v (index %d)", walDir, i, err, l.Index)
		}
		batch = append(batch, l)
	}
	err = flush()
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dataDir, walDir))
	}
	if err == nil && !noSync {
		err = wal.SyncDir(dataDir)
	}
	if err != nil {
		return fmt.Errorf("cluster: move the log to %s: %w", walDir, err)
	}
	lg.Info("moved the Raft log from raft.db to "+walDir+"/ (a data folder of raftplane v0.3 or older)",
		"entries", len(indexes), "first", indexes[0], "last", indexes[len(indexes)-1])
	return nil
}

// dropMigrated deletes the log entries raft.db still holds once wal/ has
// them: a migration that stopped after its rename. Entries that wal/ does
// not hold the same (a release before v0.4 ran on this folder after it
// was migrated and wrote to raft.db's log) are not dropped: opening fails
// and says so, since which log is right is for an operator to decide.
func dropMigrated(store *raftboltdb.BoltStore, log *wal.Log, lg *slog.Logger) (dropped bool, err error) {
	first, err := store.FirstIndex()
	if err != nil {
		return false, err
	}
	last, err := store.LastIndex()
	if err != nil || last == 0 {
		return false, err
	}
	for _, i := range []uint64{first, last} {
		var old, cur raft.Log
		if err := store.GetLog(i, &old); err != nil {
			return false, fmt.Errorf("cluster: read entry %d of raft.db: %w", i, err)
		}
		if err := log.GetLog(i, &cur); err != nil || cur.Term != old.Term || cur.Type != old.Type {
			return false, fmt.Errorf("cluster: raft.db holds log entries %d-%d that %s/ does not hold the same "+
				"(was a raftplane release before v0.4 run on this data folder after a newer one?); "+
				"move %s/ away to go back to raft.db's log", first, last, walDir, walDir)
		}
	}
	if err := store.DeleteRange(first, last); err != nil {
		return false, fmt.Errorf("cluster: drop the moved log from raft.db: %w", err)
	}
	lg.Info("dropped raft.db's copy of the log moved to "+walDir+"/", "first", first, "last", last)
	return true, nil
}

// compactSuffix names the file compactBolt writes beside raft.db.
const compactSuffix = ".compact"

// compactBolt rewrites the bbolt file at path into a new file without its
// free pages and renames it over path. When it fails before the rename,
// path is as it was.
func compactBolt(path string, noSync bool) (before, after int64, err error) {
	tmp := path + compactSuffix
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	src, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: noSync,
		NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return 0, 0, err
	}
	err = bbolt.Compact(dst, src, 1<<20) // each transaction commits (and syncs) itself
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil && !noSync {
		err = wal.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		return 0, 0, err
	}
	nfi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	return fi.Size(), nfi.Size(), nil
}

// exists says whether path exists.
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
