// Package netfault builds the chaos suite's network and injects every
// network fault into it. It is meant to run inside the chaos sandbox's root
// network namespace (package sandbox), never on a host's real network.
//
// Topology: one bridge chbr0 with 10.213.57.254/24 (the
// harness), and for node i a namespace ch<i> holding eth0 with
// 10.213.57.<i+1>/24, the peer of the host-side veth vh<i> enslaved to the
// bridge. Both ends of every veth have fixed MAC addresses, so a recreated
// namespace keeps its L2 address and peers' ARP caches stay valid.
//
// Faults are set elements in two nftables tables, so
// applying one is a single atomic nft transaction and healing is a flush:
//
//	table bridge chaos           frames the bridge forwards between nodes
//	  set drop_pairs  src . dst            every packet src -> dst
//	  set drop_l4     src . dst . proto    one L4 protocol (udp: gossip)
//	  set drop_ports  src . dst . port     TCP to or from one port (Raft)
//	  set lossy       src . dst . 0-(p-1)  random loss of p% src -> dst
//	table inet chaos_clients     the harness's own traffic (input, output)
//	  set cut         node                 harness <-> node, both ways
//
// plus tc tbf (and netem where the kernel has it) on both ends of a node's
// veth, link down on the host end, ss -K in a node's namespace, and, where
// netem is missing, an in-process NFQUEUE delayer fed by iptables rules in
// the node's namespace (nfqueue_linux.go).
//
// Every method that changes the network returns the command lines it ran,
// in order, and an error; every command has a 5 s timeout, runs without a
// shell, and is recorded in the journal (Journal, WithJournal). Methods are
// safe for concurrent use; they run one at a time.
package netfault

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Names and addresses of the topology.
const (
	BridgeName = "chbr0"
	HarnessIP  = "10.213.57.254" // the bridge's address: where the harness's traffic comes from
	subnet     = "10.213.57."
	prefixLen  = "/24"
	bridgeMAC  = "02:00:0a:d5:ff:fe"
	MaxNodes   = 253

	nftBridgeTable  = "bridge chaos"
	nftClientsTable = "inet chaos_clients"
)

// The bridge table: one rule per fault class, all driven by sets.
const nftBridgeDef = `table bridge chaos {
	set drop_pairs { type ipv4_addr . ipv4_addr; }
	set drop_l4 { type ipv4_addr . ipv4_addr . inet_proto; }
	set drop_ports { type ipv4_addr . ipv4_addr . inet_service; }
	set lossy { typeof ip saddr . ip daddr . numgen random mod 100; flags interval; }
	chain forward {
		type filter hook forward priority 0; policy accept;
		ip saddr . ip daddr @drop_pairs counter drop
		ip saddr . ip daddr . meta l4proto @drop_l4 counter drop
		ip saddr . ip daddr . tcp dport @drop_ports counter drop
		ip saddr . ip daddr . tcp sport @drop_ports counter drop
		ip saddr . ip daddr . numgen random mod 100 @lossy counter drop
	}
}`

// The harness <-> node cut: the bridge's forward hook does not see the
// harness's traffic (it is local), so it has its own table.
const nftClientsDef = `table inet chaos_clients {
	set cut { type ipv4_addr; }
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr @cut counter drop
	}
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr @cut counter drop
	}
}`

var bridgeSets = []string{"drop_pairs", "drop_l4", "drop_ports", "lossy"}

// Net is the network of N nodes built by Setup.
type Net struct {
	n    int
	caps Caps

	mu       sync.Mutex // one operation at a time
	torn     bool
	delayers map[int]*delayer // running NFQUEUE delayers, by node

	jmu     sync.Mutex
	records []Record
	hook    func(Record)
}

// Option configures Setup.
type Option func(*Net)

// WithJournal calls f with every command the Net runs, from Setup on, as
// it completes (synchronously; f must not call back into the Net).
func WithJournal(f func(Record)) Option {
	return func(n *Net) { n.hook = f }
}

// Setup builds the bridge, n namespaces and their veths, loads the nft
// tables and detects what the machine can do (Caps). On failure it tears
// down what it built. It refuses to run when chbr0 already exists.
func Setup(n int, opts ...Option) (*Net, error) {
	if n < 1 || n > MaxNodes {
		return nil, fmt.Errorf("netfault: %d nodes: want 1..%d", n, MaxNodes)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("netfault: iproute2's ip is needed: %w", err)
	}
	net := &Net{n: n, delayers: map[int]*delayer{}}
	for _, o := range opts {
		o(net)
	}
	net.mu.Lock()
	defer net.mu.Unlock()

	b := &batch{n: net}
	if r := b.tolerant(gone, "ip", "-o", "link", "show", "dev", BridgeName); r.Err == nil {
		return nil, fmt.Errorf("netfault: %s already exists: a previous network was not torn down", BridgeName)
	}
	b.err = nil

	fail := func(err error) (*Net, error) {
		net.teardown()
		return nil, fmt.Errorf("netfault: setup: %w", err)
	}
	b.run("ip", "link", "add", BridgeName, "address", bridgeMAC, "type", "bridge")
	b.run("ip", "addr", "add", HarnessIP+prefixLen, "dev", BridgeName)
	b.run("ip", "link", "set", BridgeName, "up")
	if b.err != nil {
		return fail(b.err)
	}
	for i := 0; i < n; i++ {
		ns := net.Namespace(i)
		b.run("ip", "netns", "add", ns)
		b.run("ip", "link", "add", net.HostIf(i), "address", mac(i, 0xfe), "type", "veth",
			"peer", "name", "eth0", "address", mac(i, 0x01), "netns", ns)
		b.run("ip", "link", "set", net.HostIf(i), "master", BridgeName, "up")
		b.run("ip", "-n", ns, "link", "set", "lo", "up")
		b.run("ip", "-n", ns, "addr", "add", net.Node(i)+prefixLen, "dev", "eth0")
		b.run("ip", "-n", ns, "link", "set", "eth0", "up")
		if b.err != nil {
			return fail(b.err)
		}
	}
	net.caps = net.detectCaps()
	if net.caps.NFT {
		b.run("nft", "add table "+nftBridgeTable+"; delete table "+nftBridgeTable+"; "+nftBridgeDef)
		b.run("nft", "add table "+nftClientsTable+"; delete table "+nftClientsTable+"; "+nftClientsDef)
		if b.err != nil {
			return fail(b.err)
		}
	}
	return net, nil
}

// mac is the fixed MAC of node i's veth end (0xfe host side, 0x01 node side).
func mac(i int, end byte) string {
	return fmt.Sprintf("02:00:0a:d5:%02x:%02x", i, end)
}

// N is the number of nodes.
func (n *Net) N() int { return n.n }

// Node is node i's IP address (10.213.57.<i+1>).
func (n *Net) Node(i int) string { return subnet + strconv.Itoa(i+1) }

// Namespace is node i's network namespace name (ch<i>).
func (n *Net) Namespace(i int) string { return "ch" + strconv.Itoa(i) }

// netnsPath is the file ip netns keeps for node i's namespace.
func (n *Net) netnsPath(i int) string { return "/var/run/netns/" + n.Namespace(i) }

// HostIf is the bridge-side end of node i's veth (vh<i>).
func (n *Net) HostIf(i int) string { return "vh" + strconv.Itoa(i) }

// Caps is what the machine can do, detected at Setup.
func (n *Net) Caps() Caps { return n.caps }

// Command returns `ip netns exec ch<i> name args...`. ip execs name, so the
// started process's PID is the node itself: signal it by PID. For the first
// milliseconds after Start the process is still ip in the sandbox's root
// namespace; Teardown finds it in ch<i> only once it has entered (the
// sandbox's exit kills it regardless).
func (n *Net) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Namespace(i), name}, args...)...)
}

// Journal returns every command run so far.
func (n *Net) Journal() []Record {
	n.jmu.Lock()
	defer n.jmu.Unlock()
	return append([]Record(nil), n.records...)
}

func (n *Net) journal(r Record) {
	n.jmu.Lock()
	defer n.jmu.Unlock()
	n.records = append(n.records, r)
	if n.hook != nil {
		n.hook(r)
	}
}

func (n *Net) check(is ...int) error {
	for _, i := range is {
		if i < 0 || i >= n.n {
			return fmt.Errorf("netfault: node %d out of range 0..%d", i, n.n-1)
		}
	}
	return nil
}

// Teardown kills every process still in the namespaces (by PID, SIGKILL,
// which also works on stopped ones), waits until they are gone, then
// deletes the namespaces, veths, bridge and nft tables. It is safe to call
// again (it then does nothing) and tolerates a half-built network.
func (n *Net) Teardown() ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.teardown()
}

func (n *Net) teardown() ([]string, error) {
	if n.torn {
		return nil, nil
	}
	n.torn = true
	b := &batch{n: n}
	for i, d := range n.delayers {
		d.stop(delayQueueNum)
		delete(n.delayers, i)
	}
	alive := map[int]bool{}
	for i := 0; i < n.n; i++ {
		pids := n.netnsPids(b, i)
		for _, pid := range pids {
			n.kill(b, pid)
		}
		if len(pids) > 0 {
			alive[i] = true
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(alive) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		for i := range alive {
			pids := n.netnsPids(b, i)
			if len(pids) == 0 {
				delete(alive, i)
			}
			for _, pid := range pids { // started after the first sweep
				n.kill(b, pid)
			}
		}
	}
	for i := range alive {
		if b.err == nil {
			b.err = fmt.Errorf("netfault: processes still in %s after SIGKILL", n.Namespace(i))
		}
	}
	for i := 0; i < n.n; i++ {
		b.tolerant(gone, "ip", "netns", "del", n.Namespace(i))
		b.tolerant(gone, "ip", "link", "del", n.HostIf(i))
	}
	b.tolerant(gone, "ip", "link", "del", BridgeName)
	if _, err := exec.LookPath("nft"); err == nil {
		b.tolerant(gone, "nft", "delete", "table", "bridge", "chaos")
		b.tolerant(gone, "nft", "delete", "table", "inet", "chaos_clients")
	}
	return b.cmds, b.err
}

// netnsPids lists the PIDs in node i's namespace (nil if it is gone).
func (n *Net) netnsPids(b *batch, i int) []int {
	r := b.tolerant(append(gone, "Cannot open network namespace"), "ip", "netns", "pids", n.Namespace(i))
	if r.Err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(r.Output) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (n *Net) kill(b *batch, pid int) {
	r := Record{Cmd: "kill -KILL " + strconv.Itoa(pid), Start: time.Now()}
	p, err := os.FindProcess(pid)
	if err == nil {
		err = p.Kill()
	}
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		r.Err = err
	}
	r.Dur = time.Since(r.Start)
	b.cmds = append(b.cmds, r.Cmd)
	n.journal(r)
}

// delayQueueNum is the netfilter queue the delayer serves in each node's
// namespace (queues are per namespace, so every node can use the same one).
const delayQueueNum = 7
