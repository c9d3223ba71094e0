package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftplane/raftplane/chaos/history"
	"github.com/raftplane/raftplane/chaos/nodes"
)

// Network is what the executor needs from the network layer (netfault in
// the namespace sandbox). Every method returns the commands it ran, for
// the journal. Can reports whether the machine can express a kind.
type Network interface {
	Isolate(i int) ([]string, error)
	Split(minority []int) ([]string, error)
	Ring() ([]string, error)
	Bridge() ([]string, error)
	// DeafTo makes node i receive nothing from the other nodes, while
	// what it sends still arrives.
	DeafTo(i int) ([]string, error)
	GossipCut(i int) ([]string, error)
	Lossy(i int) ([]string, error)
	Slow(i int) ([]string, error)
	Delay(i int) ([]string, error)
	LinkDown(i int) ([]string, error)
	LinkUp(i int) ([]string, error)
	ResetConnections(i int) ([]string, error)
	CutClients(i int) ([]string, error)
	HealAll() ([]string, error)
	Can(kind string) bool
}

// Disks is what the disk faults need (chaos/diskfault: each node's data on
// a small filesystem of its own). Every method returns what it did, for
// the journal.
type Disks interface {
	// Fill takes node i's last free byte; Unfill gives the space back.
	Fill(i int) ([]string, error)
	Unfill(i int) ([]string, error)
	UnfillAll() ([]string, error)
}

// Env is what faults act on.
type Env struct {
	Cluster *nodes.Cluster
	Net     Network // nil: only process faults
	Disks   Disks   // nil: no disk faults
	Rec     *history.Recorder
	// Voters is the nodes' -voters (0: DefaultVoters), which the
	// membership faults expect the leader to keep.
	Voters int
	// SettleTimeout bounds each wait of a membership fault for the
	// configuration to settle (0: DefaultSettleTimeout).
	SettleTimeout time.Duration
	// Logf, optional, narrates the run (t.Logf).
	Logf func(format string, args ...any)
}

var networkKinds = map[string]bool{PartitionLeader: true, PartitionOne: true, PartitionMajority: true,
	PartitionRing: true, PartitionBridge: true, OneWayLeader: true, GossipCut: true, Lossy: true, Slow: true, Delay: true,
	ConnReset: true, ClientCut: true, SnapshotLag: true, CrashHost: true}

// Supported reports whether env can run kind.
func (env *Env) Supported(kind string) bool {
	if kind == DiskFull || kind == DiskFullLeader {
		return env.Disks != nil
	}
	if !networkKinds[kind] {
		return true
	}
	return env.Net != nil && env.Net.Can(kind)
}

// Run executes steps (lanes concurrently, each lane in order, each step at
// its At after Run started) until they are done or ctx ends. A step that
// takes longer than its Dur (a rolling restart, a membership fault that
// waits for the configuration to settle) moves its lane's later steps by
// as much, so that the quiet gaps of the schedule stay. Faults that env
// cannot express are journalled as skipped. Each fault is healed when its
// time is up, or at once when ctx ends; call HealAll afterwards for what a
// heal could not undo.
func Run(ctx context.Context, env *Env, steps []Step) {
	lanes := map[int][]Step{}
	for _, s := range steps {
		lanes[s.Lane] = append(lanes[s.Lane], s)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, ls := range lanes {
		wg.Add(1)
		go func(ls []Step) {
			defer wg.Done()
			var late time.Duration
			for _, s := range ls {
				at := start.Add(s.At + late)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(at)):
				}
				began := time.Now()
				env.step(ctx, s)
				late += max(0, time.Since(began)-s.Dur)
			}
		}(ls)
	}
	wg.Wait()
}

// faultMu keeps two lanes from picking targets at the same moment, so that
// a node is the target of one fault at a time.
var faultMu sync.Mutex

func (env *Env) logf(format string, args ...any) {
	if env.Logf != nil {
		env.Logf(format, args...)
	}
}

func (env *Env) step(ctx context.Context, s Step) {
	if !env.Supported(s.Kind) {
		env.Rec.Add(history.Event{P: "nemesis", Type: history.Note, Kind: s.Kind, Text: "skipped: this machine cannot express " + s.Kind})
		env.logf("nemesis: skip %s (not supported here)", s.Kind)
		return
	}
	faultMu.Lock()
	f, err := env.start(ctx, s)
	faultMu.Unlock()
	ev := history.Event{P: "nemesis", Type: history.FaultStart, Kind: s.Kind, Spec: fmt.Sprintf("%s for %s", s.Kind, s.Dur)}
	if f != nil {
		ev.Targets, ev.Cmds = f.names(), f.cmds
	}
	if err != nil {
		// Journalled as a note, not a fault: what it did is healed by
		// HealAll at the end.
		ev.Type, ev.Text = history.Note, "could not start: "+err.Error()
	}
	env.Rec.Add(ev)
	env.logf("nemesis: %s %v %s", s.Kind, ev.Targets, ev.Text)
	if f == nil {
		return
	}
	// A fault that failed half-way (a graceful stop that had to kill, say)
	// is still healed when its time is up: what it stopped starts again.
	wait := s.Dur
	if f.mid != nil && err == nil {
		// The fault's second act (a clock fault's kill or jump back),
		// halfway through.
		select {
		case <-ctx.Done():
		case <-time.After(s.Dur / 2):
			mid := history.Event{P: "nemesis", Type: history.Note, Kind: s.Kind, Targets: f.names()}
			text, merr := f.mid()
			mid.Text = text
			if merr != nil {
				mid.Text += ": " + merr.Error()
			}
			env.Rec.Add(mid)
			env.logf("nemesis: %s %v %s", s.Kind, mid.Targets, mid.Text)
		}
		wait -= s.Dur / 2
	}
	select {
	case <-ctx.Done():
	case <-time.After(wait):
	}
	end := history.Event{P: "nemesis", Type: history.FaultEnd, Kind: s.Kind, Targets: f.names()}
	cmds, herr := f.heal()
	end.Cmds = cmds
	if herr != nil {
		end.Text = "heal: " + herr.Error()
	}
	if err != nil {
		for _, n := range f.targets {
			if !n.Running() {
				if serr := n.Start(); serr != nil {
					end.Text += "; restart " + n.Name + ": " + serr.Error()
				}
			}
		}
	}
	env.Rec.Add(end)
	env.logf("nemesis: healed %s %v %s", s.Kind, end.Targets, end.Text)
}

// fault is a fault in force: its targets and how to end it. mid, if set,
// runs halfway through and says what it did.
type fault struct {
	targets []*nodes.Node
	cmds    []string
	heal    func() ([]string, error)
	mid     func() (string, error)
}

func (f *fault) names() []string {
	var out []string
	for _, n := range f.targets {
		out = append(out, n.Name)
	}
	return out
}

func noHeal() ([]string, error) { return nil, nil }

// candidates are the nodes a fault may pick: running, not paused.
func (env *Env) candidates(exclude ...*nodes.Node) []*nodes.Node {
	var out []*nodes.Node
	for _, n := range env.Cluster.Nodes {
		if n.Running() && !n.Paused() && !slices.Contains(exclude, n) {
			out = append(out, n)
		}
	}
	return out
}

func (env *Env) leader(ctx context.Context) *nodes.Node {
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return env.Cluster.Leader(lctx)
}

func pick(cands []*nodes.Node, p uint64) *nodes.Node {
	if len(cands) == 0 {
		return nil
	}
	return cands[p%uint64(len(cands))]
}

// start begins fault step s and returns it, to be healed. It is a dispatch
// on the fault kind, one case each, hence its length; left whole because
// the faults need network namespaces to run, so a split could not be
// tested where it was made.
func (env *Env) start(ctx context.Context, s Step) (*fault, error) {
	if membershipKinds[s.Kind] {
		return env.membership(ctx, s) // membership.go
	}
	var target *nodes.Node
	switch s.Kind {
	case KillLeader, PauseLeader, PartitionLeader, OneWayLeader, ClockSkew, ClockJump, DiskFullLeader, DiskFailLeader:
		target = env.leader(ctx)
		if target == nil {
			target = pick(env.candidates(), s.Pick)
		}
	case Wipe, SnapshotLag, DiskFull, DiskFail:
		l := env.leader(ctx)
		if l == nil {
			return nil, errors.New("no leader to tell a follower from")
		}
		target = pick(env.candidates(l), s.Pick)
	case PartitionMajority, PartitionRing, PartitionBridge, RollingRestart, KillMajority, ClockScramble:
	default:
		target = pick(env.candidates(), s.Pick)
	}
	if target == nil && !slices.Contains([]string{PartitionMajority, PartitionRing, PartitionBridge, RollingRestart, KillMajority, ClockScramble}, s.Kind) {
		return nil, errors.New("no node to target")
	}
	f := &fault{heal: noHeal}
	if target != nil {
		f.targets = []*nodes.Node{target}
	}
	restart := func() ([]string, error) { return nil, target.Start() }
	var err error
	net := env.Net
	i := -1
	if target != nil {
		i = target.Index
	}
	switch s.Kind {
	case Kill, KillLeader:
		err = target.Kill()
		f.heal = restart
	case Terminate:
		err = target.Terminate(30 * time.Second) // a node cut off from the leader waits its -shutdown-timeout (15 s) to leave
		f.heal = restart
	case KillMajority:
		victims := []*nodes.Node{}
		if l := env.leader(ctx); l != nil {
			victims = append(victims, l)
		}
		for _, n := range env.candidates(victims...) {
			if len(victims) == len(env.Cluster.Nodes)/2+1 {
				break
			}
			victims = append(victims, n)
		}
		f.targets = victims
		for _, n := range victims {
			if err = n.Kill(); err != nil {
				break
			}
		}
		f.heal = func() ([]string, error) {
			for _, n := range victims {
				if err := n.Start(); err != nil {
					return nil, err
				}
			}
			return nil, nil
		}
	case CrashHost:
		if err = target.Kill(); err == nil {
			f.cmds, err = net.LinkDown(i)
		}
		f.heal = func() ([]string, error) {
			cmds, err := net.LinkUp(i)
			if err != nil {
				return cmds, err
			}
			return cmds, target.Start()
		}
	case Pause, PauseLeader:
		err = target.Pause()
		f.heal = func() ([]string, error) { return nil, target.Continue() }
	case Wipe:
		if !env.allRunning() {
			return nil, errors.New("not every node is up: a wipe now could leave a quorum without the data")
		}
		err = target.Wipe()
		if err == nil {
			err = target.Start()
		}
	case RollingRestart:
		return f, env.rollingRestart(ctx)
	case PartitionLeader, PartitionOne, SnapshotLag:
		f.cmds, err = net.Isolate(i)
		f.heal = net.HealAll
	case PartitionMajority:
		n := len(env.Cluster.Nodes)
		perm := make([]int, n)
		for k := range perm {
			perm[k] = k
		}
		// A deterministic shuffle from the step's pick.
		p := s.Pick
		for k := n - 1; k > 0; k-- {
			j := int(p % uint64(k+1))
			p /= uint64(k + 1)
			perm[k], perm[j] = perm[j], perm[k]
		}
		minority := perm[:(n-1)/2]
		for _, k := range minority {
			f.targets = append(f.targets, env.Cluster.Nodes[k])
		}
		f.cmds, err = net.Split(minority)
		f.heal = net.HealAll
	case PartitionRing:
		f.cmds, err = net.Ring()
		f.heal = net.HealAll
	case PartitionBridge:
		f.cmds, err = net.Bridge()
		f.heal = net.HealAll
	case ConnReset:
		f.cmds, err = net.ResetConnections(i)
	case OneWayLeader, GossipCut, Lossy, Slow, Delay, ClientCut:
		apply := map[string]func(int) ([]string, error){OneWayLeader: net.DeafTo, GossipCut: net.GossipCut,
			Lossy: net.Lossy, Slow: net.Slow, Delay: net.Delay, ClientCut: net.CutClients}[s.Kind]
		f.cmds, err = apply(i)
		f.heal = net.HealAll
	case ClockSkew, ClockJump, ClockScramble:
		err = env.clockFault(f, s, target)
	case DiskFull, DiskFullLeader:
		f.cmds, err = env.Disks.Fill(i)
		f.heal = func() ([]string, error) { return env.Disks.Unfill(i) }
		f.mid = func() (string, error) { return readyz(ctx, target) }
	case DiskFail, DiskFailLeader:
		f.cmds, err = []string{"disk-fail " + target.Name + " on"}, target.SetDiskFail(true)
		f.heal = func() ([]string, error) {
			cmds := []string{"disk-fail " + target.Name + " off"}
			if err := target.SetDiskFail(false); err != nil || target.Running() {
				return cmds, err
			}
			// It stopped itself (raft could not save its term): its
			// supervisor would start it again, on the same data.
			return append(cmds, "start "+target.Name+" (it had stopped: its writes failed)"), target.Start()
		}
		f.mid = func() (string, error) { return readyz(ctx, target) }
	default:
		return nil, fmt.Errorf("unknown fault kind %q", s.Kind)
	}
	return f, err
}

// clockFault starts a clock fault (the nodes' test clock hook: it moves the
// time a node stamps commands with, as an NTP step would). ClockSkew sets
// the leader's clock off and kills it halfway, so the next leader's clock
// disagrees with the log's newest stamp by the offset; ClockJump steps the
// leader's clock forward, then as far behind; ClockScramble sets every
// node's clock off by its own amount. The heal puts every clock it moved
// right (and restarts the killed leader).
func (env *Env) clockFault(f *fault, s Step, target *nodes.Node) error {
	set := func(n *nodes.Node, d time.Duration) error {
		f.cmds = append(f.cmds, fmt.Sprintf("clock %s %s", n.Name, Signed(d)))
		return n.SetClock(d)
	}
	switch s.Kind {
	case ClockSkew:
		f.mid = func() (string, error) {
			return fmt.Sprintf("killed %s (the leader, clock %s) so that a node whose clock disagrees takes over", target.Name, Signed(s.Offset)), target.Kill()
		}
		f.heal = func() ([]string, error) {
			if err := target.SetClock(0); err != nil {
				return nil, err
			}
			if target.Running() {
				return nil, nil
			}
			return nil, target.Start()
		}
		return set(target, s.Offset)
	case ClockJump:
		f.mid = func() (string, error) {
			return fmt.Sprintf("%s's clock jumped back to %s", target.Name, Signed(-s.Offset)), target.SetClock(-s.Offset)
		}
		f.heal = func() ([]string, error) { return nil, target.SetClock(0) }
		return set(target, s.Offset)
	}
	// ClockScramble: each node's offset from the step's pick, so a replay
	// sets the same clocks.
	most := max(s.Offset, -s.Offset)
	rng := rand.New(rand.NewPCG(s.Pick, uint64(most)))
	f.targets = append([]*nodes.Node(nil), env.Cluster.Nodes...)
	for _, n := range f.targets {
		d := time.Duration(rng.Int64N(int64(most) + 1)).Round(time.Millisecond)
		if rng.IntN(2) == 0 {
			d = -d
		}
		if err := set(n, d); err != nil {
			return err
		}
	}
	f.heal = func() ([]string, error) {
		var errs []error
		for _, n := range f.targets {
			errs = append(errs, n.SetClock(0))
		}
		return nil, errors.Join(errs...)
	}
	return nil
}

// readyz journals what a node's GET /readyz says (a node whose disk is
// full must say so).
func readyz(ctx context.Context, n *nodes.Node) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	code, body, err := n.Ready(rctx)
	return fmt.Sprintf("%s /readyz: %d %s", n.Name, code, body), err
}

func (env *Env) allRunning() bool {
	for _, n := range env.Cluster.Nodes {
		if !n.Running() || n.Paused() {
			return false
		}
	}
	return true
}

// rollingRestart restarts every node gracefully, one at a time, waiting for
// a leader agreed by all before the next.
func (env *Env) rollingRestart(ctx context.Context) error {
	for _, n := range env.Cluster.Nodes {
		if !n.Running() {
			continue
		}
		errStop := n.Terminate(30 * time.Second)
		if err := n.Start(); err != nil {
			return err
		}
		if errStop != nil {
			return errStop
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := env.Cluster.WaitLeader(wctx, nil)
		cancel()
		if err != nil {
			return fmt.Errorf("after restarting %s: %w", n.Name, err)
		}
	}
	return nil
}

// HealAll ends every fault: the network is healed, paused nodes continue and
// stopped nodes start again.
func (env *Env) HealAll() error {
	var errs []string
	ev := history.Event{P: "nemesis", Type: history.FaultEnd, Kind: "heal-all"}
	if env.Net != nil {
		cmds, err := env.Net.HealAll()
		ev.Cmds = cmds
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	if env.Disks != nil {
		cmds, err := env.Disks.UnfillAll()
		ev.Cmds = append(ev.Cmds, cmds...)
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, n := range env.Cluster.Nodes {
		if err := n.Continue(); err != nil {
			errs = append(errs, err.Error())
		}
		if n.ClockOffset() != 0 {
			ev.Cmds = append(ev.Cmds, fmt.Sprintf("clock %s 0", n.Name))
			if err := n.SetClock(0); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if !n.Running() {
			ev.Targets = append(ev.Targets, n.Name)
			if err := n.Start(); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	ev.Text = strings.Join(errs, "; ")
	env.Rec.Add(ev)
	if len(errs) > 0 {
		return errors.New(ev.Text)
	}
	return nil
}
