//go:build !sidecar

package main

import (
	"context"
	"fmt"

	mixerserver "github.com/remora-mesh/remora/mixer/server"
	"github.com/remora-mesh/remora/policy"
)

func validateMixer(ctx context.Context, path string) error {
	cfg, err := mixerserver.LoadConfig(path)
	if err != nil {
		return err
	}
	// Compile the policy the server would serve.
	pc := cfg.Policy
	if len(pc.Paths) == 0 && len(pc.Modules) == 0 {
		pc.Modules = map[string]string{policy.DefaultPolicyFile: policy.DefaultPolicy}
	}
	off := false
	pc.Watch = &off
	e, err := policy.New(ctx, pc, policy.Options{})
	if err != nil {
		return fmt.Errorf("%s: policy: %w", path, err)
	}
	return e.Close()
}
