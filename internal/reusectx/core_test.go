package reusectx

import (
	"context"
	"errors"
	"testing"
)

func TestCoreEnd(t *testing.T) {
	var c Core
	c.Lock()
	done := c.DoneLocked()
	ran := make(chan int, 2)
	c.AfterFuncLocked(func() { ran <- 1 })
	stop := c.AfterFuncLocked(func() { ran <- 2 })
	idle := c.IdleLocked()
	c.Unlock()
	if idle {
		t.Fatal("IdleLocked with functions registered")
	}
	if !stop() {
		t.Fatal("stop before the end reported false")
	}
	if stop() {
		t.Fatal("second stop reported true")
	}
	select {
	case <-done:
		t.Fatal("Done closed while open")
	default:
	}

	c.Lock()
	fns, ended := c.EndLocked(context.Canceled)
	_, again := c.EndLocked(context.DeadlineExceeded)
	err := c.ErrLocked()
	c.Unlock()
	if !ended || again {
		t.Fatalf("EndLocked = %v then %v, want true then false", ended, again)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ErrLocked = %v, want the first end's error", err)
	}
	<-done
	fns.Start()
	if got := <-ran; got != 1 {
		t.Fatalf("ran %d, want the function that was not stopped", got)
	}

	// Registered after the end: runs at once.
	c.Lock()
	stop = c.AfterFuncLocked(func() { ran <- 3 })
	c.Unlock()
	if got := <-ran; got != 3 || stop() {
		t.Fatalf("late AfterFunc ran %d, stop %v; want 3, false", got, stop())
	}
}

func TestCoreReset(t *testing.T) {
	cases := []struct {
		name     string
		end      bool
		sameDone bool
	}{
		{"open context keeps its Done channel", false, true},
		{"ended context gets a new Done channel", true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Core
			c.Lock()
			d1 := c.DoneLocked()
			c.AfterFuncLocked(func() { t.Error("a function of the last use ran") })
			if tc.end {
				c.EndLocked(context.Canceled) // its functions are not started
			}
			c.ResetLocked()
			d2 := c.DoneLocked()
			idle, err := c.IdleLocked(), c.ErrLocked()
			fns, _ := c.EndLocked(context.Canceled)
			c.Unlock()
			if (d1 == d2) != tc.sameDone {
				t.Fatalf("same Done channel after reset: %v, want %v", d1 == d2, tc.sameDone)
			}
			if !idle || err != nil {
				t.Fatalf("after reset: idle %v, err %v; want an idle open context", idle, err)
			}
			if len(fns) != 0 {
				t.Fatalf("%d functions of the last use survived the reset", len(fns))
			}
			<-d2
		})
	}
}
