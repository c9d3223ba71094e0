package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// A node must never be left with Raft state that a later start takes for a
// cluster of its own without saying which one (issue 15, "a split-off
// node"). Before, a bootstrap wrote the configuration alone and the leader
// loop wrote the cluster id once elected: a node stopped in between (its
// gossip port was taken, it was killed) kept a one-server configuration
// with no cluster id. Restarted with -join to a real cluster, it had no id
// for CheckPeers to compare, elected itself, wrote an id of its own and
// served clients as a second cluster. So:
//
//   - the bootstrap writes the cluster-init entry together with the
//     configuration, in one append to the log (cluster/wal keeps an
//     append whole or cuts it off after a crash): data that was ever
//     bootstrapped names its cluster, and CheckPeers can refuse a foreign
//     one with both ids;
//   - a first start that fails before anyone could see the node removes
//     what it wrote (DiscardFresh), so the next start begins from nothing.

// newClusterInit makes the cluster-init command: a new cluster id (the
// epoch of every cursor) and the cluster secret that signs connection
// tokens, stamped at now.
func newClusterInit(now int64) (fsm.Command, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fsm.Command{}, fmt.Errorf("cluster id: %w", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return fsm.Command{}, fmt.Errorf("cluster secret: %w", err)
	}
	return fsm.ClusterInit(hex.EncodeToString(b[:]), secret, now), nil
}

// withInit is the log store a bootstrap writes through: raft.BootstrapCluster
// stores the configuration entry (index 1) with StoreLog, and this stores
// the cluster-init entry right after it (index 2, same term) in the same
// StoreLogs call, so the log holds both or neither (with
// injected stores, as atomic as their StoreLogs is; raft's in-memory store
// holds one lock across it). Raft
// reads the last index from the store when it starts, and its first
// election commits both entries.
type withInit struct {
	raft.LogStore
	init []byte
}

func (w withInit) StoreLog(l *raft.Log) error {
	if l.Index != 1 || l.Type != raft.LogConfiguration {
		return fmt.Errorf("cluster: bootstrap wrote entry %d of type %s, want the configuration at 1", l.Index, l.Type)
	}
	next := &raft.Log{Index: 2, Term: l.Term, Type: raft.LogCommand, Data: w.init, AppendedAt: time.Now()}
	return w.LogStore.StoreLogs([]*raft.Log{l, next})
}

// bootstrap makes this node a one-server cluster with a new cluster id, in
// stores that hold no Raft state; it returns the id.
func (n *Node) bootstrap(rc *raft.Config, st nodeStores, trans raft.Transport) (string, error) {
	init, err := newClusterInit(n.clock.Now())
	if err != nil {
		return "", fmt.Errorf("cluster: bootstrap: %w", err)
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr()}}}
	logs := withInit{LogStore: st.base, init: fsm.EncodeBatch([]fsm.Command{init})}
	if err := raft.BootstrapCluster(rc, logs, st.stable, st.snaps, trans, conf); err != nil {
		return "", fmt.Errorf("cluster: bootstrap: %w", err)
	}
	return init.ClusterID, nil
}

// ErrNotFresh is returned by DiscardFresh for a node that found Raft state
// when it opened, or that did not open.
var ErrNotFresh = errors.New("cluster: not a fresh node")

// DiscardFresh removes the Raft state (wal/, raft.db and the snapshots folder)
// of a node that found none when it opened: the first start of a node that
// failed before any other node could see it (before gossip started). What
// such a start wrote, a bootstrap or nothing at all, serves nobody, and left
// behind it would be taken by the next start for a cluster of its own (or,
// by a deploy script that looks for raft.db, for a member's data). Call it
// after Close. Data that existed when the node opened is never touched
// (ErrNotFresh), nor is anything but the Raft stores (the node id, other
// files of the folder). With injected stores it refuses (ErrInjectedStores):
// they are the caller's to discard, and raft's store interfaces cannot
// empty them.
func (n *Node) DiscardFresh() error {
	if n.cfg.RaftStores != nil {
		return fmt.Errorf("cluster: discard the state of a failed first start: %w", ErrInjectedStores)
	}
	if n.raft == nil || n.hasState {
		return ErrNotFresh
	}
	select {
	case <-n.stop:
	default:
		return errors.New("cluster: DiscardFresh on an open node")
	}
	var errs []error
	if err := os.Remove(filepath.Join(n.cfg.DataDir, "raft.db")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, dir := range []string{walDir, walMigrating, "snapshots"} {
		if err := os.RemoveAll(filepath.Join(n.cfg.DataDir, dir)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: discard the state of a failed first start: %w", err)
	}
	n.log.Info("removed the Raft state of a first start that failed", "data", n.cfg.DataDir)
	return nil
}
