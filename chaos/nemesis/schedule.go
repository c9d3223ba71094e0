// Package nemesis owns the chaos suite's faults: a seeded schedule (the same
// seed gives the same faults in the same order), the catalogue of fault
// kinds and their mechanisms (processes through chaos/nodes, the network
// through chaos/netfault), an executor that journals every fault into the
// history, and the final heal.
package nemesis

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"time"
)

// Step is one fault of a schedule: Kind starts At after the fault phase
// began and lasts Dur. Pick chooses the target among candidates (a random
// number, resolved against the nodes that qualify when the step runs, so
// that "a follower" means one at that moment). Lane separates the
// sequences of a profile that overlaps faults. Offset is how far a clock
// fault sets a clock off.
type Step struct {
	At     time.Duration `json:"at"`
	Kind   string        `json:"kind"`
	Dur    time.Duration `json:"dur"`
	Pick   uint64        `json:"pick"`
	Lane   int           `json:"lane"`
	Offset time.Duration `json:"offset,omitempty"`
}

func (s Step) String() string {
	out := fmt.Sprintf("%6.1fs %-18s %5.1fs", s.At.Seconds(), s.Kind, s.Dur.Seconds())
	if s.Offset != 0 {
		out += " clock " + Signed(s.Offset)
	}
	return out
}

// Profile shapes a schedule.
type Profile struct {
	Name string
	// Nodes is how many nodes the profile runs.
	Nodes int
	// Faults is how long faults are injected; each fault lasts between
	// MinDur and MaxDur, with a quiet gap between MinGap and MaxGap after.
	Faults         time.Duration
	MinDur, MaxDur time.Duration
	MinGap, MaxGap time.Duration
	// Lanes are the kinds each lane draws from; lanes run concurrently, so
	// a profile with two lanes overlaps faults.
	Lanes [][]string
	// Lead are kinds (of a lane) dealt before the lane's others in every
	// run, so that a run too short for the whole catalogue still covers
	// them (the newest faults, in CI).
	Lead []string
}

// Fault kinds. See Catalogue for what each does.
const (
	Kill              = "kill"
	KillLeader        = "kill-leader"
	KillMajority      = "kill-majority"
	CrashHost         = "crash-host"
	Pause             = "pause"
	PauseLeader       = "pause-leader"
	Terminate         = "terminate"
	PartitionLeader   = "partition-leader"
	PartitionOne      = "partition-one"
	PartitionMajority = "partition-majority"
	PartitionRing     = "partition-ring"
	PartitionBridge   = "partition-bridge"
	OneWayLeader      = "oneway-leader"
	GossipCut         = "gossip-cut"
	Lossy             = "lossy"
	Slow              = "slow"
	Delay             = "delay"
	ConnReset         = "conn-reset"
	ClientCut         = "client-cut"
	Wipe              = "wipe"
	SnapshotLag       = "snapshot-lag"
	RollingRestart    = "rolling-restart"
	ClockSkew         = "clock-skew"
	ClockJump         = "clock-jump"
	ClockScramble     = "clock-scramble"
	DiskFull          = "disk-full"
	DiskFullLeader    = "disk-full-leader"
	DiskFail          = "disk-fail"
	DiskFailLeader    = "disk-fail-leader"
	ShrinkGrow        = "shrink-grow"
	GrowShrink        = "grow-shrink"
	ReplaceVoter      = "replace-voter"
	JoinPromote       = "join-promote"
)

// Clock faults set clocks off by MinClockOffset to MaxClockOffset
// (log-uniform, so seconds are as likely as minutes and hours).
const (
	MinClockOffset = time.Second
	MaxClockOffset = time.Hour
)

// Catalogue describes every kind, for the README and the report.
var Catalogue = map[string]string{
	Kill:              "SIGKILL a random node; restart it on the same data after the fault",
	KillLeader:        "SIGKILL the leader; restart it on the same data after the fault",
	KillMajority:      "SIGKILL a majority, the leader among them (no quorum: nothing commits); restart them after the fault",
	CrashHost:         "SIGKILL a random node and pull its cable (link down), so peers see timeouts, not resets; restore and restart",
	Pause:             "SIGSTOP a random node (longer than the election timeout), then SIGCONT",
	PauseLeader:       "SIGSTOP the leader, then SIGCONT",
	Terminate:         "SIGTERM a random node (graceful leave), restart it after the fault",
	PartitionLeader:   "isolate the leader from every other node (clients still reach it)",
	PartitionOne:      "isolate a random node",
	PartitionMajority: "split the nodes into a random minority and majority",
	PartitionRing:     "majorities ring: every node sees only its two ring neighbours",
	PartitionBridge:   "bridge: {a,b} + c + {d,e}, c sees both sides",
	OneWayLeader:      "the leader can send but receives nothing from the others",
	GossipCut:         "drop gossip (UDP) between a random node and the others; Raft (TCP) flows",
	Lossy:             "30% packet loss on every link of a random node",
	Slow:              "a random node's link limited to 1 Mbit/s with 200 ms of queueing",
	Delay:             "100 ms (+0-20 ms jitter) on every packet in and out of a random node (netem, or an NFQUEUE delayer)",
	ConnReset:         "reset every established TCP connection of a random node (ss -K)",
	ClientCut:         "clients cannot reach a random node; nodes still reach each other",
	Wipe:              "SIGKILL a random follower, delete its data, restart it as a new member",
	SnapshotLag:       "isolate a follower long enough that it must catch up from a snapshot",
	RollingRestart:    "SIGTERM and restart every node in turn, waiting for each to rejoin",
	ClockSkew: "set the leader's clock 1 s to 1 h off (either way); halfway through, kill it, so that a node whose clock " +
		"disagrees by that much takes over; restart it with its clock right after the fault",
	ClockJump: "the leader's clock jumps 1 s to 1 h forward, halfway through as far behind true time; right again after the fault",
	ClockScramble: "every node's clock set off by its own amount, up to 1 h either way, for the fault " +
		"(leaders that follow each other during it disagree)",
	DiskFull:       "fill a follower's disk (a small filesystem of its own) to the last byte; free it after the fault",
	DiskFullLeader: "fill the leader's disk to the last byte; free it after the fault",
	DiskFail: "a follower's writes to its Raft stores fail with EIO (the node's disk test hook, " +
		"cluster.DiskFailFileEnv); they go through again after the fault",
	DiskFailLeader: "the leader's writes fail with EIO; they go through again after the fault",
	ShrinkGrow: "shrink the cluster by graceful leaves (SIGTERM), one node at a time, 5 -> 3 -> 1 running, " +
		"then grow it back 1 -> 3 -> 5 with new members (empty data folders, -join); after each step the " +
		"leader's configuration must hold exactly the running nodes with the voters -voters gives",
	GrowShrink: "from a cluster started with fewer nodes (the others spare slots), grow 1 -> 3 -> 5 with new " +
		"members, then shrink back 5 -> 3 -> 1 by graceful leaves; the same check after each step",
	ReplaceVoter: "SIGKILL a voter (not the leader) for good, its data deleted, and start a brand-new node " +
		"(a spare slot, else the dead one's address with a new id); the leader must remove the dead voter " +
		"(after -reap-after) and the voters be back to their count",
	JoinPromote: "the non-voters leave, a new node joins and is added as a non-voter; then a voter leaves " +
		"and the leader must promote the newcomer; the nodes that left rejoin after the fault",
}

// Short is the CI profile: one fault at a time on 5 nodes, 2 minutes of
// schedule (about 15 faults). The membership faults, dealt first with the
// clock faults and the leader's full disk, wait for the configuration to
// settle (a replaced voter's removal takes -reap-after, 20 s), which moves
// the later faults: the fault phase lasts about 3 minutes.
var Short = Profile{
	Name: "short", Nodes: 5, Faults: 120 * time.Second,
	MinDur: 2 * time.Second, MaxDur: 6 * time.Second,
	MinGap: 2 * time.Second, MaxGap: 5 * time.Second,
	Lanes: [][]string{{Kill, KillLeader, CrashHost, Pause, PauseLeader, Terminate, PartitionLeader, PartitionOne,
		PartitionMajority, PartitionRing, PartitionBridge, OneWayLeader, GossipCut, Lossy, Slow, Delay, ConnReset,
		ClientCut, Wipe, SnapshotLag, ClockSkew, ClockJump, ClockScramble, DiskFull, DiskFullLeader,
		DiskFail, DiskFailLeader, ShrinkGrow, ReplaceVoter, JoinPromote}},
	Lead: []string{ShrinkGrow, ReplaceVoter, JoinPromote, ClockSkew, ClockJump, DiskFullLeader},
}

// Soak overlaps process faults with network faults for 30 minutes.
var Soak = Profile{
	Name: "soak", Nodes: 5, Faults: 30 * time.Minute,
	MinDur: time.Second, MaxDur: 30 * time.Second,
	MinGap: 2 * time.Second, MaxGap: 15 * time.Second,
	Lanes: [][]string{
		{Kill, KillLeader, KillMajority, CrashHost, Pause, PauseLeader, Terminate, Wipe, RollingRestart,
			ClockSkew, ClockJump, ClockScramble, DiskFull, DiskFullLeader, DiskFail, DiskFailLeader, ShrinkGrow,
			ReplaceVoter, JoinPromote},
		{PartitionLeader, PartitionOne, PartitionMajority, PartitionRing, PartitionBridge, OneWayLeader, GossipCut,
			Lossy, Slow, Delay, ConnReset, ClientCut, SnapshotLag},
	},
}

// Profiles by name.
var Profiles = map[string]Profile{Short.Name: Short, Soak.Name: Soak}

// Schedule generates the profile's steps from seed. Every kind of a lane
// comes once before any comes twice (a shuffled deck, reshuffled when used
// up), so that even a short run covers most of the catalogue; the first
// deck deals the profile's Lead kinds first.
func Schedule(seed uint64, p Profile) []Step {
	var steps []Step
	for lane, kinds := range p.Lanes {
		rng := rand.New(rand.NewPCG(seed, uint64(lane)))
		var deck []string
		first := true
		for at := time.Duration(0); at < p.Faults; {
			if len(deck) == 0 {
				deck = dealDeck(rng, kinds, p.Lead, first)
				first = false
			}
			kind := deck[0]
			deck = deck[1:]
			d := between(rng, p.MinDur, p.MaxDur)
			st := Step{At: at, Kind: kind, Pick: rng.Uint64(), Lane: lane}
			switch kind {
			case ConnReset:
				d = 0
			case SnapshotLag:
				d = max(d, 8*time.Second)
			case Pause, PauseLeader:
				d = max(d, 2*time.Second) // longer than the election timeout
			case ClockSkew:
				d = max(d, 4*time.Second) // a new leader elected in the second half
				st.Offset = clockOffset(rng)
				if rng.IntN(2) == 0 {
					st.Offset = -st.Offset
				}
			case ClockJump, ClockScramble:
				st.Offset = clockOffset(rng)
			case ShrinkGrow, GrowShrink, JoinPromote:
				d = max(d, 4*time.Second) // the midpoint's step comes after 2 s at the first
			}
			st.Dur = d
			steps = append(steps, st)
			at += d + between(rng, p.MinGap, p.MaxGap)
		}
	}
	return steps
}

// dealDeck shuffles a lane's kinds; the first deck puts the lane's kinds
// among lead first.
func dealDeck(rng *rand.Rand, kinds, lead []string, first bool) []string {
	deck := append([]string(nil), kinds...)
	rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
	if !first || len(lead) == 0 {
		return deck
	}
	front, back := []string{}, []string{}
	for _, k := range deck {
		if slices.Contains(lead, k) {
			front = append(front, k)
		} else {
			back = append(back, k)
		}
	}
	return append(front, back...)
}

// clockOffset draws a clock offset from MinClockOffset to MaxClockOffset,
// log-uniform, rounded to the millisecond.
func clockOffset(rng *rand.Rand) time.Duration {
	lo, hi := math.Log(float64(MinClockOffset)), math.Log(float64(MaxClockOffset))
	return time.Duration(math.Exp(lo + rng.Float64()*(hi-lo))).Round(time.Millisecond)
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// SaveSchedule writes steps as JSON (to replay with LoadSchedule).
func SaveSchedule(path string, steps []Step) error {
	b, err := json.MarshalIndent(steps, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// LoadSchedule reads a schedule written by SaveSchedule.
func LoadSchedule(path string) ([]Step, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var steps []Step
	err = json.Unmarshal(b, &steps)
	return steps, err
}

// Signed formats a clock offset with its sign: +1h0m0s, -30s.
func Signed(d time.Duration) string {
	if d < 0 {
		return d.String()
	}
	return "+" + d.String()
}
