package server

import (
	"github.com/remora-mesh/remora/internal/leakcheck"
	"testing"
)

// TestMain fails the package when goroutines of the proxy outlive the
// tests (a pump, a stream, a listener loop left behind).
func TestMain(m *testing.M) { leakcheck.Main(m, "remora/proxy/") }
