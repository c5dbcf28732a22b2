//go:build !sidecar

package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/remora-mesh/remora/mixer/server"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestMixerPrintConfigGolden(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"mixer", "--print-config"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	path := filepath.Join("testdata", "mixer-default-config.golden")
	if *update {
		if err := os.WriteFile(path, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout.Bytes(), want) {
		t.Errorf("--print-config differs from %s:\n%s", path, stdout.String())
	}
	// The printed configuration is a valid configuration file.
	cfgFile := filepath.Join(t.TempDir(), "mixer.yaml")
	if err := os.WriteFile(cfgFile, stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"mixer", "--config", cfgFile, "--print-config"}, &stdout, &stderr); code != exitOK || !bytes.Equal(stdout.Bytes(), want) {
		t.Errorf("round trip: exit %d, output differs: %s%s", code, stdout.String(), stderr.String())
	}
}

func TestMixerCommandErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unknown := write("unknown.yaml", "grpc:\n  adress: ':1'\n")
	invalid := write("invalid.yaml", "quotas: [{name: q}]\nlog: {level: loud}\n")
	policyDir := filepath.Join(dir, "policies")
	if err := os.Mkdir(policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	write("policies/p.rego", "package envoy.authz\n\ndefault allow := true\n")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"unknown field", []string{"--config", unknown}, exitFailure, "", "grpc.adress: line 2: unknown field"},
		{"invalid", []string{"--config", invalid}, exitFailure, "", "quotas[0].max_amount: must be positive"},
		{"invalid log level", []string{"--config", invalid}, exitFailure, "", `log.level: must be debug`},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, exitFailure, "", "no such file"},
		{"extra argument", []string{"x"}, exitUsage, "", `unexpected argument "x"`},
		{"bad flag", []string{"--bogus"}, exitUsage, "", "flag provided but not defined"},
		{"policy flag", []string{"--policy", policyDir, "--grpc-addr", "127.0.0.1:9", "--print-config"}, exitOK, "- " + policyDir, ""},
		{"bad policy", []string{"--policy", filepath.Join(dir, "missing"), "--grpc-addr", "127.0.0.1:0", "--monitoring-addr", "127.0.0.1:0"}, exitFailure, "", "policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"mixer"}, tt.args...), &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("stdout %q (want %q), stderr %q (want %q)", stdout.String(), tt.wantStdout, stderr.String(), tt.wantStderr)
			}
		})
	}
}

// TestMixerRunsAndStops starts the real command on loopback ports and stops
// it as SIGTERM would, by cancelling its context.
func TestMixerRunsAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"mixer", "--grpc-addr", "127.0.0.1:0", "--monitoring-addr", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), `"msg":"serving"`) || !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Errorf("logs lack serving/stopped:\n%s", stderr.String())
	}
}

func TestApplyRuntime(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)

	t.Setenv("GOGC", "150") // restored at the end; set here, the config is ignored
	applyRuntime(server.RuntimeConfig{GCPercent: 400}, zap.NewNop())
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set, GC percent = %d, want it left at 100", got)
	}

	os.Unsetenv("GOGC")
	applyRuntime(server.RuntimeConfig{GCPercent: 400}, zap.NewNop())
	if got := debug.SetGCPercent(100); got != 400 {
		t.Errorf("without GOGC, GC percent = %d, want runtime.gc_percent's 400", got)
	}
}
