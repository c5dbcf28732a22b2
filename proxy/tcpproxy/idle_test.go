package tcpproxy

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestIdleCheck drives the idle decision on constructed states: the
// protocol between the two directions (quiet times, pokes) without
// timing.
func TestIdleCheck(t *testing.T) {
	const idle = 100 * time.Millisecond
	now := time.Now()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	// st is a direction's state: quiet for quiet, poked poked ago (0: not
	// poked), done.
	type st struct {
		quiet, poked time.Duration
		done         bool
	}
	for _, tc := range []struct {
		name     string
		idle     time.Duration
		n        int64
		d, o     st
		want     bool
		wantPoke bool
	}{
		{"bytes moved", idle, 5, st{quiet: time.Hour}, st{quiet: time.Hour}, false, false},
		{"quiet less than idle", idle, 0, st{quiet: 50 * time.Millisecond}, st{quiet: time.Hour}, false, false},
		{"other side done idle ago", idle, 0, st{quiet: idle}, st{quiet: idle, done: true}, true, false},
		{"other side just done: wait for the answer", idle, 0, st{quiet: time.Hour}, st{quiet: time.Millisecond, done: true}, false, false},
		{"poked and quiet", idle, 0, st{quiet: idle, poked: time.Millisecond}, st{quiet: idle}, true, false},
		{"other quiet by its record: poke it", idle, 0, st{quiet: idle}, st{quiet: 2 * idle}, false, true},
		{"other active", idle, 0, st{quiet: idle}, st{quiet: time.Millisecond}, false, false},
		{"other poked recently", idle, 0, st{quiet: idle}, st{quiet: 2 * idle, poked: 10 * time.Millisecond}, false, false},
		{"other never answered its poke", idle, 0, st{quiet: idle}, st{quiet: 3 * idle, poked: idle}, true, false},
		{"disabled", 0, 0, st{quiet: time.Hour}, st{quiet: time.Hour}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			build := func(x st) *direction {
				dir := &direction{src: a, quietSince: ago(x.quiet), done: x.done}
				if x.poked > 0 {
					dir.pokedAt = ago(x.poked)
				}
				return dir
			}
			d, o := build(tc.d), build(tc.o)
			hadPoke := tc.o.poked > 0
			s := &session{p: &Proxy{idle: tc.idle}}
			got := s.idleCheckLocked(d, o, tc.n, now)
			if got != tc.want {
				t.Errorf("idle = %v, want %v", got, tc.want)
			}
			if !d.pokedAt.IsZero() {
				t.Error("d's poke was not consumed")
			}
			if tc.n > 0 && !d.quietSince.Equal(now) {
				t.Error("bytes did not reset d's quiet time")
			}
			poked := !hadPoke && !o.pokedAt.IsZero()
			if poked != tc.wantPoke {
				t.Fatalf("poked other = %v, want %v", poked, tc.wantPoke)
			}
			if poked {
				// The poke moved o's read deadline to the past: its read
				// returns at once.
				_, err := a.Read(make([]byte, 1))
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("read after the poke: %v, want a deadline error", err)
				}
			}
		})
	}
}
