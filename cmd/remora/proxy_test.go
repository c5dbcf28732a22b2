package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/server"
)

func TestProxyCommandLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listeners:\n- name: l\n  address: 127.0.0.1:0\n  bogus: 1\n  filter_chains: []\nclusters: []\n"), 0o600)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"quick flags without quick mode", []string{"proxy", "--mixer", "127.0.0.1:9091"}, exitUsage, "belong to quick mode"},
		{"listen only", []string{"proxy", "--listen", "127.0.0.1:0"}, exitUsage, "needs both --listen and --upstream"},
		{"config and quick", []string{"proxy", "--config", bad, "--listen", "a:1", "--upstream", "b:2"}, exitUsage, "cannot be combined"},
		{"bad config", []string{"proxy", "--config", bad}, exitFailure, "listeners[0].bogus: line 4: unknown field"},
		{"missing file", []string{"proxy", "--config", filepath.Join(dir, "nope.yaml")}, exitFailure, "no such file"},
		{"negative watch interval", []string{"proxy", "--config", bad, "--watch-interval", "-1s"}, exitUsage, "--watch-interval must not be negative"},
		{"validate no config", []string{"validate"}, exitUsage, "--config FILE is required"},
		{"validate bad", []string{"validate", "--config", bad}, exitFailure, "listeners[0].filter_chains: at least one filter chain is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tt.args, &stdout, &stderr); code != tt.wantCode {
				t.Fatalf("exit %d, want %d (stderr %s)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("stderr = %q, want %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

// TestPrintConfigRoundTrip checks that the printed quick-mode
// configuration parses back to the same configuration, and that validate
// accepts it.
func TestPrintConfigRoundTrip(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--admin", "127.0.0.1:0", "--print-config"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	cfg, err := config.Parse(stdout.Bytes())
	if err != nil {
		t.Fatalf("printed config does not parse: %v\n%s", err, stdout.String())
	}
	again, err := config.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, stdout.Bytes()) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", stdout.String(), again)
	}
	for _, want := range []string{"protocol: use_downstream", "prefix: /", `- '*'`, "codec_type: AUTO"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("printed config lacks %q", want)
		}
	}
	path := filepath.Join(t.TempDir(), "quick.yaml")
	os.WriteFile(path, stdout.Bytes(), 0o600)
	stdout.Reset()
	if code := run(context.Background(), []string{"validate", "--config", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("validate exit %d: %s", code, stderr.String())
	}
}

// TestProxyRunsAndDrains runs the proxy command in-process and stops it
// like SIGTERM does (context cancellation); it must exit 0.
func TestProxyRunsAndDrains(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--admin", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not stop")
	}
}

// TestValidateBuildErrors: problems found only when building (a missing
// certificate file) are reported with their path, exit 1, no panic.
func TestValidateBuildErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tls.yaml")
	os.WriteFile(path, []byte(`
listeners:
- name: l
  address: 127.0.0.1:0
  filter_chains:
  - tls: {cert_file: /nonexistent/cert.pem, key_file: /nonexistent/key.pem}
    http_connection_manager:
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]}
clusters: []
`), 0o600)
	for _, cmd := range []string{"validate", "proxy"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{cmd, "--config", path}, &stdout, &stderr); code != exitFailure {
			t.Fatalf("%s: exit %d, want %d (stderr %s)", cmd, code, exitFailure, stderr.String())
		}
		if !strings.Contains(stderr.String(), "listeners[0].filter_chains[0].tls: tls: cert_file: stat /nonexistent/cert.pem") {
			t.Fatalf("%s: stderr = %q", cmd, stderr.String())
		}
	}
}

// TestProxyPortInUse: a listener that cannot bind fails the command (exit
// 1) after releasing what had started.
func TestProxyPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"proxy", "--listen", ln.Addr().String(), "--upstream", "127.0.0.1:9", "--admin", "127.0.0.1:0"}, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "address already in use") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// TestProxyEmbeddedDefault: without a configuration the proxy serves its
// embedded default, which prints, re-parses and fully builds.
func TestProxyEmbeddedDefault(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"proxy", "--print-config"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"address: 127.0.0.1:8080", "name: mixer", "127.0.0.1:9091", "fail_policy: open", "path: /dev/stdout"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("embedded default lacks %q:\n%s", want, stdout.String())
		}
	}
	path := filepath.Join(t.TempDir(), "default.yaml")
	if err := os.WriteFile(path, defaultProxyConfig, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"validate", "--config", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("the embedded default does not validate: %s", stderr.String())
	}
}

const reloaderConfig = `
admin: {address: "127.0.0.1:1"}
listeners:
- name: l
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: %s}}]}]}
clusters: []
`

// TestConfigReloader: the file is reloaded when its content changes (not
// when it is rewritten unchanged); --admin still overrides the file's
// admin address on reload; an unreadable file fails a forced (SIGHUP)
// reload and is skipped by polling.
func TestConfigReloader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, fmt.Appendf(nil, reloaderConfig, body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	const admin = "127.0.0.1:0"
	cfg, err := proxyConfig(path, config.QuickOptions{Admin: admin})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	r := newConfigReloader(path, admin, srv)
	generation := func() int {
		if st := srv.LastReload(); st != nil {
			return st.Generation
		}
		return 0
	}
	steps := []struct {
		name    string
		change  func()
		force   bool
		wantErr string
		wantGen int
		tried   bool
	}{
		{"unchanged", func() {}, false, "", 0, false},
		{"rewritten unchanged", func() { write("one") }, false, "", 0, false},
		{"changed", func() { write("two") }, false, "", 1, true},
		{"forced unchanged", func() {}, true, "", 2, true},
		{"removed, polled", func() { os.Remove(path) }, false, "", 2, false},
		{"removed, forced", func() {}, true, "no such file", 2, true},
		{"bad content", func() { os.WriteFile(path, []byte("nope: 1\n"), 0o600) }, false, "nope", 2, true},
		{"bad content again", func() {}, false, "", 2, false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := srv.LastReload()
			st.change()
			err := r.reload(st.force)
			if st.wantErr == "" && err != nil || st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)) {
				t.Fatalf("reload: %v, want %q", err, st.wantErr)
			}
			if tried := srv.LastReload() != before; tried != st.tried {
				t.Errorf("reload attempted = %v, want %v", tried, st.tried)
			}
			if got := generation(); got != st.wantGen {
				t.Errorf("generation %d, want %d", got, st.wantGen)
			}
		})
	}
	if srv.Config().Admin.Address != admin {
		t.Errorf("admin address %q after reloads, want the --admin override", srv.Config().Admin.Address)
	}
}
