package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// Reaping closes, in the log, the connections whose transport is gone with
// no process left to record their end. It has one owner, this runner, and
// one setting, DisconnectTimeout, the grace any dropped connection gets to
// resume on another node:
//
//   - the connections the registry says this node holds but that this
//     process never opened belong to a previous run that ended without
//     recording their departure (a crash, a kill -9): this node closes them
//     DisconnectTimeout after Start (reapOwn);
//   - while this node leads (Leadership), the connections of another node
//     that has not been alive (Liveness) for DisconnectTimeout: its
//     clients are gone or have moved, and every node must agree on that
//     (reapGone). The cluster only says which nodes are alive.
//
// Either way the closes are ordinary KindConnClose commands: the
// disconnected events follow from the log (events.go).

// reapParallel bounds the closes in flight at once: submitted together,
// they share log entries, and a node that held many thousands of
// connections is closed in a few entries instead of one entry each.
const reapParallel = 256

// reapPoll is how often the runner looks for gone nodes: a poll of cheap,
// local reads (the registry, the membership), at most a second and at
// least ten times per DisconnectTimeout, so that a connection is closed
// within about a tenth of the grace after it runs out.
func reapPoll(grace time.Duration) time.Duration {
	return max(min(time.Second, grace/10), time.Millisecond)
}

// reapLoop is the runner; Start starts it and Close joins it.
func (s *Server) reapLoop() {
	defer s.wg.Done()
	own := time.NewTimer(s.cfg.DisconnectTimeout)
	defer own.Stop()
	poll := time.NewTicker(reapPoll(s.cfg.DisconnectTimeout))
	defer poll.Stop()
	gone := map[string]time.Time{} // node → first seen not alive, while leading
	for {
		select {
		case <-s.stop:
			return
		case <-own.C:
			if !s.reapOwn() {
				own.Reset(reapPoll(s.cfg.DisconnectTimeout))
			}
		case <-poll.C:
			s.reapTick(gone, time.Now())
		}
	}
}

// reapTick is one poll of the runner: reapGone while this node leads and
// knows who is alive; otherwise it forgets what it counted, so that a new
// leadership counts afresh (as a new leader would).
func (s *Server) reapTick(gone map[string]time.Time, now time.Time) {
	if s.cfg.Liveness == nil || !s.leads() {
		clear(gone)
		return
	}
	s.reapGone(gone, now)
}

// reapOwn closes the connections a previous run of this node left in the
// registry: those it holds by the registry but not in this process (live,
// or dropped and waiting to resume). It reports whether it is done: false
// when a close failed, to be tried again.
func (s *Server) reapOwn() bool {
	var stale []fsm.ConnInfo
	for _, ci := range s.reg.ConnectionsOn(s.cfg.NodeID) {
		s.mu.Lock()
		_, live := s.conns[ci.ID]
		_, waiting := s.detached[ci.ID]
		s.mu.Unlock()
		if !live && !waiting {
			stale = append(stale, ci)
		}
	}
	if len(stale) == 0 {
		return true
	}
	closed, failed := s.closeConns(stale, "its node restarted")
	s.log.Info("closed the connections left by a previous run", "closed", closed, "failed", failed, "found", len(stale))
	return failed == 0
}

// reapGone updates when each node holding connections was first seen not
// alive, and closes the connections of those not alive for
// DisconnectTimeout by now.
func (s *Server) reapGone(gone map[string]time.Time, now time.Time) {
	nodes := s.reg.ConnectionNodes()
	for node := range gone {
		if _, ok := nodes[node]; !ok {
			delete(gone, node) // nothing left to reap
		}
	}
	for node := range nodes {
		if node == s.cfg.NodeID || s.cfg.Liveness.Alive(node) {
			delete(gone, node)
			continue
		}
		since, ok := gone[node]
		if !ok {
			gone[node] = now
			continue
		}
		if now.Sub(since) < s.cfg.DisconnectTimeout {
			continue
		}
		conns := s.reg.ConnectionsOn(node)
		s.log.Info("closing the connections of a node that is gone", "node", node, "connections", len(conns),
			"gone_for", now.Sub(since).Round(time.Millisecond))
		s.closeConns(conns, "its node "+node+" is gone")
	}
}

// closeConns closes conns in the log, reapParallel at a time, until done
// or the server stops. It returns how many it closed and how many it
// could not (the cluster did not take the close); a connection closed
// meanwhile by someone else (fsm.ErrUnknownConnection) is neither.
func (s *Server) closeConns(conns []fsm.ConnInfo, reason string) (closed, failed int) {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		sem = make(chan struct{}, reapParallel)
	)
loop:
	for _, ci := range conns {
		select {
		case <-s.stop:
			break loop
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(s.life, s.cfg.PublishTimeout)
			defer cancel()
			_, err := s.pub.Publish(ctx, fsm.ConnClose(ci.Hub, ci.ID, reason))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				s.stats.reaped() // stats.go
				closed++
			case !errors.Is(err, fsm.ErrUnknownConnection):
				failed++
				if s.life.Err() == nil {
					s.log.Warn("reaping a connection failed; retrying", "conn", ci.ID, "hub", ci.Hub, "reason", reason, "err", err)
				}
			}
		}()
	}
	wg.Wait()
	return closed, failed
}
