package cluster

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/gossip"
)

// The leader's membership work is split in two so the rules can be
// table-tested: plan is a pure function from what the leader knows (the
// Raft configuration, gossip's members, the timers the leader loop keeps,
// the spares' applied indexes and the clock, all passed in) to a list of
// actions; Node.applyPlan performs them against raft and logs them.

// actionKind says what an action does.
type actionKind int

const (
	// actAdd adds a member as a non-voter.
	actAdd actionKind = iota + 1
	// actReaddress re-adds a server at its new address, keeping its suffrage.
	actReaddress
	// actRemove removes a server from the configuration.
	actRemove
	// actPromote makes a non-voter a voter.
	actPromote
	// actDemote makes a voter a non-voter.
	actDemote
	// actRefuse refuses a member of another cluster (a log line only; its
	// removal, if it is in the configuration, is a separate actRemove).
	actRefuse
	// actHold leaves out, for now, a member that has data but has not said
	// which cluster it belongs to.
	actHold
	// actKeep keeps a dead voter that cannot be replaced yet.
	actKeep
)

// action is one step of a plan.
type action struct {
	Kind actionKind
	ID   string
	// Addr is the Raft address to use (add, readdress, promote); From is
	// the old one (readdress).
	Addr, From string
	// Voter: a readdressed server stays a voter.
	Voter bool
	// Why is a removal's reason, or the refused member's cluster id.
	Why string
	// Forget drops the server's leader-loop timers with its removal (a
	// reaped dead server: if it comes back, it starts afresh).
	Forget bool
	// Voters is the voter count the step starts from (promote, demote,
	// keep); Spares is how many spares there were (keep).
	Voters, Spares int
}

func (a action) String() string {
	switch a.Kind {
	case actAdd:
		return fmt.Sprintf("add %s %s", a.ID, a.Addr)
	case actReaddress:
		return fmt.Sprintf("readdress %s %s->%s voter=%t", a.ID, a.From, a.Addr, a.Voter)
	case actRemove:
		return fmt.Sprintf("remove %s (%s) forget=%t", a.ID, a.Why, a.Forget)
	case actPromote:
		return fmt.Sprintf("promote %s %s voters=%d", a.ID, a.Addr, a.Voters)
	case actDemote:
		return fmt.Sprintf("demote %s voters=%d", a.ID, a.Voters)
	case actRefuse:
		return fmt.Sprintf("refuse %s cluster=%s", a.ID, a.Why)
	case actHold:
		return "hold " + a.ID
	case actKeep:
		return fmt.Sprintf("keep %s voters=%d spares=%d", a.ID, a.Voters, a.Spares)
	}
	return fmt.Sprintf("action(%d) %s", int(a.Kind), a.ID)
}

// planLimits are the Config values the plan obeys.
type planLimits struct {
	MaxVoters     int
	ReapAfter     time.Duration
	StabilizeTime time.Duration
	MaxTrailing   uint64
}

// planInput is everything plan reads. plan never modifies its maps.
type planInput struct {
	Self  string // this node (the leader): never removed or demoted
	Epoch string // this cluster's id ("" before the cluster-init entry)
	// Servers is the Raft configuration.
	Servers []raft.Server
	// Members is gossip's view (members with an empty id are ignored).
	Members []gossip.Member
	// DeadSince is when a server was first seen dead in gossip, or missing
	// from it; AddedAt when it was first seen in the configuration (both
	// kept by leaderState.observe). A missing DeadSince counts as now.
	DeadSince, AddedAt map[string]time.Time
	// Applied holds the applied index of each non-voter that answered the
	// stats RPC; one missing from it is not caught up.
	Applied map[string]uint64
	// LastIndex is the leader's last log index.
	LastIndex uint64
	// Format is the log format the cluster has agreed on (fsm
	// Machine.Format): a member that knows less is not added.
	Format uint32
	Limits planLimits
	Now    time.Time
}

// memberFormat is the log format a member knows: 1 for builds that did
// not advertise one (v0.1.0).
func memberFormat(m gossip.Member) uint32 {
	return uint32(max(m.LogFormat, 1))
}

// membersByID indexes gossip's members, skipping those without an id.
func (in *planInput) membersByID() map[string]gossip.Member {
	out := make(map[string]gossip.Member, len(in.Members))
	for _, m := range in.Members {
		if m.ID != "" {
			out[m.ID] = m
		}
	}
	return out
}

// foreign reports whether m says it belongs to another cluster.
func (in *planInput) foreign(m gossip.Member) bool {
	return m.ClusterID != "" && in.Epoch != "" && m.ClusterID != in.Epoch
}

// present reports whether m is still there: alive and not leaving.
func present(m gossip.Member) bool { return m.State == gossip.StateAlive && !m.Leaving }

// spares lists, sorted by id, the healthy spares: non-voters that gossip
// shows alive and not leaving, that do not say they belong to another
// cluster, and whose applied index is
// within MaxTrailing of the leader's last index. It is the one test of a
// healthy spare, for reconcile's promotions and for Leave's hand-over:
// promoting a dead or lagging one would leave the voters without a quorum.
// A fresh member may not have said its cluster id yet: it is in our
// configuration, so the id it will say is ours, and its applied index
// shows it has our log. Waiting for its gossip would demote a voter when
// a voter leaves just after a spare joined (TestNode_GracefulLeave).
//
// stable also asks that the server has been in the configuration for
// StabilizeTime (reconcile's pace; Leave does not wait). With caughtUp
// false the applied index is not checked: that lists whom to ask for it.
func (in *planInput) spares(stable, caughtUp bool) []string {
	members := in.membersByID()
	var ids []string
	for _, s := range in.Servers {
		id := string(s.ID)
		m, ok := members[id]
		if s.Suffrage != raft.Nonvoter || !ok || m.State != gossip.StateAlive || m.Leaving || in.foreign(m) {
			continue
		}
		if t, ok := in.AddedAt[id]; stable && (!ok || in.Now.Sub(t) < in.Limits.StabilizeTime) {
			continue
		}
		if applied, ok := in.Applied[id]; caughtUp && (!ok || applied+in.Limits.MaxTrailing < in.LastIndex) {
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// planner carries one plan's working state.
type planner struct {
	in      planInput
	servers map[string]raft.Server // the configuration as read
	members map[string]gossip.Member
	// after is the configuration as the actions so far leave it.
	after map[string]raft.ServerSuffrage
	// voters is the count promotion and reaping work from: the read count
	// less the voters that left or were reaped. (A voter removed for
	// belonging to another cluster is not subtracted, as before the split;
	// the demotion rule counts after.)
	voters                    int
	deadVoters, deadNonvoters []string
	out                       []action
}

// plan decides one reconcile pass, in the order the actions must be
// applied: per member (by id) refuse/remove other clusters' members, remove
// leaving ones, add new ones as non-voters, re-address moved ones; then
// reap the long dead (non-voters, then voters while a spare can take their
// place and a quorum remains); then promote spares two at a time up to
// MaxVoters, keeping the count odd; last, demote one voter if the count is
// still even.
func plan(in planInput) []action {
	p := &planner{in: in, servers: map[string]raft.Server{}, members: in.membersByID(),
		after: map[string]raft.ServerSuffrage{}}
	for _, s := range in.Servers {
		p.servers[string(s.ID)] = s
		p.after[string(s.ID)] = s.Suffrage
		if s.Suffrage == raft.Voter {
			p.voters++
		}
	}
	ids := make([]string, 0, len(p.members))
	for id := range p.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if id != in.Self {
			p.member(id, p.members[id])
		}
	}
	p.missing()
	candidates := in.spares(true, true)
	p.reap(candidates)
	p.promote(candidates)
	p.demote()
	return p.out
}

func (p *planner) emit(a action) { p.out = append(p.out, a) }

func (p *planner) remove(id, why string, forget bool) {
	p.emit(action{Kind: actRemove, ID: id, Why: why, Forget: forget})
	delete(p.after, id)
}

// member plans for one gossip member other than this node.
func (p *planner) member(id string, m gossip.Member) {
	srv, inCfg := p.servers[id]
	if inCfg && p.removed(id) {
		return // earlier in this pass (its address was taken)
	}
	switch {
	case p.in.foreign(m):
		if present(m) {
			// Logged while it is there; once it is gone (it exits,
			// naming both clusters), there is nothing left to refuse.
			p.emit(action{Kind: actRefuse, ID: id, Why: m.ClusterID})
		}
		if inCfg {
			// It was added before it said where it belongs (or was
			// wiped and rebuilt elsewhere): it is not ours.
			p.remove(id, "belongs to cluster "+m.ClusterID, false)
		}
	case m.Leaving || m.State == gossip.StateLeft:
		if inCfg {
			p.remove(id, "left the cluster", false)
			if srv.Suffrage == raft.Voter {
				p.voters-- // so a spare is promoted below, not a voter demoted
			}
		}
	case m.State == gossip.StateDead:
		if inCfg {
			p.dead(srv)
		}
	default: // alive (or suspect, which memberlist may still clear)
		p.alive(id, m, srv, inCfg)
	}
}

// alive plans for a live member: add it, or follow its address.
func (p *planner) alive(id string, m gossip.Member, srv raft.Server, inCfg bool) {
	switch {
	case m.RaftAddr == "":
	case !inCfg && m.HasData && m.ClusterID == "":
		// It has data from somewhere but has not said which cluster it
		// belongs to: adding it could mix two clusters' logs.
		p.emit(action{Kind: actHold, ID: id})
	case !inCfg && memberFormat(m) < p.in.Format:
		// An older build: it would stop at the first entry of a format it
		// does not know.
		p.emit(action{Kind: actHold, ID: id, Why: fmt.Sprintf("it knows log format %d, the cluster writes %d: upgrade it", memberFormat(m), p.in.Format)})
	case !inCfg:
		if old, ok := p.addressHolder(id, m.RaftAddr); ok {
			if om, known := p.members[old]; known && om.State == gossip.StateAlive && !om.Leaving {
				// Two live members name one address: a misconfigured
				// advertise address, not a replacement.
				p.emit(action{Kind: actHold, ID: id, Why: fmt.Sprintf("its Raft address %s is the address of %s, which is alive", m.RaftAddr, old)})
				return
			}
			// A new process at a gone server's address (a replaced
			// node): the leader's replication to the old id would reach
			// it, and feed it another server's stream (an older
			// snapshot, entries from another position). So the old id
			// goes first.
			p.remove(old, fmt.Sprintf("its Raft address %s is now %s's", m.RaftAddr, id), true)
			if p.servers[old].Suffrage == raft.Voter {
				p.voters--
			}
		}
		p.emit(action{Kind: actAdd, ID: id, Addr: m.RaftAddr})
		p.after[id] = raft.Nonvoter
	case string(srv.Address) != m.RaftAddr:
		// Same id, new address (a restart elsewhere): raft updates in place.
		p.emit(action{Kind: actReaddress, ID: id, Addr: m.RaftAddr, From: string(srv.Address),
			Voter: srv.Suffrage == raft.Voter})
	}
}

// addressHolder returns the server other than id, still in the
// configuration this pass plans, whose Raft address is addr.
func (p *planner) addressHolder(id, addr string) (string, bool) {
	for _, s := range p.in.Servers {
		if sid := string(s.ID); sid != id && string(s.Address) == addr {
			if _, kept := p.after[sid]; kept {
				return sid, true
			}
		}
	}
	return "", false
}

// removed reports whether id was removed earlier in this pass.
func (p *planner) removed(id string) bool {
	_, kept := p.after[id]
	return !kept
}

// dead notes a server dead for ReapAfter as one to reap.
func (p *planner) dead(s raft.Server) {
	id := string(s.ID)
	if p.removed(id) {
		return // earlier in this pass
	}
	since, ok := p.in.DeadSince[id]
	if !ok {
		since = p.in.Now
	}
	if p.in.Now.Sub(since) < p.in.Limits.ReapAfter {
		return
	}
	if s.Suffrage == raft.Voter {
		p.deadVoters = append(p.deadVoters, id)
	} else {
		p.deadNonvoters = append(p.deadNonvoters, id)
	}
}

// missing treats servers gossip has never shown this leader (e.g. they
// died before this leader started) as dead.
func (p *planner) missing() {
	for _, s := range p.in.Servers {
		id := string(s.ID)
		if _, ok := p.members[id]; !ok && id != p.in.Self {
			p.dead(s)
		}
	}
}

// reap removes the long-dead non-voters, and the long-dead voters while a
// spare can take their place.
func (p *planner) reap(candidates []string) {
	why := fmt.Sprintf("dead for more than %s", p.in.Limits.ReapAfter)
	// Those removed earlier in this pass (their address was taken) are
	// not removed twice.
	p.deadNonvoters = slices.DeleteFunc(p.deadNonvoters, p.removed)
	p.deadVoters = slices.DeleteFunc(p.deadVoters, p.removed)
	sort.Strings(p.deadNonvoters)
	for _, id := range p.deadNonvoters {
		p.remove(id, why, true)
	}
	// A dead voter goes only when a healthy spare can take its place (and
	// never more than keep a quorum of the current voters): dropping it
	// without a replacement buys no fault tolerance and costs its return.
	sort.Strings(p.deadVoters)
	maxRemovals := (p.voters - 1) / 2
	for _, id := range p.deadVoters {
		if maxRemovals == 0 || len(candidates) == 0 && p.voters <= p.in.Limits.MaxVoters {
			p.emit(action{Kind: actKeep, ID: id, Voters: p.voters, Spares: len(candidates)})
			return
		}
		p.remove(id, why, true)
		p.voters--
		maxRemovals--
	}
}

// promote makes spares voters up to MaxVoters, keeping the count odd: from
// an odd count, two at a time.
func (p *planner) promote(candidates []string) {
	for p.voters < p.in.Limits.MaxVoters && len(candidates) > 0 {
		step := 1
		if p.voters%2 == 1 {
			step = 2
		}
		if len(candidates) < step {
			break
		}
		for _, id := range candidates[:step] {
			p.emit(action{Kind: actPromote, ID: id, Addr: p.members[id].RaftAddr, Voters: p.voters})
			p.after[id] = raft.Voter
			p.voters++
		}
		candidates = candidates[step:]
	}
}

// demote keeps the voter count odd: an even count tolerates no more
// failures than the odd count below it and adds a vote to every commit.
// With nobody to promote, demote one, preferring a voter gossip does not
// show alive (a server gossip does not know counts as alive), never self.
func (p *planner) demote() {
	var vs []string
	for id, s := range p.after {
		if s == raft.Voter {
			vs = append(vs, id)
		}
	}
	if len(vs) == 0 || len(vs)%2 == 1 {
		return
	}
	sort.Slice(vs, func(i, j int) bool {
		ai := p.members[vs[i]].State == gossip.StateAlive
		aj := p.members[vs[j]].State == gossip.StateAlive
		if ai != aj {
			return !ai
		}
		return vs[i] < vs[j]
	})
	for _, id := range vs {
		if id != p.in.Self {
			p.emit(action{Kind: actDemote, ID: id, Voters: len(vs)})
			return
		}
	}
}
