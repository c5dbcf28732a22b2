package hcm

import (
	"context"
	"time"

	"github.com/remora-mesh/remora/internal/reusectx"
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

	reusectx.Core        // its mutex guards used and hook too
	used          bool   // seen outside the connection manager
	hook          func() // the manager's own: run by cancel, on its goroutine
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
	c.Lock()
	c.used = true
	c.Unlock()
	return c.parent.Deadline()
}

// Done implements context.Context.
func (c *streamCtx) Done() <-chan struct{} {
	c.Lock()
	defer c.Unlock()
	c.used = true
	return c.DoneLocked()
}

// Err implements context.Context.
func (c *streamCtx) Err() error {
	c.Lock()
	defer c.Unlock()
	c.used = true
	return c.ErrLocked()
}

// Value implements context.Context.
func (c *streamCtx) Value(key any) any { return c.parent.Value(key) }

// AfterFunc arranges for f to run in its own goroutine once c ends, as
// context.AfterFunc does; stop reports whether it unregistered f before
// it ran.
func (c *streamCtx) AfterFunc(f func()) (stop func() bool) {
	c.Lock()
	defer c.Unlock()
	c.used = true
	return c.AfterFuncLocked(f)
}

// internalDone and internalErr are Done and Err for the connection
// manager itself: they do not make c used.
func (c *streamCtx) internalDone() <-chan struct{} {
	c.Lock()
	defer c.Unlock()
	return c.DoneLocked()
}

func (c *streamCtx) internalErr() error {
	c.Lock()
	defer c.Unlock()
	return c.ErrLocked()
}

// setHook makes cancel call f synchronously (nil: nothing); unlike
// AfterFunc it does not make c used. It reports whether c has ended
// already, in which case cancel will not call f.
func (c *streamCtx) setHook(f func()) (ended bool) {
	c.Lock()
	defer c.Unlock()
	c.hook = f
	return c.ErrLocked() != nil
}

// cancel ends c (context.Canceled) unless it has ended.
func (c *streamCtx) cancel() {
	c.Lock()
	fns, ended := c.EndLocked(context.Canceled)
	hook := c.hook
	if ended {
		c.hook = nil
	}
	c.Unlock()
	if !ended {
		return
	}
	fns.Start()
	if hook != nil {
		hook()
	}
}

// release ends the stream that used c. It reports whether c may serve the
// next stream: it was neither ended nor seen outside the connection
// manager. Otherwise it is ended now and must be replaced.
func (c *streamCtx) release() bool {
	c.Lock()
	keep := !c.used && c.IdleLocked()
	c.Unlock()
	if !keep {
		c.cancel()
	}
	return keep
}
