package deploy

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestCompose_ClusterFormsThroughTheAlias runs deploy/compose.yaml as
// far as this machine can without a container engine: the pki service's
// script with the built binary, then the three nodes with their commands
// from the file, each container's address mapped to a loopback address
// (172.28.0.1X to 127.0.0.X, one gossip port for all three, as in the
// containers) and the network alias raftplane-peers to an /etc/hosts name
// for the three. node2 and node3 join through that one name: the proof
// that a -join name resolving to several addresses joins, on real
// processes, with the peer TLS and gossip key the pki service made. It
// edits /etc/hosts, so it needs root (it fails without under CI=true), and
// puts the file back as it was, whatever happens. gossip's
// TestAgent_JoinDNSNameWithSeveralAddresses proves the same through a DNS
// server, without root.
func TestCompose_ClusterFormsThroughTheAlias(t *testing.T) {
	b := needBinary(t)
	if os.Geteuid() != 0 {
		ciRequired(t, "not root: /etc/hosts cannot be edited")
	}
	docs := loadYAML(t, filepath.Join(repoRoot, "deploy", "compose.yaml"))
	services := get(docs[0], "services")

	// The pki service, on a folder of ours, "raftplane" being the binary.
	pki := t.TempDir()
	bindir := t.TempDir()
	if err := os.Symlink(b, filepath.Join(bindir, "raftplane")); err != nil {
		t.Fatal(err)
	}
	cmd := list(services, "pki", "command")
	if len(cmd) != 1 || !slices.Equal(list(services, "pki", "entrypoint"), []any{"/bin/sh", "-ec"}) {
		t.Fatalf("pki: entrypoint %v command %v: want a /bin/sh -ec script", list(services, "pki", "entrypoint"), cmd)
	}
	script := strings.ReplaceAll(strings.ReplaceAll(cmd[0].(string), "$$", "$"), "/pki", pki)
	for range 2 { // the second run must change nothing
		sh := exec.Command("/bin/sh", "-ec", script)
		sh.Env = append(os.Environ(), "PATH="+bindir+":"+os.Getenv("PATH"))
		if out, err := sh.CombinedOutput(); err != nil {
			t.Fatalf("the pki script: %v\n%s", err, out)
		}
	}
	gk, err := os.ReadFile(filepath.Join(pki, "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(gk))); err != nil || len(k) != 32 {
		t.Fatalf("gossip.key %q: %d bytes, %v", gk, len(k), err)
	}
	ak, err := os.ReadFile(filepath.Join(pki, "api.key"))
	if err != nil || !regexp.MustCompile(`^[0-9a-f]{64}$`).Match(ak) {
		t.Fatalf("api.key %q: %v", ak, err)
	}

	// The nodes, each on its loopback address.
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	port := commonTCPUDPPort(t, ips)
	alias := fmt.Sprintf("raftplane-peers-%d", os.Getpid()) // no dot: /etc/hosts, not a DNS server
	addHosts(t, alias, ips)
	if addrs, err := net.LookupHost(alias); err != nil || len(addrs) != len(ips) {
		t.Fatalf("%s resolves to %v (%v), want %v", alias, addrs, err, ips)
	}
	var nodes []*node
	for i, ip := range ips {
		name := fmt.Sprintf("node%d", i+1)
		n := newNode(t, name)
		n.key = string(ak)
		n.http = net.JoinHostPort(ip, strconv.Itoa(testnetPort(t)))
		n.gossip = net.JoinHostPort(ip, strconv.Itoa(port))
		n.raft = net.JoinHostPort(ip, strconv.Itoa(testnetPort(t)))
		var args []string
		for _, a := range list(services, name, "command") {
			s := a.(string)
			switch {
			case s == "0.0.0.0:5000":
				s = n.http
			case s == "0.0.0.0:7000":
				s = n.raft
			case s == "0.0.0.0:7946":
				s = n.gossip
			case s == "raftplane-peers:7946":
				s = net.JoinHostPort(alias, strconv.Itoa(port))
			case strings.HasPrefix(s, "172.28.0.1"):
				s = "127.0.0." + strings.TrimPrefix(s, "172.28.0.1")
			case strings.HasPrefix(s, "/pki/"):
				s = filepath.Join(pki, strings.TrimPrefix(s, "/pki/"))
			}
			args = append(args, s)
		}
		// The image's ENV RAFTPLANE_DATA=/data, here a folder of ours.
		n.startRaw(t, b, append(args, "-data", n.data)...)
		nodes = append(nodes, n)
		if i == 0 {
			n.waitLeader(t)
		}
	}
	for _, n := range nodes {
		ms := n.waitVoters(t, 3)
		t.Logf("%s sees %+v", n.name, ms)
	}
	st, err := nodes[2].status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Node.PeerTLS {
		t.Error("the Raft port runs without the peer TLS the compose file configures")
	}
	if _, err := send(nodes[2], "red", "through the alias"); err != nil {
		t.Fatal(err)
	}
}

// commonTCPUDPPort returns a port free for TCP and UDP on every ip a
// moment ago.
func commonTCPUDPPort(t *testing.T, ips []string) int {
	t.Helper()
	for range 100 {
		p := testnetPort(t)
		ok := true
		for _, ip := range ips {
			a := net.JoinHostPort(ip, strconv.Itoa(p))
			l, err1 := net.Listen("tcp", a)
			u, err2 := net.ListenPacket("udp", a)
			if l != nil {
				l.Close()
			}
			if u != nil {
				u.Close()
			}
			if err1 != nil || err2 != nil {
				ok = false
				break
			}
		}
		if ok {
			return p
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

func testnetPort(t *testing.T) int {
	_, p, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// addHosts appends one line per ip for name to /etc/hosts and restores
// the file's exact content when the test ends, passed or failed.
func addHosts(t *testing.T, name string, ips []string) {
	t.Helper()
	const path = "/etc/hosts"
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var written []byte // what this test wrote
	t.Cleanup(func() {
		// Rewrite in place (the file may be a bind mount: no rename),
		// only our lines removed, in case someone else changed it since.
		now, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("reading %s to restore it: %v", path, err)
			return
		}
		if bytes.Equal(now, written) {
			if err := os.WriteFile(path, orig, 0o644); err != nil {
				t.Errorf("restoring %s: %v (remove the lines naming %s by hand)", path, err, name)
			}
			return
		}
		var kept [][]byte
		for _, l := range bytes.SplitAfter(now, []byte("\n")) {
			if !bytes.Contains(l, []byte(" "+name+" # raftplane deploy test")) {
				kept = append(kept, l)
			}
		}
		if err := os.WriteFile(path, bytes.Join(kept, nil), 0o644); err != nil {
			t.Errorf("restoring %s: %v (remove the lines naming %s by hand)", path, err, name)
		}
	})
	add := append([]byte(nil), orig...)
	if len(add) > 0 && add[len(add)-1] != '\n' {
		add = append(add, '\n')
	}
	for _, ip := range ips {
		add = append(add, fmt.Sprintf("%s %s # raftplane deploy test\n", ip, name)...)
	}
	written = add
	if err := os.WriteFile(path, add, 0o644); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
}
