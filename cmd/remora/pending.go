package main

import (
	"context"
	"fmt"
	"io"
)

// Subcommands whose subsystems are not built yet. Each one refuses to run
// with a clear message instead of pretending to work; the file that builds a
// subsystem's command removes its entry here.
var pending = []struct{ name, summary string }{}

func init() {
	for _, p := range pending {
		name := p.name
		register(&command{name: name, summary: p.summary, run: func(_ context.Context, args []string, _, stderr io.Writer) error {
			fs := newFlagSet(name, "", stderr)
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			return fmt.Errorf("not available in this build yet")
		}})
	}
}
