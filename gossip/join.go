package gossip

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"
)

// errStopJoin ends a join loop: the agent closed or left.
var errStopJoin = errors.New("gossip: join stopped")

// Join joins the cluster through any of seeds (gossip host:port; a host
// given by name is joined through every address it resolves to, see
// Config.DNSConfigPath) in the background, retrying with exponential backoff and jitter
// (JoinRetryMin..JoinRetryMax) until one attempt succeeds or the agent is
// closed or leaves. A seed that is down is not fatal. Seeds equal to this
// node's own address are skipped; with none left, Joined closes at once.
// An attempt succeeds when a seed answered and this node then knows at
// least one other live member. Each failure is logged at debug, with a
// warn summary every 10 failures.
//
// Join may be called before Start (attempts fail until it runs) and more
// than once; every call runs its own loop.
func (a *Agent) Join(seeds []string) {
	var clean []string
	for _, s := range seeds {
		if s != "" {
			clean = append(clean, s)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.joinCalled = true
	if a.closed || a.left {
		return
	}
	if len(clean) == 0 {
		a.markJoinedLocked()
		return
	}
	a.wg.Add(1)
	go a.joinLoop(clean)
}

// Joined returns a channel closed once a join succeeded, or already closed
// when Join was never called or had no seeds. It stays open if the agent
// closes before any join succeeds.
func (a *Agent) Joined() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.joinCalled {
		done := make(chan struct{})
		close(done)
		return done
	}
	return a.joined
}

func (a *Agent) markJoinedLocked() {
	if !a.joinedDone {
		a.joinedDone = true
		close(a.joined)
	}
}

func (a *Agent) joinLoop(seeds []string) {
	defer a.wg.Done()
	delay := a.cfg.JoinRetryMin
	for attempt := 1; ; attempt++ {
		n, err := a.joinOnce(seeds)
		if errors.Is(err, errStopJoin) {
			return
		}
		if err == nil {
			a.mu.Lock()
			a.markJoinedLocked()
			a.mu.Unlock()
			a.log.Info("gossip: joined", "seeds", seeds, "contacted", n, "attempts", attempt)
			return
		}
		a.joinFailures.Add(1)
		a.log.Debug("gossip: join attempt failed", "attempt", attempt, "seeds", seeds, "err", err)
		if attempt%10 == 0 {
			a.log.Warn("gossip: still cannot join any seed; retrying", "attempts", attempt, "seeds", seeds, "last_err", err)
		}

		wait := delay/2 + rand.N(delay/2+1) // jitter in [delay/2, delay]
		delay = min(2*delay, a.cfg.JoinRetryMax)
		t := time.NewTimer(wait)
		select {
		case <-a.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// joinOnce makes one attempt and returns the number of seeds contacted.
func (a *Agent) joinOnce(seeds []string) (int, error) {
	a.mu.Lock()
	ml, self, stop := a.ml, a.localAddr, a.closed || a.left
	a.mu.Unlock()
	switch {
	case stop:
		return 0, errStopJoin
	case ml == nil:
		return 0, ErrNotStarted
	}
	targets := withoutAddr(seeds, self)
	if len(targets) == 0 {
		return 0, nil // we are the only seed: nobody else to join
	}
	n, err := ml.Join(targets)
	switch {
	case err != nil:
		// memberlist's multierror spans lines; keep log lines whole.
		return n, errors.New(strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n\t* ", " | "))
	case n == 0:
		return 0, errors.New("no seed answered")
	case ml.NumMembers() < 2:
		return n, fmt.Errorf("reached %d seed(s) but only this node is alive (a seed is this node?)", n)
	}
	return n, nil
}

// withoutAddr drops the seeds that are literally self (ip:port, after
// normalization). Hostname seeds are kept.
func withoutAddr(seeds []string, self string) []string {
	me, err := netip.ParseAddrPort(self)
	if err != nil {
		return seeds
	}
	var out []string
	for _, s := range seeds {
		if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Unmap() == me.Addr().Unmap() && ap.Port() == me.Port() {
			continue
		}
		out = append(out, s)
	}
	return out
}
