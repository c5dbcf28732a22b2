package policy

import (
	"github.com/remora-mesh/remora/internal/leakcheck"
	"testing"
)

// TestMain fails the run when an engine's goroutines outlive the tests.
func TestMain(m *testing.M) { leakcheck.Main(m, "policy.(*Engine).watch", "policy.(*decisionLog).run") }
