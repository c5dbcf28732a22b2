package leakcheck

import (
	"strings"
	"testing"
	"time"
)

func parkHere(stop chan struct{}) { <-stop }

func TestLeaked(t *testing.T) {
	stop := make(chan struct{})
	started := make(chan struct{})
	go func() {
		close(started)
		parkHere(stop)
	}()
	<-started
	if got := Wait(time.Second, "leakcheck.parkHere"); !strings.Contains(got, "leakcheck.parkHere") {
		t.Fatalf("a parked goroutine was not reported: %q", got)
	}
	close(stop)
	if got := Wait(5*time.Second, "leakcheck.parkHere"); got != "" {
		t.Fatalf("a finished goroutine was reported:\n%s", got)
	}
	if got := Leaked("leakcheck.TestLeaked"); got != "" {
		t.Fatalf("the caller's own goroutine was reported:\n%s", got)
	}
}
