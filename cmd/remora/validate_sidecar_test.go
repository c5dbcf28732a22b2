//go:build sidecar

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSidecarBuild: the sidecar build has the proxy's commands and says
// plainly that it cannot check a mixer configuration.
func TestSidecarBuild(t *testing.T) {
	for _, name := range []string{"mixer", "demo"} {
		if _, ok := commands[name]; ok {
			t.Errorf("the sidecar build has the %s command", name)
		}
	}
	for _, name := range []string{"proxy", "validate", "iptables", "version"} {
		if _, ok := commands[name]; !ok {
			t.Errorf("the sidecar build lacks the %s command", name)
		}
	}
	path := filepath.Join(t.TempDir(), "mixer.yaml")
	if err := os.WriteFile(path, []byte("grpc: {address: 127.0.0.1:9091}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"validate", "--config", path}, &stdout, &stderr); code != exitFailure {
		t.Fatalf("exit %d, want %d (stderr %s)", code, exitFailure, stderr.String())
	}
	if !strings.Contains(stderr.String(), "sidecar build") {
		t.Fatalf("stderr = %q", stderr.String())
	}
}
