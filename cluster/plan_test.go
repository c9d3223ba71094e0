package cluster

import (
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/gossip"
)

// The plan tests build a cluster "c1" led by "a" at t0, where every server
// has been in the configuration for a minute and every non-voter answered
// the stats RPC caught up, unless a case says otherwise.

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

const (
	testEpoch    = "c1"
	testReap     = 30 * time.Second
	testStab     = 2 * time.Second
	testLast     = 1000
	testTrailing = 10
)

func voter(id string) raft.Server {
	return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":7000")}
}

func nonvoter(id string) raft.Server {
	return raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":7000")}
}

// member is an alive gossip member of c1 with a Raft address.
func member(id string, opts ...func(*gossip.Member)) gossip.Member {
	m := gossip.Member{Meta: gossip.Meta{ID: id, RaftAddr: id + ":7000", ClusterID: testEpoch}, State: gossip.StateAlive}
	for _, o := range opts {
		o(&m)
	}
	return m
}

func dead(m *gossip.Member)    { m.State = gossip.StateDead }
func left(m *gossip.Member)    { m.State = gossip.StateLeft }
func leaving(m *gossip.Member) { m.Leaving = true }
func suspect(m *gossip.Member) { m.State = gossip.StateSuspect }
func cluster(id string) func(*gossip.Member) {
	return func(m *gossip.Member) { m.ClusterID = id }
}
func raftAddr(a string) func(*gossip.Member) {
	return func(m *gossip.Member) { m.RaftAddr = a }
}
func hasData(m *gossip.Member) { m.HasData = true }

// input builds the plan input; tweak adjusts it after the defaults.
func input(servers []raft.Server, members []gossip.Member, tweak func(*planInput)) planInput {
	in := planInput{
		Self: "a", Epoch: testEpoch, Servers: servers, Members: members,
		DeadSince: map[string]time.Time{}, AddedAt: map[string]time.Time{}, Applied: map[string]uint64{},
		LastIndex: testLast,
		Limits:    planLimits{MaxVoters: 3, ReapAfter: testReap, StabilizeTime: testStab, MaxTrailing: testTrailing},
		Now:       t0,
	}
	for _, s := range servers {
		in.AddedAt[string(s.ID)] = t0.Add(-time.Minute)
		if s.Suffrage == raft.Nonvoter {
			in.Applied[string(s.ID)] = testLast
		}
	}
	if tweak != nil {
		tweak(&in)
	}
	return in
}

type planCase struct {
	name    string
	servers []raft.Server
	members []gossip.Member
	tweak   func(*planInput)
	want    []string
}

func runPlan(t *testing.T, cases []planCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := input(tc.servers, tc.members, tc.tweak)
			var got []string
			for _, a := range plan(in) {
				got = append(got, a.String())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("plan:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func deadFor(d time.Duration, ids ...string) func(*planInput) {
	return func(in *planInput) {
		for _, id := range ids {
			in.DeadSince[id] = t0.Add(-d)
		}
	}
}

func TestPlan_Add(t *testing.T) {
	t.Parallel()
	runPlan(t, []planCase{
		{name: "an alive member outside the configuration is added as a non-voter",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b")},
			want: []string{"add b b:7000"}},
		{name: "a member that has not said its cluster yet and has no data is added",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b", cluster(""))},
			want: []string{"add b b:7000"}},
		{name: "a member with data of an unknown cluster is held",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b", cluster(""), hasData)},
			want: []string{"hold b"}},
		{name: "a member with data of this cluster is added",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b", hasData)},
			want: []string{"add b b:7000"}},
		{name: "a member without a raft address waits",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b", raftAddr(""))},
			want: nil},
		{name: "a suspect member counts as alive",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b", suspect)},
			want: []string{"add b b:7000"}},
		{name: "a member without an id is ignored",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("")},
			want: nil},
		{name: "a member just added is not promoted in the same pass",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b"), member("c")},
			tweak: func(in *planInput) { in.Limits.StabilizeTime = 0 },
			want:  []string{"add b b:7000", "add c c:7000"}},
	})
}

// A replaced node: a new id at the Raft address of a server that is gone.
// The leader's replication to the old id would reach the new process and
// feed it another server's stream (the chaos suite's replace-voter once
// saw the new node install an older snapshot meant for the old id), so the
// old id is removed before the new one is added; two live members naming
// one address is a misconfiguration, and the newcomer waits. As when a
// voter leaves, the voter count is then kept odd until the newcomer has
// caught up and is promoted.
func TestPlan_AddressTaken(t *testing.T) {
	t.Parallel()
	at := raftAddr("b:7000")
	runPlan(t, []planCase{
		{name: "a new id at a dead voter's address: the old voter goes first, whatever its reap time",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: []gossip.Member{member("a"), member("b", dead), member("c"), member("b2", at)},
			want:    []string{"remove b (its Raft address b:7000 is now b2's) forget=true", "add b2 b:7000", "demote c voters=2"}},
		{name: "a suspect old holder goes too (its address answers for another process now)",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: []gossip.Member{member("a"), member("b", suspect), member("c"), member("b2", at)},
			want:    []string{"remove b (its Raft address b:7000 is now b2's) forget=true", "add b2 b:7000", "demote c voters=2"}},
		{name: "an old holder gossip no longer knows goes, and is not reaped twice",
			servers: []raft.Server{voter("a"), nonvoter("b"), voter("c"), voter("d")},
			members: []gossip.Member{member("a"), member("c"), member("d"), member("b2", at)},
			tweak:   deadFor(time.Hour, "b"),
			want:    []string{"remove b (its Raft address b:7000 is now b2's) forget=true", "add b2 b:7000"}},
		{name: "a live holder of the address: the newcomer is held",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: []gossip.Member{member("a"), member("b"), member("c"), member("b2", at)},
			want:    []string{"hold b2"}},
	})
}

func TestPlan_Readdress(t *testing.T) {
	t.Parallel()
	runPlan(t, []planCase{
		{name: "a voter at a new address is re-added as a voter",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: []gossip.Member{member("a"), member("b", raftAddr("b2:7000")), member("c")},
			want:    []string{"readdress b b:7000->b2:7000 voter=true"}},
		{name: "a non-voter at a new address is re-added as a non-voter and promoted at the new one",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("d"), nonvoter("e")},
			members: []gossip.Member{member("a"), member("b"), member("c"), member("d", raftAddr("d2:7000")), member("e")},
			tweak:   func(in *planInput) { in.Limits.MaxVoters = 5 },
			want: []string{"readdress d d:7000->d2:7000 voter=false",
				"promote d d2:7000 voters=3", "promote e e:7000 voters=4"}},
		{name: "this node is never re-addressed",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a", raftAddr("a2:7000"))},
			want: nil},
	})
}

func TestPlan_Leave(t *testing.T) {
	t.Parallel()
	runPlan(t, []planCase{
		{name: "a leaving voter is removed at once and a spare takes its vote",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("d")},
			members: []gossip.Member{member("a"), member("b", leaving), member("c"), member("d")},
			want:    []string{"remove b (left the cluster) forget=false", "promote d d:7000 voters=2"}},
		{name: "a leaving voter with no spare: removed, then a voter demoted to keep the count odd",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: []gossip.Member{member("a"), member("b", leaving), member("c")},
			want:    []string{"remove b (left the cluster) forget=false", "demote c voters=2"}},
		{name: "a member that left is removed",
			servers: []raft.Server{voter("a"), nonvoter("b")},
			members: []gossip.Member{member("a"), member("b", left)},
			want:    []string{"remove b (left the cluster) forget=false"}},
		{name: "a leaving member outside the configuration is not added",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b", leaving)},
			want: nil},
		{name: "a leaving non-voter is not promoted",
			servers: []raft.Server{voter("a"), voter("b"), nonvoter("c")},
			members: []gossip.Member{member("a"), member("b"), member("c", leaving)},
			want:    []string{"remove c (left the cluster) forget=false", "demote b voters=2"}},
		{name: "this node leaving is never removed by itself",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: []gossip.Member{member("a", leaving), member("b"), member("c")},
			want:    nil},
	})
}

func TestPlan_Foreign(t *testing.T) {
	t.Parallel()
	runPlan(t, []planCase{
		{name: "a member of another cluster is refused",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b", cluster("c2"))},
			want: []string{"refuse b cluster=c2"}},
		{name: "a member of another cluster in the configuration is refused and removed",
			servers: []raft.Server{voter("a"), nonvoter("b")},
			members: []gossip.Member{member("a"), member("b", cluster("c2"))},
			want:    []string{"refuse b cluster=c2", "remove b (belongs to cluster c2) forget=false"}},
		{name: "a non-voter of another cluster is never promoted",
			servers: []raft.Server{voter("a"), voter("b"), nonvoter("c")},
			members: []gossip.Member{member("a"), member("b"), member("c", cluster("c2"))},
			want:    []string{"refuse c cluster=c2", "remove c (belongs to cluster c2) forget=false", "demote b voters=2"}},
		{name: "a caught-up non-voter that has not said its cluster yet is promoted (it is in our configuration)",
			servers: []raft.Server{voter("a"), voter("b"), nonvoter("c")},
			members: []gossip.Member{member("a"), member("b"), member("c", cluster(""))},
			want:    []string{"promote c c:7000 voters=2"}},
		{name: "before the cluster has an id nobody is foreign",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a", cluster("")), member("b", cluster("c2"))},
			tweak: func(in *planInput) { in.Epoch = "" },
			want:  []string{"add b b:7000"}},
		{name: "a voter of another cluster is removed, the promotion count not lowered (as before the split)",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("d")},
			members: []gossip.Member{member("a"), member("b"), member("c", cluster("c2")), member("d")},
			want:    []string{"refuse c cluster=c2", "remove c (belongs to cluster c2) forget=false", "demote b voters=2"}},
	})
}

func TestPlan_ReapNonvoters(t *testing.T) {
	t.Parallel()
	runPlan(t, []planCase{
		{name: "a non-voter dead for less than ReapAfter stays",
			servers: []raft.Server{voter("a"), nonvoter("b")}, members: []gossip.Member{member("a"), member("b", dead)},
			tweak: deadFor(testReap-time.Second, "b"), want: nil},
		{name: "a non-voter dead for ReapAfter is removed",
			servers: []raft.Server{voter("a"), nonvoter("b")}, members: []gossip.Member{member("a"), member("b", dead)},
			tweak: deadFor(testReap, "b"), want: []string{"remove b (dead for more than 30s) forget=true"}},
		{name: "a dead member first seen this pass stays",
			servers: []raft.Server{voter("a"), nonvoter("b")}, members: []gossip.Member{member("a"), member("b", dead)},
			want: nil},
		{name: "a server gossip does not know is dead from the pass that missed it",
			servers: []raft.Server{voter("a"), nonvoter("b"), nonvoter("c")}, members: []gossip.Member{member("a")},
			tweak: deadFor(time.Hour, "c"), want: []string{"remove c (dead for more than 30s) forget=true"}},
		{name: "a dead member outside the configuration needs nothing",
			servers: []raft.Server{voter("a")}, members: []gossip.Member{member("a"), member("b", dead)},
			tweak: deadFor(time.Hour, "b"), want: nil},
		{name: "dead non-voters go in id order",
			servers: []raft.Server{voter("a"), nonvoter("c"), nonvoter("b")}, members: []gossip.Member{member("a"), member("c", dead)},
			tweak: deadFor(time.Hour, "b", "c"),
			want:  []string{"remove b (dead for more than 30s) forget=true", "remove c (dead for more than 30s) forget=true"}},
	})
}

func TestPlan_ReapVoters(t *testing.T) {
	t.Parallel()
	v3 := []raft.Server{voter("a"), voter("b"), voter("c")}
	runPlan(t, []planCase{
		{name: "a dead voter with a spare is removed, then the spare promoted",
			servers: append(v3, nonvoter("d")),
			members: []gossip.Member{member("a"), member("b"), member("c", dead), member("d")},
			tweak:   deadFor(testReap, "c"),
			want:    []string{"remove c (dead for more than 30s) forget=true", "promote d d:7000 voters=2"}},
		{name: "a dead voter without a spare is kept",
			servers: v3, members: []gossip.Member{member("a"), member("b"), member("c", dead)},
			tweak: deadFor(time.Hour, "c"), want: []string{"keep c voters=3 spares=0"}},
		{name: "a dead voter whose spare lags is kept",
			servers: append(v3, nonvoter("d")),
			members: []gossip.Member{member("a"), member("b"), member("c", dead), member("d")},
			tweak: func(in *planInput) {
				deadFor(time.Hour, "c")(in)
				in.Applied["d"] = testLast - testTrailing - 1
			},
			want: []string{"keep c voters=3 spares=0"}},
		{name: "never more dead voters removed than keeps a quorum",
			servers: append(v3, nonvoter("d"), nonvoter("e")),
			members: []gossip.Member{member("a"), member("b", dead), member("c", dead), member("d"), member("e")},
			tweak:   deadFor(time.Hour, "b", "c"),
			want: []string{"remove b (dead for more than 30s) forget=true", "keep c voters=2 spares=2",
				"promote d d:7000 voters=2"}},
		{name: "a dead voter above MaxVoters goes without a spare",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members: []gossip.Member{member("a"), member("b"), member("c"), member("d"), member("e", dead)},
			tweak:   deadFor(time.Hour, "e"),
			want:    []string{"remove e (dead for more than 30s) forget=true", "demote b voters=4"}},
		{name: "a voter gossip does not know is reaped when a spare can replace it",
			servers: append(v3, nonvoter("d")),
			members: []gossip.Member{member("a"), member("b"), member("d")},
			tweak:   deadFor(time.Hour, "c"),
			want:    []string{"remove c (dead for more than 30s) forget=true", "promote d d:7000 voters=2"}},
		{name: "the only other voter dead: one voter of two cannot go (no quorum to spare)",
			servers: []raft.Server{voter("a"), voter("b"), nonvoter("c")},
			members: []gossip.Member{member("a"), member("b", dead), member("c")},
			tweak:   deadFor(time.Hour, "b"),
			want:    []string{"keep b voters=2 spares=1", "promote c c:7000 voters=2"}},
	})
}

func TestPlan_Promote(t *testing.T) {
	t.Parallel()
	runPlan(t, []planCase{
		{name: "from one voter, two spares are promoted together",
			servers: []raft.Server{voter("a"), nonvoter("b"), nonvoter("c")},
			members: []gossip.Member{member("a"), member("b"), member("c")},
			want:    []string{"promote b b:7000 voters=1", "promote c c:7000 voters=2"}},
		{name: "from one voter, a single spare waits for a second",
			servers: []raft.Server{voter("a"), nonvoter("b")},
			members: []gossip.Member{member("a"), member("b")},
			want:    nil},
		{name: "from two voters, one spare is promoted",
			servers: []raft.Server{voter("a"), voter("b"), nonvoter("c"), nonvoter("d")},
			members: []gossip.Member{member("a"), member("b"), member("c"), member("d")},
			want:    []string{"promote c c:7000 voters=2"}},
		{name: "up to MaxVoters and no further",
			servers: []raft.Server{voter("a"), nonvoter("b"), nonvoter("c"), nonvoter("d"), nonvoter("e"), nonvoter("f"), nonvoter("g")},
			members: []gossip.Member{member("a"), member("b"), member("c"), member("d"), member("e"), member("f"), member("g")},
			tweak:   func(in *planInput) { in.Limits.MaxVoters = 5 },
			want: []string{"promote b b:7000 voters=1", "promote c c:7000 voters=2",
				"promote d d:7000 voters=3", "promote e e:7000 voters=4"}},
		{name: "a spare not yet stable is not promoted",
			servers: []raft.Server{voter("a"), nonvoter("b"), nonvoter("c")},
			members: []gossip.Member{member("a"), member("b"), member("c")},
			tweak:   func(in *planInput) { in.AddedAt["c"] = t0.Add(-testStab + time.Millisecond) },
			want:    nil},
		{name: "a spare with no added time is not promoted",
			servers: []raft.Server{voter("a"), nonvoter("b"), nonvoter("c")},
			members: []gossip.Member{member("a"), member("b"), member("c")},
			tweak:   func(in *planInput) { delete(in.AddedAt, "c") },
			want:    nil},
		{name: "a spare that did not answer the stats RPC is not promoted",
			servers: []raft.Server{voter("a"), nonvoter("b"), nonvoter("c")},
			members: []gossip.Member{member("a"), member("b"), member("c")},
			tweak:   func(in *planInput) { delete(in.Applied, "b") },
			want:    nil},
		{name: "a spare MaxTrailing behind is still caught up",
			servers: []raft.Server{voter("a"), nonvoter("b"), nonvoter("c")},
			members: []gossip.Member{member("a"), member("b"), member("c")},
			tweak:   func(in *planInput) { in.Applied["b"] = testLast - testTrailing },
			want:    []string{"promote b b:7000 voters=1", "promote c c:7000 voters=2"}},
		{name: "a suspect spare is not promoted",
			servers: []raft.Server{voter("a"), voter("b"), nonvoter("c")},
			members: []gossip.Member{member("a"), member("b"), member("c", suspect)},
			want:    []string{"demote b voters=2"}},
		{name: "a non-voter gossip does not know is not promoted",
			servers: []raft.Server{voter("a"), nonvoter("b"), nonvoter("c")},
			members: []gossip.Member{member("a"), member("b")},
			want:    nil},
	})
}

func TestPlan_Demote(t *testing.T) {
	t.Parallel()
	runPlan(t, []planCase{
		{name: "two voters and nobody to promote: the other is demoted",
			servers: []raft.Server{voter("a"), voter("b")}, members: []gossip.Member{member("a"), member("b")},
			want: []string{"demote b voters=2"}},
		{name: "a voter gossip does not show alive is demoted first",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), voter("d")},
			members: []gossip.Member{member("a"), member("b"), member("c"), member("d", dead)},
			tweak:   func(in *planInput) { in.Limits.MaxVoters = 5 },
			want:    []string{"demote d voters=4"}},
		{name: "this node is never demoted",
			servers: []raft.Server{voter("b"), voter("a")}, members: []gossip.Member{member("a"), member("b", dead)},
			tweak: func(in *planInput) { in.Self = "b" },
			want:  []string{"demote a voters=2"}},
		{name: "an odd count needs nothing",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("d")},
			members: []gossip.Member{member("a"), member("b"), member("c"), member("d")},
			want:    nil},
		{name: "above MaxVoters with an even count, one is demoted",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), voter("d")},
			members: []gossip.Member{member("a"), member("b"), member("c"), member("d")},
			want:    []string{"demote b voters=4"}},
	})
}

func TestPlan_Order(t *testing.T) {
	t.Parallel()
	runPlan(t, []planCase{
		{name: "refuse, leave and add per member by id, then reap, then promote",
			servers: []raft.Server{voter("a"), voter("b"), nonvoter("c"), nonvoter("d"), nonvoter("e"), nonvoter("g")},
			members: []gossip.Member{member("g"), member("f"), member("e", dead), member("d", cluster("c2")),
				member("c"), member("b", leaving), member("a")},
			tweak: deadFor(time.Hour, "e"),
			want: []string{"remove b (left the cluster) forget=false", "refuse d cluster=c2",
				"remove d (belongs to cluster c2) forget=false", "add f f:7000",
				"remove e (dead for more than 30s) forget=true",
				"promote c c:7000 voters=1", "promote g g:7000 voters=2"}},
		{name: "reap the dead voters first, then promote their replacements",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e"), nonvoter("f"), nonvoter("g")},
			members: []gossip.Member{member("a"), member("b"), member("c", dead), member("d", dead), member("e"),
				member("f"), member("g")},
			tweak: func(in *planInput) {
				in.Limits.MaxVoters = 5
				deadFor(time.Hour, "c", "d")(in)
			},
			want: []string{"remove c (dead for more than 30s) forget=true", "remove d (dead for more than 30s) forget=true",
				"promote f f:7000 voters=3", "promote g g:7000 voters=4"}},
	})
}

func TestPlanInput_Spares(t *testing.T) {
	t.Parallel()
	servers := []raft.Server{voter("a"), nonvoter("b"), nonvoter("c"), nonvoter("d"), nonvoter("e")}
	members := []gossip.Member{member("a"), member("b"), member("c"), member("d", cluster("c2")), member("e", leaving)}
	in := input(servers, members, func(in *planInput) {
		in.AddedAt["c"] = t0
		in.Applied["b"] = 0
	})
	for _, tc := range []struct {
		name             string
		stable, caughtUp bool
		want             []string
	}{
		{"whom to ask, for reconcile", true, false, []string{"b"}},
		{"promotable by reconcile", true, true, nil},
		{"whom to ask, for leave", false, false, []string{"b", "c"}},
		{"promotable by leave", false, true, []string{"c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := in.spares(tc.stable, tc.caughtUp); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("spares(%t, %t) = %q, want %q", tc.stable, tc.caughtUp, got, tc.want)
			}
		})
	}
}

func TestLeaderState_Observe(t *testing.T) {
	t.Parallel()
	earlier := t0.Add(-time.Hour)
	ls := &leaderState{
		deadSince: map[string]time.Time{"b": earlier, "c": earlier, "d": earlier, "x": earlier},
		addedAt:   map[string]time.Time{"b": earlier},
	}
	in := input(
		[]raft.Server{voter("a"), voter("b"), nonvoter("c"), nonvoter("e"), nonvoter("g"), nonvoter("h"), nonvoter("m")},
		[]gossip.Member{member("a", dead), member("b"), member("c", leaving), member("d", dead),
			member("e", dead), member("f"), member("g", raftAddr("")), member("h", cluster("c2")), member("x", cluster("c2"))},
		nil)
	ls.observe(&in)
	wantDead := map[string]time.Time{
		"d": earlier, // still dead: the first sight stays
		"e": t0,      // dead from this pass
		"m": t0,      // a server gossip does not know
		"x": earlier, // another cluster's member: left alone
	}
	wantAdded := map[string]time.Time{
		"b": earlier, // the first sight stays
		// f is not in the configuration, g has no raft address, h is
		// another cluster's: none is stamped.
	}
	if !reflect.DeepEqual(ls.deadSince, wantDead) {
		t.Errorf("deadSince = %v, want %v", ls.deadSince, wantDead)
	}
	if !reflect.DeepEqual(ls.addedAt, wantAdded) {
		t.Errorf("addedAt = %v, want %v", ls.addedAt, wantAdded)
	}
	if !reflect.DeepEqual(in.DeadSince, ls.deadSince) || !reflect.DeepEqual(in.AddedAt, ls.addedAt) {
		t.Error("observe did not hand its timers to the plan input")
	}
}

func TestLeaderState_ObserveStampsNewServers(t *testing.T) {
	t.Parallel()
	ls := &leaderState{deadSince: map[string]time.Time{}, addedAt: map[string]time.Time{}}
	in := input([]raft.Server{voter("a"), nonvoter("b")}, []gossip.Member{member("a"), member("b")}, nil)
	ls.observe(&in)
	if got := ls.addedAt["b"]; !got.Equal(t0) {
		t.Errorf("addedAt[b] = %v, want %v", got, t0)
	}
	if _, ok := ls.addedAt["a"]; ok {
		t.Error("observe stamped this node")
	}
}
