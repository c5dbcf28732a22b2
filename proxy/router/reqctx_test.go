package router

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not closed", what)
	}
}

func TestReqCtx(t *testing.T) {
	parent := context.WithValue(context.Background(), ctxKey{}, "v")
	tests := []struct {
		name string
		run  func(t *testing.T, c *reqCtx)
	}{
		{"values come from the parent", func(t *testing.T, c *reqCtx) {
			if got := c.Value(ctxKey{}); got != "v" {
				t.Fatalf("Value = %v, want v", got)
			}
		}},
		{"cancel closes Done and sets Err", func(t *testing.T, c *reqCtx) {
			done := c.Done()
			if c.Err() != nil {
				t.Fatal("Err before cancel")
			}
			if !c.cancel(context.Canceled, false) {
				t.Fatal("cancel did not end the context")
			}
			waitClosed(t, done, "Done")
			if !errors.Is(c.Err(), context.Canceled) {
				t.Fatalf("Err = %v", c.Err())
			}
			if c.cancel(context.DeadlineExceeded, false) {
				t.Fatal("second cancel ended it again")
			}
			waitClosed(t, c.Done(), "Done after cancel")
		}},
		{"Done made after cancel is closed", func(t *testing.T, c *reqCtx) {
			c.cancel(context.Canceled, false)
			waitClosed(t, c.Done(), "Done")
		}},
		{"AfterFunc runs once on cancel", func(t *testing.T, c *reqCtx) {
			ran := make(chan struct{})
			c.AfterFunc(func() { close(ran) })
			c.cancel(context.Canceled, false)
			waitClosed(t, ran, "AfterFunc")
		}},
		{"AfterFunc stopped does not run", func(t *testing.T, c *reqCtx) {
			ran := make(chan struct{}, 1)
			stop1 := c.AfterFunc(func() { ran <- struct{}{} })
			other := make(chan struct{})
			c.AfterFunc(func() { close(other) })
			if !stop1() {
				t.Fatal("stop reported the function already run")
			}
			if stop1() {
				t.Fatal("second stop reported true")
			}
			c.cancel(context.Canceled, false)
			waitClosed(t, other, "the other AfterFunc")
			select {
			case <-ran:
				t.Fatal("stopped function ran")
			default:
			}
		}},
		{"AfterFunc after cancel runs at once", func(t *testing.T, c *reqCtx) {
			c.cancel(context.Canceled, false)
			ran := make(chan struct{})
			if c.AfterFunc(func() { close(ran) })() {
				t.Fatal("stop reported true after the context ended")
			}
			waitClosed(t, ran, "AfterFunc")
		}},
		{"standard children follow it", func(t *testing.T, c *reqCtx) {
			child, cancel := context.WithTimeout(c, time.Hour)
			defer cancel()
			c.cancel(context.DeadlineExceeded, false)
			waitClosed(t, child.Done(), "child Done")
			if !errors.Is(child.Err(), context.DeadlineExceeded) {
				t.Fatalf("child Err = %v", child.Err())
			}
		}},
		{"an early timer firing does nothing", func(t *testing.T, c *reqCtx) {
			c.reset(parent, time.Now().Add(time.Hour))
			if c.cancel(context.DeadlineExceeded, true) {
				t.Fatal("a firing before the deadline ended the context")
			}
			c.reset(parent, time.Time{})
			if c.cancel(context.DeadlineExceeded, true) {
				t.Fatal("a firing without a deadline ended the context")
			}
			c.reset(parent, time.Now().Add(-time.Millisecond))
			if !c.cancel(context.DeadlineExceeded, true) {
				t.Fatal("a firing past the deadline did not end the context")
			}
		}},
		{"reset reopens it and drops old callbacks", func(t *testing.T, c *reqCtx) {
			ran := make(chan struct{}, 1)
			c.AfterFunc(func() { ran <- struct{}{} })
			old := c.Done()
			c.reset(parent, time.Time{})
			if c.Done() != old {
				t.Fatal("an open Done channel was not reused")
			}
			c.cancel(context.Canceled, false)
			waitClosed(t, old, "Done")
			c.reset(parent, time.Time{})
			if c.Err() != nil {
				t.Fatalf("Err after reset = %v", c.Err())
			}
			select {
			case <-c.Done():
				t.Fatal("Done closed after reset")
			default:
			}
			select {
			case <-ran:
				t.Fatal("a callback of the previous request ran")
			default:
			}
		}},
		{"deadline is the earlier of its own and the parent's", func(t *testing.T, c *reqCtx) {
			if _, ok := c.Deadline(); ok {
				t.Fatal("deadline without one")
			}
			d := time.Now().Add(time.Minute)
			c.reset(parent, d)
			if got, ok := c.Deadline(); !ok || !got.Equal(d) {
				t.Fatalf("Deadline = %v %v, want %v", got, ok, d)
			}
			pd := time.Now().Add(time.Second)
			p, cancel := context.WithDeadline(parent, pd)
			defer cancel()
			c.reset(p, d)
			if got, ok := c.Deadline(); !ok || !got.Equal(pd) {
				t.Fatalf("Deadline = %v %v, want the parent's %v", got, ok, pd)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &reqCtx{}
			c.reset(parent, time.Time{})
			tt.run(t, c)
		})
	}
}

// TestReqCtxReuseAllocs pins the point of reqCtx: a request that nobody
// waits on costs no allocation.
func TestReqCtxReuseAllocs(t *testing.T) {
	c := &reqCtx{}
	parent := context.Background()
	c.reset(parent, time.Time{})
	_ = c.Done() // made once, kept while open
	if n := testing.AllocsPerRun(100, func() {
		c.reset(parent, time.Now().Add(time.Minute))
		_ = c.Done()
		_ = c.Err()
		c.cancel(context.DeadlineExceeded, true) // not yet due
	}); n != 0 {
		t.Fatalf("%v allocations per request, want 0", n)
	}
}

func BenchmarkReqCtx(b *testing.B) {
	c := &reqCtx{}
	parent := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c.reset(parent, time.Now().Add(time.Minute))
		_ = c.Err()
	}
}
