package chaos

import (
	"fmt"
	"os/exec"
	"time"

	"github.com/raftplane/raftplane/chaos/nemesis"
	"github.com/raftplane/raftplane/chaos/netfault"
)

// netNemesis gives the nemesis the network faults of a netfault.Net.
type netNemesis struct{ net *netfault.Net }

var _ nemesis.Network = netNemesis{}

func (a netNemesis) n() int { return a.net.N() }

func (a netNemesis) Isolate(i int) ([]string, error) {
	return a.net.Partition(netfault.Isolate(a.n(), i))
}

func (a netNemesis) Split(minority []int) ([]string, error) {
	return a.net.Partition(netfault.Split(a.n(), minority...))
}

func (a netNemesis) Ring() ([]string, error) { return a.net.Partition(netfault.MajoritiesRing(a.n())) }

func (a netNemesis) Bridge() ([]string, error) {
	if a.n() != 5 {
		return nil, fmt.Errorf("the bridge partition needs 5 nodes, not %d", a.n())
	}
	return a.net.Partition(netfault.Bridge(a.n()))
}

func (a netNemesis) DeafTo(i int) ([]string, error) {
	var gs []netfault.Grudge
	for j := 0; j < a.n(); j++ {
		if j != i {
			gs = append(gs, netfault.OneWay(j, i))
		}
	}
	return a.net.Partition(netfault.Merge(gs...))
}

func (a netNemesis) GossipCut(i int) ([]string, error) {
	return a.net.GossipCut(netfault.Isolate(a.n(), i))
}

func (a netNemesis) Lossy(i int) ([]string, error) {
	return a.net.Lossy(netfault.Isolate(a.n(), i), 30)
}

func (a netNemesis) Slow(i int) ([]string, error) { return a.net.Slow(i, "1mbit", "4kb", "200ms") }

func (a netNemesis) Delay(i int) ([]string, error) {
	return a.net.Delay(i, 100*time.Millisecond, 20*time.Millisecond)
}

func (a netNemesis) LinkDown(i int) ([]string, error) { return a.net.LinkDown(i) }
func (a netNemesis) LinkUp(i int) ([]string, error)   { return a.net.LinkUp(i) }

func (a netNemesis) ResetConnections(i int) ([]string, error) { return a.net.ResetConnections(i) }

func (a netNemesis) CutClients(i int) ([]string, error) { return a.net.CutClients(i) }

func (a netNemesis) HealAll() ([]string, error) { return a.net.HealAll() }

func (a netNemesis) Can(kind string) bool {
	c := a.net.Caps()
	switch kind {
	case nemesis.Slow:
		return c.TBF
	case nemesis.Delay:
		return c.Netem || c.NFQueue
	case nemesis.ConnReset:
		return c.SS
	case nemesis.CrashHost:
		return true
	case nemesis.PartitionBridge:
		return c.NFT && a.n() == 5
	}
	return c.NFT
}

// loopbackIP is node i's address without namespaces: 127.0.0.0/8 needs no
// set-up on Linux, and .101 up keeps clear of services on 127.0.0.1.
func loopbackIP(i int) string { return fmt.Sprintf("127.0.0.%d", 101+i) }

func plainLaunch(_ int, name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
