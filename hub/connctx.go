package hub

import (
	"context"
	"sync"
	"time"
)

// connContext is a connection's context (conn.ctx): it ends when the
// connection ends, and contexts derived from it (an invocation's timeout,
// an upstream call) end with it.
//
// Why not context.WithCancel: a cancelCtx keeps a map of the contexts
// derived from it, made at the first one and never shrunk, so a connection
// that ran one invocation kept about 200 bytes of empty map (and the
// cancelCtx's own 90) for the rest of its life; with 10,000 idle
// connections that is 3 MB of heap, 6 MB of RSS under the collector's
// headroom. connContext implements AfterFunc, which the context package
// uses for a parent that is not its own (propagateCancel): a derived
// context registers a callback here, removed when it ends, and the list
// is dropped when empty, so an idle connection keeps this struct and,
// once something waited on it, its Done channel.
type connContext struct {
	mu    sync.Mutex
	done  chan struct{} // made by the first Done, or closed-made by cancel
	err   error
	funcs []*afterFunc // registered by AfterFunc, not yet run or stopped
}

// afterFunc is one AfterFunc registration; its pointer identifies it.
type afterFunc struct{ f func() }

// closedChan is the Done channel of a context that ended before anyone
// asked for it.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

var _ context.Context = (*connContext)(nil)

// Deadline: none (the connection ends when it ends).
func (x *connContext) Deadline() (time.Time, bool) { return time.Time{}, false }

// Value: a connection's context carries no values.
func (x *connContext) Value(any) any { return nil }

// Done returns a channel closed when the connection ends.
func (x *connContext) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		x.done = make(chan struct{})
	}
	return x.done
}

// Err returns context.Canceled once the connection has ended, else nil.
func (x *connContext) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// AfterFunc arranges for f to run on its own goroutine when the context
// ends (at once if it has), the contract context.AfterFunc has; stop
// unregisters it and reports whether it did so before f was started.
func (x *connContext) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	x.mu.Lock()
	if x.err != nil {
		x.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	x.funcs = append(x.funcs, a)
	x.mu.Unlock()
	return func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		for i, b := range x.funcs {
			if b == a {
				last := len(x.funcs) - 1
				x.funcs[i] = x.funcs[last]
				x.funcs[last] = nil
				x.funcs = x.funcs[:last]
				if len(x.funcs) == 0 {
					x.funcs = nil // an idle connection keeps no list
				}
				return true
			}
		}
		return false
	}
}

// cancel ends the context; only the first call does anything.
func (x *connContext) cancel() {
	x.mu.Lock()
	if x.err != nil {
		x.mu.Unlock()
		return
	}
	x.err = context.Canceled
	if x.done == nil {
		x.done = closedChan
	} else {
		close(x.done)
	}
	funcs := x.funcs
	x.funcs = nil
	x.mu.Unlock()
	for _, a := range funcs {
		go a.f()
	}
}
