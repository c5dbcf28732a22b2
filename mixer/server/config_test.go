package server

import (
	"strings"
	"testing"
	"time"
)

func TestParseConfigStrict(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level", "grpcc: {}\n", []string{"grpcc: line 1: unknown field"}},
		{"unknown nested", "grpc:\n  keepalive:\n    tme: 5s\n", []string{"grpc.keepalive.tme: line 3: unknown field"}},
		{"unknown in list", "quotas:\n  - name: q\n    max_amont: 3\n", []string{"quotas[0].max_amont: line 3: unknown field"}},
		{"unknown in telemetry label", "telemetry:\n  metrics:\n    - name: m\n      labels:\n        - {name: a, attr: b}\n", []string{"telemetry.metrics[0].labels[0].attr: line 5: unknown field"}},
		{"modules not settable", "policy:\n  modules: {}\n", []string{"policy.modules: line 2: unknown field"}},
		{"bad duration", "grpc:\n  shutdown_timeout: 5\n", []string{"units are required"}},
		{"syntax", "grpc: [\n", []string{"yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestConfigDefaultsAndValidate(t *testing.T) {
	c, err := ParseConfig([]byte("policy:\n  paths: [/etc/remora/policy]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.GRPC.Address != ":9091" || c.Monitoring.Address != ":15014" || c.GRPC.ShutdownTimeout.D() != 10*time.Second ||
		c.GRPC.TLS.PrincipalAttribute != "context.reporter.principal" || c.Telemetry.MaxSeriesPerMetric != 10000 {
		t.Fatalf("defaults: %+v", c)
	}

	bad := `
grpc:
  max_inflight_requests: -1
  keepalive: {time: 10ms}
  tls: {cert_file: a.pem, require_client_cert: true}
log: {level: loud}
policy: {query: "not a ref ("}
quotas: [{name: q}]
telemetry:
  metrics: [{name: x, kind: summary}]
runtime: {gc_percent: -1}
`
	c, err = ParseConfig([]byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	err = c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{
		"grpc.max_inflight_requests: must not be negative",
		"grpc.keepalive.time: must be at least 1s",
		"grpc.tls.key_file: required when grpc.tls.cert_file is set",
		"grpc.tls.client_ca_file: required when require_client_cert is true",
		`log.level: must be debug, info, warn or error, not "loud"`,
		"policy.paths: at least one policy path is required",
		"policy.query:",
		"quotas[0].max_amount: must be positive",
		`telemetry.metrics[0].kind: unknown kind "summary"`,
		"runtime.gc_percent: must be at least 1, got -1",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"", "grpc: {address: ':1'}\n", "quotas: [{name: q, max_amount: 1, dimensions: {a: b}}]\n", "a: *b\n", "telemetry: {metrics: [{labels: [{}]}]}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConfig([]byte(s))
		if err != nil {
			return
		}
		c.ApplyDefaults()
		_ = c.Validate()
	})
}
