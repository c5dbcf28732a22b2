package extauthz

import (
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParseConfig checks that no filter or per-route config makes the
// parsers panic, and that an accepted filter config is complete.
func FuzzParseConfig(f *testing.F) {
	f.Add(`{grpc_service: {address: "127.0.0.1:1", timeout: 250ms}, failure_mode_allow: true}`)
	f.Add(`{grpc_service: {address: "127.0.0.1:1"}, with_request_body: {max_request_bytes: 1024}}`)
	f.Add(`{disabled: true, check_settings: {context_extensions: {a: b}}}`)
	f.Add(`[1]`)
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 {
			return
		}
		var n yaml.Node
		if yaml.Unmarshal([]byte(s), &n) != nil || len(n.Content) == 0 {
			return
		}
		if cfg, err := parseConfig(n.Content[0]); err == nil && cfg.GRPCService.Address == "" {
			t.Fatalf("accepted a config without grpc_service.address: %q", s)
		}
		_, _ = factory{}.ParsePerRouteConfig(n.Content[0])
	})
}
