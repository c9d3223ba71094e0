package memnet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// pair dials b's listener from a and returns both ends of the
// connection, closed at the end of the test.
func pair(t testing.TB, a, b *Host) (client, server net.Conn) {
	t.Helper()
	ln, err := b.Listen(b.String() + ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = a.Dial(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestConn_Conformance runs x/net's net.Conn conformance suite (what
// net.Pipe and TCP pass: deadlines, concurrent use, close) on a
// connection between two hosts, and on one within a host.
func TestConn_Conformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		buf  int
	}{{"default buffer", DefaultBufferSize}, {"small buffer", 64}} { // the suite's echo needs room for 13 bytes
		t.Run(tc.name, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				nw := New(BufferSize(tc.buf))
				a, b := nw.Host("10.0.0.1"), nw.Host("10.0.0.2")
				ln, err := b.Listen("10.0.0.2:7000")
				if err != nil {
					return nil, nil, nil, err
				}
				defer ln.Close()
				if c1, err = a.Dial(context.Background(), "10.0.0.2:7000"); err != nil {
					return nil, nil, nil, err
				}
				if c2, err = ln.Accept(); err != nil {
					return nil, nil, nil, err
				}
				return c1, c2, func() { c1.Close(); c2.Close() }, nil
			})
		})
	}
}

// TestConn_CloseGivesEOF: what was written before Close is read, then EOF;
// writes to a closed peer fail; the network forgets the connection.
func TestConn_CloseGivesEOF(t *testing.T) {
	nw := New()
	c, s := pair(t, nw.Host("10.0.0.1"), nw.Host("10.0.0.2"))
	if nw.Conns() != 1 {
		t.Fatalf("Conns = %d, want 1", nw.Conns())
	}
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "bye" {
		t.Fatalf("ReadAll = %q, %v; want \"bye\", nil", got, err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write to a closed peer: %v, want EPIPE", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
	if nw.Conns() != 0 {
		t.Fatalf("Conns = %d after Close, want 0", nw.Conns())
	}
}

// TestConn_WriteBlocksWhenFull: a writer whose peer does not read blocks
// once the buffer is full, as on TCP, until the reader makes room or the
// deadline passes.
func TestConn_WriteBlocksWhenFull(t *testing.T) {
	nw := New(BufferSize(4))
	c, s := pair(t, nw.Host("10.0.0.1"), nw.Host("10.0.0.2"))
	if n, err := c.Write([]byte("abcd")); n != 4 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if err := c.SetWriteDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err := c.Write([]byte("ef"))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Write past the deadline: %v, want a net.Error with Timeout()", err)
	}
	if err := c.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() { // owned by the test: ends once the reader made room
		_, err := c.Write([]byte("ef"))
		wrote <- err
	}()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "abcdef" {
		t.Fatalf("ReadFull = %q, %v", buf, err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("the blocked Write: %v", err)
	}
}

// TestPartition: a partition refuses dials both ways between its sides at
// once and cuts the connections open between them, a read in progress
// included, on both ends; other pairs are untouched; Heal lets new dials
// through while the cut connections stay cut.
func TestPartition(t *testing.T) {
	nw := New()
	a, b, c := nw.Host("10.0.0.1"), nw.Host("10.0.0.2"), nw.Host("10.0.0.3")
	ab, ba := pair(t, a, b)
	ac, ca := pair(t, a, c)
	lnB, err := b.Listen("10.0.0.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer lnB.Close()
	lnA, err := a.Listen(":7000") // unspecified: the host's own address
	if err != nil {
		t.Fatal(err)
	}
	defer lnA.Close()

	readErr := make(chan error, 1)
	go func() { // owned by the test: ends when the partition cuts ab
		_, err := ab.Read(make([]byte, 1))
		readErr <- err
	}()
	if err := nw.Partition("10.0.0.1", "10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; !errors.Is(err, ErrPartitioned) {
		t.Fatalf("a read in progress across the partition: %v, want ErrPartitioned", err)
	}
	if _, err := ba.Write([]byte("x")); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("a write across the partition: %v, want ErrPartitioned", err)
	}
	for _, d := range []struct {
		from *Host
		to   string
	}{{a, "10.0.0.2:7000"}, {b, "10.0.0.1:7000"}} {
		if _, err := d.from.Dial(context.Background(), d.to); !errors.Is(err, ErrPartitioned) {
			t.Fatalf("dial %s from %s: %v, want ErrPartitioned", d.to, d.from, err)
		}
	}
	if _, err := ac.Write([]byte("ok")); err != nil {
		t.Fatalf("a-c write during the a|b partition: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(ca, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("a-c read during the a|b partition: %q, %v", buf, err)
	}

	nw.Heal()
	if _, err := ab.Write([]byte("x")); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("a cut connection after Heal: %v, want it still cut", err)
	}
	conn, err := a.Dial(context.Background(), "10.0.0.2:7000")
	if err != nil {
		t.Fatalf("dial after Heal: %v", err)
	}
	conn.Close()
}

// TestIsolate: an isolated host reaches no other host, one that appears
// later too, and still reaches itself.
func TestIsolate(t *testing.T) {
	nw := New()
	a, b := nw.Host("10.0.0.1"), nw.Host("10.0.0.2")
	ab, _ := pair(t, a, b)
	if err := nw.Isolate("10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := ab.Write([]byte("x")); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("write from the isolated host: %v, want ErrPartitioned", err)
	}
	late := nw.Host("10.0.0.9")
	ln, err := late.Listen("10.0.0.9:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := a.Dial(context.Background(), "10.0.0.9:7000"); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("dial from the isolated host to a new one: %v, want ErrPartitioned", err)
	}
	self, _ := pair(t, a, a)
	if _, err := self.Write([]byte("x")); err != nil {
		t.Fatalf("the isolated host to itself: %v", err)
	}
	nw.Heal()
	c, err := a.Dial(context.Background(), "10.0.0.9:7000")
	if err != nil {
		t.Fatalf("dial after Heal: %v", err)
	}
	c.Close()
}

// TestBadInput: bad addresses, ports in use, dials to nothing, a full
// backlog and closed listeners fail with errors that say so.
func TestBadInput(t *testing.T) {
	nw := New(Backlog(1))
	a := nw.Host("10.0.0.1")
	ln, err := a.Listen("10.0.0.1:7000")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		name string
		err  func() error
		want error
	}{
		{"host name", func() error { _, err := nw.Host("node1").Listen("node1:1"); return err }, nil},
		{"unspecified host", func() error { _, err := nw.Host("0.0.0.0").Dial(ctx, "10.0.0.1:7000"); return err }, nil},
		{"another host's address", func() error { _, err := a.Listen("10.0.0.2:7000"); return err }, syscall.EADDRNOTAVAIL},
		{"port in use", func() error { _, err := a.Listen("10.0.0.1:7000"); return err }, syscall.EADDRINUSE},
		{"no port", func() error { _, err := a.Listen("10.0.0.1"); return err }, nil},
		{"dial a name", func() error { _, err := a.Dial(ctx, "example.com:80"); return err }, nil},
		{"dial nothing", func() error { _, err := a.Dial(ctx, "10.0.0.1:7001"); return err }, syscall.ECONNREFUSED},
		{"partition a name", func() error { return nw.Partition("a", "10.0.0.1") }, nil},
		{"isolate a name", func() error { return nw.Isolate("a") }, nil},
	}
	for _, c := range cases {
		err := c.err()
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want an error (%v)", c.name, err, c.want)
		}
	}
	first, err := a.Dial(ctx, "10.0.0.1:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := a.Dial(ctx, "10.0.0.1:7000"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial beyond the backlog: %v, want ECONNREFUSED", err)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := first.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("a connection left in a closed listener's backlog reads %d, %v; want EOF", n, err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	if err := ln.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.Dial(cancelled, "10.0.0.1:7000"); !errors.Is(err, context.Canceled) {
		t.Errorf("dial with an ended context: %v", err)
	}
	if nw.Conns() != 0 {
		t.Errorf("Conns = %d, want 0", nw.Conns())
	}
}

// TestListen_PortZero: port 0 gets a port of its own, reported by Addr.
func TestListen_PortZero(t *testing.T) {
	nw := New()
	a := nw.Host("10.0.0.1")
	seen := map[string]bool{}
	for range 3 {
		ln, err := a.Listen("10.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addr := ln.Addr().String()
		if seen[addr] || addr == "10.0.0.1:0" {
			t.Fatalf("port 0 gave %s twice or not at all", addr)
		}
		seen[addr] = true
	}
}

// FuzzConn: whatever the buffer size and the sizes of the writes and
// reads, the reader gets the bytes written, in order, then EOF.
func FuzzConn(f *testing.F) {
	f.Add([]byte("hello, world"), uint8(1), uint8(3), uint8(2))
	f.Add(bytes.Repeat([]byte{0xff}, 300), uint8(7), uint8(255), uint8(1))
	f.Add([]byte{}, uint8(0), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, bufSize, writeSize, readSize uint8) {
		nw := New(BufferSize(int(bufSize)))
		c, s := pair(t, nw.Host("10.0.0.1"), nw.Host("10.0.0.2"))
		wrote := make(chan error, 1)
		go func() { // owned by this run: ends when data is written
			w := max(int(writeSize), 1)
			rest := data
			for len(rest) > 0 {
				n := min(w, len(rest))
				if _, err := c.Write(rest[:n]); err != nil {
					wrote <- err
					return
				}
				rest = rest[n:]
			}
			wrote <- c.Close()
		}()
		var got []byte
		buf := make([]byte, max(int(readSize), 1))
		for {
			n, err := s.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, wrote %d, or they differ", len(got), len(data))
		}
	})
}
