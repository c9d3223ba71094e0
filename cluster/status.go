package cluster

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/gossip"
)

// MemberStatus is one member of the cluster as this node sees it: the union
// of the Raft configuration and gossip.
type MemberStatus struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Gossip   string `json:"gossip_addr,omitempty"`
	// GossipState is alive, suspect, dead, left, or "unknown" for a Raft
	// server gossip has not reported.
	GossipState string `json:"gossip_state"`
	// Suffrage is voter, nonvoter, or none (in gossip, not in Raft).
	Suffrage  string `json:"suffrage"`
	Leader    bool   `json:"leader"`
	Leaving   bool   `json:"leaving,omitempty"`
	ClusterID string `json:"cluster_id,omitempty"`
	// LastContact is how long ago this node last heard from the member: for
	// itself, Raft's time since it last heard from the leader; for others,
	// the age of their answer to this status request (so it is about the
	// RPC round trip) or "unreachable".
	LastContact string `json:"last_contact"`
	// Applied is the member's applied Raft index (0 if unreachable).
	Applied uint64 `json:"applied_index"`
}

// ClusterStatus lists every member, asking each for its applied index.
func (n *Node) ClusterStatus(ctx context.Context) []MemberStatus {
	byID := map[string]*MemberStatus{}
	cf := n.raft.GetConfiguration()
	_, leaderID := n.raft.LeaderWithID()
	if cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			suff := "voter"
			if s.Suffrage != raft.Voter {
				suff = "nonvoter"
			}
			byID[string(s.ID)] = &MemberStatus{ID: string(s.ID), RaftAddr: string(s.Address), Suffrage: suff,
				GossipState: "unknown", Leader: s.ID == leaderID}
		}
	}
	if n.cfg.Members != nil {
		for _, m := range n.cfg.Members.Members() {
			ms := byID[m.ID]
			if ms == nil {
				ms = &MemberStatus{ID: m.ID, RaftAddr: m.RaftAddr, Suffrage: "none"}
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
		go func(ms *MemberStatus) {
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
	out := make([]MemberStatus, 0, len(byID))
	for _, ms := range byID {
		out = append(out, *ms)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
