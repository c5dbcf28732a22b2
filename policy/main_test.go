package policy

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestMain fails the run when an engine's goroutines outlive the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines returns the stacks of engine goroutines still running.
// A goroutine that has closed its done channel may take a moment to exit,
// so the check yields the processor a bounded number of times first.
func leakedGoroutines() string {
	var found string
	for range 1000 {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		found = ""
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "policy.(*Engine).watch") || strings.Contains(g, "policy.(*decisionLog).run") {
				found += g + "\n\n"
			}
		}
		if found == "" {
			return ""
		}
		runtime.Gosched()
	}
	return found
}
