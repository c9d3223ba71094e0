package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/gossip"
	"github.com/raftplane/raftplane/status"
)

// MemberStatus is one member of the cluster as this node sees it. The type
// lives in the status leaf package, which hub and the tools that read
// GET /api/v1/cluster share; this name is kept for cluster's callers.
type MemberStatus = status.Member

// Status is a snapshot of this node's Raft view (status.Node, the "node"
// object of GET /api/v1/status); this name is kept for cluster's callers.
type Status = status.Node

// ClusterStatus lists every member, asking each for its applied index.
func (n *Node) ClusterStatus(ctx context.Context) []status.Member {
	byID := map[string]*status.Member{}
	cf := n.raft.GetConfiguration()
	_, leaderID := n.raft.LeaderWithID()
	if cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			suff := "voter"
			if s.Suffrage != raft.Voter {
				suff = "nonvoter"
			}
			byID[string(s.ID)] = &status.Member{ID: string(s.ID), RaftAddr: string(s.Address), Suffrage: suff,
				GossipState: "unknown", Leader: s.ID == leaderID}
		}
	}
	if n.cfg.Members != nil {
		in := planInput{Epoch: n.machine.Epoch()}
		for _, m := range n.cfg.Members.Members() {
			ms := byID[m.ID]
			if ms == nil && in.foreign(m) && !present(m) {
				continue // a refused member of another cluster, gone
			}
			if ms == nil {
				ms = &status.Member{ID: m.ID, RaftAddr: m.RaftAddr, Suffrage: "none"}
				byID[m.ID] = ms
			}
			ms.HTTPAddr, ms.Gossip, ms.GossipState = m.HTTPAddr, m.Addr, m.State.String()
			ms.Leaving, ms.ClusterID = m.Leaving, m.ClusterID
		}
	} else if ms := byID[n.cfg.NodeID]; ms != nil {
		ms.GossipState = gossip.StateAlive.String()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for id, ms := range byID {
		if id == n.cfg.NodeID {
			ms.Applied = n.machine.Position().Applied
			ms.LastContact = n.Status().LastContact
			continue
		}
		if ms.RaftAddr == "" {
			ms.LastContact = "unreachable"
			continue
		}
		wg.Add(1)
		go func(ms *status.Member) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			st, err := n.peerStats(cctx, ms.RaftAddr)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				ms.LastContact = "unreachable"
				return
			}
			ms.Applied = st.Applied
			ms.LastContact = time.Since(start).Round(time.Microsecond).String()
		}(ms)
	}
	wg.Wait()
	out := make([]status.Member, 0, len(byID))
	for _, ms := range byID {
		out = append(out, *ms)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ErrStaleLeader means this node knows a leader but has not heard from it
// within the bound Ready was given: it may be cut off from the quorum
// before Raft's own timers notice.
var ErrStaleLeader = errors.New("cluster: leader not heard from recently")

// Ready reports whether this node can commit: nil when it is the leader, or
// a follower that heard from the leader within maxContact, and the cluster
// id (the stream's epoch) is applied, and its writes to its disk do not
// fail. Otherwise the error gives the reason and wraps ErrClosed,
// ErrDiskFull, ErrNoLeader, ErrStaleLeader or ErrNotReady. It backs
// hub's GET /readyz; maxContact <= 0 skips the contact check. It is cheap
// (no round trip) and may be called from many goroutines.
func (n *Node) Ready(maxContact time.Duration) error {
	select {
	case <-n.stop:
		return fmt.Errorf("%w: shutting down", ErrClosed)
	default:
	}
	if n.raft == nil {
		return fmt.Errorf("%w: Raft is not open yet", ErrNotReady)
	}
	_, leaderID := n.raft.LeaderWithID()
	return readiness(readyView{
		state:       n.raft.State(),
		leaderID:    string(leaderID),
		lastContact: n.raft.LastContact(),
		epoch:       n.machine.Epoch(),
		disk:        n.disk.Err(),
	}, time.Now(), maxContact)
}

// readyView is what Ready decides on, gathered apart so the decision is a
// pure function.
type readyView struct {
	state       raft.RaftState
	leaderID    string
	lastContact time.Time // when a follower last heard from the leader
	epoch       string
	disk        error // disk.go: writes to the Raft stores fail
}

func readiness(v readyView, now time.Time, maxContact time.Duration) error {
	switch {
	case v.state == raft.Shutdown:
		return fmt.Errorf("%w: shutting down", ErrClosed)
	case v.disk != nil:
		return v.disk
	case v.state == raft.Leader:
		// A leader's LastContact is from its follower days. A leader cut
		// off from the quorum steps down after LeaderLeaseTimeout, and then
		// it knows no leader.
	case v.leaderID == "":
		return fmt.Errorf("%w known (this node is a %s)", ErrNoLeader, v.state)
	case maxContact > 0 && now.Sub(v.lastContact) > maxContact:
		// Raft's follower forgets the leader once its heartbeat timer
		// fires after HeartbeatTimeout of silence (up to twice that); this
		// bound does not depend on those timers, and is the tighter one
		// when set below them.
		return fmt.Errorf("%w: last contact with the leader %s ago (more than %s)",
			ErrStaleLeader, now.Sub(v.lastContact).Round(10*time.Millisecond), maxContact)
	}
	if v.epoch == "" {
		return fmt.Errorf("%w: %w", ErrNotReady, fsm.ErrNoEpoch)
	}
	return nil
}
