package hcm

import (
	"context"
	"sync"
	"time"
)

// streamCtx is the context of the streams of one HTTP/1 connection: it
// ends when the client goes away, when the connection's context ends, or
// when the stream ends. Instead of a context.WithCancel per request (two
// allocations, a third for its Done channel), a connection keeps one
// streamCtx for request after request for as long as nothing outside the
// connection manager looked at it. Once a filter or the router asked for
// its Done channel, error or deadline, or registered a callback (a child
// context), it is ended with its stream and the next request gets a new
// one, so that nobody who kept it sees it come back to life. Values come
// from the connection's context.
//
// A streamCtx is safe for concurrent use.
type streamCtx struct {
	parent context.Context

	mu     sync.Mutex
	done   chan struct{} // made on first use, kept while open
	err    error
	used   bool // seen outside the connection manager
	nextID uint64
	fns    []ctxFunc
	hook   func() // the manager's own: run by cancel, on its goroutine
}

type ctxFunc struct {
	id uint64
	f  func()
}

var (
	_ context.Context = (*streamCtx)(nil)
	// The context package's children and context.AfterFunc use the
	// method instead of a goroutine watching Done.
	_ interface {
		AfterFunc(func()) func() bool
	} = (*streamCtx)(nil)
)

// newStreamCtx returns a streamCtx under parent, ended already if parent is.
func newStreamCtx(parent context.Context) *streamCtx {
	c := &streamCtx{parent: parent}
	if parent.Err() != nil {
		c.cancel()
	}
	return c
}

// Deadline implements context.Context.
func (c *streamCtx) Deadline() (time.Time, bool) {
	c.mu.Lock()
	c.used = true
	c.mu.Unlock()
	return c.parent.Deadline()
}

// Done implements context.Context.
func (c *streamCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.used = true
	return c.doneLocked()
}

func (c *streamCtx) doneLocked() chan struct{} {
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

// Err implements context.Context.
func (c *streamCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.used = true
	return c.err
}

// Value implements context.Context.
func (c *streamCtx) Value(key any) any { return c.parent.Value(key) }

// AfterFunc arranges for f to run in its own goroutine once c ends, as
// context.AfterFunc does; stop reports whether it unregistered f before
// it ran.
func (c *streamCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	c.used = true
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.nextID++
	id := c.nextID
	c.fns = append(c.fns, ctxFunc{id: id, f: f})
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, a := range c.fns {
			if a.id == id {
				n := len(c.fns)
				copy(c.fns[i:], c.fns[i+1:])
				c.fns[n-1] = ctxFunc{}
				c.fns = c.fns[:n-1]
				return true
			}
		}
		return false
	}
}

// internalDone and internalErr are Done and Err for the connection
// manager itself: they do not make c used.
func (c *streamCtx) internalDone() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.doneLocked()
}

func (c *streamCtx) internalErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// setHook makes cancel call f synchronously (nil: nothing); unlike
// AfterFunc it does not make c used. It reports whether c has ended
// already, in which case cancel will not call f.
func (c *streamCtx) setHook(f func()) (ended bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hook = f
	return c.err != nil
}

// cancel ends c (context.Canceled) unless it has ended.
func (c *streamCtx) cancel() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = context.Canceled
	if c.done != nil {
		close(c.done)
	}
	fns, hook := c.fns, c.hook
	c.fns, c.hook = nil, nil
	c.mu.Unlock()
	for _, a := range fns {
		go a.f()
	}
	if hook != nil {
		hook()
	}
}

// release ends the stream that used c. It reports whether c may serve the
// next stream: it was neither ended nor seen outside the connection
// manager. Otherwise it is ended now and must be replaced.
func (c *streamCtx) release() bool {
	c.mu.Lock()
	keep := !c.used && c.err == nil && len(c.fns) == 0
	c.mu.Unlock()
	if !keep {
		c.cancel()
	}
	return keep
}
