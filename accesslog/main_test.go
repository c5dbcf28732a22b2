package accesslog

import (
	"github.com/remora-mesh/remora/internal/leakcheck"
	"testing"
)

// TestMain fails the run if a sink goroutine (file writer, gRPC sender or
// stream receiver) outlives the tests: every handler must be closed.
func TestMain(m *testing.M) { leakcheck.Main(m, "accesslog.(*fileSink).run", "accesslog.(*grpcSink).") }
