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
)

// Membership is what the cluster needs from gossip: who is out there, what
// changed, and a way to advertise this node's state.
type Membership interface {
	Members() []gossip.Member
	Events() <-chan gossip.Event
	UpdateMeta(func(*gossip.Meta)) error
}

// leaderState is the leader loop's memory across reconcile passes; only the
// leader loop goroutine touches it.
type leaderState struct {
	deadSince  map[string]time.Time // members dead (or missing from gossip) since
	goneSince  map[string]time.Time // nodes holding connections but not alive, since
	addedAt    map[string]time.Time // when a server was first seen as a non-voter
	refusedLog map[string]time.Time // rate limit for "refusing" lines
}

// leaderLoop runs while this node leads: a barrier first, so the FSM holds
// everything earlier leaders committed, then the one-time duties, then it
// reconciles gossip members into the Raft configuration on every gossip
// event and every ReconcileInterval.
func (n *Node) leaderLoop(stop <-chan struct{}) {
	if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
		n.log.Warn("barrier after gaining leadership failed; stepping through anyway", "err", err)
	}
	if n.machine.Epoch() == "" {
		n.initCluster()
	}
	if n.cfg.Members == nil {
		return
	}
	ls := &leaderState{deadSince: map[string]time.Time{}, goneSince: map[string]time.Time{}, addedAt: map[string]time.Time{}, refusedLog: map[string]time.Time{}}
	tick := time.NewTicker(n.cfg.ReconcileInterval)
	defer tick.Stop()
	events := n.cfg.Members.Events()
	for {
		n.reconcile(ls, stop)
		n.reapConnections(ls, stop)
		select {
		case <-stop:
			return
		case <-tick.C:
		case <-events:
			// Coalesce a burst of membership events into one pass.
		drain:
			for {
				select {
				case <-events:
				default:
					break drain
				}
			}
		}
	}
}

// reconcile makes one pass: add new members as non-voters, remove leaving
// ones, reap the long dead, and promote caught-up non-voters up to MaxVoters.
func (n *Node) reconcile(ls *leaderState, stop <-chan struct{}) {
	if !n.isLeader() {
		return
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		n.log.Warn("reconcile: reading raft configuration", "err", err)
		return
	}
	servers := map[string]raft.Server{}
	voters := 0
	for _, s := range cf.Configuration().Servers {
		servers[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	self := n.cfg.NodeID
	epoch := n.machine.Epoch()
	now := time.Now()
	members := map[string]gossip.Member{}
	for _, m := range n.cfg.Members.Members() {
		if m.ID != "" {
			members[m.ID] = m
		}
	}

	var deadVoters, deadNonvoters []string
	for id, m := range members {
		if id == self {
			continue
		}
		srv, inCfg := servers[id]
		if m.ClusterID != "" && epoch != "" && m.ClusterID != epoch {
			if last, ok := ls.refusedLog[id]; !ok || now.Sub(last) > time.Minute {
				ls.refusedLog[id] = now
				n.log.Error("refusing a member of another cluster", "member", id, "its_cluster", m.ClusterID, "our_cluster", epoch)
			}
			if inCfg {
				// It was added before it said where it belongs (or was
				// wiped and rebuilt elsewhere): it is not ours.
				n.removeServer(id, "belongs to cluster "+m.ClusterID)
			}
			continue
		}
		switch {
		case m.Leaving || m.State == gossip.StateLeft:
			delete(ls.deadSince, id)
			if inCfg {
				n.removeServer(id, "left the cluster")
				if srv.Suffrage == raft.Voter {
					voters-- // so a spare is promoted below, not a voter demoted
				}
			}
		case m.State == gossip.StateDead:
			if _, ok := ls.deadSince[id]; !ok {
				ls.deadSince[id] = now
			}
			if inCfg && now.Sub(ls.deadSince[id]) >= n.cfg.ReapAfter {
				if srv.Suffrage == raft.Voter {
					deadVoters = append(deadVoters, id)
				} else {
					deadNonvoters = append(deadNonvoters, id)
				}
			}
		default: // alive (or suspect, which memberlist may still clear)
			delete(ls.deadSince, id)
			if m.RaftAddr == "" {
				continue
			}
			switch {
			case !inCfg && m.HasData && m.ClusterID == "":
				// It has data from somewhere but has not said which cluster
				// it belongs to: adding it could mix two clusters' logs.
				n.log.Debug("not adding a member with data of an unknown cluster yet", "member", id)
			case !inCfg:
				n.log.Info("adding a member as a non-voter", "member", id, "raft", m.RaftAddr)
				if err := n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(m.RaftAddr), 0, n.cfg.ApplyTimeout).Error(); err != nil {
					n.log.Warn("adding a member failed", "member", id, "err", err)
				} else {
					ls.addedAt[id] = now
				}
			case string(srv.Address) != m.RaftAddr:
				// Same id, new address (a restart elsewhere): raft updates in place.
				n.log.Info("member changed its raft address", "member", id, "from", srv.Address, "to", m.RaftAddr)
				var f raft.IndexFuture
				if srv.Suffrage == raft.Voter {
					f = n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(m.RaftAddr), 0, n.cfg.ApplyTimeout)
				} else {
					f = n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(m.RaftAddr), 0, n.cfg.ApplyTimeout)
				}
				if err := f.Error(); err != nil {
					n.log.Warn("updating a member's address failed", "member", id, "err", err)
				}
			}
			if _, ok := ls.addedAt[id]; !ok && inCfg {
				ls.addedAt[id] = now
			}
		}
	}
	// Servers gossip has never shown this leader (e.g. it died before this
	// leader started) count as dead from the first pass that misses them.
	for id, s := range servers {
		if id == self {
			continue
		}
		if _, ok := members[id]; ok {
			continue
		}
		if _, ok := ls.deadSince[id]; !ok {
			ls.deadSince[id] = now
		}
		if now.Sub(ls.deadSince[id]) >= n.cfg.ReapAfter {
			if s.Suffrage == raft.Voter {
				deadVoters = append(deadVoters, id)
			} else {
				deadNonvoters = append(deadNonvoters, id)
			}
		}
	}
	for _, id := range deadNonvoters {
		n.removeServer(id, fmt.Sprintf("dead for more than %s", n.cfg.ReapAfter))
		delete(ls.deadSince, id)
		delete(ls.addedAt, id)
	}

	select {
	case <-stop:
		return
	default:
	}
	candidates := n.promotable(ls, servers, members, now)
	// A dead voter goes only when a healthy spare can take its place (and
	// never more than keep a quorum of the current voters): dropping it
	// without a replacement buys no fault tolerance and costs its return.
	sort.Strings(deadVoters)
	maxRemovals := (voters - 1) / 2
	for _, id := range deadVoters {
		if maxRemovals == 0 || len(candidates) == 0 && voters <= n.cfg.MaxVoters {
			n.log.Warn("a voter is dead but cannot be replaced yet; keeping it", "member", id,
				"voters", voters, "spares", len(candidates))
			break
		}
		n.removeServer(id, fmt.Sprintf("dead for more than %s", n.cfg.ReapAfter))
		delete(ls.deadSince, id)
		delete(ls.addedAt, id)
		voters--
		maxRemovals--
	}
	// Promote, keeping the count odd: from an odd count, two at a time.
	for voters < n.cfg.MaxVoters && len(candidates) > 0 {
		step := 1
		if voters%2 == 1 {
			step = 2
		}
		if len(candidates) < step {
			break
		}
		for _, id := range candidates[:step] {
			m := members[id]
			n.log.Info("promoting a caught-up non-voter to voter", "member", id, "voters_before", voters)
			if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(m.RaftAddr), 0, n.cfg.ApplyTimeout).Error(); err != nil {
				n.log.Warn("promotion failed", "member", id, "err", err)
				return
			}
			voters++
		}
		candidates = candidates[step:]
	}
	// An even count tolerates no more failures than the odd count below it
	// and adds a vote to every commit: with nobody to promote, demote one,
	// preferring a voter gossip does not show alive.
	cur := n.currentServers()
	var vs []string
	for id, s := range cur {
		if s.Suffrage == raft.Voter {
			vs = append(vs, id)
		}
	}
	if len(vs)%2 == 0 && len(vs) > 0 {
		sort.Slice(vs, func(i, j int) bool {
			ai := members[vs[i]].State == gossip.StateAlive
			aj := members[vs[j]].State == gossip.StateAlive
			if ai != aj {
				return !ai
			}
			return vs[i] < vs[j]
		})
		for _, id := range vs {
			if id == self {
				continue
			}
			n.log.Info("demoting a voter to keep the voter count odd", "member", id, "voters_before", len(vs))
			if err := n.raft.DemoteVoter(raft.ServerID(id), 0, n.cfg.ApplyTimeout).Error(); err != nil {
				n.log.Warn("demotion failed", "member", id, "err", err)
			}
			break
		}
	}
}

// currentServers returns the Raft configuration by server id.
func (n *Node) currentServers() map[string]raft.Server {
	out := map[string]raft.Server{}
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return out
	}
	for _, s := range cf.Configuration().Servers {
		out[string(s.ID)] = s
	}
	return out
}

// promotable lists the non-voters that are alive, have been members for
// StabilizeTime and are within MaxTrailing entries of this leader's log,
// sorted by id.
func (n *Node) promotable(ls *leaderState, servers map[string]raft.Server, members map[string]gossip.Member, now time.Time) []string {
	var ids []string
	for id, s := range servers {
		m, ok := members[id]
		if s.Suffrage != raft.Nonvoter || !ok || m.State != gossip.StateAlive || m.Leaving {
			continue
		}
		if t, ok := ls.addedAt[id]; !ok || now.Sub(t) < n.cfg.StabilizeTime {
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	last := n.raft.LastIndex()
	var out []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			st, err := n.peerStats(ctx, string(servers[id].Address))
			if err != nil || st.Applied+n.cfg.MaxTrailing < last {
				return
			}
			mu.Lock()
			out = append(out, id)
			mu.Unlock()
		}(id)
	}
	wg.Wait()
	sort.Strings(out)
	return out
}

func (n *Node) removeServer(id, why string) {
	n.log.Info("removing a server from the raft configuration", "member", id, "why", why)
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		n.log.Warn("removing a server failed", "member", id, "err", err)
	}
}

// advertiseLoop keeps this node's gossip meta in step with its cluster id.
func (n *Node) advertiseLoop() {
	defer n.wg.Done()
	for {
		ch := n.machine.Changed()
		if epoch := n.machine.Epoch(); epoch != "" {
			if err := n.cfg.Members.UpdateMeta(func(m *gossip.Meta) { m.ClusterID = epoch }); err != nil {
				n.log.Warn("advertising the cluster id failed", "err", err)
			}
			return
		}
		select {
		case <-ch:
		case <-n.stop:
			return
		}
	}
}

// ErrForeignCluster is returned by CheckPeers when a peer belongs to another
// cluster than this node's data.
var ErrForeignCluster = errors.New("cluster: peer belongs to another cluster")

// CheckPeers refuses to go on when this node already belongs to a cluster
// and a peer it joined through belongs to another one.
func (n *Node) CheckPeers(members []gossip.Member) error {
	epoch := n.LocalClusterID()
	if epoch == "" {
		return nil
	}
	for _, m := range members {
		if m.ID != n.cfg.NodeID && m.ClusterID != "" && m.ClusterID != epoch && m.State == gossip.StateAlive {
			return fmt.Errorf("%w: this node's data (%s) belongs to cluster %s, but %s (%s) belongs to cluster %s; "+
				"join a seed of cluster %s, or start with an empty -data folder to join as a new member",
				ErrForeignCluster, n.cfg.DataDir, epoch, m.ID, m.Addr, m.ClusterID, epoch)
		}
	}
	return nil
}

// Leave prepares a graceful departure: it advertises "leaving", hands
// leadership over if this node leads, and waits until the leader has removed
// this node from the Raft configuration (or ctx ends). The caller then leaves
// gossip and closes the node.
func (n *Node) Leave(ctx context.Context) error {
	if n.cfg.Members == nil {
		return nil
	}
	if err := n.cfg.Members.UpdateMeta(func(m *gossip.Meta) { m.Leaving = true }); err != nil {
		n.log.Warn("advertising leave failed", "err", err)
	}
	others := func() (voters, all int) {
		cf := n.raft.GetConfiguration()
		if cf.Error() != nil {
			return 0, 0
		}
		for _, s := range cf.Configuration().Servers {
			if string(s.ID) == n.cfg.NodeID {
				continue
			}
			all++
			if s.Suffrage == raft.Voter {
				voters++
			}
		}
		return voters, all
	}
	voters, all := others()
	if all == 0 {
		return nil // alone: nobody to hand over to
	}
	if n.isLeader() {
		if voters == 0 {
			// The only voter: make a spare a voter first, or the cluster
			// is left without a quorum.
			if err := n.promoteAnySpare(); err != nil {
				return fmt.Errorf("cluster: leave: %w", err)
			}
		}
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leadership transfer before leaving failed; removing self", "err", err)
			if err := n.raft.RemoveServer(raft.ServerID(n.cfg.NodeID), 0, n.cfg.ApplyTimeout).Error(); err != nil {
				return fmt.Errorf("cluster: leave: %w", err)
			}
			return nil
		}
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	// A leader stops replicating to a server once its removal commits,
	// and may stop before sending the removal itself: the removed server
	// then never sees it, and only notices that no leader talks to it any
	// more (its pre-votes are refused). Silence this long after asking to
	// leave is taken as removal; were it a partition instead, the leader
	// still removes the node, which advertises Leaving, once it can.
	silence := max(2*time.Second, 4*n.cfg.HeartbeatTimeout)
	asked := time.Now()
	for {
		cf := n.raft.GetConfiguration()
		if cf.Error() == nil {
			found := false
			for _, s := range cf.Configuration().Servers {
				if string(s.ID) == n.cfg.NodeID {
					found = true
				}
			}
			if !found {
				n.log.Info("removed from the raft configuration")
				return nil
			}
		}
		if last := n.raft.LastContact(); !n.isLeader() && time.Since(asked) > silence && time.Since(last) > silence {
			n.log.Info("no leader has contacted this node since it asked to leave; taking it as removed",
				"last_contact", last, "silence", silence)
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("cluster: leave: still in the raft configuration: %w", ctx.Err())
		}
	}
}

func (n *Node) promoteAnySpare() error {
	members := map[string]gossip.Member{}
	for _, m := range n.cfg.Members.Members() {
		members[m.ID] = m
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	epoch := n.machine.Epoch()
	last := n.raft.LastIndex()
	for _, s := range cf.Configuration().Servers {
		m, ok := members[string(s.ID)]
		if s.Suffrage != raft.Nonvoter || !ok || m.State != gossip.StateAlive || m.Leaving || m.ClusterID != epoch {
			continue
		}
		// Only a spare that answers and is caught up: promoting a dead one
		// would leave a two-voter cluster without a quorum.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := n.peerStats(ctx, string(s.Address))
		cancel()
		if err != nil || st.Applied+n.cfg.MaxTrailing < last {
			continue
		}
		n.log.Info("promoting a spare before the only voter leaves", "member", s.ID)
		return n.raft.AddVoter(s.ID, s.Address, 0, n.cfg.ApplyTimeout).Error()
	}
	return errors.New("the only voter cannot leave: no live non-voter to take over")
}

// reapConnections closes, through the log, the connections held by a node
// that has not been alive in gossip for DisconnectTimeout: its clients are
// gone (or have moved to other nodes), and every node must agree on that.
func (n *Node) reapConnections(ls *leaderState, stop <-chan struct{}) {
	if !n.isLeader() {
		return
	}
	alive := map[string]bool{n.cfg.NodeID: true}
	for _, m := range n.cfg.Members.Members() {
		if m.State == gossip.StateAlive && !m.Leaving {
			alive[m.ID] = true
		}
	}
	now := time.Now()
	for node := range n.machine.ConnectionNodes() {
		if alive[node] {
			delete(ls.goneSince, node)
			continue
		}
		if _, ok := ls.goneSince[node]; !ok {
			ls.goneSince[node] = now
		}
		if now.Sub(ls.goneSince[node]) < n.cfg.DisconnectTimeout {
			continue
		}
		conns := n.machine.ConnectionsOn(node)
		n.log.Info("closing the connections of a node that is gone", "node", node, "connections", len(conns),
			"gone_for", now.Sub(ls.goneSince[node]).Round(time.Second))
		// Submitted together, they share log entries.
		var wg sync.WaitGroup
		sem := make(chan struct{}, 256)
		for _, ci := range conns {
			select {
			case <-stop:
				wg.Wait()
				return
			case sem <- struct{}{}:
			}
			wg.Add(1)
			go func(ci fsm.ConnInfo) {
				defer wg.Done()
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
				defer cancel()
				_, err := n.Publish(ctx, fsm.Command{Kind: fsm.KindConnClose, Hub: ci.Hub, Conn: ci.ID,
					Reason: "its node " + node + " is gone"})
				if err != nil && !errors.Is(err, fsm.ErrUnknownConnection) {
					n.log.Warn("closing a connection of a gone node failed", "conn", ci.ID, "err", err)
				}
			}(ci)
		}
		wg.Wait()
	}
}
