package hub

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A connection's context behaves as a cancel context for what derives from
// it, and keeps nothing for derived contexts that have ended.
func TestConnContext(t *testing.T) {
	t.Parallel()
	x := &connContext{}
	if x.Err() != nil {
		t.Fatalf("Err() = %v before cancel", x.Err())
	}
	if _, ok := x.Deadline(); ok {
		t.Fatal("a connection's context has a deadline")
	}

	// Derived contexts register while they live and unregister when they end.
	a, cancelA := context.WithTimeout(x, time.Hour)
	b, cancelB := context.WithCancel(x)
	ran := make(chan struct{})
	stop := context.AfterFunc(x, func() { close(ran) })
	if n := registered(x); n != 3 {
		t.Fatalf("%d registrations, want 3", n)
	}
	cancelA()
	if !errors.Is(a.Err(), context.Canceled) {
		t.Fatalf("a.Err() = %v", a.Err())
	}
	if !stop() {
		t.Fatal("stop of a pending AfterFunc returned false")
	}
	if n := registered(x); n != 1 {
		t.Fatalf("%d registrations after two ended, want 1", n)
	}
	cancelB()
	if b.Err() == nil {
		t.Fatal("b not ended by its cancel")
	}
	x.mu.Lock()
	if x.funcs != nil {
		t.Error("the registration list is kept once empty")
	}
	x.mu.Unlock()

	// Ending the connection ends what derives from it.
	c, cancelC := context.WithTimeout(x, time.Hour)
	defer cancelC()
	d, cancelD := context.WithCancel(c)
	defer cancelD()
	ran2 := make(chan struct{})
	context.AfterFunc(x, func() { close(ran2) })
	x.cancel()
	x.cancel() // idempotent
	<-x.Done()
	<-c.Done()
	<-d.Done()
	<-ran2
	if !errors.Is(x.Err(), context.Canceled) || !errors.Is(c.Err(), context.Canceled) ||
		!errors.Is(context.Cause(d), context.Canceled) {
		t.Fatalf("Err: x %v, c %v, cause of d %v", x.Err(), c.Err(), context.Cause(d))
	}
	select {
	case <-ran:
		t.Fatal("a stopped AfterFunc ran")
	default:
	}

	// After the end: derived contexts are born ended, AfterFunc runs.
	e, cancelE := context.WithCancel(x)
	defer cancelE()
	<-e.Done()
	ran3 := make(chan struct{})
	if context.AfterFunc(x, func() { close(ran3) })() {
		t.Error("stop after the end returned true")
	}
	<-ran3
	if registered(x) != 0 {
		t.Error("registrations kept after the end")
	}

	// A context that ended before anyone asked for Done.
	y := &connContext{}
	y.cancel()
	<-y.Done()
}

func registered(x *connContext) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.funcs)
}
