// Package testnet gives tests (and the load tool) loopback ports that no
// other caller in the same process is given and that no outgoing
// connection of any process will take.
//
// A port picked by listening on :0 and closing is free at that moment, but
// stays free only until someone binds it: the nodes of one test cluster are
// usually given their ports before any of them binds one (CI saw one node's
// gossip port handed out as another's Raft port), and the kernel hands the
// same range out to every process's outgoing connections (CI saw a node's
// Raft port taken by another test package in the moment between). So ports
// are drawn at random from below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), where connect never binds, checked free
// for TCP and UDP (gossip listens on both), and never handed out twice by
// one process. Test binaries run in parallel can still draw the same port,
// rarely: each draws from some twenty thousand.
package testnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is the lowest port drawn: below it sit the well-known and the
// commonly configured ports.
const lowest = 10000

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Port returns a loopback TCP port that was free a moment ago and that this
// process has not handed out before.
func Port(t testing.TB) int {
	t.Helper()
	p, err := Free()
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	return p
}

// Addr returns "127.0.0.1:<Port>".
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(Port(t)))
}

// Free is Port for callers without a testing.TB.
func Free() (int, error) {
	hi := ephemeralLow() - 1
	for range 1000 {
		var p int
		if hi > lowest+1000 {
			p = lowest + rand.IntN(hi-lowest+1)
			if !bindable(p) {
				continue
			}
		} else { // no room below the ephemeral range: let the kernel pick
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, fmt.Errorf("listen 127.0.0.1:0: %w", err)
			}
			p = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		handedOut.Lock()
		fresh := !handedOut.ports[p]
		handedOut.ports[p] = true
		handedOut.Unlock()
		if fresh {
			return p, nil
		}
	}
	return 0, errors.New("no free port in 1000 tries")
}

// bindable reports whether 127.0.0.1:p can be bound for TCP and UDP now.
func bindable(p int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range, or 0
// where it cannot be read (then Free lets the kernel pick).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}
