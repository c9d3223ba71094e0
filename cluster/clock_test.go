package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// fakeWall is a wall clock and a monotonic one that the test moves
// together (advance); the clock's offset steps the wall clock alone.
type fakeWall struct{ ns, mono atomic.Int64 }

func (w *fakeWall) now() int64              { return w.ns.Load() }
func (w *fakeWall) elapsed() time.Duration  { return time.Duration(w.mono.Load()) }
func (w *fakeWall) advance(d time.Duration) { w.ns.Add(int64(d)); w.mono.Add(int64(d)) }

func newFakeClock(w *fakeWall, offset time.Duration) *clock {
	c := &clock{wall: w.now, mono: w.elapsed}
	c.offset.Store(int64(offset))
	return c
}

var wallStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()

// leaderRun stamps every step for d as a leader does: each stamp is applied
// (observed) before the next. check sees each stamp and the previous one.
func leaderRun(c *clock, w *fakeWall, newest int64, step, d time.Duration, check func(s, prev int64)) int64 {
	for t := time.Duration(0); t < d; t += step {
		w.advance(step)
		s := c.stamp(newest)
		if check != nil {
			check(s, newest)
		}
		c.observe(s)
		newest = s
	}
	return newest
}

// TestClock_WallWithinBounds: a node that has learned no time yet stamps its
// wall clock, and a leader whose clock agrees with the log keeps stamping
// it.
func TestClock_WallWithinBounds(t *testing.T) {
	t.Parallel()
	w := &fakeWall{}
	w.ns.Store(wallStart)
	c := newFakeClock(w, 0)
	if s := c.stamp(0); s != w.now() {
		t.Fatalf("first stamp %d, want the wall clock %d", s, w.now())
	}
	c.observe(w.now())
	leaderRun(c, w, w.now(), 10*time.Millisecond, 10*time.Second, func(s, _ int64) {
		if s != w.now() {
			t.Fatalf("stamp %d, want the wall clock %d", s, w.now())
		}
	})
	// Idle for an hour, then a stamp: true time.
	w.advance(time.Hour)
	if s := c.stamp(c.last); s != w.now() {
		t.Fatalf("after an idle hour: stamp %d, want the wall clock %d", s, w.now())
	}
}

// TestClock_NeverBackwardAcrossLeaders: the log's time is an hour ahead of
// the next leader's clock (written before the bounds, or by a node that
// pulled it there). The new leader's stamps never go below it, and command
// time keeps flowing at half real time (the duplicate window ages) until
// the wall clock catches up, two hours later; then it stamps its wall
// clock again.
func TestClock_NeverBackwardAcrossLeaders(t *testing.T) {
	t.Parallel()
	w := &fakeWall{}
	w.ns.Store(wallStart)
	c := newFakeClock(w, 0)
	newest := wallStart + int64(time.Hour)
	c.observe(newest)
	var caughtUpAt time.Duration
	var elapsed time.Duration
	leaderRun(c, w, newest, 100*time.Millisecond, 3*time.Hour, func(s, prev int64) {
		elapsed += 100 * time.Millisecond
		if s < prev {
			t.Fatalf("after %s: stamp %d went backward from %d", elapsed, s, prev)
		}
		if s > w.now() && prev != newest && s-prev != int64(50*time.Millisecond) {
			t.Fatalf("after %s: command time moved %s in 100 ms of real time, want 50 ms", elapsed, time.Duration(s-prev))
		}
		if s == w.now() && caughtUpAt == 0 {
			caughtUpAt = elapsed
		}
	})
	if caughtUpAt < 119*time.Minute || caughtUpAt > 121*time.Minute {
		t.Fatalf("the wall clock caught up with command time after %s, want about 2h", caughtUpAt)
	}
}

// TestClock_JumpForwardIsBounded: a leader's clock jumps an hour forward.
// Its stamps do not: command time runs at most 5/4 of real time toward the
// new clock, so the duplicate window still lasts 24 s of real time, and
// reaches it after 4 hours.
func TestClock_JumpForwardIsBounded(t *testing.T) {
	t.Parallel()
	w := &fakeWall{}
	w.ns.Store(wallStart)
	c := newFakeClock(w, 0)
	c.observe(wallStart)
	newest := leaderRun(c, w, wallStart, 100*time.Millisecond, time.Minute, nil)
	c.offset.Store(int64(time.Hour))
	var caughtUpAt, elapsed time.Duration
	leaderRun(c, w, newest, 100*time.Millisecond, 5*time.Hour, func(s, prev int64) {
		elapsed += 100 * time.Millisecond
		if d := s - prev; d > int64(125*time.Millisecond) || d < int64(100*time.Millisecond) {
			t.Fatalf("after %s: command time moved %s in 100 ms of real time, want 100-125 ms", elapsed, time.Duration(d))
		}
		if s == c.Now() && caughtUpAt == 0 {
			caughtUpAt = elapsed
		}
	})
	if caughtUpAt < 239*time.Minute || caughtUpAt > 241*time.Minute {
		t.Fatalf("command time reached the clock an hour ahead after %s, want about 4h", caughtUpAt)
	}
}

// TestClock_SkewTolerance: a wall clock within MaxClockSkew of the time the
// node knows is stamped as it is (a stamp applied late, clocks a little
// apart); one further ahead is not.
func TestClock_SkewTolerance(t *testing.T) {
	t.Parallel()
	w := &fakeWall{}
	w.ns.Store(wallStart)
	c := newFakeClock(w, 0)
	c.skew = int64(time.Second)
	c.observe(wallStart)
	newest := leaderRun(c, w, wallStart, 100*time.Millisecond, time.Second, nil)
	c.offset.Store(int64(900 * time.Millisecond))
	w.advance(100 * time.Millisecond)
	if s := c.stamp(newest); s != c.Now() {
		t.Fatalf("a clock 900 ms ahead: stamp %s behind it, want its time", time.Duration(c.Now()-s))
	}
	c.observe(c.last)
	newest = c.last
	c.offset.Store(int64(3 * time.Second))
	w.advance(100 * time.Millisecond)
	if s := c.stamp(newest); s-newest != int64(125*time.Millisecond) {
		t.Fatalf("a clock 2.1 s further ahead: stamp %s after the newest, want 125 ms", time.Duration(s-newest))
	}
}

// TestClock_JumpBackward: a leader whose clock is stepped back an hour (an
// NTP step, the clock-jump nemesis) goes on from its last stamp at half
// rate, measured on the monotonic clock, which the step does not move;
// stepped right again, it catches up at 5/4 rate.
func TestClock_JumpBackward(t *testing.T) {
	t.Parallel()
	w := &fakeWall{}
	w.ns.Store(wallStart)
	c := newFakeClock(w, 0)
	c.observe(wallStart)
	newest := leaderRun(c, w, wallStart, 100*time.Millisecond, time.Second, nil)
	c.offset.Store(int64(-time.Hour))
	newest = leaderRun(c, w, newest, 100*time.Millisecond, 2*time.Second, func(s, prev int64) {
		if s-prev != int64(50*time.Millisecond) {
			t.Fatalf("stamp %d, %s after the previous one, want 50 ms (half rate)", s, time.Duration(s-prev))
		}
	})
	// Stepped right again: command time is a second behind (2 s at half
	// rate) and catches up at 5/4 of real time, in 4 s.
	c.offset.Store(0)
	var caughtUpAt, elapsed time.Duration
	leaderRun(c, w, newest, 100*time.Millisecond, 10*time.Second, func(s, prev int64) {
		elapsed += 100 * time.Millisecond
		if s != w.now() && s-prev != int64(125*time.Millisecond) {
			t.Fatalf("after %s: stamp %s after the previous one, want 125 ms until caught up", elapsed, time.Duration(s-prev))
		}
		if s == w.now() && caughtUpAt == 0 {
			caughtUpAt = elapsed
		}
	})
	if caughtUpAt != 4*time.Second {
		t.Fatalf("caught up with the wall clock after %s, want 4s", caughtUpAt)
	}
}

// TestClock_FarFuture: a stamp at the end of time in the log does not
// wrap the next one around to the past.
func TestClock_FarFuture(t *testing.T) {
	t.Parallel()
	w := &fakeWall{}
	w.ns.Store(wallStart)
	c := newFakeClock(w, 0)
	c.observe(math.MaxInt64 - 1)
	if s := c.stamp(math.MaxInt64 - 1); s != math.MaxInt64-1 {
		t.Fatalf("stamp %d", s)
	}
	w.advance(time.Hour)
	if s := c.stamp(math.MaxInt64 - 1); s != math.MaxInt64 {
		t.Fatalf("an hour later: stamp %d, want the saturated %d", s, int64(math.MaxInt64))
	}
}

// TestClock_Hook: the test hook's variables and file.
func TestClock_Hook(t *testing.T) {
	t.Parallel()
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	c, err := clockFromEnv(env(nil))
	if err != nil || c.hooked() || c.offset.Load() != 0 {
		t.Fatalf("no variables: %+v, %v; want the plain wall clock", c, err)
	}
	for _, bad := range []string{"soon", "1e9", "1000000h"} {
		if _, err := clockFromEnv(env(map[string]string{ClockOffsetEnv: bad})); err == nil || !strings.Contains(err.Error(), ClockOffsetEnv) {
			t.Errorf("%s=%q: %v, want an error naming the variable", ClockOffsetEnv, bad, err)
		}
	}
	file := filepath.Join(t.TempDir(), "clock")
	if err := os.WriteFile(file, []byte("tomorrow"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := clockFromEnv(env(map[string]string{ClockFileEnv: file})); err == nil || !strings.Contains(err.Error(), ClockFileEnv) {
		t.Errorf("a bad offset file at start: %v, want an error naming %s", err, ClockFileEnv)
	}
	if err := os.WriteFile(file, []byte("90s"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := clockFromEnv(env(map[string]string{ClockFileEnv: file})); err != nil {
		t.Errorf("a 90s offset file at start: %v", err)
	} else if d := time.Duration(c.offset.Load()); d != 90*time.Second {
		t.Errorf("a 90s offset file at start: offset %s", d)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	c, err = clockFromEnv(env(map[string]string{ClockOffsetEnv: "-30s", ClockFileEnv: file}))
	if err != nil || !c.hooked() || time.Duration(c.offset.Load()) != -30*time.Second {
		t.Fatalf("offset -30s: %v, %v", time.Duration(c.offset.Load()), err)
	}
	steps := []struct {
		content string // "" removes the file
		want    time.Duration
		changed bool
		bad     bool
	}{
		{"1h\n", time.Hour, true, false},
		{" 1h ", time.Hour, false, false},
		{"-2m", -2 * time.Minute, true, false},
		{"later", -2 * time.Minute, false, true},
		{"", -30 * time.Second, true, false},
	}
	for _, s := range steps {
		if s.content == "" {
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(file, []byte(s.content), 0o644); err != nil {
			t.Fatal(err)
		}
		d, changed, err := c.reload()
		if (err != nil) != s.bad || changed != s.changed || d != s.want || time.Duration(c.offset.Load()) != s.want {
			t.Errorf("file %q: offset %s changed %v err %v; want %s %v bad %v", s.content, d, changed, err, s.want, s.changed, s.bad)
		}
	}
	before := time.Now().UnixNano()
	if now := c.Now(); now > before-int64(29*time.Second) {
		t.Errorf("Now() with a -30s offset is %s ahead of the wall clock", time.Duration(now-before))
	}
}

// TestNode_LeaderAnHourAheadFails: the in-process version of the chaos
// scenario. The leader's clock jumps an hour ahead while it commits: the
// log's time does not jump with it, and an id sent again after the jump is
// still known as a duplicate. The leader is then killed; the next leader
// commits at once, nothing refused as expired, its stamps not behind the
// log's.
func TestNode_LeaderAnHourAheadFails(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	nodes := startCluster(t, 3, nil)
	old := waitLeader(t, nodes)
	first := testCommand("sent-before-the-jump")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cur1, err := old.node.Publish(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	old.node.clock.offset.Store(int64(time.Hour))
	for _, f := range followers(nodes, old) {
		mustPublish(t, f, "") // forwarded, stamped by the leader an hour ahead
	}
	again, err := old.node.Publish(ctx, first)
	if err != nil || again != cur1 {
		t.Fatalf("the id sent again after the leader's clock jumped: %s, %v; want the first cursor %s (a duplicate)", again, err, cur1)
	}
	cur := mustPublish(t, old, "")
	stamps := appliedEverywhere(t, nodes, cur)
	newest := stamps[cur.Index]
	if limit := time.Now().Add(time.Minute).UnixNano(); newest > limit {
		t.Fatalf("the log's time jumped with the leader's clock: %s", time.Unix(0, newest))
	}
	old.kill(t)
	survivors := followers(nodes, old)
	for i := range 20 {
		if _, err := publish(survivors[i%2], ""); err != nil {
			if errors.Is(err, fsm.ErrExpired) {
				t.Fatalf("publish %d after the leader an hour ahead died: %v", i, err)
			}
			t.Logf("publish %d during the election: %v", i, err)
		}
	}
	last := mustPublish(t, survivors[0], "")
	for idx, tm := range appliedEverywhere(t, survivors, last) {
		if idx > cur.Index && tm < newest {
			t.Fatalf("entry %d stamped %s, behind the log's newest %s", idx, time.Unix(0, tm), time.Unix(0, newest))
		}
	}
}

// appliedEverywhere waits until every node's last applied cursor is cur,
// checks none of the commands at or after the first node's floor failed,
// and returns their stamps by index.
func appliedEverywhere(t *testing.T, nodes []*testNode, cur fsm.Cursor) map[uint64]int64 {
	t.Helper()
	waitFor(t, "every node to apply "+cur.String(), func() error {
		for _, n := range nodes {
			if last := n.machine.Position().Last; last != cur {
				return fmt.Errorf("%s: last applied %s", n.id, last)
			}
		}
		return nil
	})
	es, err := nodes[0].machine.Since(nodes[0].machine.Position().Floor, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]int64{}
	for _, e := range es {
		if e.Err != nil {
			t.Fatalf("entry %s: %v", e.Cursor, e.Err)
		}
		out[e.Cursor.Index] = max(out[e.Cursor.Index], e.Time)
	}
	return out
}
