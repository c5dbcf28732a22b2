package hcm

import (
	"context"
	"errors"
	"testing"
	"time"
)

type streamCtxKey struct{}

func closedWithin(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

func TestStreamCtx(t *testing.T) {
	parent := context.WithValue(context.Background(), streamCtxKey{}, "conn")
	tests := []struct {
		name string
		use  func(c *streamCtx)
		keep bool // release keeps it for the next stream
	}{
		{"untouched", func(c *streamCtx) {}, true},
		{"the manager's own reads", func(c *streamCtx) { c.internalDone(); _ = c.internalErr() }, true},
		{"values", func(c *streamCtx) { _ = c.Value(streamCtxKey{}) }, true},
		{"Done", func(c *streamCtx) { c.Done() }, false},
		{"Err", func(c *streamCtx) { _ = c.Err() }, false},
		{"Deadline", func(c *streamCtx) { c.Deadline() }, false},
		{"a child", func(c *streamCtx) {
			_, cancel := context.WithCancel(c)
			cancel()
		}, false},
		{"ended", func(c *streamCtx) { c.cancel() }, false},
		{"the manager's hook", func(c *streamCtx) { c.setHook(func() {}); c.setHook(nil) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newStreamCtx(parent)
			done := c.internalDone()
			tt.use(c)
			if got := c.release(); got != tt.keep {
				t.Fatalf("release = %v, want %v", got, tt.keep)
			}
			select {
			case <-done:
				if tt.keep {
					t.Fatal("a kept context was ended")
				}
			default:
				if !tt.keep {
					t.Fatal("a context seen outside was not ended with its stream")
				}
			}
		})
	}
}

func TestStreamCtxCancel(t *testing.T) {
	c := newStreamCtx(context.WithValue(context.Background(), streamCtxKey{}, "conn"))
	if got := c.Value(streamCtxKey{}); got != "conn" {
		t.Fatalf("Value = %v", got)
	}
	child, cancelChild := context.WithTimeout(c, time.Hour)
	defer cancelChild()
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	stopped := make(chan struct{}, 1)
	stop := c.AfterFunc(func() { stopped <- struct{}{} })
	if !stop() {
		t.Fatal("stop before the end reported false")
	}
	c.cancel()
	if !closedWithin(child.Done()) || !closedWithin(ran) || !closedWithin(c.Done()) {
		t.Fatal("the end did not reach Done, a child and an AfterFunc")
	}
	if !errors.Is(c.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("Err = %v, child %v", c.Err(), child.Err())
	}
	select {
	case <-stopped:
		t.Fatal("a stopped AfterFunc ran")
	default:
	}
	late := make(chan struct{})
	if c.AfterFunc(func() { close(late) })() {
		t.Fatal("stop after the end reported true")
	}
	if !closedWithin(late) {
		t.Fatal("AfterFunc after the end did not run")
	}

	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if newStreamCtx(gone).internalErr() == nil {
		t.Fatal("a context made under an ended parent is not ended")
	}
}

// TestStreamCtxReuseAllocs pins the point of streamCtx: a stream nobody
// outside the manager looked at costs no context allocation.
func TestStreamCtxReuseAllocs(t *testing.T) {
	c := newStreamCtx(context.Background())
	if n := testing.AllocsPerRun(100, func() {
		select {
		case <-c.internalDone():
		default:
		}
		_ = c.internalErr()
		if !c.release() {
			t.Fatal("not kept")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per stream, want 0", n)
	}
}

func BenchmarkStreamCtxReuse(b *testing.B) {
	c := newStreamCtx(context.Background())
	b.ReportAllocs()
	for b.Loop() {
		_ = c.internalDone()
		c.release()
	}
}

// TestStreamCtxHook: cancel runs the manager's hook once, on the
// cancelling goroutine; a hook set after the end is reported, not run.
func TestStreamCtxHook(t *testing.T) {
	c := newStreamCtx(context.Background())
	calls := 0
	if ended := c.setHook(func() { calls++ }); ended {
		t.Fatal("setHook on a live context reported it ended")
	}
	c.cancel()
	c.cancel()
	if calls != 1 {
		t.Fatalf("hook ran %d times, want 1", calls)
	}
	if ended := c.setHook(func() { calls++ }); !ended {
		t.Fatal("setHook on an ended context did not report it")
	}
	c.cancel()
	if calls != 1 {
		t.Fatalf("hook ran %d times after the end, want 1", calls)
	}
}
