//go:build sidecar

package main

import (
	"context"
	"errors"
)

// validateMixer: a sidecar build (go build -tags sidecar) links neither the
// mixer server nor OPA, so it cannot check a mixer configuration.
func validateMixer(context.Context, string) error {
	return errors.New("this is a sidecar build of remora (-tags sidecar) without the mixer: validate mixer configurations with the full remora binary")
}
