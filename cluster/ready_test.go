package cluster

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

func TestReadiness_Table(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name       string
		view       readyView
		maxContact time.Duration
		wantErr    error // nil: ready
		wantText   string
	}{
		{name: "leader with epoch", view: readyView{state: raft.Leader, leaderID: "n1", epoch: "e"}, maxContact: time.Second},
		{name: "leader ignores its old last contact",
			view:       readyView{state: raft.Leader, leaderID: "n1", lastContact: now.Add(-time.Hour), epoch: "e"},
			maxContact: time.Second},
		{name: "follower heard recently",
			view:       readyView{state: raft.Follower, leaderID: "n1", lastContact: now.Add(-100 * time.Millisecond), epoch: "e"},
			maxContact: time.Second},
		{name: "follower at the bound",
			view:       readyView{state: raft.Follower, leaderID: "n1", lastContact: now.Add(-time.Second), epoch: "e"},
			maxContact: time.Second},
		{name: "follower without a leader",
			view:       readyView{state: raft.Follower, epoch: "e"},
			maxContact: time.Second, wantErr: ErrNoLeader, wantText: "no leader known (this node is a Follower)"},
		{name: "candidate",
			view:       readyView{state: raft.Candidate, epoch: "e"},
			maxContact: time.Second, wantErr: ErrNoLeader, wantText: "Candidate"},
		{name: "follower with a stale leader",
			view:       readyView{state: raft.Follower, leaderID: "n1", lastContact: now.Add(-7240 * time.Millisecond), epoch: "e"},
			maxContact: 5 * time.Second, wantErr: ErrStaleLeader, wantText: "last contact with the leader 7.24s ago (more than 5s)"},
		{name: "no bound skips the contact check",
			view:       readyView{state: raft.Follower, leaderID: "n1", lastContact: now.Add(-time.Hour), epoch: "e"},
			maxContact: 0},
		{name: "no epoch on the leader",
			view:       readyView{state: raft.Leader, leaderID: "n1"},
			maxContact: time.Second, wantErr: fsm.ErrNoEpoch, wantText: "cluster: not ready: no cluster id applied yet"},
		{name: "no epoch on a follower",
			view:       readyView{state: raft.Follower, leaderID: "n1", lastContact: now, epoch: ""},
			maxContact: time.Second, wantErr: fsm.ErrNoEpoch, wantText: "cluster: not ready: no cluster id applied yet"},
		{name: "shut down",
			view:       readyView{state: raft.Shutdown, epoch: "e"},
			maxContact: time.Second, wantErr: ErrClosed, wantText: "shutting down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := readiness(tt.view, now, tt.maxContact)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("readiness = %v, want ready", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("readiness = %v, want an error wrapping %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("readiness = %q, want it to contain %q", err, tt.wantText)
			}
		})
	}
}

// testReadyMaxContact is well above the test heartbeat interval
// (testHeartbeat/10), so a busy machine does not make a healthy follower
// look cut off for long.
const testReadyMaxContact = 2 * testHeartbeat

// readyNow is nil when every node is ready, else the first reason.
func readyNow(nodes []*testNode) error {
	for _, n := range nodes {
		if err := n.node.Ready(testReadyMaxContact); err != nil {
			return fmt.Errorf("%s: %w", n.id, err)
		}
	}
	return nil
}

// notReadyForLeader reports whether err is a reason about the leader
// (none known, or not heard from recently), as a node cut off from it
// gives.
func notReadyForLeader(err error) bool {
	return errors.Is(err, ErrNoLeader) || errors.Is(err, ErrStaleLeader)
}

// TestNode_ReadyFollowsTheLeader: followers of a killed leader are not
// ready (the reason names the leader) until a new leader is elected; the
// last voter of three, cut from the quorum, stays not ready until a peer
// comes back.
func TestNode_ReadyFollowsTheLeader(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes := startCluster(t, 3, nil)
	old := waitLeader(t, nodes)
	mustPublish(t, old, "")
	waitFor(t, "every node ready", func() error { return readyNow(nodes) })
	survivors := followers(nodes, old)

	// The window between the leader's death and the next election is
	// short: watch the survivors from before the kill on.
	var (
		mu       sync.Mutex
		reasons  = map[string]error{} // first not-ready reason per survivor
		stopSeen = make(chan struct{})
		wg       sync.WaitGroup
	)
	for _, n := range survivors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for {
				if err := n.node.Ready(testReadyMaxContact); err != nil {
					mu.Lock()
					reasons[n.id] = err
					mu.Unlock()
					return
				}
				select {
				case <-tick.C:
				case <-stopSeen:
					return
				}
			}
		}()
	}
	stopWatch := sync.OnceFunc(func() { close(stopSeen); wg.Wait() })
	defer stopWatch()

	old.kill(t)
	if err := old.node.Ready(testReadyMaxContact); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("killed node: Ready = %v, want ErrClosed (shutting down)", err)
	}
	waitFor(t, "a survivor not ready after the leader was killed", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(reasons) == 0 {
			return errors.New("every survivor still ready")
		}
		return nil
	})
	nl := waitLeader(t, survivors)
	waitFor(t, "every survivor ready under the new leader "+nl.id, func() error { return readyNow(survivors) })
	stopWatch()
	mu.Lock()
	for id, err := range reasons {
		t.Logf("%s was not ready: %v", id, err)
		if !notReadyForLeader(err) {
			t.Errorf("%s: not ready with %v, want a reason about the leader (ErrNoLeader or ErrStaleLeader)", id, err)
		}
	}
	mu.Unlock()

	// Kill one more: the last of three voters has no quorum and cannot
	// elect itself, so it stays not ready however long we look.
	// The follower goes, not the new leader: the leader, left alone, steps
	// down when its lease runs out.
	gone, last := survivors[0], survivors[1]
	if gone == nl {
		gone, last = last, gone
	}
	gone.kill(t)
	var cut error
	waitFor(t, last.id+" not ready without a quorum", func() error {
		cut = last.node.Ready(testReadyMaxContact)
		if cut == nil {
			return errors.New("still ready")
		}
		return nil
	})
	if !notReadyForLeader(cut) {
		t.Errorf("%s cut from the quorum: Ready = %v, want ErrNoLeader or ErrStaleLeader", last.id, cut)
	}
	t.Logf("%s cut from the quorum: %v", last.id, cut)

	// The heal: the killed peer comes back on its data, a leader is
	// elected and both are ready again.
	back := gone.restart(t, last.gossipAddr)
	healed := []*testNode{last, back}
	waitLeader(t, healed)
	waitFor(t, "both nodes ready after the heal", func() error { return readyNow(healed) })
}
