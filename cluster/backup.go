package cluster

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// A backup file is a point-in-time copy of the replicated state (the
// message cache with its cursors, the connections and their groups, the
// duplicate window, the cluster id and secret), as the state machine
// snapshots it for Raft, in a frame that can be checked on its own:
//
//	"raftplane-snapshot\n"               magic (19 bytes)
//	uint32 n, n bytes                    header, JSON (BackupHeader)
//	{uint32 n, n bytes}                  the state, in chunks of 1 to maxBackupChunk bytes
//	uint32 0                             end of the state
//	32 bytes                             SHA-256 of every byte before it
//
// Integers are big-endian. A truncated or altered file fails the checksum
// (or the framing) when it is read to the end, before anything uses it.
const backupMagic = "raftplane-snapshot\n"

// BackupFormat is the version of the file layout above (BackupHeader.Format).
const BackupFormat = 1

const (
	maxBackupHeader = 64 << 10
	maxBackupChunk  = 1 << 20
)

// ErrBadBackup is wrapped by every error about a backup file's content.
var ErrBadBackup = errors.New("not a valid raftplane backup")

// BackupHeader describes a backup. It is informational: what a restore
// uses (the cluster id, the log position, the state) is in the state
// itself, which InspectBackup decodes.
type BackupHeader struct {
	Format    int       `json:"format"`
	ClusterID string    `json:"cluster_id"`
	NodeID    string    `json:"node_id"`    // the node that wrote it
	RaftState string    `json:"raft_state"` // that node's Raft state then
	Term      uint64    `json:"term"`
	Created   time.Time `json:"created"`
}

// Backup writes a backup of this node's replicated state to w: a
// consistent copy of everything it had applied at one instant, taken from
// the state machine under its lock (applies wait only for that copy, not
// for the writing). On the leader a Raft barrier comes first, so the copy
// holds every entry committed before the call; a follower's copy may be a
// few entries older. It fails with ErrNotReady (and fsm.ErrNoEpoch) before
// the cluster id is applied. An error after the first byte leaves w without its checksum:
// the reader rejects it.
func (n *Node) Backup(ctx context.Context, w io.Writer) error {
	select {
	case <-n.stop:
		return ErrClosed
	default:
	}
	if n.raft == nil {
		return fmt.Errorf("%w: the node is not open", ErrNotReady)
	}
	if n.machine.Epoch() == "" {
		return fmt.Errorf("%w: %w", ErrNotReady, fsm.ErrNoEpoch)
	}
	if n.isLeader() {
		timeout := n.cfg.ApplyTimeout
		if d, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(d))
		}
		if err := n.raft.Barrier(timeout).Error(); err != nil {
			return fmt.Errorf("cluster: backup: barrier: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	snap, err := n.machine.Snapshot()
	if err != nil {
		return fmt.Errorf("cluster: backup: %w", err)
	}
	defer snap.Release()
	st := n.Status()
	h := BackupHeader{Format: BackupFormat, ClusterID: n.machine.Epoch(), NodeID: n.cfg.NodeID,
		RaftState: st.State, Term: st.Term, Created: time.Now().UTC()}
	return WriteBackup(w, h, snap)
}

// WriteBackup writes a backup file holding what snap persists, under
// header h (Format 0 is taken as BackupFormat).
func WriteBackup(w io.Writer, h BackupHeader, snap raft.FSMSnapshot) error {
	if h.Format == 0 {
		h.Format = BackupFormat
	}
	return writeBackup(w, h, snap.Persist)
}

// writeBackup writes the frame around what persist writes into its sink.
func writeBackup(w io.Writer, h BackupHeader, persist func(raft.SnapshotSink) error) error {
	hb, err := json.Marshal(h)
	if err != nil {
		return err
	}
	bw := &backupWriter{w: bufio.NewWriterSize(w, 64<<10), sum: sha256.New()}
	bw.raw([]byte(backupMagic))
	bw.u32(uint32(len(hb)))
	bw.raw(hb)
	sink := &backupSink{bw: bw}
	if err := persist(sink); err != nil {
		return fmt.Errorf("cluster: backup: %w", err)
	}
	switch {
	case bw.err != nil:
		return fmt.Errorf("cluster: backup: %w", bw.err)
	case sink.cancelled:
		return errors.New("cluster: backup: the state machine cancelled its snapshot")
	}
	bw.u32(0)
	if bw.err == nil {
		_, bw.err = bw.w.Write(bw.sum.Sum(nil))
	}
	if bw.err == nil {
		bw.err = bw.w.Flush()
	}
	if bw.err != nil {
		return fmt.Errorf("cluster: backup: %w", bw.err)
	}
	return nil
}

// backupWriter writes the frame and hashes every byte; the first error
// sticks.
type backupWriter struct {
	w   *bufio.Writer
	sum hash.Hash
	err error
}

func (b *backupWriter) raw(p []byte) {
	if b.err != nil || len(p) == 0 {
		return
	}
	b.sum.Write(p)
	_, b.err = b.w.Write(p)
}

func (b *backupWriter) u32(v uint32) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], v)
	b.raw(n[:])
}

// chunk frames p as one or more chunks.
func (b *backupWriter) chunk(p []byte) {
	for len(p) > 0 && b.err == nil {
		c := p[:min(len(p), maxBackupChunk)]
		b.u32(uint32(len(c)))
		b.raw(c)
		p = p[len(c):]
	}
}

// backupSink is the raft.SnapshotSink the state machine persists into.
type backupSink struct {
	bw        *backupWriter
	cancelled bool
}

func (s *backupSink) Write(p []byte) (int, error) {
	s.bw.chunk(p)
	if s.bw.err != nil {
		return 0, s.bw.err
	}
	return len(p), nil
}

func (s *backupSink) Close() error  { return s.bw.err }
func (s *backupSink) ID() string    { return "backup" }
func (s *backupSink) Cancel() error { s.cancelled = true; return nil }

// BackupReader reads a backup: Header, then the state through Read. Read
// returns io.EOF only after the checksum matched and nothing follows it;
// any other end is an error wrapping ErrBadBackup.
type BackupReader struct {
	Header BackupHeader

	r    *bufio.Reader
	sum  hash.Hash
	left uint32 // bytes left in the current chunk
	err  error  // sticky: io.EOF once verified
}

// OpenBackup reads and checks a backup's magic and header.
func OpenBackup(r io.Reader) (*BackupReader, error) {
	b := &BackupReader{r: bufio.NewReaderSize(r, 64<<10), sum: sha256.New()}
	magic := make([]byte, len(backupMagic))
	if err := b.full(magic); err != nil || string(magic) != backupMagic {
		return nil, fmt.Errorf("%w: it does not start with %q", ErrBadBackup, backupMagic)
	}
	n, err := b.u32()
	if err != nil {
		return nil, err
	}
	if n == 0 || n > maxBackupHeader {
		return nil, fmt.Errorf("%w: header of %d bytes (at most %d)", ErrBadBackup, n, maxBackupHeader)
	}
	hb := make([]byte, n)
	if err := b.full(hb); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(hb, &b.Header); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadBackup, err)
	}
	if b.Header.Format != BackupFormat {
		return nil, fmt.Errorf("%w: format %d; this build reads format %d", ErrBadBackup, b.Header.Format, BackupFormat)
	}
	return b, nil
}

// full reads len(p) bytes into p and hashes them.
func (b *BackupReader) full(p []byte) error {
	if _, err := io.ReadFull(b.r, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: truncated", ErrBadBackup)
		}
		return err
	}
	b.sum.Write(p)
	return nil
}

func (b *BackupReader) u32() (uint32, error) {
	var n [4]byte
	if err := b.full(n[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(n[:]), nil
}

// Read reads the state.
func (b *BackupReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.left == 0 {
		n, err := b.u32()
		if err != nil {
			b.err = err
			return 0, err
		}
		if n > maxBackupChunk {
			b.err = fmt.Errorf("%w: chunk of %d bytes (at most %d)", ErrBadBackup, n, maxBackupChunk)
			return 0, b.err
		}
		if n == 0 {
			b.err = b.verify()
			return 0, b.err
		}
		b.left = n
	}
	p = p[:min(len(p), int(b.left))]
	n, err := b.r.Read(p)
	b.sum.Write(p[:n])
	b.left -= uint32(n)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF) && n > 0:
		err = nil // the next read finds the end, and says what is missing
	case errors.Is(err, io.EOF):
		err = fmt.Errorf("%w: truncated", ErrBadBackup)
		b.err = err
	default:
		b.err = err
	}
	return n, err
}

// verify checks the checksum and that the file ends there.
func (b *BackupReader) verify() error {
	want := b.sum.Sum(nil)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(b.r, got); err != nil {
		return fmt.Errorf("%w: truncated before its checksum", ErrBadBackup)
	}
	if string(got) != string(want) {
		return fmt.Errorf("%w: checksum mismatch (the file is damaged)", ErrBadBackup)
	}
	if _, err := b.r.ReadByte(); err == nil {
		return fmt.Errorf("%w: data after the checksum", ErrBadBackup)
	} else if !errors.Is(err, io.EOF) {
		return err
	}
	return io.EOF
}

// BackupInfo is what a backup holds, read from its state.
type BackupInfo struct {
	Header BackupHeader
	Stream fsm.Position
	// Connections is the number of connections in the replicated registry.
	Connections int
	// Bytes is the size of the state.
	Bytes int64
}

// InspectBackup reads a whole backup, checks its checksum and decodes its
// state into a fresh state machine with no cache limits, as a restore
// would.
func InspectBackup(r io.Reader) (BackupInfo, error) {
	var info BackupInfo
	br, err := OpenBackup(r)
	if err != nil {
		return info, err
	}
	info.Header = br.Header
	m, err := recoveryMachine(slog.New(slog.DiscardHandler))
	if err != nil {
		return info, err
	}
	cr := &countingReader{r: br}
	if err := m.Restore(io.NopCloser(cr)); err != nil {
		if errors.Is(br.err, ErrBadBackup) {
			return info, br.err
		}
		return info, fmt.Errorf("%w: state: %v", ErrBadBackup, err)
	}
	// The decoder may stop before the end marker: read to the end so that
	// the checksum is checked.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return info, err
	}
	info.Stream, info.Connections, info.Bytes = m.Position(), m.ConnectionCount(), cr.n
	if info.Stream.Epoch == "" {
		return info, fmt.Errorf("%w: the state holds no cluster id", ErrBadBackup)
	}
	return info, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// RestoreOptions say how to seed a new cluster's first node from a backup.
type RestoreOptions struct {
	// DataDir is the new node's data folder: missing or empty.
	DataDir string
	// NodeID is the new node's Raft server id.
	NodeID string
	// RaftAdvertise is the Raft address other nodes will dial for it.
	RaftAdvertise string
	// IndexGap moves the log index on past the backup's (DefaultIndexGap:
	// see there; 0 continues right after it).
	IndexGap uint64
	// NoSync skips fsync (tests only).
	NoSync bool
	Logger *slog.Logger
}

// RestoreResult describes a restore.
type RestoreResult struct {
	Backup BackupInfo
	Index  uint64 // where the new log continues from
}

// RestoreBackup seeds an empty data folder from the backup at path, so that
// a node started on it is a one-node cluster (this node the only voter)
// holding the backup's state: its message history, connections and groups,
// under the same cluster id, so that cursors stay valid. The state goes into
// a Raft snapshot at the backup's log index plus IndexGap (see
// DefaultIndexGap for why), term 1; raft installs it when the node starts.
// Add nodes with -join as to any cluster.
//
// The file is read twice: once to check it all (checksum and state) before
// anything is written, once to copy it.
func RestoreBackup(path string, o RestoreOptions) (RestoreResult, error) {
	var res RestoreResult
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.NodeID == "":
		return res, errors.New("cluster: restore: no node id")
	case o.IndexGap > maxIndexGap:
		return res, fmt.Errorf("cluster: restore: index gap %d is above %d", o.IndexGap, uint64(maxIndexGap))
	}
	if err := checkRaftAddr(o.RaftAdvertise); err != nil {
		return res, fmt.Errorf("cluster: restore: %w", err)
	}
	if err := emptyDir(o.DataDir); err != nil {
		return res, fmt.Errorf("cluster: restore: %w", err)
	}
	info, err := inspectFile(path)
	if err != nil {
		return res, err
	}
	res.Backup = info
	res.Index = info.Stream.Applied + o.IndexGap

	if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
		return res, fmt.Errorf("cluster: restore: %w", err)
	}
	st, err := OpenStores(o.DataDir, o.NoSync, lg)
	if err != nil {
		return res, err
	}
	defer st.Close()
	if has, err := raft.HasExistingState(st.Logs, st.Bolt, st.Snaps); err != nil || has {
		return res, fmt.Errorf("cluster: restore: %s already holds Raft state (%v)", o.DataDir, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	br, err := OpenBackup(f)
	if err != nil {
		return res, err
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(o.RaftAdvertise))
	defer trans.Close()
	cfg := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(o.NodeID), Address: raft.ServerAddress(o.RaftAdvertise)}}}
	err = writeSnapshot(st.Snaps, trans, res.Index, 1, cfg, func(w io.Writer) error {
		_, err := io.Copy(w, br)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("cluster: restore: %w", err)
	}
	lg.Info("restored", "cluster_id", info.Stream.Epoch, "backup_index", info.Stream.Applied, "continues_at", res.Index+1)
	return res, nil
}

func inspectFile(path string) (BackupInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return BackupInfo{}, err
	}
	defer f.Close()
	info, err := InspectBackup(f)
	if err != nil {
		return info, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// emptyDir accepts a missing folder or an empty one.
func emptyDir(dir string) error {
	if dir == "" {
		return errors.New("no data folder")
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("data folder %s is not empty (it holds %s): restore seeds a new node only", dir, entries[0].Name())
	}
	return nil
}
