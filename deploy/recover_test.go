package deploy

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftplane/raftplane/client"
)

// collector keeps what a client connection receives and hears.
type collector struct {
	mu     sync.Mutex
	msgs   []client.Message
	events []client.Event
}

func (c *collector) onEvent(e client.Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}

func (c *collector) received() []client.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]client.Message(nil), c.msgs...)
}

func (c *collector) kinds() []client.EventKind {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []client.EventKind
	for _, e := range c.events {
		out = append(out, e.Kind)
	}
	return out
}

// waitReceived waits until the connection has received n messages.
func (c *collector) waitReceived(t *testing.T, n int) []client.Message {
	t.Helper()
	var got []client.Message
	eventually(t, 2*startTimeout, fmt.Sprintf("the client to receive %d messages", n), func() error {
		if got = c.received(); len(got) < n {
			return fmt.Errorf("%d so far (events %v)", len(got), c.kinds())
		}
		return nil
	})
	return got
}

// TestRecover_TwoOfThreeVotersLost is the disaster-recovery runbook on real
// processes: a 3-node cluster takes sends, two nodes are killed with
// SIGKILL for good, the survivor is stopped, `raftplane recover` rewrites
// its configuration, and restarted alone it becomes leader with the whole
// history, new sends commit, and a client connected to it before the
// disaster resumes from its cursor without a gap.
func TestRecover_TwoOfThreeVotersLost(t *testing.T) {
	keep := []string{"-disconnect-timeout", "10m"} // the client's connection must wait for its resume
	nodes := []*node{newNode(t, "n1", keep...), newNode(t, "n2", keep...), newNode(t, "n3", keep...)}
	nodes[0].start(t)
	nodes[0].waitLeader(t)
	nodes[1].start(t, "-join", nodes[0].gossip)
	nodes[2].start(t, "-join", nodes[0].gossip)
	nodes[0].waitVoters(t, 3)

	// The survivor is a follower: the leader is among the lost.
	var survivor *node
	var lost []*node
	for _, n := range nodes {
		st, err := n.status()
		if err != nil {
			t.Fatal(err)
		}
		if st.Node.State != "Leader" && survivor == nil {
			survivor = n
		} else {
			lost = append(lost, n)
		}
	}
	col := &collector{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{
		URL:           survivor.url() + "/hubs/" + hubName + "?user=dora",
		Resume:        true,
		ResumeTimeout: 3 * time.Minute,
		OnEvent:       col.onEvent,
	})
	if err != nil {
		t.Fatal(err)
	}
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for m := range c.Messages() {
			col.mu.Lock()
			col.msgs = append(col.msgs, m)
			col.mu.Unlock()
		}
	}()
	defer func() { c.Close(); <-recvDone }()
	if _, err := c.Invoke(ctx, "JoinGroup", "red"); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := send(nodes[i%3], "red", i); err != nil {
			t.Fatal(err)
		}
	}
	before := col.waitReceived(t, 40)
	wantHistory, err := history(survivor, "red")
	if err != nil {
		t.Fatal(err)
	}
	if len(wantHistory) != 40 {
		t.Fatalf("history of red: %d messages, want 40", len(wantHistory))
	}

	for _, n := range lost {
		n.kill(t)
	}
	survivor.stop(t) // the operator stops it: systemctl stop, docker stop
	out := run(t, "recover", "-data", survivor.data)
	if !strings.Contains(out, "new voters") {
		t.Errorf("recover said:\n%s", out)
	}
	// Started exactly as before (a node that had -join keeps it: its seed
	// is gone for good, and it goes on alone after trying).
	if survivor == nodes[0] {
		survivor.start(t)
	} else {
		survivor.start(t, "-join", nodes[0].gossip)
	}
	st := survivor.waitLeader(t)
	if st.Node.State != "Leader" || st.Node.LeaderID != st.Node.NodeID {
		t.Fatalf("the survivor is %s, leader %q", st.Node.State, st.Node.LeaderID)
	}
	if got, err := history(survivor, "red"); err != nil || !reflect.DeepEqual(got, wantHistory) {
		t.Fatalf("after the recovery the history is %d messages (%v), before %d", len(got), err, len(wantHistory))
	}
	survivor.waitVoters(t, 1)

	// New sends commit, and reach the client once it has resumed.
	var last string
	for i := 40; i < 50; i++ {
		if last, err = send(survivor, "red", i); err != nil {
			t.Fatal(err)
		}
	}
	got := col.waitReceived(t, 50)
	if !reflect.DeepEqual(got[:40], before) {
		t.Error("the messages from before the disaster changed")
	}
	for i, m := range got {
		if string(m.Arguments[0]) != fmt.Sprint(i) {
			t.Fatalf("message %d carries %s: a gap or a duplicate", i, m.Arguments[0])
		}
		if i > 0 && !cursorAfter(t, m.Cursor, got[i-1].Cursor) {
			t.Fatalf("message %d at %s does not come after %s", i, m.Cursor, got[i-1].Cursor)
		}
	}
	if got[49].Cursor != last {
		t.Errorf("last message at %s, the send said %s", got[49].Cursor, last)
	}
	if cursorIndex(t, got[40].Cursor) < cursorIndex(t, got[39].Cursor)+1<<32 {
		t.Errorf("the first message after the recovery (%s) is not past the index gap after %s", got[40].Cursor, got[39].Cursor)
	}
	// EventResumed comes once the replay has settled, possibly after the
	// live messages above.
	eventually(t, startTimeout, "the client's resume to be reported", func() error {
		if st := c.Stats(); st.Resumes == 0 || st.Resets != 0 {
			return fmt.Errorf("events %v, stats %+v", col.kinds(), st)
		}
		return nil
	})
	t.Logf("client events: %v; stats %+v", col.kinds(), c.Stats())
}
