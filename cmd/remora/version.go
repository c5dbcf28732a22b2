package main

import (
	"context"
	"fmt"
	"io"

	"github.com/remora-mesh/remora/internal/version"
)

func init() {
	register(&command{name: "version", summary: "print the version and exit", run: runVersion})
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	_, err := fmt.Fprintln(stdout, version.String())
	return err
}
