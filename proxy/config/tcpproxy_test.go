package config_test

import (
	"strings"
	"testing"

	. "github.com/remora-mesh/remora/proxy/config"
)

// TestTCPProxyValidation checks each tcp_proxy mistake is reported with
// its field path.
func TestTCPProxyValidation(t *testing.T) {
	const head = "clusters: [{name: c, endpoints: [{address: 127.0.0.1:1}]}]\nlisteners:\n- name: l\n  address: 127.0.0.1:0\n  filter_chains:\n  - "
	for _, tc := range []struct {
		name, chain, want string
	}{
		{"no cluster", "tcp_proxy: {}", "listeners[0].filter_chains[0].tcp_proxy.cluster: required"},
		{"unknown cluster", "tcp_proxy: {cluster: x}", `listeners[0].filter_chains[0].tcp_proxy.cluster: unknown cluster "x"`},
		{"negative idle", "tcp_proxy: {cluster: c, idle_timeout: -1s}", `listeners[0].filter_chains[0].tcp_proxy.idle_timeout: line 6: duration "-1s" must not be negative`},
		{"bad idle", "tcp_proxy: {cluster: c, idle_timeout: soon}", "idle_timeout"},
		{"access log type", "tcp_proxy: {cluster: c, access_log: [{type: nope}]}", `listeners[0].filter_chains[0].tcp_proxy.access_log[0].type: unknown access log type "nope"`},
		{"access log no type", "tcp_proxy: {cluster: c, access_log: [{}]}", "listeners[0].filter_chains[0].tcp_proxy.access_log[0].type: required"},
		{"mixer shape", "tcp_proxy: {cluster: c, mixer: [a]}", "listeners[0].filter_chains[0].tcp_proxy.mixer: must be a mapping"},
		{"unknown field", "tcp_proxy: {cluster: c, clustr: d}", "clustr"},
		{"both filters", "{tcp_proxy: {cluster: c}, http_connection_manager: {route_config_name: r}}", "listeners[0].filter_chains[0]: http_connection_manager and tcp_proxy are mutually exclusive"},
		{"no filter", "{filter_chain_match: {destination_port: 1}}", "listeners[0].filter_chains[0]: a network filter is required: http_connection_manager or tcp_proxy"},
		{"empty alpn", "{tcp_proxy: {cluster: c}, tls: {cert_file: a, key_file: b, alpn: [\"\"]}}", "listeners[0].filter_chains[0].tls.alpn[0]: empty protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(head + tc.chain + "\n"))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestTCPProxyDefaults(t *testing.T) {
	b, err := Parse([]byte(`
listeners:
- name: l
  address: 127.0.0.1:0
  filter_chains:
  - tls: {cert_file: c, key_file: k}
    tcp_proxy: {cluster: c}
  - filter_chain_match: {destination_port: 1}
    tcp_proxy: {cluster: c, idle_timeout: 0s}
clusters: [{name: c, endpoints: [{address: 127.0.0.1:1}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	fc := b.Listeners[0].FilterChains
	tp := fc[0].TCPProxy
	if tp.StatPrefix != "tcp" || tp.IdleTimeout.D() != DefaultIdleTimeout {
		t.Errorf("defaults not applied: %+v", tp)
	}
	if len(fc[0].TLS.ALPN) != 0 {
		t.Errorf("a tcp_proxy chain got HTTP ALPN defaults: %v", fc[0].TLS.ALPN)
	}
	if fc[1].TCPProxy.IdleTimeout.D() != 0 {
		t.Errorf("idle_timeout 0s (disabled) was replaced: %v", fc[1].TCPProxy.IdleTimeout)
	}
}
