package mixer

import (
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParseConfig checks that no filter or per-route config makes the
// parsers panic, and that an accepted filter config is complete.
func FuzzParseConfig(f *testing.F) {
	f.Add(`{server: {address: "127.0.0.1:1", check: {fail_policy: close, timeout: 1s}}, direction: outbound}`)
	f.Add(`{server: {address: "127.0.0.1:1"}, mixer_attributes: {destination.port: 80, source.labels: {a: b}}, quotas: [{name: rq, amount: 2}]}`)
	f.Add(`{disable_check: true, quotas: [{name: q}], mixer_attributes: {request.size: "1"}}`)
	f.Add(`[1]`)
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 {
			return
		}
		var n yaml.Node
		if yaml.Unmarshal([]byte(s), &n) != nil || len(n.Content) == 0 {
			return
		}
		if cfg, err := parseConfig(n.Content[0]); err == nil && cfg.Server.Address == "" {
			t.Fatalf("accepted a config without server.address: %q", s)
		}
		_, _ = factory{}.ParsePerRouteConfig(n.Content[0])
	})
}
