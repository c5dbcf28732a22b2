// Package version reports the build's version. Version is set at link time by
// the Makefile (-ldflags -X); a plain `go build` reports "dev".
package version

import (
	"fmt"
	"runtime"
)

// Version is the release or git description of this build.
var Version = "dev"

// String is the one-line description printed by `remora version`.
func String() string {
	return fmt.Sprintf("remora %s (%s %s/%s)", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
