// Package reusectx holds what the proxy's reusable contexts share.
//
// A context.WithCancel or WithTimeout per request costs allocations (the
// context, its Done channel, an AfterFunc registration), and a proxy makes
// one for every request on the way through its filters. The connection
// manager (a stream's context) and the router (an upstream request's
// context) instead keep one context from request to request. Core is the
// part they share: the error once ended, a Done channel made only when
// someone waits on it, and functions registered with AfterFunc (the
// context package's children use that method instead of a goroutine
// watching Done). Each owner adds its own fields (parent, deadline,
// whether it may be reused) under Core's mutex.
package reusectx

import "sync"

// Core is the end state of a reusable context. Its methods named Locked
// are called with the mutex held (Lock); AfterFunc's stop function takes
// it itself. The zero Core is an open context.
type Core struct {
	mu     sync.Mutex
	done   chan struct{} // made on first use, kept while open
	err    error
	nextID uint64
	fns    []afterFunc // run once when the context ends
}

type afterFunc struct {
	id uint64
	f  func()
}

// Lock and Unlock guard the Core and the owner's fields.
func (c *Core) Lock()   { c.mu.Lock() }
func (c *Core) Unlock() { c.mu.Unlock() }

// DoneLocked returns the Done channel, made on first use (closed already
// when the context has ended).
func (c *Core) DoneLocked() chan struct{} {
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

// ErrLocked returns the error the context ended with, nil while open.
func (c *Core) ErrLocked() error { return c.err }

// IdleLocked reports whether the context is open with no function
// registered.
func (c *Core) IdleLocked() bool { return c.err == nil && len(c.fns) == 0 }

// AfterFuncLocked arranges for f to run in its own goroutine once the
// context ends (at once if it has), as context.AfterFunc does; stop
// reports whether it unregistered f before it ran. The mutex stays held.
func (c *Core) AfterFuncLocked(f func()) (stop func() bool) {
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	c.nextID++
	id := c.nextID
	c.fns = append(c.fns, afterFunc{id: id, f: f})
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

// EndLocked ends the context with err unless it has ended, and reports
// whether this call ended it. The registered functions are returned, to
// be started once the mutex is released.
func (c *Core) EndLocked(err error) (Funcs, bool) {
	if c.err != nil {
		return nil, false
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	fns := c.fns
	c.fns = nil
	return fns, true
}

// ResetLocked opens an ended context again for its next use. Functions
// still registered are dropped: they belonged to a use that is over. A
// Done channel that was closed is replaced on its next use; an open one
// is kept.
func (c *Core) ResetLocked() {
	if c.err != nil {
		c.done = nil
	}
	c.err = nil
	clear(c.fns)
	c.fns = c.fns[:0]
}

// Funcs are the functions registered on a context that ended.
type Funcs []afterFunc

// Start runs each function in its own goroutine.
func (fs Funcs) Start() {
	for _, a := range fs {
		go a.f()
	}
}
