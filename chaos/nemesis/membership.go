package nemesis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/raftplane/raftplane/chaos/nodes"
)

// The membership faults change the node set while the workload runs. The
// nodes do the work themselves, as in production: a node started with
// -join is added by the leader as a non-voter and promoted once caught up,
// up to -voters (keeping the count odd); a node stopped with SIGTERM
// leaves (the leader removes it, promotes a spare or demotes a voter to
// keep the count odd); a node killed for good is removed by the leader
// after -reap-after, once a spare can take its place. The faults only
// start and stop processes and then wait, bounded by SettleTimeout, until
// the leader's configuration is what those rules give: every running node
// a member, no other member, and as many voters as the largest odd number
// within both the running count and -voters. What they saw is journalled.

// DefaultVoters is the nodes' -voters when the run does not set it.
const DefaultVoters = 3

// DefaultSettleTimeout bounds each wait for the membership to settle after
// a membership fault started or stopped nodes: a node killed for good is
// removed only after the cluster's -reap-after (20 s in the chaos runs)
// plus gossip's failure detection (a few seconds).
const DefaultSettleTimeout = 60 * time.Second

// leaveTimeout bounds a graceful stop (a node cut off from the leader waits
// its -shutdown-timeout, 15 s, to leave).
const leaveTimeout = 30 * time.Second

var membershipKinds = map[string]bool{ShrinkGrow: true, GrowShrink: true, ReplaceVoter: true, JoinPromote: true}

// view is the membership as the cluster's leader sees it.
type view struct {
	leader *nodes.Node
	// ids are the Raft ids of the running (not paused) nodes.
	ids map[*nodes.Node]string
	// servers maps the Raft configuration's ids to "voter" or "nonvoter".
	servers map[string]string
}

func (v view) voters() int {
	k := 0
	for _, s := range v.servers {
		if s == "voter" {
			k++
		}
	}
	return k
}

// String lists the running nodes with their ids and suffrage, then the
// servers that are no running node, the leader starred:
// "n0*=ab12:voter n1=cd34:nonvoter (2 running, 1 voters; also ef56:voter)".
func (v view) String() string {
	var ns []*nodes.Node
	for n := range v.ids {
		ns = append(ns, n)
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i].Index < ns[j].Index })
	var parts []string
	mine := map[string]bool{}
	for _, n := range ns {
		id := v.ids[n]
		mine[id] = true
		suff := v.servers[id]
		if suff == "" {
			suff = "not a member"
		}
		lead := ""
		if n == v.leader {
			lead = "*"
		}
		parts = append(parts, fmt.Sprintf("%s%s=%s:%s", n.Name, lead, id, suff))
	}
	out := strings.Join(parts, " ") + fmt.Sprintf(" (%d running, %d voters", len(v.ids), v.voters())
	var others []string
	for id, s := range v.servers {
		if !mine[id] {
			others = append(others, id+":"+s)
		}
	}
	sort.Strings(others)
	if len(others) > 0 {
		out += "; also " + strings.Join(others, " ")
	}
	return out + ")"
}

// view reads the membership: every running node's id, and the Raft
// configuration from the leader all of them agree on.
func (env *Env) view(ctx context.Context) (view, error) {
	v := view{ids: map[*nodes.Node]string{}, servers: map[string]string{}}
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, n := range env.Cluster.Nodes {
		if !n.Running() || n.Paused() {
			continue
		}
		st, err := n.Status(qctx)
		if err != nil {
			return v, err
		}
		v.ids[n] = st.Node.NodeID
	}
	if v.leader = env.Cluster.Leader(qctx); v.leader == nil {
		return v, errors.New("no leader")
	}
	ms, err := v.leader.Members(qctx)
	if err != nil {
		return v, err
	}
	for _, m := range ms {
		if m.Suffrage == "voter" || m.Suffrage == "nonvoter" {
			v.servers[m.ID] = m.Suffrage
		}
	}
	return v, nil
}

// wantVoters is how many voters k running nodes settle on: the largest odd
// number within both k and -voters.
func (env *Env) wantVoters(k int) int {
	w := min(k, env.voters())
	if w%2 == 0 {
		w--
	}
	return max(w, 1)
}

func (env *Env) voters() int {
	if env.Voters > 0 {
		return env.Voters
	}
	return DefaultVoters
}

func (env *Env) settleTimeout() time.Duration {
	if env.SettleTimeout > 0 {
		return env.SettleTimeout
	}
	return DefaultSettleTimeout
}

// whole reports why v is not settled: a running node that is not a
// member, a member that is not running, or a voter count the rules would
// not leave.
func (env *Env) whole(v view) error {
	mine := map[string]bool{}
	for n, id := range v.ids {
		mine[id] = true
		if v.servers[id] == "" {
			return fmt.Errorf("%s (%s) is not a member", n.Name, id)
		}
	}
	for id := range v.servers {
		if !mine[id] {
			return fmt.Errorf("%s is a member but runs nowhere", id)
		}
	}
	if got, want := v.voters(), env.wantVoters(len(v.ids)); got != want {
		return fmt.Errorf("%d voters for %d running nodes, want %d", got, len(v.ids), want)
	}
	return nil
}

// settle waits until the membership is whole and also passes more (if
// set), for at most the settle timeout; it returns the last view and, on
// timeout, why it did not settle.
func (env *Env) settle(ctx context.Context, more func(view) error) (view, error) {
	deadline := time.Now().Add(env.settleTimeout())
	for {
		v, err := env.view(ctx)
		if err == nil {
			err = env.whole(v)
		}
		if err == nil && more != nil {
			err = more(v)
		}
		if err == nil {
			return v, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return v, fmt.Errorf("membership not settled after %s: %v; last view %s", env.settleTimeout(), err, v)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// settled waits for the membership to settle and journals the view into
// cmds.
func (env *Env) settled(ctx context.Context, cmds *[]string, more func(view) error) (view, error) {
	start := time.Now()
	v, err := env.settle(ctx, more)
	if err == nil {
		*cmds = append(*cmds, fmt.Sprintf("settled in %s: %s", time.Since(start).Round(time.Millisecond), v))
	}
	return v, err
}

// running lists the running, not paused nodes; stopped the slots whose
// process is not running, by index.
func (env *Env) running() []*nodes.Node { return env.candidates() }

func (env *Env) stopped() []*nodes.Node {
	var out []*nodes.Node
	for _, n := range env.Cluster.Nodes {
		if !n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// leave stops n gracefully: SIGTERM, so it leaves the cluster.
func leave(n *nodes.Node, cmds *[]string) error {
	*cmds = append(*cmds, "SIGTERM "+n.Name+" (it leaves)")
	return n.Terminate(leaveTimeout)
}

// startNew starts slot n as a brand-new member: its data folder emptied
// (a new Raft id), joining through the others with -join.
func startNew(n *nodes.Node, cmds *[]string) error {
	*cmds = append(*cmds, "start "+n.Name+" as a new member (empty data folder, -join)")
	if err := n.Wipe(); err != nil {
		return err
	}
	return n.Start()
}

// resize starts or stops nodes until k run, then waits for the membership
// to settle. Shrinking stops one node at a time (picked by p, the leader
// as likely as any), waiting for the membership to settle after each, so
// that each leave is a configuration change of its own; growing starts
// the stopped slots (lowest index first) at once as new members, which the
// leader adds as non-voters and promotes two at a time.
func (env *Env) resize(ctx context.Context, k int, p uint64, cmds *[]string) error {
	for {
		run := env.running()
		switch {
		case len(run) > k:
			n := pick(run, p)
			p = p/uint64(len(run)) + 1
			if err := leave(n, cmds); err != nil {
				return err
			}
			if _, err := env.settled(ctx, cmds, nil); err != nil {
				return err
			}
			continue
		case len(run) < k:
			free := env.stopped()
			if len(free) < k-len(run) {
				return fmt.Errorf("%d nodes to start, %d slots free", k-len(run), len(free))
			}
			for _, n := range free[:k-len(run)] {
				if err := startNew(n, cmds); err != nil {
					return err
				}
			}
			_, err := env.settled(ctx, cmds, nil)
			return err
		}
		return nil
	}
}

// walk is the node counts a resize fault goes through from c0 running
// nodes of n slots: shrink-grow down by two to 1, then back up; grow-shrink
// up by two to n, then back down. The first count is the fault's start,
// the rest of the way out its midpoint, the way back its heal.
func walk(kind string, c0, n int) (out, back []int) {
	if kind == ShrinkGrow {
		for c := c0 - 2; c >= 1; c -= 2 {
			out = append(out, c)
		}
		if len(out) > 0 && out[len(out)-1] != 1 {
			out = append(out, 1)
		}
		if c0 > 1 && len(out) == 0 {
			out = []int{1}
		}
	} else {
		for c := c0 + 2; c <= n; c += 2 {
			out = append(out, c)
		}
		if c0 < n && (len(out) == 0 || out[len(out)-1] != n) {
			out = append(out, n)
		}
	}
	for i := len(out) - 2; i >= 0; i-- {
		back = append(back, out[i])
	}
	if len(out) > 0 {
		back = append(back, c0)
	}
	return out, back
}

// membership starts a membership fault.
func (env *Env) membership(ctx context.Context, s Step) (*fault, error) {
	f := &fault{heal: noHeal}
	switch s.Kind {
	case ShrinkGrow, GrowShrink:
		return f, env.resizeFault(ctx, f, s)
	case ReplaceVoter:
		return f, env.replaceVoter(ctx, f, s)
	}
	return f, env.joinPromote(ctx, f, s)
}

// resizeFault walks the node count (walk): the first count at the start,
// the rest of the way out at the midpoint, the way back at the heal.
func (env *Env) resizeFault(ctx context.Context, f *fault, s Step) error {
	c0 := len(env.running())
	out, back := walk(s.Kind, c0, len(env.Cluster.Nodes))
	if len(out) == 0 {
		return fmt.Errorf("%s: nothing to do with %d of %d nodes running", s.Kind, c0, len(env.Cluster.Nodes))
	}
	f.targets = append([]*nodes.Node(nil), env.Cluster.Nodes...)
	f.cmds = append(f.cmds, fmt.Sprintf("%d running -> %v -> %v", c0, out, back))
	p := s.Pick
	to := func(ks []int, cmds *[]string) error {
		for _, k := range ks {
			if err := env.resize(ctx, k, p, cmds); err != nil {
				return err
			}
			p = p*6364136223846793005 + 1442695040888963407 // another pick for the next shrink
		}
		return nil
	}
	if len(out) > 1 {
		f.mid = func() (string, error) {
			var cmds []string
			err := to(out[1:], &cmds)
			return strings.Join(cmds, "; "), err
		}
	}
	f.heal = func() ([]string, error) {
		var cmds []string
		err := to(back, &cmds)
		return cmds, err
	}
	return to(out[:1], &f.cmds)
}

// replaceVoter kills a voter other than the leader for good (its data
// deleted) and starts a brand-new node: in a stopped slot if there is one
// (an address of its own), else in the dead voter's slot (its address, a
// new id). The heal waits until the leader has removed the dead voter and
// the voters are back to their count.
func (env *Env) replaceVoter(ctx context.Context, f *fault, s Step) error {
	v, err := env.settle(ctx, nil)
	if err != nil {
		return err
	}
	var voters []*nodes.Node
	for _, n := range env.Cluster.Nodes {
		if id, ok := v.ids[n]; ok && n != v.leader && v.servers[id] == "voter" {
			voters = append(voters, n)
		}
	}
	target := pick(voters, s.Pick)
	if target == nil {
		return fmt.Errorf("no voter but the leader: %s", v)
	}
	oldID := v.ids[target]
	slot := target
	if free := env.stopped(); len(free) > 0 {
		slot = free[0]
	}
	f.targets = []*nodes.Node{target}
	if slot != target {
		f.targets = append(f.targets, slot)
	}
	f.cmds = append(f.cmds, fmt.Sprintf("SIGKILL %s (voter %s) and delete its data: gone for good", target.Name, oldID))
	if err := target.Wipe(); err != nil {
		return err
	}
	if err := startNew(slot, &f.cmds); err != nil {
		return err
	}
	f.heal = func() ([]string, error) {
		var cmds []string
		v, err := env.settled(ctx, &cmds, func(v view) error {
			if _, ok := v.servers[oldID]; ok {
				return fmt.Errorf("the dead voter %s is still a member", oldID)
			}
			return nil
		})
		if err == nil {
			id := v.ids[slot]
			cmds = append(cmds, fmt.Sprintf("replaced: %s gone; the new node %s=%s is a %s", oldID, slot.Name, id, v.servers[id]))
		}
		return cmds, err
	}
	return nil
}

// joinPromote makes a new node join as a non-voter and become a voter: the
// running non-voters leave first, so that the newcomer is the only spare;
// a new node joins (a stopped slot, its data folder emptied) and is added
// as a non-voter; at the midpoint a voter other than the leader leaves and
// the leader must promote the newcomer. The heal starts the nodes that
// left again, on their data (they rejoin).
func (env *Env) joinPromote(ctx context.Context, f *fault, s Step) error {
	v, err := env.settle(ctx, nil)
	if err != nil {
		return err
	}
	var left []*nodes.Node
	for _, n := range env.Cluster.Nodes {
		if id, ok := v.ids[n]; ok && v.servers[id] == "nonvoter" {
			left = append(left, n)
		}
	}
	f.heal = func() ([]string, error) {
		var cmds []string
		for _, n := range left {
			if !n.Running() {
				cmds = append(cmds, "restart "+n.Name+" on its data (it rejoins)")
				if err := n.Start(); err != nil {
					return cmds, err
				}
			}
		}
		_, err := env.settled(ctx, &cmds, nil)
		return cmds, err
	}
	for _, n := range left {
		if err := leave(n, &f.cmds); err != nil {
			return err
		}
	}
	if len(left) > 0 {
		if _, err := env.settled(ctx, &f.cmds, nil); err != nil {
			return err
		}
	}
	// A slot that never ran first, else one that left (emptied: a new id).
	free := env.stopped()
	sort.SliceStable(free, func(i, j int) bool { return !free[i].Started() && free[j].Started() })
	if len(free) == 0 {
		return errors.New("no stopped slot for the new node")
	}
	joiner := free[0]
	// A spare that left and comes back as the newcomer is no longer one
	// to restart on its data.
	left = slices.DeleteFunc(left, func(n *nodes.Node) bool { return n == joiner })
	f.targets = append([]*nodes.Node{joiner}, left...)
	if err := startNew(joiner, &f.cmds); err != nil {
		return err
	}
	var joinerID string
	if _, err := env.settled(ctx, &f.cmds, func(v view) error {
		joinerID = v.ids[joiner]
		if v.servers[joinerID] != "nonvoter" {
			return fmt.Errorf("%s (%s) is %q, want a non-voter", joiner.Name, joinerID, v.servers[joinerID])
		}
		return nil
	}); err != nil {
		return err
	}
	f.mid = func() (string, error) {
		var cmds []string
		v, err := env.view(ctx)
		if err != nil {
			return "", err
		}
		var voters []*nodes.Node
		for _, n := range env.Cluster.Nodes {
			if id, ok := v.ids[n]; ok && n != v.leader && v.servers[id] == "voter" {
				voters = append(voters, n)
			}
		}
		leaver := pick(voters, s.Pick)
		if leaver == nil {
			return "", fmt.Errorf("no voter but the leader to leave: %s", v)
		}
		if !slices.Contains(left, leaver) {
			left = append(left, leaver)
			f.targets = append(f.targets, leaver)
		}
		if err := leave(leaver, &cmds); err != nil {
			return strings.Join(cmds, "; "), err
		}
		_, err = env.settled(ctx, &cmds, func(v view) error {
			if v.servers[joinerID] != "voter" {
				return fmt.Errorf("the newcomer %s (%s) is %q, not a voter", joiner.Name, joinerID, v.servers[joinerID])
			}
			return nil
		})
		if err == nil {
			cmds = append(cmds, fmt.Sprintf("promoted: the newcomer %s=%s is a voter", joiner.Name, joinerID))
		}
		return strings.Join(cmds, "; "), err
	}
	return nil
}
