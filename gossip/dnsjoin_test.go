package gossip

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// commonPort returns a port that was free, for TCP and UDP, on every one
// of ips a moment ago (memberlist listens on both).
func commonPort(t *testing.T, ips ...string) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		free := true
		for _, ip := range ips {
			addr := net.JoinHostPort(ip, strconv.Itoa(port))
			tl, err1 := net.Listen("tcp", addr)
			ul, err2 := net.ListenPacket("udp", addr)
			if tl != nil {
				tl.Close()
			}
			if ul != nil {
				ul.Close()
			}
			if err1 != nil || err2 != nil {
				free = false
				break
			}
		}
		if free {
			return port
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

// dnsServer answers, over TCP, A queries (and the ANY queries memberlist
// sends) for name with addrs, and NXDOMAIN for anything else. It returns a
// resolv.conf that names it, and counts the queries for name.
func dnsServer(t *testing.T, name string, addrs ...string) (resolvConf string, queries *atomic.Int64) {
	t.Helper()
	queries = new(atomic.Int64)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) != 1 || r.Question[0].Name != dns.Fqdn(name) {
			m.Rcode = dns.RcodeNameError
			_ = w.WriteMsg(m)
			return
		}
		queries.Add(1)
		if q := r.Question[0].Qtype; q == dns.TypeA || q == dns.TypeANY {
			for _, a := range addrs {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
					A:   net.ParseIP(a),
				})
			}
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{Listener: ln, Net: "tcp", Handler: h}
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("dns server shutdown: %v", err)
		}
		<-served
	})
	resolvConf = filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("nameserver "+ln.Addr().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return resolvConf, queries
}

// TestAgent_JoinDNSNameWithSeveralAddresses: a seed given as a DNS name
// that resolves to several addresses (a Kubernetes headless Service, a
// round robin) is joined through every address that answers: three agents
// that know nothing of each other, on 127.0.0.1-3 and one port, are all
// found through one name, whose answer also holds an address where nothing
// listens and the joiner's own. The name is served by a real DNS server
// (over TCP, as memberlist asks first), named by DNSConfigPath: no root,
// no /etc/hosts.
func TestAgent_JoinDNSNameWithSeveralAddresses(t *testing.T) {
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}
	for _, ip := range ips[1:] {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Skipf("loopback address %s unusable here: %v", ip, err)
		}
		l.Close()
	}
	port := commonPort(t, ips...)
	const name = "peers.raftplane.test"
	// 127.0.0.5: listed, nobody there.
	resolvConf, queries := dnsServer(t, name, "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")

	var peers []*Agent
	for i, ip := range ips[:3] {
		cfg := testConfig(t, fmt.Sprintf("peer-%d", i+1))
		cfg.BindAddr = net.JoinHostPort(ip, strconv.Itoa(port))
		peers = append(peers, startAgent(t, cfg))
	}
	cfg := testConfig(t, "joiner")
	cfg.BindAddr = net.JoinHostPort(ips[3], strconv.Itoa(port))
	cfg.DNSConfigPath = resolvConf
	joiner := startAgent(t, cfg)
	joiner.Join([]string{net.JoinHostPort(name, strconv.Itoa(port))})
	waitClosed(t, joiner.Joined(), waitShort, "the joiner joined")
	if queries.Load() == 0 {
		t.Fatal("the name was never asked of the DNS server")
	}
	// The peers never met: the joiner knows each only if it joined each.
	waitFor(t, waitShort, "the joiner to see all three peers", func() error { return sees(joiner, peers...) })
	for _, p := range peers {
		waitFor(t, waitShort, p.Local().ID+" to see everyone", func() error { return sees(p, append(peers, joiner)...) })
	}
	t.Logf("joined %s:%d (%d DNS queries): %d members", name, port, queries.Load(), len(joiner.Members()))
}
