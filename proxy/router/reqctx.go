package router

import (
	"context"
	"sync"
	"time"
)

// reqCtx is the context of a Filter's upstream request: it ends when the
// route timeout strikes (DeadlineExceeded) or when the stream is destroyed
// before the upstream exchange finished (Canceled). It replaces a
// context.WithTimeout plus a context.AfterFunc per request: the Filter
// keeps one reqCtx and one timer for every stream it serves, its Done
// channel is made only when someone waits on it (a request queueing for a
// connection) and is kept for the next request while it stays open.
//
// Values come from the stream's context. The stream's own cancellation
// (the downstream went away) reaches reqCtx through the Filter's
// OnDestroy, which the connection manager calls as soon as it sees it.
//
// A reqCtx is safe for concurrent use. It must not be used after the
// request it was handed to has ended: the Filter reuses it.
type reqCtx struct {
	parent context.Context

	mu       sync.Mutex
	deadline time.Time // zero: no route timeout
	done     chan struct{}
	err      error
	nextID   uint64
	fns      []afterFunc // run once when the context ends
}

type afterFunc struct {
	id uint64
	f  func()
}

var (
	_ context.Context = (*reqCtx)(nil)
	// context.AfterFunc and the context package's children use the method
	// instead of a goroutine watching Done.
	_ interface {
		AfterFunc(func()) func() bool
	} = (*reqCtx)(nil)
)

// reset readies c for a new request under parent, with the given deadline
// (zero for none). Callbacks still registered by the last request are
// dropped: they belonged to an exchange that is over.
func (c *reqCtx) reset(parent context.Context, deadline time.Time) {
	c.mu.Lock()
	c.parent, c.deadline = parent, deadline
	if c.err != nil {
		c.done = nil // closed: the next Done makes a new one
	}
	c.err = nil
	clear(c.fns)
	c.fns = c.fns[:0]
	c.mu.Unlock()
}

// Deadline implements context.Context.
func (c *reqCtx) Deadline() (time.Time, bool) {
	c.mu.Lock()
	d, parent := c.deadline, c.parent
	c.mu.Unlock()
	pd, ok := parent.Deadline()
	if d.IsZero() || (ok && pd.Before(d)) {
		return pd, ok
	}
	return d, true
}

// Done implements context.Context.
func (c *reqCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

// Err implements context.Context.
func (c *reqCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Value implements context.Context.
func (c *reqCtx) Value(key any) any {
	c.mu.Lock()
	parent := c.parent
	c.mu.Unlock()
	return parent.Value(key)
}

// AfterFunc arranges for f to run in its own goroutine once c ends, as
// context.AfterFunc does; stop reports whether it unregistered f before
// it ran.
func (c *reqCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.nextID++
	id := c.nextID
	c.fns = append(c.fns, afterFunc{id: id, f: f})
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, a := range c.fns {
			if a.id == id {
				n := len(c.fns)
				copy(c.fns[i:], c.fns[i+1:])
				c.fns[n-1] = afterFunc{}
				c.fns = c.fns[:n-1]
				return true
			}
		}
		return false
	}
}

// cancel ends c with err unless it has ended; it reports whether this
// call ended it. expired makes a deadline error conditional on the
// deadline having passed, so that a late firing of the previous request's
// timer does nothing.
func (c *reqCtx) cancel(err error, expired bool) bool {
	c.mu.Lock()
	if c.err != nil || (expired && (c.deadline.IsZero() || time.Now().Before(c.deadline))) {
		c.mu.Unlock()
		return false
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	var run []afterFunc
	if len(c.fns) > 0 {
		run = append(run, c.fns...)
		clear(c.fns)
		c.fns = c.fns[:0]
	}
	c.mu.Unlock()
	for _, a := range run {
		go a.f()
	}
	return true
}

func (c *reqCtx) String() string { return "router.reqCtx" }
