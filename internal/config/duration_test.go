package config

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "d: 5s", want: 5 * time.Second},
		{in: "d: 250ms", want: 250 * time.Millisecond},
		{in: "d: 0s", want: 0},
		{in: "d: 5", wantErr: "units are required"},
		{in: "d: -1s", wantErr: "must not be negative"},
		{in: "d: [1]", wantErr: "must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var v struct {
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte(tt.in), &v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || v.D.D() != tt.want {
				t.Fatalf("got %v, %v; want %v", v.D, err, tt.want)
			}
			out, _ := yaml.Marshal(v)
			if !strings.Contains(string(out), tt.want.String()) {
				t.Fatalf("marshal = %q", out)
			}
		})
	}
}
