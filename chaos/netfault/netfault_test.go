package netfault_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftplane/raftplane/chaos/netfault"
	"github.com/raftplane/raftplane/chaos/sandbox"
)

// envNode makes the test binary a node helper (see runNode) instead of a
// test run; it is set only on processes started in a node's namespace.
const envNode = "RAFTPLANE_NETFAULT_NODE"

const (
	port        = 7777
	dropTimeout = 300 * time.Millisecond
)

var sb sandbox.Result

func TestMain(m *testing.M) {
	if addr := os.Getenv(envNode); addr != "" {
		runNode(addr)
		os.Exit(0)
	}
	os.Exit(sandbox.Run(func(r sandbox.Result) int { sb = r; return m.Run() }))
}

// ---- the node helper: TCP+UDP echo server, driven over stdin/stdout ----

// runNode serves TCP and UDP echo on addr and answers commands on stdin
// with one line on stdout each (the control channel is a pipe, so network
// faults never cut it). It exits when stdin closes.
func runNode(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveTCP(c)
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg := string(buf[:k])
			if strings.HasPrefix(msg, "tok ") {
				mu.Lock()
				seen[msg] = true
				mu.Unlock()
				continue
			}
			pc.WriteTo(buf[:k], from)
		}
	}()
	held := map[string]net.Conn{}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "probe": // probe <proto:addr>... -> res 1 0 ...
			fmt.Println("res " + strings.Join(probeAll(f[1:]), " "))
		case "send": // send <addr> <token>: fire-and-forget UDP
			c, err := net.Dial("udp", f[1])
			if err == nil {
				for k := 0; k < 3; k++ {
					c.Write([]byte("tok " + f[2]))
				}
				c.Close()
			}
			fmt.Println("res ok")
		case "seen": // seen <token> <ms>
			ms, _ := strconv.Atoi(f[2])
			deadline := time.Now().Add(time.Duration(ms) * time.Millisecond)
			got := false
			for !got && time.Now().Before(deadline) {
				mu.Lock()
				got = seen["tok "+f[1]]
				mu.Unlock()
				if !got {
					time.Sleep(5 * time.Millisecond)
				}
			}
			fmt.Println("res", b2s(got))
		case "burst": // burst <addr> <count>: UDP round trips that came back
			k, _ := strconv.Atoi(f[2])
			fmt.Println("res", burst(f[1], k))
		case "rtt": // rtt <addr>: median of 3 UDP round trips, in ms (-1: lost)
			fmt.Println("res", rtt(f[1]))
		case "hold": // hold <name> <addr>: keep a TCP connection open
			c, err := net.DialTimeout("tcp", f[2], time.Second)
			if err == nil {
				held[f[1]] = c
			}
			fmt.Println("res", b2s(err == nil))
		case "check": // check <name>: does the held connection still echo?
			c := held[f[1]]
			fmt.Println("res", b2s(c != nil && echo(c, dropTimeout) == nil))
		default:
			fmt.Println("res unknown", f[0])
		}
	}
}

func b2s(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func serveTCP(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if line == "sink\n" { // count bytes to EOF, answer the count
			k, _ := io.Copy(io.Discard, r)
			fmt.Fprintf(c, "%d\n", k)
			return
		}
		if _, err := c.Write([]byte(line)); err != nil {
			return
		}
	}
}

func echo(c net.Conn, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping\n" {
		return fmt.Errorf("echo %q", buf)
	}
	return nil
}

// probe does one round trip to target ("tcp:ip:port" or "udp:ip:port").
func probe(target string) bool {
	proto, addr, _ := strings.Cut(target, ":")
	c, err := net.DialTimeout(proto, addr, dropTimeout)
	if err != nil {
		return false
	}
	defer c.Close()
	return echo(c, dropTimeout) == nil
}

func probeAll(targets []string) []string {
	res := make([]string, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = b2s(probe(t))
		}()
	}
	wg.Wait()
	return res
}

func rtt(addr string) string {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "-1"
	}
	defer c.Close()
	var ms []float64
	buf := make([]byte, 64)
	for k := 0; k < 3; k++ {
		t0 := time.Now()
		fmt.Fprintf(c, "r%d", k)
		c.SetReadDeadline(t0.Add(2 * time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				return "-1"
			}
			if string(buf[:n]) == fmt.Sprintf("r%d", k) {
				break
			}
		}
		ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
	}
	sort.Float64s(ms)
	return strconv.FormatFloat(ms[1], 'f', 1, 64)
}

// burst sends count numbered datagrams and counts the distinct echoes.
func burst(addr string, count int) int {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return -1
	}
	defer c.Close()
	for k := 0; k < count; k++ {
		fmt.Fprintf(c, "b%d", k)
		time.Sleep(200 * time.Microsecond)
	}
	got := map[string]bool{}
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(dropTimeout))
	for {
		k, err := c.Read(buf)
		if err != nil {
			break
		}
		got[string(buf[:k])] = true
		if len(got) == count {
			break
		}
	}
	return len(got)
}

// ---- the harness side ----

type node struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	mu  sync.Mutex
}

func (nd *node) do(t *testing.T, format string, args ...any) string {
	t.Helper()
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if _, err := fmt.Fprintf(nd.in, format+"\n", args...); err != nil {
		t.Fatalf("node command: %v", err)
	}
	type res struct {
		s   string
		err error
	}
	c := make(chan res, 1)
	go func() {
		s, err := nd.out.ReadString('\n')
		c <- res{s, err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("node answer: %v", r.err)
		}
		s := strings.TrimSpace(r.s)
		if !strings.HasPrefix(s, "res ") {
			t.Fatalf("node answer %q", s)
		}
		return strings.TrimPrefix(s, "res ")
	case <-time.After(10 * time.Second):
		t.Fatalf("node did not answer %q", fmt.Sprintf(format, args...))
		return ""
	}
}

type cluster struct {
	net   *netfault.Net
	nodes []*node
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	sb.Require(t)
	t0 := time.Now()
	nw, err := netfault.Setup(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Setup(%d): %s, %d commands; caps: %s", n, time.Since(t0).Round(time.Millisecond), len(nw.Journal()), nw.Caps())
	if !nw.Caps().NFT {
		nw.Teardown()
		if sandbox.CI() {
			t.Fatalf("nft is needed (CI=true): %s", nw.Caps())
		}
		t.Skipf("nft is needed: %s", nw.Caps())
	}
	c := &cluster{net: nw}
	t.Cleanup(func() { c.teardown(t) })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		cmd := nw.Command(i, exe)
		cmd.Env = append(os.Environ(), envNode+"="+nw.Node(i)+":"+strconv.Itoa(port))
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		nd := &node{cmd: cmd, in: in, out: bufio.NewReader(out)}
		c.nodes = append(c.nodes, nd)
	}
	for i, nd := range c.nodes {
		line, err := nd.out.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "ready" {
			t.Fatalf("node %d: %q %v", i, line, err)
		}
	}
	t.Logf("%d helpers up after %s", n, time.Since(t0).Round(time.Millisecond))
	return c
}

// teardown tears the network down and checks that the helpers died with it.
func (c *cluster) teardown(t *testing.T) {
	if c.net == nil {
		return
	}
	t0 := time.Now()
	_, err := c.net.Teardown()
	t.Logf("Teardown: %s", time.Since(t0).Round(time.Millisecond))
	if err != nil {
		t.Errorf("Teardown: %v", err)
	}
	for i, nd := range c.nodes {
		nd.in.Close()
		done := make(chan error, 1)
		go func() { done <- nd.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Errorf("node %d helper still running after Teardown", i)
			nd.cmd.Process.Kill()
		}
	}
	c.net = nil
}

// matrix probes every (source, target, protocol); source -1 is the
// harness. It returns the cells where got differs from want.
func (c *cluster) matrix(t *testing.T, want func(src, dst int, proto string) bool) []string {
	t.Helper()
	n := len(c.nodes)
	type cell struct {
		src, dst int
		proto    string
	}
	got := map[cell]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for src := -1; src < n; src++ {
		var cells []cell
		var targets []string
		for dst := 0; dst < n; dst++ {
			if dst == src {
				continue
			}
			for _, proto := range []string{"tcp", "udp"} {
				cells = append(cells, cell{src, dst, proto})
				targets = append(targets, proto+":"+c.net.Node(dst)+":"+strconv.Itoa(port))
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res []string
			if src < 0 {
				res = probeAll(targets)
			} else {
				res = strings.Fields(c.nodes[src].do(t, "probe %s", strings.Join(targets, " ")))
			}
			mu.Lock()
			defer mu.Unlock()
			for k, cl := range cells {
				got[cl] = k < len(res) && res[k] == "1"
			}
		}()
	}
	wg.Wait()
	var bad []string
	for cl, ok := range got {
		if w := want(cl.src, cl.dst, cl.proto); ok != w {
			bad = append(bad, fmt.Sprintf("%s %s->%s: got %v, want %v", cl.proto, name(cl.src), name(cl.dst), ok, w))
		}
	}
	sort.Strings(bad)
	return bad
}

func name(i int) string {
	if i < 0 {
		return "harness"
	}
	return "n" + strconv.Itoa(i)
}

func all(int, int, string) bool { return true }

// byGrudge: a round trip works when neither direction is dropped; the
// harness is never in a grudge.
func byGrudge(g netfault.Grudge) func(int, int, string) bool {
	return func(src, dst int, _ string) bool {
		if src < 0 {
			return true
		}
		return !g.Drops(dst, src) && !g.Drops(src, dst)
	}
}

func (c *cluster) expect(t *testing.T, what string, want func(src, dst int, proto string) bool) {
	t.Helper()
	t0 := time.Now()
	if bad := c.matrix(t, want); len(bad) > 0 {
		t.Errorf("%s: reachability differs in %d cells:\n  %s", what, len(bad), strings.Join(bad, "\n  "))
	} else {
		t.Logf("%s: matrix as expected (%s)", what, time.Since(t0).Round(time.Millisecond))
	}
}

// expectEventually retries the matrix until it matches, for faults whose
// heal converges through timers (ARP after a cable pull).
func (c *cluster) expectEventually(t *testing.T, what string, within time.Duration, want func(src, dst int, proto string) bool) {
	t.Helper()
	t0 := time.Now()
	for {
		bad := c.matrix(t, want)
		if len(bad) == 0 {
			t.Logf("%s: matrix as expected after %s", what, time.Since(t0).Round(time.Millisecond))
			return
		}
		if time.Since(t0) > within {
			t.Errorf("%s: reachability differs in %d cells after %s:\n  %s", what, len(bad), within, strings.Join(bad, "\n  "))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func must(t *testing.T, what string) func([]string, error) []string {
	return func(cmds []string, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(cmds) == 0 {
			t.Fatalf("%s: no commands returned", what)
		}
		return cmds
	}
}

func timed(t *testing.T, what string, f func() ([]string, error)) {
	t.Helper()
	t0 := time.Now()
	cmds, err := f()
	d := time.Since(t0)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("%s: %s, %d commands: %s", what, d.Round(100*time.Microsecond), len(cmds), abbreviate(cmds))
}

func abbreviate(cmds []string) string {
	s := strings.Join(cmds, " && ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// ---- tests ----

func TestReachability(t *testing.T) {
	c := startCluster(t, 5)
	nw := c.net
	heal := func() { t.Helper(); timed(t, "HealAll", nw.HealAll) }

	c.expect(t, "baseline", all)

	g := netfault.Isolate(5, 0)
	timed(t, "Partition(Isolate(0))", func() ([]string, error) { return nw.Partition(g) })
	c.expect(t, "isolate n0", byGrudge(g))

	for _, tc := range []struct {
		name string
		g    netfault.Grudge
	}{
		{"Split({0,1}|{2,3,4})", netfault.Split(5, 0, 1)},
		{"MajoritiesRing", netfault.MajoritiesRing(5)},
		{"Bridge", netfault.Bridge(5)},
	} {
		timed(t, "Partition("+tc.name+")", func() ([]string, error) { return nw.Partition(tc.g) })
		c.expect(t, tc.name, byGrudge(tc.g))
	}
	timed(t, "HealPartition", nw.HealPartition)
	c.expect(t, "after HealPartition", all)

	// One-way: n0 cannot send to n1, n1 still reaches n0. Round trips fail
	// both ways, so look at single datagrams.
	timed(t, "Partition(OneWay(0,1))", func() ([]string, error) { return nw.Partition(netfault.OneWay(0, 1)) })
	c.nodes[1].do(t, "send %s:%d oneway-1to0", nw.Node(0), port)
	c.nodes[0].do(t, "send %s:%d oneway-0to1", nw.Node(1), port)
	c.nodes[0].do(t, "send %s:%d oneway-0to2", nw.Node(2), port)
	if got := c.nodes[0].do(t, "seen oneway-1to0 300"); got != "1" {
		t.Errorf("one-way 0->1: n1->n0 datagram lost")
	}
	if got := c.nodes[1].do(t, "seen oneway-0to1 300"); got != "0" {
		t.Errorf("one-way 0->1: n0->n1 datagram arrived")
	}
	if got := c.nodes[2].do(t, "seen oneway-0to2 300"); got != "1" {
		t.Errorf("one-way 0->1: n0->n2 datagram lost")
	}
	heal()

	// Gossip-only cut: UDP between n0 and everyone else is dropped, TCP works.
	timed(t, "GossipCut(Isolate(0))", func() ([]string, error) { return nw.GossipCut(netfault.Isolate(5, 0)) })
	c.expect(t, "gossip cut n0", func(src, dst int, proto string) bool {
		return proto == "tcp" || src < 0 || (src != 0 && dst != 0)
	})
	heal()

	// Raft-only cut: TCP to and from the port is dropped, UDP works.
	timed(t, "CutTCPPort(Isolate(0))", func() ([]string, error) { return nw.CutTCPPort(netfault.Isolate(5, 0), port) })
	c.expect(t, "tcp port cut n0", func(src, dst int, proto string) bool {
		return proto == "udp" || src < 0 || (src != 0 && dst != 0)
	})
	heal()

	// Cable pull: nobody reaches n0, harness included.
	timed(t, "LinkDown(0)", func() ([]string, error) { return nw.LinkDown(0) })
	c.expect(t, "link down n0", func(src, dst int, _ string) bool { return src != 0 && dst != 0 })
	timed(t, "LinkUp(0)", func() ([]string, error) { return nw.LinkUp(0) })
	// n0's ARP entries for its peers went INCOMPLETE during the outage
	// and resolve on the next retransmit (retrans_time, 1 s), as on a
	// real host whose cable is plugged back in.
	c.expectEventually(t, "link up n0", 3*time.Second, all)

	// Client cut: the harness loses n1, the nodes keep it.
	timed(t, "CutClients(1)", func() ([]string, error) { return nw.CutClients(1) })
	c.expect(t, "client cut n1", func(src, dst int, _ string) bool { return !(src < 0 && dst == 1) })
	must(t, "CutClients again")(nw.CutClients(1))
	must(t, "UncutClients(1)")(nw.UncutClients(1))
	must(t, "UncutClients(1) again")(nw.UncutClients(1))
	c.expect(t, "client uncut n1", all)

	// Everything at once, then HealAll.
	must(t, "Partition")(nw.Partition(netfault.Bridge(5)))
	must(t, "GossipCut")(nw.GossipCut(netfault.Isolate(5, 4)))
	must(t, "CutTCPPort")(nw.CutTCPPort(netfault.OneWay(3, 1), port))
	must(t, "Lossy")(nw.Lossy(netfault.Isolate(5, 2), 50))
	must(t, "LinkDown")(nw.LinkDown(3))
	must(t, "CutClients")(nw.CutClients(0, 4))
	if nw.Caps().TBF {
		must(t, "Slow")(nw.Slow(2, "1mbit", "4kb", "50ms"))
	}
	heal()
	c.expect(t, "after HealAll", all)
	heal() // idempotent
	c.expect(t, "after a second HealAll", all)
}

func TestLossy(t *testing.T) {
	c := startCluster(t, 2)
	nw := c.net
	dst := nw.Node(1) + ":" + strconv.Itoa(port)
	if got, _ := strconv.Atoi(c.nodes[0].do(t, "burst %s 100", dst)); got != 100 {
		t.Errorf("no loss: %d/100 round trips", got)
	}
	timed(t, "Lossy(OneWay(0,1), 30)", func() ([]string, error) { return nw.Lossy(netfault.OneWay(0, 1), 30) })
	got, _ := strconv.Atoi(c.nodes[0].do(t, "burst %s 100", dst))
	t.Logf("30%% one-way loss: %d/100 round trips", got)
	if got < 45 || got > 90 { // expected 70, sd 4.6
		t.Errorf("30%% loss: %d/100 round trips, want about 70", got)
	}
	must(t, "Lossy 100")(nw.Lossy(netfault.OneWay(1, 0), 100))
	if got, _ := strconv.Atoi(c.nodes[0].do(t, "burst %s 20", dst)); got != 0 {
		t.Errorf("100%% loss: %d/20 round trips", got)
	}
	must(t, "Lossy 0")(nw.Lossy(netfault.OneWay(1, 0), 0))
	if got, _ := strconv.Atoi(c.nodes[0].do(t, "burst %s 100", dst)); got != 100 {
		t.Errorf("healed: %d/100 round trips", got)
	}
}

func TestSlow(t *testing.T) {
	c := startCluster(t, 2)
	nw := c.net
	if !nw.Caps().TBF {
		t.Skipf("no tbf: %s", nw.Caps())
	}
	addr := nw.Node(1) + ":" + strconv.Itoa(port)
	send := func() time.Duration {
		t0 := time.Now()
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		const size = 256 << 10
		fmt.Fprint(conn, "sink\n")
		if _, err := conn.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		conn.(*net.TCPConn).CloseWrite()
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != strconv.Itoa(size) {
			t.Fatalf("sink: %q %v", line, err)
		}
		return time.Since(t0)
	}
	fast := send()
	timed(t, "Slow(1, 4mbit)", func() ([]string, error) { return nw.Slow(1, "4mbit", "16kb", "100ms") })
	slow := send() // 256 KiB at 4 Mbit/s: about 0.5 s
	timed(t, "Unshape(1)", func() ([]string, error) { return nw.Unshape(1) })
	again := send()
	t.Logf("256 KiB harness->n1: %s unshaped, %s at 4mbit, %s after Unshape", fast, slow, again)
	if slow < 300*time.Millisecond || slow < 5*fast {
		t.Errorf("tbf did not slow the link: %s vs %s", slow, fast)
	}
	if again > 200*time.Millisecond {
		t.Errorf("Unshape left the link slow: %s", again)
	}
	must(t, "Unshape again")(nw.Unshape(1))
}

func TestResetConnections(t *testing.T) {
	c := startCluster(t, 3)
	nw := c.net
	n0 := c.nodes[0]
	if n0.do(t, "hold a %s:%d", nw.Node(1), port) != "1" || n0.do(t, "hold b %s:%d", nw.Node(2), port) != "1" {
		t.Fatal("hold failed")
	}
	if n0.do(t, "check a") != "1" || n0.do(t, "check b") != "1" {
		t.Fatal("held connections do not echo")
	}
	timed(t, "ResetConnections(0, 1)", func() ([]string, error) { return nw.ResetConnections(0, 1) })
	if n0.do(t, "check a") != "0" {
		t.Error("connection n0->n1 survived ResetConnections(0, 1)")
	}
	if n0.do(t, "check b") != "1" {
		t.Error("connection n0->n2 did not survive ResetConnections(0, 1)")
	}
	timed(t, "ResetConnections(0)", func() ([]string, error) { return nw.ResetConnections(0) })
	if n0.do(t, "check b") != "0" {
		t.Error("connection n0->n2 survived ResetConnections(0)")
	}
	// The listener is untouched: new connections still work.
	c.expect(t, "after resets", all)
}

func TestUnsupportedAndErrors(t *testing.T) {
	c := startCluster(t, 2)
	nw := c.net
	if caps := nw.Caps(); !caps.Netem && !caps.NFQueue {
		_, err := nw.Delay(0, 100*time.Millisecond, 10*time.Millisecond)
		if !errors.Is(err, netfault.ErrUnsupported) {
			t.Errorf("Delay without netem or NFQUEUE: %v, want ErrUnsupported", err)
		}
	}
	if _, err := nw.Delay(0, -time.Second, 0); err == nil {
		t.Error("negative Delay: no error")
	}
	if _, err := nw.Partition(netfault.Isolate(3, 2)); err == nil {
		t.Error("Partition with node 2 of 2: no error")
	}
	if _, err := nw.LinkDown(5); err == nil {
		t.Error("LinkDown(5) of 2: no error")
	}
	if _, err := nw.CutProtocol(netfault.Isolate(2, 0), "foo"); err == nil {
		t.Error("CutProtocol foo: no error")
	}
	if _, err := netfault.Setup(2); err == nil {
		t.Error("a second Setup over a live network: no error")
	}
}

func TestTeardown(t *testing.T) {
	sb.Require(t)
	for round := 0; round < 2; round++ {
		c := startCluster(t, 3)
		nw := c.net
		must(t, "Partition")(nw.Partition(netfault.Split(3, 0)))
		must(t, "CutClients")(nw.CutClients(1))
		// A stopped process must go too (SIGKILL works on stopped tasks).
		stopped := nw.Command(2, "sleep", "60")
		if err := stopped.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until ip has exec'd sleep inside ch2: a process stopped
		// before it entered the namespace would not be found there.
		inNS := false
		for k := 0; k < 100 && !inNS; k++ {
			out, _ := exec.Command("ip", "netns", "pids", nw.Namespace(2)).Output()
			inNS = slices.Contains(strings.Fields(string(out)), strconv.Itoa(stopped.Process.Pid))
			if !inNS {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if !inNS {
			t.Fatal("sleep never showed up in ch2")
		}
		stopped.Process.Signal(syscall.SIGSTOP)
		c.teardown(t) // checks the helpers are gone
		if err := waitTimeout(stopped, 3*time.Second); err == nil || err == errTimeout {
			t.Errorf("stopped sleep in ch2: %v, want killed by Teardown", err)
		}
		if _, err := nw.Teardown(); err != nil {
			t.Errorf("second Teardown: %v", err)
		}
		for _, argv := range [][]string{{"ip", "netns", "list"}, {"nft", "list", "tables"}} {
			out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("%s after Teardown: %q %v", strings.Join(argv, " "), out, err)
			}
		}
		if out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput(); err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
			t.Errorf("links after Teardown (want only lo): %s %v", out, err)
		}
	}
}

var errTimeout = errors.New("still running")

func waitTimeout(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return errTimeout
	}
}

func TestDelay(t *testing.T) {
	c := startCluster(t, 3)
	nw := c.net
	caps := nw.Caps()
	if !caps.Netem && !caps.NFQueue {
		if sandbox.CI() {
			t.Fatalf("no way to delay (CI=true): %s", caps)
		}
		t.Skipf("no way to delay: %s", caps)
	}
	addr := func(i int) string { return nw.Node(i) + ":" + strconv.Itoa(port) }
	rttOf := func(from, to int) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(c.nodes[from].do(t, "rtt %s", addr(to)), 64)
		if err != nil || v < 0 {
			t.Fatalf("rtt n%d->n%d: lost (%v)", from, to, err)
		}
		return v
	}
	check := func(what string, from, to int, lo, hi float64) {
		t.Helper()
		got := rttOf(from, to)
		t.Logf("%s: rtt n%d->n%d %.1f ms", what, from, to, got)
		if got < lo || got > hi {
			t.Errorf("%s: rtt n%d->n%d %.1f ms, want %.0f..%.0f", what, from, to, got, lo, hi)
		}
	}
	check("baseline", 1, 0, 0, 20)
	timed(t, "Delay(0, 100ms, 0)", func() ([]string, error) { return nw.Delay(0, 100*time.Millisecond, 0) })
	check("delay 100ms", 1, 0, 190, 400)
	check("delay 100ms, other pair", 1, 2, 0, 20)
	timed(t, "Delay(0, 50ms, 20ms)", func() ([]string, error) { return nw.Delay(0, 50*time.Millisecond, 20*time.Millisecond) })
	check("delay 50ms+20ms", 2, 0, 95, 300)
	// TCP through the delay: connect and one echo.
	t0 := time.Now()
	conn, err := net.DialTimeout("tcp", addr(0), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(conn, 2*time.Second); err != nil {
		t.Errorf("echo through the delay: %v", err)
	}
	t.Logf("harness->n0 TCP connect+echo through the delay: %s", time.Since(t0).Round(time.Millisecond))
	timed(t, "Unshape(0)", func() ([]string, error) { return nw.Unshape(0) })
	if err := echo(conn, time.Second); err != nil { // held packets were released, not dropped
		t.Errorf("connection across Unshape: %v", err)
	}
	conn.Close()
	check("after Unshape", 1, 0, 0, 20)
	must(t, "Delay")(nw.Delay(0, 100*time.Millisecond, 0))
	if nw.Caps().TBF {
		must(t, "Slow with Delay")(nw.Slow(0, "10mbit", "32kb", "100ms"))
	}
	check("delay again", 1, 0, 190, 400)
	timed(t, "HealAll", nw.HealAll)
	check("after HealAll", 1, 0, 0, 20)
	if out, err := nw.Command(0, "iptables", "-S").CombinedOutput(); err != nil || strings.Contains(string(out), "NFQUEUE") {
		t.Errorf("iptables in ch0 after HealAll: %s %v", out, err)
	}
	must(t, "Delay before Teardown")(nw.Delay(1, 100*time.Millisecond, 0)) // Teardown stops it
}
