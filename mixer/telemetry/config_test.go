package telemetry

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"ok", Config{Metrics: []MetricConfig{{Name: "a_total", Kind: "counter", Labels: []LabelConfig{{Name: "m", Attribute: "request.method"}}}}}, nil},
		{"bad name and kind", Config{Metrics: []MetricConfig{{Name: "1bad", Kind: "summary"}}}, []string{
			`telemetry.metrics[0].name: "1bad" is not a valid Prometheus metric name`,
			`telemetry.metrics[0].kind: unknown kind "summary"`}},
		{"standard collision", Config{Metrics: []MetricConfig{{Name: "istio_requests_total", Kind: "counter"}}}, []string{
			`telemetry.metrics[0].name: metric "istio_requests_total" is defined twice`}},
		{"histogram needs value", Config{Metrics: []MetricConfig{{Name: "h", Kind: "histogram", Buckets: []float64{2, 1}}}}, []string{
			"telemetry.metrics[0].value: required for a histogram",
			"telemetry.metrics[0].buckets[1]: buckets must be strictly increasing"}},
		{"labels", Config{Metrics: []MetricConfig{{Name: "c", Kind: "counter", Labels: []LabelConfig{
			{Name: "x", Attribute: "a["}, {Name: "x", Attribute: "b"}, {Name: "__y", Attribute: ""}}}}}, []string{
			"telemetry.metrics[0].labels[0].attribute: attribute expression \"a[\": missing ]",
			`telemetry.metrics[0].labels[1].name: label "x" is defined twice`,
			`telemetry.metrics[0].labels[2].name: "__y" is not a valid Prometheus label name`,
			"telemetry.metrics[0].labels[2].attribute: required"}},
		{"protocol and negative limit", Config{MaxSeriesPerMetric: -1, Metrics: []MetricConfig{{Name: "c", Kind: "counter", Protocols: []string{"udp"}}}}, []string{
			"telemetry.max_series_per_metric: must not be negative",
			`telemetry.metrics[0].protocols[0]: unknown protocol "udp"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.ApplyDefaults()
			err := tt.cfg.Validate("telemetry")
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseExpr(t *testing.T) {
	tests := []struct {
		in      string
		want    []attrRef
		wantErr string
	}{
		{in: "request.method", want: []attrRef{{name: "request.method"}}},
		{in: "api.protocol | context.protocol", want: []attrRef{{name: "api.protocol"}, {name: "context.protocol"}}},
		{in: "request.headers[x-user]", want: []attrRef{{name: "request.headers", key: "x-user", hasKey: true}}},
		{in: "a |", wantErr: "empty alternative"},
		{in: "a[b", wantErr: "missing ]"},
		{in: "a[[b]]", wantErr: "nested brackets"},
		{in: "9x", wantErr: "not an attribute name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseExpr(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v want %v", got, tt.want)
				}
			}
		})
	}
}

func FuzzParseExpr(f *testing.F) {
	for _, s := range []string{"a", "a.b | c", "m[k]", "m[", "|", "a[b]c]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		refs, err := parseExpr(s)
		if err == nil && len(refs) == 0 {
			t.Fatalf("%q: no error and no alternatives", s)
		}
	})
}
