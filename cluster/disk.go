package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// A node whose disk fills up (or fails) must say so and refuse writes
// rather than accept them slowly or not at all (issue 15, disk faults).
// Raft already never acknowledges what it did not persist: a leader that
// cannot store its entries fails them and steps down, a follower that
// cannot store them does not acknowledge them, and the log store keeps an
// append whole or not at all (cluster/wal cuts a failed append back off). What this file adds is the node's own
// view: every write to the Raft stores is watched, and from the first that
// fails with an error from the operating system (ENOSPC, EIO, EROFS,
// EDQUOT, ...) until one succeeds again, the node
//   - logs it once, at error level, and once more when writes succeed again;
//   - is not ready (Ready, GET /readyz: 503 with the error);
//   - refuses new submissions at once with ErrDiskFull (clients get 503 and
//     go to another node), instead of forwarding them to the leader and
//     waiting out ApplyTimeout for an entry it cannot store to apply.
// Writes fail from the first failure of any write to the stores until a
// log append succeeds, or a probe does: while writes fail, the node writes
// (and syncs, and removes) a file of DiskProbeBytes in its data folder
// every DiskProbeInterval, so that it notices the space is back even when
// no entry comes to append (a leader backs off from a follower that failed).
// A node given injected stores (Config.RaftStores) probes them instead: a
// file in DataDir would say nothing of them, so it writes DiskProbeBytes
// to its stable store under DiskProbeKey, then empties the value (the
// interface has no delete). Without a probe, a lone node whose stores
// failed once would refuse writes for ever: no entry would come to clear
// the failure.
// Small writes (the term, a vote, a log compaction) do not clear the
// failure: bbolt may fit them in pages it already has on a full disk, and
// a compaction frees space, where an append would still fail. A disk whose
// every write fails (EIO) fails those too, and hashicorp/raft panics when
// it cannot save its term or vote: the node stops (fail-stop) and its
// supervisor starts it again; nothing it did not persist was acknowledged.

// ErrDiskFull is what a node whose writes to its disk fail returns from
// Ready and the submissions it refuses.
var ErrDiskFull = errors.New("cluster: this node cannot write to its disk")

// DiskProbeInterval is how often a node whose writes fail tries one, and
// DiskProbeBytes how much it writes.
const (
	DiskProbeInterval = time.Second
	DiskProbeBytes    = 1 << 20
)

// logCacheSize is the entries Raft's log cache keeps in memory, as
// OpenStores's. The node makes its own cache around the watched store:
// raft.LogCache turns its store's errors into text, so the watcher must be
// below it to see the operating system's error.
const logCacheSize = 1024

// diskProbeName is the probe's file in the data folder.
const diskProbeName = ".disk-probe"

// DiskProbeKey is the stable-store key the probe writes on injected
// stores (Config.RaftStores); raft's own keys never take this name.
const DiskProbeKey = "raftplane-disk-probe"

// diskState is whether this node's writes to its Raft stores fail.
type diskState struct {
	log   *slog.Logger
	where string    // the data folder, or "injected stores", for messages
	hook  *diskHook // the tests' DiskFailFileEnv hook, nil without it

	mu    sync.Mutex
	err   error     // the first failed write since the last that succeeded
	since time.Time // when writes started failing
}

// Err is nil while writes succeed, else an error wrapping ErrDiskFull.
func (d *diskState) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		return nil
	}
	return fmt.Errorf("%w since %s (%s): %w; it refuses writes until it can", ErrDiskFull,
		d.since.UTC().Format(time.RFC3339), d.where, d.err)
}

// failing reports whether writes fail.
func (d *diskState) failing() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err != nil
}

// record notes the outcome of a write; a success clears a failure only
// when clears is set (an append, the probe). Only errors from the
// operating system count: a store closed during shutdown is not a disk
// fault.
func (d *diskState) record(err error, clears bool) {
	var errno syscall.Errno
	if err != nil && !errors.As(err, &errno) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case err == nil && !clears:
	case err != nil && d.err == nil:
		d.err, d.since = err, time.Now()
		d.log.Error("writes to the disk fail: this node refuses new writes and is not ready until they succeed again",
			"stores", d.where, "err", err)
	case err == nil && d.err != nil:
		d.log.Info("writes to the disk succeed again", "stores", d.where, "failed_for", time.Since(d.since).Round(time.Millisecond))
		d.err = nil
	}
}

// write makes a write to the stores, unless the tests' hook fails it
// (diskhook.go), and records its outcome; clears says whether its success
// shows the space is back (record).
func (d *diskState) write(clears bool, do func() error) error {
	err := d.hook.err()
	if err == nil {
		err = do()
	}
	d.record(err, clears)
	return err
}

// watchedLogs is the log store Raft writes through: every write's outcome
// goes to the disk state.
type watchedLogs struct {
	raft.LogStore
	d *diskState
}

func (w watchedLogs) StoreLog(l *raft.Log) error {
	return w.d.write(true, func() error { return w.LogStore.StoreLog(l) })
}

func (w watchedLogs) StoreLogs(ls []*raft.Log) error {
	return w.d.write(true, func() error { return w.LogStore.StoreLogs(ls) })
}

func (w watchedLogs) DeleteRange(lo, hi uint64) error {
	return w.d.write(false, func() error { return w.LogStore.DeleteRange(lo, hi) })
}

// IsMonotonic passes raft.MonotonicLogStore through, which Raft looks for.
func (w watchedLogs) IsMonotonic() bool {
	m, ok := w.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// watchedStable is the stable store Raft writes its term and vote through.
type watchedStable struct {
	raft.StableStore
	d *diskState
}

func (w watchedStable) Set(k, v []byte) error {
	return w.d.write(false, func() error { return w.StableStore.Set(k, v) })
}

func (w watchedStable) SetUint64(k []byte, v uint64) error {
	return w.d.write(false, func() error { return w.StableStore.SetUint64(k, v) })
}

// probeDisk tries a write every DiskProbeInterval while writes fail, until
// the node stops.
func (n *Node) probeDisk() {
	defer n.wg.Done()
	t := time.NewTicker(DiskProbeInterval)
	defer t.Stop()
	buf := make([]byte, DiskProbeBytes)
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if n.disk.failing() {
			_ = n.disk.write(true, func() error { return n.probeWrite(buf) })
		}
	}
}

// probeWrite writes buf where the node's Raft stores are: a file in
// DataDir, or the injected stable store's DiskProbeKey.
func (n *Node) probeWrite(buf []byte) error {
	if n.cfg.RaftStores != nil {
		st := n.cfg.RaftStores.Stable
		return errors.Join(st.Set([]byte(DiskProbeKey), buf), st.Set([]byte(DiskProbeKey), []byte{}))
	}
	return probeFile(filepath.Join(n.cfg.DataDir, diskProbeName), buf)
}

// probeFile writes buf to a new file at path, syncs it and removes it.
func probeFile(path string, buf []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close(), os.Remove(path))
}
