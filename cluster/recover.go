package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// LatestConfiguration reads the newest Raft configuration in the stores
// without starting Raft: the latest snapshot's, replaced by any
// configuration entry in the log after it (committed or not, as raft itself
// uses them). The index is where it was written; ok is false when the stores
// hold none.
func (s *Stores) LatestConfiguration() (cfg raft.Configuration, index uint64, ok bool, err error) {
	metas, err := s.Snaps.List()
	if err != nil {
		return cfg, 0, false, fmt.Errorf("cluster: list snapshots: %w", err)
	}
	from := uint64(1)
	if len(metas) > 0 { // newest first
		cfg, index, ok = metas[0].Configuration, metas[0].ConfigurationIndex, true
		from = metas[0].Index + 1
	}
	first, err := s.Logs.FirstIndex()
	if err != nil {
		return cfg, 0, false, err
	}
	last, err := s.Logs.LastIndex()
	if err != nil {
		return cfg, 0, false, err
	}
	from = max(from, first)
	for i := from; i <= last && last > 0; i++ {
		var l raft.Log
		if err := s.Logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				continue
			}
			return cfg, 0, false, fmt.Errorf("cluster: read log entry %d: %w", i, err)
		}
		if l.Type == raft.LogConfiguration {
			cfg, index, ok = raft.DecodeConfiguration(l.Data), l.Index, true
		}
	}
	return cfg, index, ok, nil
}

// DefaultIndexGap is how far Recover and RestoreBackup move the log index
// on by default: 2^32 entries, more than a cluster writes in weeks at full
// speed (a log entry carries a whole batch of commands).
//
// Cursors are log positions. After a recovery or a restore the cluster
// keeps its id, so every cursor it handed out stays meaningful; but the
// data it continues from may end before positions that clients already
// saw (the lost voters had entries the survivor lacked; the old cluster
// went on writing after the backup). Were the new log to reuse those
// positions for other messages, a client resuming from such a cursor would
// silently skip them. Starting the new log this far ahead means every
// message written after the recovery comes after every cursor the old
// cluster can have handed out.
const DefaultIndexGap = 1 << 32

// maxIndexGap keeps index arithmetic far from overflow.
const maxIndexGap = 1 << 48

// RecoverOptions say how to rewrite the Raft configuration of a stopped
// node's data (see Recover).
type RecoverOptions struct {
	// DataDir is the stopped node's data folder.
	DataDir string
	// NodeID is the node's Raft server id (cmd/raftplane keeps it in
	// <data>/node-id).
	NodeID string
	// Servers is the new configuration. Empty: this node alone, as a voter,
	// at the address the data's configuration has for it (or
	// RaftAdvertise). Otherwise it must hold this node as a voter.
	Servers []raft.Server
	// RaftAdvertise, when set, is this node's Raft address in the new
	// configuration when Servers is empty (needed only when the data's
	// configuration does not hold this node, or to change its address).
	RaftAdvertise string
	// IndexGap moves the log index on by this much (DefaultIndexGap: see
	// there; 0 continues right after the survivor's last entry).
	IndexGap uint64
	// NoSync skips fsync (tests only).
	NoSync bool
	Logger *slog.Logger
}

// RecoverResult describes what Recover did.
type RecoverResult struct {
	Old       raft.Configuration // the configuration the data held
	New       raft.Configuration
	LastIndex uint64 // the survivor's last log entry, now inside the snapshot
	Index     uint64 // where the log continues from: LastIndex + IndexGap
	Stream    fsm.Position
	// Connections is the number of connections in the replicated registry.
	Connections int
}

// Recover rewrites the Raft configuration in the data of a stopped node so
// that it can start without the voters that are gone for good: with hashicorp
// raft's RecoverCluster (the "peers.json" recovery Consul documents), it
// replays the node's snapshot and log into a state machine, writes a
// snapshot holding that state and the new configuration, and empties the
// log. Entries the node had received but not yet seen committed become
// committed: they were on this node, and the lost voters can no longer say
// otherwise. Then, unless IndexGap is 0, it writes the same state again
// IndexGap entries further on (see DefaultIndexGap).
//
// Run it on one survivor only, with the process stopped; start that node
// alone (it elects itself), then add new nodes. The other survivors, if
// any, must be wiped or recovered with the same Servers, or their old
// configuration may elect a second leader.
func Recover(o RecoverOptions) (RecoverResult, error) {
	var res RecoverResult
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	st, err := openForRecovery(o, lg)
	if err != nil {
		return res, err
	}
	defer st.Close()
	if res.Old, res.New, err = planRecovery(st, o); err != nil {
		return res, err
	}

	machine, err := recoveryMachine(lg)
	if err != nil {
		return res, err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(o.NodeID)
	rc.Logger = newHCLog(lg, "raft")
	_, trans := raft.NewInmemTransport(raft.ServerAddress(o.NodeID))
	defer trans.Close()
	lg.Info("recovering", "data", o.DataDir, "old", formatServers(res.Old.Servers), "new", formatServers(res.New.Servers))
	if err := raft.RecoverCluster(rc, machine, st.Logs, st.Bolt, st.Snaps, trans, res.New); err != nil {
		return res, fmt.Errorf("cluster: recover: %w", err)
	}
	metas, err := st.Snaps.List()
	if err != nil || len(metas) == 0 {
		return res, fmt.Errorf("cluster: recover: the recovery snapshot is not listed (%v)", err)
	}
	res.LastIndex, res.Index = metas[0].Index, metas[0].Index
	if o.IndexGap > 0 {
		meta := metas[0]
		res.Index = meta.Index + o.IndexGap
		// The same state, the same configuration, further on: raft starts
		// from the newest snapshot and the log is empty.
		if err := rebaseSnapshot(st.Snaps, trans, meta.ID, res.Index, meta.Term, res.New); err != nil {
			return res, fmt.Errorf("cluster: recover: %w", err)
		}
	}
	res.Stream = machine.Position()
	res.Connections = machine.ConnectionCount()
	lg.Info("recovered", "last_index", res.LastIndex, "continues_at", res.Index+1, "cluster_id", res.Stream.Epoch)
	return res, nil
}

// RecoveryPlan is what Recover would do to a data folder.
type RecoveryPlan struct {
	Old, New raft.Configuration
	// LastIndex is the last log index in the data (its snapshot's, when
	// the log is empty): of several survivors, recover the one with the
	// highest.
	LastIndex uint64
}

// PlanRecovery checks o against the data as Recover does and says what
// Recover would write, changing nothing.
func PlanRecovery(o RecoverOptions) (RecoveryPlan, error) {
	var p RecoveryPlan
	st, err := openForRecovery(o, o.Logger)
	if err != nil {
		return p, err
	}
	defer st.Close()
	if p.Old, p.New, err = planRecovery(st, o); err != nil {
		return p, err
	}
	if p.LastIndex, err = st.Logs.LastIndex(); err != nil {
		return p, err
	}
	if metas, err := st.Snaps.List(); err == nil && len(metas) > 0 {
		p.LastIndex = max(p.LastIndex, metas[0].Index)
	}
	return p, nil
}

func openForRecovery(o RecoverOptions, lg *slog.Logger) (*Stores, error) {
	if o.NodeID == "" {
		return nil, errors.New("cluster: recover: no node id")
	}
	if o.IndexGap > maxIndexGap {
		return nil, fmt.Errorf("cluster: recover: index gap %d is above %d", o.IndexGap, uint64(maxIndexGap))
	}
	if err := checkDataDir(o.DataDir); err != nil {
		return nil, fmt.Errorf("cluster: recover: %w", err)
	}
	return OpenStores(o.DataDir, o.NoSync, lg)
}

func planRecovery(st *Stores, o RecoverOptions) (old, next raft.Configuration, err error) {
	old, _, ok, err := st.LatestConfiguration()
	if err != nil {
		return old, next, err
	}
	if !ok {
		return old, next, fmt.Errorf("cluster: recover: %s holds no Raft configuration: nothing to recover", o.DataDir)
	}
	if next, err = newConfiguration(old, o); err != nil {
		return old, next, fmt.Errorf("cluster: recover: %w", err)
	}
	return old, next, nil
}

// recoveryMachine is a state machine with no cache limits: the snapshot the
// recovery writes keeps every cached message, and the node trims it to its
// own limits when it starts (the limits are per node, nothing else depends
// on them).
func recoveryMachine(lg *slog.Logger) (*fsm.Machine, error) {
	fc := fsm.DefaultConfig()
	fc.CacheMaxEntries = math.MaxInt
	fc.CacheMaxBytes = math.MaxInt64
	fc.CacheMaxAge = time.Duration(math.MaxInt64)
	fc.Logger = lg.With("component", "fsm")
	return fsm.New(fc)
}

// newConfiguration builds the configuration Recover writes.
func newConfiguration(old raft.Configuration, o RecoverOptions) (raft.Configuration, error) {
	self := raft.ServerID(o.NodeID)
	if len(o.Servers) == 0 {
		addr := raft.ServerAddress(o.RaftAdvertise)
		if addr == "" {
			for _, s := range old.Servers {
				if s.ID == self {
					addr = s.Address
				}
			}
		}
		if addr == "" {
			return raft.Configuration{}, fmt.Errorf("node %s is not in the data's configuration (%s): give its Raft address (-raft-advertise)",
				o.NodeID, formatServers(old.Servers))
		}
		if err := checkRaftAddr(string(addr)); err != nil {
			return raft.Configuration{}, err
		}
		return raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: self, Address: addr}}}, nil
	}
	if o.RaftAdvertise != "" {
		return raft.Configuration{}, errors.New("give this node's address in the peer list, not also as -raft-advertise")
	}
	cfg := raft.Configuration{Servers: append([]raft.Server(nil), o.Servers...)}
	selfVoter := false
	for _, s := range cfg.Servers {
		if err := checkRaftAddr(string(s.Address)); err != nil {
			return cfg, fmt.Errorf("server %s: %w", s.ID, err)
		}
		if s.ID == self && s.Suffrage == raft.Voter {
			selfVoter = true
		}
	}
	if !selfVoter {
		return cfg, fmt.Errorf("the new configuration (%s) must hold this node (%s) as a voter: it is the one that starts first",
			formatServers(cfg.Servers), o.NodeID)
	}
	return cfg, nil
}

// checkRaftAddr refuses an address a peer could not dial.
func checkRaftAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("raft address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("raft address %q: peers need an address they can dial, not an unspecified one", addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("raft address %q: bad port %q", addr, port)
	}
	return nil
}

// ParseServers parses "id=host:port,id=host:port" into voters.
func ParseServers(s string) ([]raft.Server, error) {
	var out []raft.Server
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, addr, ok := strings.Cut(item, "=")
		id, addr = strings.TrimSpace(id), strings.TrimSpace(addr)
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q: want id=host:port", item)
		}
		if err := checkRaftAddr(addr); err != nil {
			return nil, fmt.Errorf("peer %q: %w", item, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("peer id %q listed twice", id)
		}
		seen[id] = true
		out = append(out, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
	}
	if len(out) == 0 {
		return nil, errors.New("empty peer list")
	}
	return out, nil
}

// formatServers renders a configuration for logs and messages.
func formatServers(ss []raft.Server) string {
	parts := make([]string, 0, len(ss))
	for _, s := range ss {
		p := string(s.ID) + "=" + string(s.Address)
		if s.Suffrage != raft.Voter {
			p += " (" + s.Suffrage.String() + ")"
		}
		parts = append(parts, p)
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ", ")
}

// FormatServers renders a configuration as "id=address, ..." (non-voters
// marked), sorted by id.
func FormatServers(ss []raft.Server) string { return formatServers(ss) }

// checkDataDir refuses a folder without Raft data: opening the stores
// would create an empty raft.db there.
func checkDataDir(dir string) error {
	if dir == "" {
		return errors.New("no data folder")
	}
	fi, err := os.Stat(filepath.Join(dir, "raft.db"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s has no raft.db: not a raftplane data folder", dir)
		}
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file", filepath.Join(dir, "raft.db"))
	}
	return nil
}

// rebaseSnapshot copies snapshot id into a new snapshot at index (term and
// configuration given), which then is the newest.
func rebaseSnapshot(snaps *raft.FileSnapshotStore, trans raft.Transport, id string, index, term uint64, cfg raft.Configuration) error {
	_, src, err := snaps.Open(id)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", id, err)
	}
	defer src.Close()
	return writeSnapshot(snaps, trans, index, term, cfg, func(w io.Writer) error {
		_, err := io.Copy(w, src)
		return err
	})
}

// writeSnapshot writes a snapshot whose state fill writes; a failed fill
// leaves no snapshot behind.
func writeSnapshot(snaps *raft.FileSnapshotStore, trans raft.Transport, index, term uint64, cfg raft.Configuration, fill func(io.Writer) error) error {
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, cfg, index, trans)
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	if err := fill(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("finish snapshot: %w", err)
	}
	return nil
}
