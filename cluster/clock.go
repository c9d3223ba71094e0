package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The cluster clock: the time a node stamps on the commands it puts into
// the log. The FSM has no other clock (fsm/DESIGN.md, "Time in the log"):
// command age, the duplicate-id window and fsm.MaxCommandAge are measured
// against the newest stamp applied. A leader's wall clock is only a hint:
//
//   - Time must not go backward when leadership moves to a node whose clock
//     is behind: every command would look expired. So a stamp is never
//     below the newest stamp applied, nor below this node's previous stamp
//     advanced at half the rate of its monotonic clock (which no wall clock
//     step moves): command time keeps flowing, at half speed, while this
//     clock catches up, so the duplicate window still ages (it lasts 60 s
//     of real time instead of 30 s) rather than standing still for as long
//     as the clocks disagree.
//   - Time must not jump forward when a leader's clock jumps (an NTP step,
//     a VM resumed with a wrong clock, a leader whose clock is ahead): one
//     stamp an hour ahead would forget every id of the duplicate window at
//     once (a client retrying a send applied a moment before would see it
//     applied twice) and age the whole message cache out. The newest
//     cluster time this node knows of (the newest stamp applied, or its own
//     last stamp) advanced by its monotonic clock since it learned it is
//     where command time is now; a wall clock more than MaxClockSkew
//     beyond that is not trusted: the stamp is that time advanced at 5/4
//     of the monotonic rate instead. A clock ahead pulls command time
//     toward it at a quarter of real time, and the duplicate window lasts
//     at least 24 s of real time.
//
// Otherwise a leader stamps its wall clock, so a cluster with good clocks
// stamps true time. A node that has learned no time yet (a new cluster's
// first stamps) stamps its wall clock.

// Rates of command time against the monotonic clock, as fractions.
const (
	slowNum, slowDen = 1, 2 // while the wall clock is behind
	fastNum, fastDen = 5, 4 // while the wall clock is ahead
)

// Environment variables of the test hook that offsets a node's clock. Go's
// clock cannot be faked from outside a process, so the chaos suite and the
// clock tests set them on the processes they start. They exist for tests
// only: a node started with either logs a warning, and nothing in a
// deployment should set them.
const (
	// ClockOffsetEnv is a Go duration ("1h", "-30s") added to the wall
	// clock of every stamp this node makes.
	ClockOffsetEnv = "RAFTPLANE_TEST_CLOCK_OFFSET"
	// ClockFileEnv names a file the node reads every ClockPoll: when it
	// exists, it holds the offset (a Go duration, surrounding space
	// ignored), replacing ClockOffsetEnv's, so a test can step the clock of
	// a running process forward and back. Missing means ClockOffsetEnv's
	// offset (or none).
	ClockFileEnv = "RAFTPLANE_TEST_CLOCK_FILE"
)

// ClockPoll is how often a node reads the ClockFileEnv file.
const ClockPoll = 100 * time.Millisecond

// maxTestOffset bounds the hook's offset: far more than any test needs,
// and far from overflowing a stamp.
const maxTestOffset = 100 * 365 * 24 * time.Hour

// clock makes a node's stamps. Its zero value is the wall clock with no
// offset; safe for concurrent use.
type clock struct {
	offset atomic.Int64 // the test hook's offset, in ns
	base   int64        // from the hook's environment: the offset without a file
	file   string       // ClockFileEnv, "" without
	skew   int64        // Config.MaxClockSkew: how far ahead a wall clock is still trusted
	// wall is the wall clock in Unix ns, mono a monotonic clock; nil: the
	// time package's (unit tests set both).
	wall func() int64
	mono func() time.Duration

	mu sync.Mutex
	// last is the largest stamp returned, at monotonic time lastAt; seen
	// the newest stamp applied that observe was told of, at seenAt.
	last, seen     int64
	lastAt, seenAt time.Duration
}

// origin is where the default monotonic clock counts from: time.Since
// reads the monotonic clock, which no wall clock step moves.
var origin = time.Now()

// Now is this node's wall clock, with the test hook's offset, in Unix ns.
func (c *clock) Now() int64 {
	if c.wall == nil {
		return time.Now().UnixNano() + c.offset.Load()
	}
	return c.wall() + c.offset.Load()
}

func (c *clock) elapsed() time.Duration {
	if c.mono == nil {
		return time.Since(origin)
	}
	return c.mono()
}

// observe tells the clock the newest stamp applied, as it changes
// (Node.watchNewest): the cluster time this node knows of.
func (c *clock) observe(newest int64) {
	m := c.elapsed()
	c.mu.Lock()
	defer c.mu.Unlock()
	if newest > c.seen {
		c.seen, c.seenAt = newest, m
	}
}

// stamp returns the time to stamp on a command, given newest, the newest
// stamp applied: the wall clock, kept within the bounds above.
func (c *clock) stamp(newest int64) int64 {
	now := c.Now()
	m := c.elapsed()
	c.mu.Lock()
	defer c.mu.Unlock()
	lo := max(newest, addSat(c.last, scale(m-c.lastAt, slowNum, slowDen)))
	s := max(now, lo)
	if c.last != 0 || c.seen != 0 {
		known := max(addSat(c.last, scale(m-c.lastAt, 1, 1)), addSat(c.seen, scale(m-c.seenAt, 1, 1)))
		if now > addSat(known, c.skew) {
			// Not the wall clock (it would be a jump), and not a ratchet:
			// the bound is the rate, not the skew.
			hi := max(addSat(c.last, scale(m-c.lastAt, fastNum, fastDen)), addSat(c.seen, scale(m-c.seenAt, fastNum, fastDen)))
			s = max(lo, hi)
		}
	}
	c.last, c.lastAt = s, m
	return s
}

// scale is d*num/den in ns, for d >= 0 (a monotonic clock never goes back).
func scale(d time.Duration, num, den int64) int64 {
	if d <= 0 {
		return 0
	}
	if int64(d) > math.MaxInt64/num {
		return math.MaxInt64
	}
	return int64(d) * num / den
}

// addSat is a+b for b >= 0, at most math.MaxInt64: a stamp from far in the
// future must not wrap around to the past.
func addSat(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// clockFromEnv reads the test hook's variables from getenv. Without them
// the clock is the plain wall clock.
func clockFromEnv(getenv func(string) string) (*clock, error) {
	c := &clock{file: strings.TrimSpace(getenv(ClockFileEnv))}
	if v := strings.TrimSpace(getenv(ClockOffsetEnv)); v != "" {
		d, err := parseOffset(v)
		if err != nil {
			return nil, fmt.Errorf("cluster: %s=%q: %w", ClockOffsetEnv, v, err)
		}
		c.base = int64(d)
	}
	c.offset.Store(c.base)
	if c.file != "" {
		// The first stamps already carry the file's offset.
		if _, _, err := c.reload(); err != nil {
			return nil, fmt.Errorf("cluster: %s: %w", ClockFileEnv, err)
		}
	}
	return c, nil
}

func parseOffset(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("want a Go duration such as 1h or -30s: %w", err)
	}
	if d > maxTestOffset || d < -maxTestOffset {
		return 0, fmt.Errorf("offset %s beyond ±%s", d, maxTestOffset)
	}
	return d, nil
}

// hooked reports whether the test hook is in use.
func (c *clock) hooked() bool { return c.base != 0 || c.file != "" }

// reload reads the hook's file once and applies its offset; it returns the
// offset in force and whether it changed.
func (c *clock) reload() (time.Duration, bool, error) {
	want := c.base
	b, err := os.ReadFile(c.file)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return time.Duration(c.offset.Load()), false, err
	default:
		d, err := parseOffset(strings.TrimSpace(string(b)))
		if err != nil {
			return time.Duration(c.offset.Load()), false, fmt.Errorf("%s: %w", c.file, err)
		}
		want = int64(d)
	}
	return time.Duration(want), c.offset.Swap(want) != want, nil
}

// watch applies the hook's file every ClockPoll until stop closes. A bad
// file is logged once per distinct error and leaves the offset as it was.
func (c *clock) watch(stop <-chan struct{}, lg *slog.Logger) {
	t := time.NewTicker(ClockPoll)
	defer t.Stop()
	var lastErr string
	for {
		d, changed, err := c.reload()
		switch {
		case err != nil && err.Error() != lastErr:
			lastErr = err.Error()
			lg.Error("test clock hook: cannot read the offset file; keeping the offset", "file", c.file, "offset", d, "err", err)
		case err == nil && changed:
			lastErr = ""
			lg.Warn("test clock hook: this node's clock offset changed", "offset", d, "file", c.file)
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// watchNewest tells the clock each new newest stamp the FSM applies, when
// it applies it, until the node stops.
func (n *Node) watchNewest() {
	defer n.wg.Done()
	for {
		ch := n.machine.Changed()
		n.clock.observe(n.machine.Newest())
		select {
		case <-ch:
		case <-n.stop:
			return
		}
	}
}
