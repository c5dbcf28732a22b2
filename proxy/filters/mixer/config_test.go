package mixer_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/server"
)

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		filter string
		want   []string
	}{
		{"unknown field", `{server: {address: "127.0.0.1:1"}, bogus: 1}`, []string{"bogus"}},
		{"missing address", `{server: {}}`, []string{"server.address: required"}},
		{"bad fail policy", `{server: {address: "127.0.0.1:1", check: {fail_policy: maybe}}}`, []string{`server.check.fail_policy: must be "open" or "close", not "maybe"`}},
		{"bad direction", `{server: {address: "127.0.0.1:1"}, direction: sideways}`, []string{`direction: must be "inbound" or "outbound"`}},
		{"typed attribute", `{server: {address: "127.0.0.1:1"}, mixer_attributes: {destination.port: eighty}}`, []string{`destination.port is INT64: "eighty" is not an integer`}},
		{"string map attribute", `{server: {address: "127.0.0.1:1"}, mixer_attributes: {source.labels: app}}`, []string{"source.labels is a string map"}},
		{"quota without name", `{server: {address: "127.0.0.1:1"}, quotas: [{amount: 1}]}`, []string{"quotas[0].name: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yml := fmt.Sprintf(`
listeners:
- name: l
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      http_filters: [{name: mixer, config: %s}]
      route_config: {virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]}
`, tt.filter)
			cfg, err := config.Parse([]byte(yml))
			if err == nil {
				var s *server.Server
				s, err = server.New(cfg, server.Options{})
				if err == nil {
					s.Close()
				}
			}
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
