package netfault

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Partition replaces the current partition with g: every packet from
// p.From to p.To for each of g's pairs is dropped by the bridge (silently:
// TCP connects and reads time out). The harness keeps reaching every node.
// An empty grudge heals. One atomic nft transaction.
func (n *Net) Partition(g Grudge) ([]string, error) {
	return n.replaceSet("partition", "drop_pairs", g, func(p Pair) string {
		return n.Node(p.From) + " . " + n.Node(p.To)
	})
}

// HealPartition removes the partition (Partition(nil)).
func (n *Net) HealPartition() ([]string, error) { return n.Partition(nil) }

// CutProtocol replaces the protocol cut with g restricted to one L4
// protocol ("udp", "tcp"): CutProtocol(Isolate(n, i), "udp") is a
// gossip-only partition of node i (memberlist's UDP probes fail, its TCP
// and Raft still work).
func (n *Net) CutProtocol(g Grudge, proto string) ([]string, error) {
	switch proto {
	case "udp", "tcp", "icmp", "sctp":
	default:
		return nil, fmt.Errorf("netfault: CutProtocol: unknown protocol %q", proto)
	}
	return n.replaceSet("protocol cut", "drop_l4", g, func(p Pair) string {
		return n.Node(p.From) + " . " + n.Node(p.To) + " . " + proto
	})
}

// GossipCut is CutProtocol(g, "udp").
func (n *Net) GossipCut(g Grudge) ([]string, error) { return n.CutProtocol(g, "udp") }

// CutTCPPort replaces the port cut with g restricted to TCP segments to or
// from port: for each pair, p.From's segments to p.To with destination port
// (requests to p.To's server) or source port (p.From's server's replies) port
// are dropped. With the Raft port, CutTCPPort(Isolate(n, i), raftPort)
// is a Raft-only partition of node i (gossip still works). An ephemeral
// port equal to port would be cut too; Linux picks them from 32768 up.
func (n *Net) CutTCPPort(g Grudge, port int) ([]string, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("netfault: CutTCPPort: port %d", port)
	}
	ps := strconv.Itoa(port)
	return n.replaceSet("tcp port cut", "drop_ports", g, func(p Pair) string {
		return n.Node(p.From) + " . " + n.Node(p.To) + " . " + ps
	})
}

// Lossy replaces the lossy links with g: each packet from p.From to p.To
// is dropped with probability percent/100 (nft numgen; netem is not
// needed). Lossy(Isolate(n, i), 30) makes all of node i's links lose 30%
// each way. percent 0 heals.
func (n *Net) Lossy(g Grudge, percent int) ([]string, error) {
	if percent < 0 || percent > 100 {
		return nil, fmt.Errorf("netfault: Lossy: percent %d out of 0..100", percent)
	}
	if percent == 0 {
		g = nil
	}
	rng := "0-" + strconv.Itoa(percent-1)
	if percent == 1 {
		rng = "0"
	}
	return n.replaceSet("lossy", "lossy", g, func(p Pair) string {
		return n.Node(p.From) + " . " + n.Node(p.To) + " . " + rng
	})
}

// replaceSet flushes one set of the bridge table and adds g's elements, in
// one nft transaction.
func (n *Net) replaceSet(what, set string, g Grudge, elem func(Pair) string) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.caps.NFT {
		return nil, unsupported(what, n.caps)
	}
	pairs := g.Pairs()
	for _, p := range pairs {
		if err := n.check(p.From, p.To); err != nil {
			return nil, err
		}
	}
	script := "flush set " + nftBridgeTable + " " + set
	if len(pairs) > 0 {
		es := make([]string, len(pairs))
		for i, p := range pairs {
			es[i] = elem(p)
		}
		script += "; add element " + nftBridgeTable + " " + set + " { " + strings.Join(es, ", ") + " }"
	}
	b := &batch{n: n}
	b.run("nft", script)
	return b.cmds, b.err
}

// CutClients cuts the harness from the given nodes, both ways (the
// harness's connections to them time out; the nodes still reach each
// other). Cutting a node twice is harmless.
func (n *Net) CutClients(nodes ...int) ([]string, error) {
	return n.clients(true, nodes)
}

// UncutClients restores the harness's access to the given nodes, or to
// every node when none is given.
func (n *Net) UncutClients(nodes ...int) ([]string, error) {
	return n.clients(false, nodes)
}

func (n *Net) clients(cut bool, nodes []int) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.caps.NFT {
		return nil, unsupported("client cut", n.caps)
	}
	if err := n.check(nodes...); err != nil {
		return nil, err
	}
	set := nftClientsTable + " cut"
	var script string
	switch {
	case !cut && len(nodes) == 0:
		script = "flush set " + set
	case len(nodes) == 0:
		return nil, nil
	default:
		ips := make([]string, len(nodes))
		for i, x := range nodes {
			ips[i] = n.Node(x)
		}
		elems := "{ " + strings.Join(ips, ", ") + " }"
		// "add" is idempotent; add-then-delete makes deleting a missing
		// element harmless too.
		script = "add element " + set + " " + elems
		if !cut {
			script += "; delete element " + set + " " + elems
		}
	}
	b := &batch{n: n}
	b.run("nft", script)
	return b.cmds, b.err
}

// Slow puts a token bucket filter on both ends of node i's veth, for
// example Slow(1, "1mbit", "4kb", "200ms"): a bandwidth limit, and queueing
// delay under load (not a fixed delay when idle). It replaces any qdisc
// Slow or Delay put there.
func (n *Net) Slow(i int, rate, burst, latency string) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.caps.TBF {
		return nil, unsupported("slow (tbf)", n.caps)
	}
	if err := n.check(i); err != nil {
		return nil, err
	}
	q := []string{"root", "tbf", "rate", rate, "burst", burst, "latency", latency}
	b := &batch{n: n}
	b.run(append([]string{"tc", "qdisc", "replace", "dev", n.HostIf(i)}, q...)...)
	b.run(append([]string{"tc", "-n", n.Namespace(i), "qdisc", "replace", "dev", "eth0"}, q...)...)
	return b.cmds, b.err
}

// Delay delays every packet to and from node i by delay plus up to jitter
// (U(0, jitter)), so a round trip with a peer takes 2*delay more. With
// netem it is a netem qdisc on both ends of the veth (replacing Slow's
// tbf); without it (VMs whose kernel lacks it) it is the in-process NFQUEUE
// delayer: iptables rules in ch<i> (OUTPUT and INPUT on eth0) divert the
// packets to a netfilter queue this process serves, which holds each one
// and then accepts it; it combines with Slow. Either reorders packets when
// jitter exceeds their spacing. Calling it again changes the parameters.
func (n *Net) Delay(i int, delay, jitter time.Duration) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.check(i); err != nil {
		return nil, err
	}
	if delay < 0 || jitter < 0 {
		return nil, fmt.Errorf("netfault: Delay: negative duration")
	}
	b := &batch{n: n}
	switch {
	case n.caps.Netem:
		q := []string{"root", "netem", "delay", usec(delay)}
		if jitter > 0 {
			q = append(q, usec(jitter))
		}
		b.run(append([]string{"tc", "qdisc", "replace", "dev", n.HostIf(i)}, q...)...)
		b.run(append([]string{"tc", "-n", n.Namespace(i), "qdisc", "replace", "dev", "eth0"}, q...)...)
	case n.caps.NFQueue:
		what := fmt.Sprintf("nfqdelay %s queue %d delay %s jitter %s (in-process)", n.Namespace(i), delayQueueNum, delay, jitter)
		if d := n.delayers[i]; d != nil {
			d.set(delay, jitter)
			n.pseudo(b, what, nil)
			break
		}
		d, err := startDelayer(n.netnsPath(i), delayQueueNum, delay, jitter)
		n.pseudo(b, what, err)
		if err != nil {
			break
		}
		for _, rule := range n.nfqRules(i) {
			b.run(n.iptables(i, "-A", rule)...)
		}
		if b.err != nil {
			for _, rule := range n.nfqRules(i) {
				b.tolerant([]string{""}, n.iptables(i, "-D", rule)...)
			}
			d.stop(delayQueueNum)
			break
		}
		n.delayers[i] = d
	default:
		return nil, unsupported("delay (netem or NFQUEUE)", n.caps)
	}
	return b.cmds, b.err
}

// nfqRules are the iptables rules (after -A/-D) that feed node i's queue.
// --queue-bypass lets packets through if nothing serves the queue.
func (n *Net) nfqRules(i int) [][]string {
	q := []string{"-j", "NFQUEUE", "--queue-num", strconv.Itoa(delayQueueNum), "--queue-bypass"}
	return [][]string{
		append([]string{"OUTPUT", "-o", "eth0"}, q...),
		append([]string{"INPUT", "-i", "eth0"}, q...),
	}
}

func (n *Net) iptables(i int, op string, rule []string) []string {
	return append([]string{"ip", "netns", "exec", n.Namespace(i), "iptables", "-w", op}, rule...)
}

// pseudo journals something done in-process as if it were a command.
func (n *Net) pseudo(b *batch, what string, err error) {
	r := Record{Cmd: what, Start: time.Now(), Err: err}
	b.cmds = append(b.cmds, what)
	n.journal(r)
	if err != nil && b.err == nil {
		b.err = fmt.Errorf("%s: %w", what, err)
	}
}

func usec(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) + "us" }

// Unshape removes what Slow or Delay put on node i (nothing there is not
// an error).
func (n *Net) Unshape(i int) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.check(i); err != nil {
		return nil, err
	}
	b := &batch{n: n}
	n.unshape(b, i)
	return b.cmds, b.err
}

func (n *Net) unshape(b *batch, i int) {
	if n.caps.TBF || n.caps.Netem {
		b.tolerant(gone, "tc", "qdisc", "del", "dev", n.HostIf(i), "root")
		b.tolerant(gone, "tc", "-n", n.Namespace(i), "qdisc", "del", "dev", "eth0", "root")
	}
	if d := n.delayers[i]; d != nil {
		// Rules first, so nothing new is queued; then release what is held.
		for _, rule := range n.nfqRules(i) {
			b.tolerant([]string{"Bad rule", "does a matching rule exist", "No chain"}, n.iptables(i, "-D", rule)...)
		}
		d.stop(delayQueueNum)
		delete(n.delayers, i)
		n.pseudo(b, "nfqdelay "+n.Namespace(i)+" stopped", nil)
	}
}

// LinkDown pulls node i's cable: the host end vh<i> goes down, the node
// keeps its address and route, and both sides see timeouts, not errors.
func (n *Net) LinkDown(i int) ([]string, error) { return n.link(i, "down") }

// LinkUp plugs node i's cable back in.
func (n *Net) LinkUp(i int) ([]string, error) { return n.link(i, "up") }

func (n *Net) link(i int, state string) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.check(i); err != nil {
		return nil, err
	}
	b := &batch{n: n}
	b.run("ip", "link", "set", n.HostIf(i), state)
	return b.cmds, b.err
}

// ResetConnections destroys node i's established TCP connections (ss -K
// in its namespace; the kernel sends the remote end a RST), all of them
// or only those with the given peers. Listening sockets are untouched.
func (n *Net) ResetConnections(i int, peers ...int) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.caps.SS {
		return nil, unsupported("connection reset (ss -K)", n.caps)
	}
	if err := n.check(append([]int{i}, peers...)...); err != nil {
		return nil, err
	}
	b := &batch{n: n}
	base := []string{"ip", "netns", "exec", n.Namespace(i), "ss", "-K", "-tn", "state", "established"}
	if len(peers) == 0 {
		b.run(base...)
	}
	for _, p := range peers {
		b.run(append(base, "dst", n.Node(p))...)
	}
	return b.cmds, b.err
}

// HealAll removes every network fault, whatever state it finds: it
// flushes every fault set (one nft transaction), removes the qdiscs from
// both ends of every veth, stops every delayer, and brings every link up. It keeps going after
// a failure and returns the first one.
func (n *Net) HealAll() ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	b := &batch{n: n}
	if n.caps.NFT {
		var parts []string
		for _, s := range bridgeSets {
			parts = append(parts, "flush set "+nftBridgeTable+" "+s)
		}
		parts = append(parts, "flush set "+nftClientsTable+" cut")
		b.run("nft", strings.Join(parts, "; "))
	}
	for i := 0; i < n.n; i++ {
		n.unshape(b, i)
		b.run("ip", "link", "set", n.HostIf(i), "up")
	}
	return b.cmds, b.err
}
