package netfault

import (
	"fmt"
	"os/exec"
	"strings"
)

// Caps is what the machine can express, probed at Setup (a
// kernel may lack netem, nft's bridge family, and so on). The nemesis skips
// the faults whose capability is false and logs Missing.
type Caps struct {
	// NFT: nft is installed and the bridge and inet tables loaded.
	// Needed by Partition, CutProtocol, CutTCPPort, Lossy, CutClients.
	NFT bool
	// TBF: tc's token bucket filter (Slow).
	TBF bool
	// Netem: tc netem (Delay). Missing on kernels without
	// CONFIG_NET_SCH_NETEM, such as our VMs.
	Netem bool
	// SS: ss is installed (ResetConnections; the kernel also needs
	// CONFIG_INET_DIAG_DESTROY, which is not probed).
	SS bool
	// IPTables: iptables is installed.
	IPTables bool
	// NFQueue: the in-process NFQUEUE delayer works (iptables' NFQUEUE
	// target in a node's namespace and a netfilter queue bound from
	// here): Delay without netem.
	NFQueue bool
	// Missing says, for every false capability, why.
	Missing []string
}

// String is a one-line summary, e.g. "nft tbf ss iptables; missing: netem (...)".
func (c Caps) String() string {
	var have []string
	for _, f := range []struct {
		ok   bool
		name string
	}{{c.NFT, "nft"}, {c.TBF, "tbf"}, {c.Netem, "netem"}, {c.SS, "ss"}, {c.IPTables, "iptables"}, {c.NFQueue, "nfqueue"}} {
		if f.ok {
			have = append(have, f.name)
		}
	}
	s := strings.Join(have, " ")
	if len(c.Missing) > 0 {
		s += "; missing: " + strings.Join(c.Missing, "; ")
	}
	return s
}

// detectCaps probes tools and qdiscs. The qdisc probes add and remove a
// root qdisc on vh0, before any node runs.
func (n *Net) detectCaps() Caps {
	var c Caps
	miss := func(name, why string) { c.Missing = append(c.Missing, name+": "+why) }
	b := &batch{n: n}
	if _, err := exec.LookPath("nft"); err != nil {
		miss("nft", "not installed (apt-get install nftables)")
	} else if r := b.run("nft", "list", "tables"); r.Err != nil {
		miss("nft", r.Err.Error())
	} else {
		c.NFT = true // confirmed when Setup loads the tables
	}
	if _, err := exec.LookPath("tc"); err != nil {
		miss("tbf", "tc not installed (iproute2)")
		miss("netem", "tc not installed (iproute2)")
	} else {
		c.TBF = n.probeQdisc(b, "tbf", "rate", "1gbit", "burst", "64kb", "latency", "10ms")
		if !c.TBF {
			miss("tbf", "tc qdisc tbf rejected (CONFIG_NET_SCH_TBF)")
		}
		c.Netem = n.probeQdisc(b, "netem", "delay", "1ms")
		if !c.Netem {
			miss("netem", "tc qdisc netem rejected (no CONFIG_NET_SCH_NETEM): Delay uses the NFQUEUE delayer")
		}
	}
	if _, err := exec.LookPath("ss"); err != nil {
		miss("ss", "not installed (iproute2)")
	} else {
		c.SS = true
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		miss("iptables", "not installed (apt-get install iptables)")
	} else {
		c.IPTables = true
	}
	switch {
	case !nfqueueSupported:
		miss("nfqueue", "the NFQUEUE delayer needs Linux")
	case !c.IPTables:
		miss("nfqueue", "needs iptables")
	default:
		if err := n.probeNFQueue(b); err != nil {
			miss("nfqueue", err.Error())
		} else {
			c.NFQueue = true
		}
	}
	if !c.Netem && !c.NFQueue {
		miss("delay", "neither netem nor the NFQUEUE delayer: Delay is unavailable")
	}
	return c
}

// probeNFQueue binds a queue in ch0 and adds and removes the iptables rule
// that feeds it.
func (n *Net) probeNFQueue(b *batch) error {
	d, err := startDelayer(n.netnsPath(0), delayQueueNum, 0, 0)
	if err != nil {
		return fmt.Errorf("binding a netfilter queue: %w", err)
	}
	defer d.stop(delayQueueNum)
	rule := n.nfqRules(0)[0]
	if r := b.tolerant([]string{""}, n.iptables(0, "-A", rule)...); r.Err != nil {
		return fmt.Errorf("iptables NFQUEUE target: %s", r.Output)
	}
	b.tolerant([]string{""}, n.iptables(0, "-D", rule)...)
	return nil
}

func (n *Net) probeQdisc(b *batch, kind string, args ...string) bool {
	add := append([]string{"tc", "qdisc", "add", "dev", n.HostIf(0), "root", kind}, args...)
	if r := b.tolerant([]string{""}, add...); r.Err != nil {
		return false
	}
	b.tolerant(gone, "tc", "qdisc", "del", "dev", n.HostIf(0), "root")
	return true
}

func unsupported(what string, c Caps) error {
	return fmt.Errorf("netfault: %s: %w (caps: %s)", what, ErrUnsupported, c)
}
