package hub

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/raftplane/raftplane/fsm"
)

// scrambler is a Submitter over the fake publisher that does to chosen
// commands what a leader change does to a pipeline (by their origin
// number, first copy only): it holds one back and applies it after the
// next (the next is then out of order), loses one (the answer is an
// error, and it never reaches the log) and loses the answer of one that
// it applied. Every other command applies at once.
type scrambler struct {
	*fakePublisher
	swap, lose, loseAnswer uint64

	mu   sync.Mutex
	seen map[uint64]bool
	held *heldCmd
}

type heldCmd struct {
	cmds []fsm.Command
	done chan fakeOutcome
}

type fakeOutcome struct {
	res []fsm.Result
	err error
}

type fakePending chan fakeOutcome

func (p fakePending) Wait(ctx context.Context) ([]fsm.Result, error) {
	select {
	case o := <-p:
		return o.res, o.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

var errLostAnswer = errors.New("forward: connection reset (test)")

func (s *scrambler) Submit(ctx context.Context, cmds []fsm.Command) (Pending, error) {
	done := make(chan fakeOutcome, 1)
	seq := cmds[0].Origin.Seq
	s.mu.Lock()
	first := !s.seen[seq] && cmds[0].Kind != fsm.KindReject
	s.seen[seq] = true
	held := s.held
	s.mu.Unlock()
	apply := func(cmds []fsm.Command, out chan fakeOutcome) {
		res, err := s.PublishGroup(ctx, cmds)
		out <- fakeOutcome{res, err}
	}
	switch {
	case first && seq == s.swap:
		s.mu.Lock()
		s.held = &heldCmd{cmds: cmds, done: done}
		s.mu.Unlock()
	case first && seq == s.lose:
		done <- fakeOutcome{err: errLostAnswer}
	case first && seq == s.loseAnswer:
		apply(cmds, make(chan fakeOutcome, 1))
		done <- fakeOutcome{err: errLostAnswer}
	default:
		apply(cmds, done)
		if held != nil && first && seq == s.swap+1 {
			s.mu.Lock()
			s.held = nil
			s.mu.Unlock()
			apply(held.cmds, held.done)
		}
	}
	return fakePending(done), nil
}

// TestPipeline_ScrambledSubmissions: a connection's burst goes through a
// Submitter that reorders, loses and half-loses commands as leader changes
// do. Every Completion comes in the order sent; the commands apply in that
// order, each once; the lost one is decided by a reject and its Completion
// says it was not sent; the one whose answer was lost completes as what it
// was; the connection receives exactly its sent messages, in order.
func TestPipeline_ScrambledSubmissions(t *testing.T) {
	cfg := testConfig(t)
	m := newTestMachine(t)
	pub := newFakePublisher(t, m, true)
	sc := &scrambler{fakePublisher: pub, swap: 3, lose: 6, loseAnswer: 9, seen: map[uint64]bool{}}
	h := startTestHubWith(t, cfg, m, pub, sc)
	srv := h.srv

	c := h.connect(testHubName, "u")
	const n = 12
	var burst strings.Builder
	burst.WriteString(invocationRecord("1", "JoinGroup", "g")) // origin 1
	for i := 2; i <= n; i++ {
		burst.WriteString(invocationRecord(strconv.Itoa(i), "SendToGroup", "g", "m", i))
	}
	c.sendRaw(burst.String())
	c.completion(strconv.Itoa(n))

	var order []string
	for _, msg := range c.messages() {
		if msg.Type == typeCompletion {
			order = append(order, msg.InvocationID)
		}
	}
	if got := strings.Join(order, ","); got != "1,2,3,4,5,6,7,8,9,10,11,12" {
		t.Fatalf("Completions in the order %s", got)
	}
	// The one whose answer was lost applied, or came out of order (then
	// nothing of it applied and the reject decided it): either way its
	// Completion says which, and the messages agree.
	var sent []string
	for i := 1; i <= n; i++ {
		msg := c.completion(strconv.Itoa(i))
		switch {
		case msg.Error == "":
			if i > 1 {
				sent = append(sent, strconv.Itoa(i))
			}
		case i == 6 || i == 9:
			if !strings.Contains(msg.Error, "not sent") {
				t.Errorf("invocation %d: %s, want an error saying it was not sent", i, msg.Raw)
			}
		default:
			t.Errorf("invocation %d: %s", i, msg.Raw)
		}
	}
	if strings.Contains(","+strings.Join(sent, ",")+",", ",6,") {
		t.Errorf("the lost invocation completed as sent")
	}
	got := c.waitInvocations("m", len(sent))
	var seen []string
	for _, msg := range got {
		seen = append(seen, string(msg.Arguments[0]))
	}
	if s, w := strings.Join(seen, ","), strings.Join(sent, ","); s != w {
		t.Fatalf("received %s, want %s (the sent ones, in order, once)", s, w)
	}
	var applied []uint64
	es, err := m.Since(fsm.Cursor{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Origin.Conn != "" {
			applied = append(applied, e.Origin.Seq)
		}
	}
	want := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12} // 6 (and maybe 9): a reject
	if len(applied) != len(want) {
		t.Fatalf("applied origins %v, want %v", applied, want)
	}
	for i := range want {
		if applied[i] != want[i] {
			t.Fatalf("applied origins %v, want %v", applied, want)
		}
	}
	if r := srv.Stats().PipelineResent; r == 0 {
		t.Errorf("no command was sent again: the scrambler did not reorder anything")
	}
}

// gate is a Submitter whose commands apply only once released, each when
// the completer waits for it (in order).
type gate struct {
	*fakePublisher
	release   chan struct{}
	submitted atomic.Int64
}

type gatedPending struct {
	g    *gate
	cmds []fsm.Command
}

func (p gatedPending) Wait(ctx context.Context) ([]fsm.Result, error) {
	select {
	case <-p.g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return p.g.PublishGroup(ctx, p.cmds)
}

func (g *gate) Submit(_ context.Context, cmds []fsm.Command) (Pending, error) {
	g.submitted.Add(1)
	return gatedPending{g, cmds}, nil
}

// TestPipeline_Bound: with MaxPipelinedInvocations at 2, a burst of 6
// invocations whose commits do not come stops the handler after the one
// the completer waits for and the 2 queued behind it (its fourth waits for
// room, unsubmitted); once the commits come, all 6 complete in order.
func TestPipeline_Bound(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxPipelinedInvocations = 2
	m := newTestMachine(t)
	pub := newFakePublisher(t, m, true)
	g := &gate{fakePublisher: pub, release: make(chan struct{})}
	h := startTestHubWith(t, cfg, m, pub, g)

	c := h.connect(testHubName, "u")
	var burst strings.Builder
	for i := 1; i <= 6; i++ {
		burst.WriteString(invocationRecord(strconv.Itoa(i), "SendToGroup", "g", "m", i))
	}
	c.sendRaw(burst.String())
	waitFor(t, "the handler to wait for room", func() bool {
		return goroutinesIn("hub.(*conn).push") == 1 && g.submitted.Load() == 4
	})
	close(g.release)
	c.completion("6")
	var order []string
	for _, msg := range c.messages() {
		if msg.Type == typeCompletion {
			if msg.Error != "" {
				t.Errorf("completion %s", msg.Raw)
			}
			order = append(order, msg.InvocationID)
		}
	}
	if got := strings.Join(order, ","); got != "1,2,3,4,5,6" {
		t.Fatalf("Completions in the order %s", got)
	}
	if n := g.submitted.Load(); n != 6 {
		t.Fatalf("%d submissions, want 6", n)
	}
}
