package main

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestOpenLoop(t *testing.T) {
	// 1,000/s for 100 ms is 100 calls, whatever the callers do; every
	// fifth one fails and is counted as an error, not as a latency.
	var mu sync.Mutex
	seen := map[int]bool{}
	r := openLoop(context.Background(), 4, 1000, 100*time.Millisecond, func(_ context.Context, w, i int) error {
		mu.Lock()
		defer mu.Unlock()
		if seen[i] {
			t.Errorf("call index %d sent twice", i)
		}
		seen[i] = true
		if i%5 == 0 {
			return errors.New("wrong answer")
		}
		return nil
	})
	if got := r.ops + r.errors; got != 100 {
		t.Errorf("calls = %d (ops %d + errors %d), want 100", got, r.ops, r.errors)
	}
	if r.errors != 20 {
		t.Errorf("errors = %d, want 20", r.errors)
	}
	prev := 0.0
	for _, p := range percentiles {
		if r.pct[p] < prev {
			t.Errorf("p%v = %v is below the previous percentile %v", p, r.pct[p], prev)
		}
		prev = r.pct[p]
	}
}

func TestOpenLoopChargesTheWait(t *testing.T) {
	// One caller held for the whole run by its first call: the calls queued
	// behind it are charged from the moment they were due, so the worst
	// latency is about the hold, not the microseconds a call itself takes.
	const hold = 50 * time.Millisecond
	release := make(chan struct{})
	time.AfterFunc(hold, func() { close(release) })
	first := true
	r := openLoop(context.Background(), 1, 1000, hold, func(context.Context, int, int) error {
		if first {
			first = false
			<-release
		}
		return nil
	})
	if r.ops != 50 {
		t.Fatalf("ops = %d, want 50", r.ops)
	}
	if worst := r.pct[99.9]; worst < (hold - 10*time.Millisecond).Seconds() {
		t.Errorf("worst latency %v s; calls queued behind a held caller must be charged the wait (~%v)", worst, hold)
	}
}
