package raftplane

import (
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/raftplane/raftplane/gossip"
)

// The data folder keeps the gossip addresses of the other live members, so
// that a node restarted without Join finds its cluster again.

const (
	peersFile = "peers.json"
	// peersInterval is how often the peers file is brought up to date.
	peersInterval = 10 * time.Second
)

// loadPeers returns the gossip addresses savePeers wrote, or none.
func loadPeers(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, peersFile))
	if err != nil {
		return nil
	}
	var peers []string
	if json.Unmarshal(b, &peers) != nil {
		return nil
	}
	return peers
}

// livePeers returns the gossip addresses of the other members alive and
// not leaving.
func livePeers(agent *gossip.Agent) []string {
	var peers []string
	self := agent.Local().ID
	for _, m := range agent.Members() {
		if m.ID != self && m.State == gossip.StateAlive && !m.Leaving {
			peers = append(peers, m.Addr)
		}
	}
	return peers
}

// savePeers writes peers to the data folder unless they are what was last
// written (last), through a temporary file and a rename so that a crash
// leaves the old list or the new one. It returns what is now on disk: last
// again when the write failed, so the next call tries again.
func savePeers(dir string, peers []string, last string) (string, error) {
	if len(peers) == 0 {
		return last, nil // alone for now: keep the last known peers
	}
	b, err := json.Marshal(peers)
	if err != nil {
		return last, err
	}
	if string(b) == last {
		return last, nil
	}
	tmp := filepath.Join(dir, peersFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return last, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, peersFile)); err != nil {
		return last, errors.Join(err, os.Remove(tmp))
	}
	return string(b), nil
}

// savePeersLoop keeps the peers file up to date until stop closes.
func savePeersLoop(dir string, agent *gossip.Agent, stop <-chan struct{}, lg *slog.Logger) {
	tick := time.NewTicker(peersInterval)
	defer tick.Stop()
	var last string
	for {
		var err error
		if last, err = savePeers(dir, livePeers(agent), last); err != nil {
			lg.Warn("saving the peers for the next start; trying again", "err", err)
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}
