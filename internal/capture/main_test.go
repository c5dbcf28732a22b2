package capture

import (
	"testing"

	"github.com/remora-mesh/remora/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m, "remora/") }
