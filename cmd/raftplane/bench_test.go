package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftplane/raftplane/client"
)

// benchNode starts one embedded-default node (fsync on) for a benchmark.
func benchNode(b *testing.B) string {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	args := []string{"-data", b.TempDir(), "-http", "127.0.0.1:0", "-raft", "127.0.0.1:0", "-gossip", "127.0.0.1:" + freePortB(b), "-log-level", "error"}
	go func() { done <- run(ctx, args, discard{}, func(a string) { ready <- a }) }()
	select {
	case a := <-ready:
		b.Cleanup(func() { cancel(); <-done })
		return "http://" + a
	case err := <-done:
		cancel()
		b.Fatalf("run: %v", err)
	}
	return ""
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func freePortB(b *testing.B) string {
	b.Helper()
	return freePortTB(b)
}

// BenchmarkNode_InvokeRoundTrip measures one client invoking SendToGroup to a
// group it is in, one call at a time: commit (fsync) + apply + delivery.
func BenchmarkNode_InvokeRoundTrip(b *testing.B) {
	base := benchNode(b)
	ctx := context.Background()
	c, err := client.Dial(ctx, client.Config{URL: base + "/hubs/bench?user=u"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.InvokeCursor(ctx, "JoinGroup", "g"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.InvokeCursor(ctx, "SendToGroup", "g", "m", i); err != nil {
			b.Fatal(err)
		}
		<-c.Messages()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkNode_ConcurrentPublishers measures committed publishes per second
// with 64 connections invoking Broadcast concurrently (no subscribers but
// the publishers themselves, whose deliveries are drained).
func BenchmarkNode_ConcurrentPublishers(b *testing.B) {
	base := benchNode(b)
	ctx := context.Background()
	const conns = 64
	cs := make([]*client.Conn, conns)
	for i := range cs {
		c, err := client.Dial(ctx, client.Config{URL: fmt.Sprintf("%s/hubs/bench%d?user=u%d", base, i, i)})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		go func() {
			for range c.Messages() {
			}
		}()
		cs[i] = c
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	done := make(chan error, conns)
	for i := range cs {
		go func(c *client.Conn) {
			for next.Add(1) <= int64(b.N) {
				if _, err := c.InvokeCursor(ctx, "Broadcast", "m", 1); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}(cs[i])
	}
	for range cs {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
