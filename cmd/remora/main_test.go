package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "no args", args: nil, wantCode: exitUsage, wantStderr: "Usage:"},
		{name: "help", args: []string{"--help"}, wantCode: exitOK, wantStdout: "Commands:"},
		{name: "help command", args: []string{"help", "version"}, wantCode: exitOK, wantStderr: "Usage: remora version"},
		{name: "help unknown", args: []string{"help", "nope"}, wantCode: exitUsage, wantStderr: `unknown command "nope"`},
		{name: "unknown command", args: []string{"nope"}, wantCode: exitUsage, wantStderr: `unknown command "nope"`},
		{name: "version", args: []string{"version"}, wantCode: exitOK, wantStdout: "remora "},
		{name: "version extra arg", args: []string{"version", "x"}, wantCode: exitUsage, wantStderr: `unexpected argument "x"`},
		{name: "version bad flag", args: []string{"version", "--bogus"}, wantCode: exitUsage, wantStderr: "flag provided but not defined: -bogus"},
		{name: "version help", args: []string{"version", "--help"}, wantCode: exitOK, wantStderr: "Usage: remora version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr: %s)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

// TestPendingCommandsRefuse checks that a subcommand whose subsystem is not
// built yet fails clearly instead of pretending to work.
func TestPendingCommandsRefuse(t *testing.T) {
	for _, p := range pending {
		t.Run(p.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), []string{p.name}, &stdout, &stderr); code != exitFailure {
				t.Fatalf("exit code = %d, want %d", code, exitFailure)
			}
			if !strings.Contains(stderr.String(), "not available") {
				t.Fatalf("stderr = %q, want a not-available message", stderr.String())
			}
		})
	}
}
