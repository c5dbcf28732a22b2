package accesslog

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if a sink goroutine (file writer, gRPC sender or
// stream receiver) outlives the tests: every handler must be closed.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitForSinkGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitForSinkGoroutines waits until no goroutine runs this package's sink
// code, checking on every tick until the deadline, and returns the
// leftover stacks.
func waitForSinkGoroutines(limit time.Duration) string {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		leaked := sinkGoroutines()
		if leaked == "" {
			return ""
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return leaked
		}
	}
}

func sinkGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "accesslog.(*fileSink).run") || strings.Contains(g, "accesslog.(*grpcSink).") {
			leaked = append(leaked, g)
		}
	}
	return strings.Join(leaked, "\n\n")
}
