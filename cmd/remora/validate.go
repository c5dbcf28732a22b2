package main

import (
	"context"
	"fmt"
	"io"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/server"
)

func init() {
	register(&command{name: "validate", summary: "check a proxy configuration file", run: runValidate})
}

// runValidate parses, validates and fully builds the configuration (route
// tables, filter and access-log configs, TLS files, clusters) without
// opening a socket.
func runValidate(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", "--config FILE", stderr)
	path := fs.String("config", "", "proxy configuration `file` (YAML)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *path == "" {
		return usagef("--config FILE is required")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	srv, err := server.New(cfg, server.Options{})
	if err != nil {
		return err
	}
	if err := srv.Close(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: ok\n", *path)
	return err
}
