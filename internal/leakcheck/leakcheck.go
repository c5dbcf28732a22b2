// Package leakcheck fails a test binary when goroutines of the code under
// test outlive its tests: every server, sink and client a test starts must
// be stopped. It is for tests only.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs the tests and, when they pass, waits up to 5 seconds for every
// goroutine whose stack contains one of match to end. It exits non-zero
// with the leftover stacks otherwise. Call it from TestMain.
func Main(m *testing.M, match ...string) {
	code := m.Run()
	if code == 0 {
		if leaked := Wait(5*time.Second, match...); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// Wait checks every 10ms, until limit, for goroutines matching one of
// match, and returns their stacks ("" when none is left).
func Wait(limit time.Duration, match ...string) string {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		leaked := Leaked(match...)
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

// Leaked returns the stacks of the goroutines, other than the caller's
// and the test runner's, that contain one of match.
func Leaked(match ...string) string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "leakcheck.Leaked") || strings.Contains(g, "testing.(*M).") {
			continue
		}
		for _, m := range match {
			if strings.Contains(g, m) {
				leaked = append(leaked, g)
				break
			}
		}
	}
	return strings.Join(leaked, "\n\n")
}
