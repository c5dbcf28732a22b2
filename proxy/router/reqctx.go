package router

import (
	"context"
	"time"

	"github.com/remora-mesh/remora/internal/reusectx"
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
	reusectx.Core // its mutex guards parent and deadline too
	parent        context.Context
	deadline      time.Time // zero: no route timeout
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
	c.Lock()
	c.parent, c.deadline = parent, deadline
	c.ResetLocked()
	c.Unlock()
}

// untilDeadline returns the time left until the route timeout, false
// when there is none or it has passed.
func (c *reqCtx) untilDeadline() (time.Duration, bool) {
	c.Lock()
	defer c.Unlock()
	if c.deadline.IsZero() || c.ErrLocked() != nil {
		return 0, false
	}
	left := time.Until(c.deadline)
	return left, left > 0
}

// clearDeadline ends the route timeout of a request whose exchange is
// over: a late firing of the route timer finds no deadline.
func (c *reqCtx) clearDeadline() {
	c.Lock()
	c.deadline = time.Time{}
	c.Unlock()
}

// Deadline implements context.Context.
func (c *reqCtx) Deadline() (time.Time, bool) {
	c.Lock()
	d, parent := c.deadline, c.parent
	c.Unlock()
	pd, ok := parent.Deadline()
	if d.IsZero() || (ok && pd.Before(d)) {
		return pd, ok
	}
	return d, true
}

// Done implements context.Context.
func (c *reqCtx) Done() <-chan struct{} {
	c.Lock()
	defer c.Unlock()
	return c.DoneLocked()
}

// Err implements context.Context.
func (c *reqCtx) Err() error {
	c.Lock()
	defer c.Unlock()
	return c.ErrLocked()
}

// Value implements context.Context.
func (c *reqCtx) Value(key any) any {
	c.Lock()
	parent := c.parent
	c.Unlock()
	return parent.Value(key)
}

// AfterFunc arranges for f to run in its own goroutine once c ends, as
// context.AfterFunc does; stop reports whether it unregistered f before
// it ran.
func (c *reqCtx) AfterFunc(f func()) (stop func() bool) {
	c.Lock()
	defer c.Unlock()
	return c.AfterFuncLocked(f)
}

// cancel ends c with err unless it has ended; it reports whether this
// call ended it. expired makes a deadline error conditional on the
// deadline having passed, so that a late firing of the previous request's
// timer does nothing.
func (c *reqCtx) cancel(err error, expired bool) bool {
	c.Lock()
	if expired && (c.deadline.IsZero() || time.Now().Before(c.deadline)) {
		c.Unlock()
		return false
	}
	fns, ended := c.EndLocked(err)
	c.Unlock()
	fns.Start()
	return ended
}

func (c *reqCtx) String() string { return "router.reqCtx" }
