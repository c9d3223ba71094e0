package cluster

import (
	"context"
	"errors"
	"fmt"
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
	addedAt    map[string]time.Time // when a server was first seen as a non-voter
	refusedLog map[string]time.Time // rate limit for "refusing" lines
}

// leaderLoop runs while this node leads: a barrier first, so the FSM holds
// everything earlier leaders committed, then the one-time duties, then it
// reconciles gossip members into the Raft configuration on every gossip
// event and every ReconcileInterval.
func (n *Node) leaderLoop(stop <-chan struct{}) {
	if err := n.await(n.raft.Barrier(n.cfg.ApplyTimeout)); err != nil {
		if errors.Is(err, ErrClosed) {
			return
		}
		n.log.Warn("barrier after gaining leadership failed; stepping through anyway", "err", err)
	}
	if n.machine.Epoch() == "" {
		n.initCluster()
	}
	if n.cfg.Members == nil {
		n.raiseFormat()
		return
	}
	ls := &leaderState{deadSince: map[string]time.Time{}, addedAt: map[string]time.Time{}, refusedLog: map[string]time.Time{}}
	tick := time.NewTicker(n.cfg.ReconcileInterval)
	defer tick.Stop()
	events := n.cfg.Members.Events()
	for {
		n.reconcile(ls, stop)
		n.raiseFormat()
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

// reconcile makes one pass: it gathers what the leader knows, updates the
// leader loop's timers, asks the would-be spares for their applied index,
// then plans (plan.go) and applies the plan.
func (n *Node) reconcile(ls *leaderState, stop <-chan struct{}) {
	if !n.isLeader() {
		return
	}
	if n.notices != nil {
		// notice.go: no notices to followers that commit themselves, as the
		// configuration stands after this pass's changes.
		defer func() {
			n.notices.setOwnCommits(n.cfg.Members.Members(), n.raft.GetConfiguration().Configuration())
		}()
	}
	now := time.Now()
	in, err := n.planInput(now)
	if err != nil {
		n.log.Warn("reconcile: reading raft configuration", "err", err)
		return
	}
	ls.observe(&in)
	in.Applied = n.appliedOf(in.Servers, in.spares(true, false))
	n.applyPlan(ls, plan(in), stop, now)
}

// planInput reads what plan needs, except the leader loop's timers and the
// spares' applied indexes.
func (n *Node) planInput(now time.Time) (planInput, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return planInput{}, err
	}
	return planInput{
		Self:      n.cfg.NodeID,
		Epoch:     n.machine.Epoch(),
		Servers:   cf.Configuration().Servers,
		Members:   n.cfg.Members.Members(),
		LastIndex: n.raft.LastIndex(),
		Format:    n.machine.Format(),
		Limits: planLimits{MaxVoters: n.cfg.MaxVoters, ReapAfter: n.cfg.ReapAfter,
			StabilizeTime: n.cfg.StabilizeTime, MaxTrailing: n.cfg.MaxTrailing},
		Now: now,
	}, nil
}

// observe updates the timers plan reads and hands them to in: a member is
// dead since the first pass that saw it dead (or a server missing from
// gossip), and no longer once it is alive or leaving; a live server is
// added since the first pass that saw it in the configuration. Members of
// another cluster are left alone.
func (ls *leaderState) observe(in *planInput) {
	servers := map[string]bool{}
	for _, s := range in.Servers {
		servers[string(s.ID)] = true
	}
	members := in.membersByID()
	for id, m := range members {
		switch {
		case id == in.Self || in.foreign(m):
		case m.Leaving || m.State == gossip.StateLeft:
			delete(ls.deadSince, id)
		case m.State == gossip.StateDead:
			ls.markDead(id, in.Now)
		default:
			delete(ls.deadSince, id)
			if _, ok := ls.addedAt[id]; !ok && servers[id] && m.RaftAddr != "" {
				ls.addedAt[id] = in.Now
			}
		}
	}
	for id := range servers {
		if _, ok := members[id]; !ok && id != in.Self {
			ls.markDead(id, in.Now)
		}
	}
	in.DeadSince, in.AddedAt = ls.deadSince, ls.addedAt
}

func (ls *leaderState) markDead(id string, now time.Time) {
	if _, ok := ls.deadSince[id]; !ok {
		ls.deadSince[id] = now
	}
}

// appliedOf asks the given servers, at once, for their applied index and
// returns the answers that came within a second.
func (n *Node) appliedOf(servers []raft.Server, ids []string) map[string]uint64 {
	addr := map[string]string{}
	for _, s := range servers {
		addr[string(s.ID)] = string(s.Address)
	}
	out := map[string]uint64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			st, err := n.peerStats(ctx, addr[id])
			if err != nil {
				return
			}
			mu.Lock()
			out[id] = st.Applied
			mu.Unlock()
		}(id)
	}
	wg.Wait()
	return out
}

// applyPlan performs a plan's actions in order and logs them. A failed step
// is logged and the rest go on, but a failed promotion ends the pass, and a
// demotion is skipped after any failure: it was planned on the
// configuration the earlier steps would have made, and the next pass plans
// again from the real one.
func (n *Node) applyPlan(ls *leaderState, acts []action, stop <-chan struct{}, now time.Time) {
	failed := false
	for _, a := range acts {
		select {
		case <-stop:
			return
		default:
		}
		switch a.Kind {
		case actRefuse:
			if last, ok := ls.refusedLog[a.ID]; !ok || now.Sub(last) > time.Minute {
				ls.refusedLog[a.ID] = now
				n.log.Error("refusing a member of another cluster", "member", a.ID, "its_cluster", a.Why, "our_cluster", n.machine.Epoch())
			}
		case actHold:
			if a.Why != "" {
				if last, ok := ls.refusedLog[a.ID]; !ok || now.Sub(last) > time.Minute {
					ls.refusedLog[a.ID] = now
					n.log.Error("not adding a member", "member", a.ID, "why", a.Why)
				}
				continue
			}
			n.log.Debug("not adding a member with data of an unknown cluster yet", "member", a.ID)
		case actKeep:
			n.log.Warn("a voter is dead but cannot be replaced yet; keeping it", "member", a.ID,
				"voters", a.Voters, "spares", a.Spares)
		case actPromote:
			if !n.applyChange(ls, a, now) {
				return
			}
		case actDemote:
			if !failed {
				n.applyChange(ls, a, now)
			}
		default:
			failed = !n.applyChange(ls, a, now) || failed
		}
	}
}

// applyChange makes one configuration change and reports whether it went
// through.
func (n *Node) applyChange(ls *leaderState, a action, now time.Time) bool {
	id, addr, timeout := raft.ServerID(a.ID), raft.ServerAddress(a.Addr), n.cfg.ApplyTimeout
	var err error
	switch a.Kind {
	case actAdd:
		n.log.Info("adding a member as a non-voter", "member", a.ID, "raft", a.Addr)
		if err = n.raft.AddNonvoter(id, addr, 0, timeout).Error(); err != nil {
			n.log.Warn("adding a member failed", "member", a.ID, "err", err)
		} else {
			ls.addedAt[a.ID] = now
		}
	case actReaddress:
		n.log.Info("member changed its raft address", "member", a.ID, "from", a.From, "to", a.Addr)
		var f raft.IndexFuture
		if a.Voter {
			f = n.raft.AddVoter(id, addr, 0, timeout)
		} else {
			f = n.raft.AddNonvoter(id, addr, 0, timeout)
		}
		if err = f.Error(); err != nil {
			n.log.Warn("updating a member's address failed", "member", a.ID, "err", err)
		}
	case actRemove:
		n.log.Info("removing a server from the raft configuration", "member", a.ID, "why", a.Why)
		if err = n.raft.RemoveServer(id, 0, timeout).Error(); err != nil {
			n.log.Warn("removing a server failed", "member", a.ID, "err", err)
		}
		if a.Forget {
			delete(ls.deadSince, a.ID)
			delete(ls.addedAt, a.ID)
		}
	case actPromote:
		n.log.Info("promoting a caught-up non-voter to voter", "member", a.ID, "voters_before", a.Voters)
		if err = n.raft.AddVoter(id, addr, 0, timeout).Error(); err != nil {
			n.log.Warn("promotion failed", "member", a.ID, "err", err)
		}
	case actDemote:
		n.log.Info("demoting a voter to keep the voter count odd", "member", a.ID, "voters_before", a.Voters)
		if err = n.raft.DemoteVoter(id, 0, timeout).Error(); err != nil {
			n.log.Warn("demotion failed", "member", a.ID, "err", err)
		}
	}
	return err == nil
}

// raiseFormat records in the log that every server of the Raft
// configuration knows this build's log format, once gossip shows it, so
// that commands of that format may be written (fsm.KindFormat). A build
// that does not know it skips the record; a server that would not apply
// the format keeps the cluster's format where it is until it is upgraded
// (a rolling upgrade), and a member that does not know the format is not
// added once it is raised (plan).
func (n *Node) raiseFormat() {
	if n.machine.Format() >= fsm.LogFormat {
		return
	}
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	if n.cfg.Members != nil {
		known := map[string]uint32{}
		for _, m := range n.cfg.Members.Members() {
			known[m.ID] = memberFormat(m)
		}
		for _, s := range cf.Configuration().Servers {
			if string(s.ID) != n.cfg.NodeID && known[string(s.ID)] < fsm.LogFormat {
				return
			}
		}
	}
	data := fsm.EncodeBatch([]fsm.Command{fsm.FormatKnown(fsm.LogFormat, n.stamp())})
	if err := n.await(n.raft.Apply(data, n.cfg.ApplyTimeout)); err != nil {
		n.log.Warn("recording the log format failed; retrying on the next pass", "err", err)
		return
	}
	n.log.Info("every server knows the log format; recorded", "format", fsm.LogFormat)
}

// advertiseLoop keeps this node's gossip meta in step with its cluster id,
// and says which log format its build applies (the leader raises the
// cluster's format once every server knows it: raiseFormat).
func (n *Node) advertiseLoop() {
	defer n.wg.Done()
	if err := n.cfg.Members.UpdateMeta(func(m *gossip.Meta) { m.LogFormat = fsm.LogFormat }); err != nil {
		n.log.Warn("advertising the log format failed", "err", err)
	}
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
				ErrForeignCluster, n.storesLabel(), epoch, m.ID, m.Addr, m.ClusterID, epoch)
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

// promoteAnySpare makes one healthy spare (planInput.spares, without the
// StabilizeTime wait) a voter before the only voter leaves.
func (n *Node) promoteAnySpare() error {
	in, err := n.planInput(time.Now())
	if err != nil {
		return err
	}
	in.Applied = n.appliedOf(in.Servers, in.spares(false, false))
	spares := in.spares(false, true)
	if len(spares) == 0 {
		return errors.New("the only voter cannot leave: no live non-voter to take over")
	}
	id := spares[0]
	var addr raft.ServerAddress
	for _, s := range in.Servers {
		if string(s.ID) == id {
			addr = s.Address
		}
	}
	n.log.Info("promoting a spare before the only voter leaves", "member", id)
	return n.raft.AddVoter(raft.ServerID(id), addr, 0, n.cfg.ApplyTimeout).Error()
}

// Alive reports whether the node with this id is alive in gossip and not
// leaving: the hub's leader closes the connections of a node that has not
// been alive for its DisconnectTimeout (hub/reap.go). Without membership
// (Members nil) this node knows only itself. It does not block and may be
// called from many goroutines.
func (n *Node) Alive(id string) bool {
	if id == n.cfg.NodeID {
		return true
	}
	if n.cfg.Members == nil {
		return false
	}
	for _, m := range n.cfg.Members.Members() {
		if m.ID == id {
			return m.State == gossip.StateAlive && !m.Leaving
		}
	}
	return false
}
