package mono

import (
	"testing"
	"time"
)

func TestNowIsMonotonicAndTracksTime(t *testing.T) {
	a := Now()
	w := time.Now()
	for time.Since(w) < time.Millisecond { // busy: no sleep
	}
	b := Now()
	if b < a {
		t.Fatalf("Now went backwards: %d then %d", a, b)
	}
	if d := time.Duration(b - a); d < time.Millisecond {
		t.Fatalf("Now advanced %v across at least 1ms", d)
	}
	if d := Since(a); d < time.Duration(b-a) {
		t.Fatalf("Since(a) = %v, less than the %v already measured", d, time.Duration(b-a))
	}
}

func BenchmarkNow(b *testing.B) {
	b.ReportAllocs()
	var s int64
	for b.Loop() {
		s += Now()
	}
	_ = s
}

// BenchmarkTimeNow is what mono.Now replaces.
func BenchmarkTimeNow(b *testing.B) {
	b.ReportAllocs()
	var s int64
	for b.Loop() {
		s += time.Now().UnixNano()
	}
	_ = s
}
