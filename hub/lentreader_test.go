package hub

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/iotest"
)

// A lentReader is an io.Reader like any other over every shape of
// underlying reads, and holds a lent buffer only while it has unread bytes.
func TestLentReader(t *testing.T) {
	t.Parallel()
	content := make([]byte, 10_000)
	for i := range content {
		content[i] = byte(i * 7)
	}
	pool := &sync.Pool{New: func() any { b := make([]byte, 64); return &b }}
	for _, tc := range []struct {
		name string
		rd   func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"error with data", iotest.DataErrReader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &lentReader{rd: tc.rd(bytes.NewReader(content)), size: 64, bufs: pool}
			if err := iotest.TestReader(l, content); err != nil {
				t.Fatal(err)
			}
			if l.buf != nil || l.buffered() != 0 {
				t.Fatalf("holds a buffer (%d bytes unread) after the end", l.buffered())
			}
		})
	}

	// Through a small bufio, as gorilla reads it: small reads borrow, and
	// the buffer goes back once drained.
	l := &lentReader{rd: bytes.NewReader(content[:100]), size: 64, bufs: pool}
	p := make([]byte, 10)
	if n, err := l.Read(p); n != 10 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if l.buffered() != 54 {
		t.Fatalf("buffered %d after reading 10 of a 64-byte fill, want 54", l.buffered())
	}
	big := make([]byte, 64)
	if n, err := io.ReadFull(l, big[:54]); n != 54 || err != nil {
		t.Fatalf("ReadFull = %d, %v", n, err)
	}
	if l.buf != nil {
		t.Fatal("the buffer was not given back once drained")
	}
	// A read as large as the buffer goes straight through.
	if n, err := l.Read(big); n != 36 || err != nil || !bytes.Equal(big[:36], content[64:100]) {
		t.Fatalf("direct Read = %d, %v", n, err)
	}
	if l.buf != nil {
		t.Fatal("a direct read borrowed a buffer")
	}
	if _, err := l.Read(p); !errors.Is(err, io.EOF) {
		t.Fatalf("Read at the end: %v", err)
	}
}
