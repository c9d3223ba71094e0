package main

import (
	"io"
	"strings"
	"testing"
)

// ssSample is `ss -tinpH` output as iproute2 6.1 prints it: a socket line,
// then its indented TCP info (bytes_sent is left out while 0).
const ssSample = `ESTAB 0      0      127.0.0.1:41000 127.0.0.1:7001 users:(("raftplane",pid=101,fd=12))
	 cubic wscale:7,7 rto:204 rtt:0.05/0.02 mss:32768 bytes_sent:5000 bytes_acked:5001 bytes_received:300 segs_out:10
ESTAB 0      0      127.0.0.1:7001 127.0.0.1:41000 users:(("raftplane",pid=102,fd=9))
	 cubic wscale:7,7 rto:204 rtt:0.05/0.02 mss:32768 bytes_sent:300 bytes_acked:301 bytes_received:5000 segs_out:8
LISTEN 0      4096   127.0.0.1:7001 0.0.0.0:* users:(("raftplane",pid=102,fd=3))
ESTAB 0      0      [::1]:5555 [::1]:41001
	 cubic bytes_sent:99
ESTAB 0      0      127.0.0.1:50000 127.0.0.1:8080 users:(("curl",pid=7,fd=3))
	 cubic bytes_received:1234
`

func TestParseSS(t *testing.T) {
	got := parseSS(ssSample)
	if len(got) != 3 {
		t.Fatalf("%d sockets, want 3 (ESTAB with a pid): %+v", len(got), got)
	}
	want := []sockStat{
		{pid: 101, local: "127.0.0.1:41000", peer: "127.0.0.1:7001", localPort: 41000, peerPt: 7001, sent: 5000, received: 300},
		{pid: 102, local: "127.0.0.1:7001", peer: "127.0.0.1:41000", localPort: 7001, peerPt: 41000, sent: 300, received: 5000},
		{pid: 7, local: "127.0.0.1:50000", peer: "127.0.0.1:8080", localPort: 50000, peerPt: 8080, sent: 0, received: 1234},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("socket %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if addrPort("[::1]:5555") != 5555 || addrPort("nonsense") != -1 {
		t.Error("addrPort")
	}
}

func TestSockTracker(t *testing.T) {
	tr := newSockTracker()
	tr.observe(map[string]sockStat{
		"101 a b": {pid: 101, sent: 1000, received: 10},
		"102 b a": {pid: 102, sent: 10, received: 1000},
		"103 c d": {pid: 103, sent: 7, received: 7},
	})
	tr.observe(map[string]sockStat{ // c d closes after this sample; e f opens
		"101 a b": {pid: 101, sent: 3000, received: 30},
		"102 b a": {pid: 102, sent: 30, received: 3000},
		"103 c d": {pid: 103, sent: 107, received: 57},
		"101 e f": {pid: 101, sent: 100, received: 1},
	})
	tr.observe(map[string]sockStat{
		"101 a b": {pid: 101, sent: 6000, received: 60},
		"102 b a": {pid: 102, sent: 60, received: 6000},
		"101 e f": {pid: 101, sent: 500, received: 5},
	})
	sent, recv, closed := tr.delta()
	if sent[101] != 5500 || recv[101] != 55 || sent[102] != 50 || recv[102] != 5000 || sent[103] != 100 || recv[103] != 50 || closed != 1 {
		t.Fatalf("sent %v recv %v closed %d", sent, recv, closed)
	}
}

func TestParseProcIO(t *testing.T) {
	v, err := parseProcIO("rchar: 6976\nwchar: 120\nsyscr: 10\nsyscw: 2\nread_bytes: 0\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n")
	if err != nil || v != (procIO{rchar: 6976, wchar: 120, writeBytes: 4096}) {
		t.Fatalf("%+v %v", v, err)
	}
	if _, err := parseProcIO("rchar: 1\n"); err == nil {
		t.Error("missing fields: no error")
	}
	if _, err := parseProcIO("rchar: x\nwchar: 1\nwrite_bytes: 1\n"); err == nil {
		t.Error("bad number: no error")
	}
}

func TestParseSysCPU(t *testing.T) {
	busy, total, cpus, err := parseSysCPU("cpu  100 5 50 800 40 1 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\ncpu1 50 3 25 400 20 0 1 0 0 0\nintr 1\n")
	if err != nil || busy != 158 || total != 998 || cpus != 2 {
		t.Fatalf("busy %d total %d cpus %d err %v", busy, total, cpus, err)
	}
	if _, _, _, err := parseSysCPU("intr 1\n"); err == nil {
		t.Error("no cpu line: no error")
	}
}

func TestScaleFlags(t *testing.T) {
	c, err := parseFlags([]string{"-scenario", "scale", "-nodes", "9"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.nodes != 9 || len(c.rates) != 1 || c.rates[0] != 1000 {
		t.Fatalf("nodes %d rates %v", c.nodes, c.rates)
	}
	if _, err := parseFlags([]string{"-scenario", "scale", "-targets", "http://a"}, io.Discard); err == nil || !strings.Contains(err.Error(), "own cluster") {
		t.Fatalf("-targets: %v", err)
	}
	if _, err := parseFlags([]string{"-scenario", "scale", "-rate", "100,200"}, io.Discard); err == nil {
		t.Fatal("a sweep: no error")
	}
}
