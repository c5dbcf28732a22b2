package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/server"
)

func init() {
	register(&command{name: "validate", summary: "check a proxy or mixer configuration file", run: runValidate})
}

const validateUsage = `--config FILE [--kind auto|proxy|mixer]

Checks a configuration without serving anything and names every problem by
its field path. A proxy configuration is fully built (route tables, filter
and access-log configs, TLS files, clusters); a mixer configuration is
decoded, validated, and its policy loaded and compiled. --kind auto (the
default) tells them apart by their top-level keys.`

func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", validateUsage, stderr)
	path := fs.String("config", "", "configuration `file` (YAML)")
	kind := fs.String("kind", "auto", "`kind` of configuration: auto, proxy or mixer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *path == "" {
		return usagef("--config FILE is required")
	}
	k := *kind
	switch k {
	case "auto":
		var err error
		if k, err = configKind(*path); err != nil {
			return err
		}
	case "proxy", "mixer":
	default:
		return usagef("--kind must be auto, proxy or mixer, not %q", k)
	}
	var err error
	if k == "mixer" {
		err = validateMixer(ctx, *path)
	} else {
		err = validateProxy(*path)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: ok (%s configuration)\n", *path, k)
	return err
}

// configKind guesses from the top-level keys whether a file configures the
// proxy or the mixer; keys of both kinds never mix.
func configKind(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(data, &top); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	for _, k := range []string{"grpc", "monitoring", "policy", "quotas", "telemetry", "log"} {
		if _, ok := top[k]; ok {
			return "mixer", nil
		}
	}
	return "proxy", nil
}

func validateProxy(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	srv, err := server.New(cfg, server.Options{})
	if err != nil {
		return err
	}
	return srv.Close()
}
