package server

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package when goroutines of the proxy outlive the
// tests (a pump, a stream, a listener loop left behind).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitNoLeaks(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitNoLeaks polls until no goroutine runs proxy code, or the deadline
// passes; it returns the offending stacks.
func waitNoLeaks(d time.Duration) string {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		leaked := proxyGoroutines()
		if leaked == "" {
			return ""
		}
		select {
		case <-deadline.C:
			return leaked
		case <-tick.C:
		}
	}
}

func proxyGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "remora/proxy/") && !strings.Contains(g, "server.TestMain") && !strings.Contains(g, "server.proxyGoroutines") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
