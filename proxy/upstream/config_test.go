package upstream

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/internal/config"
)

func TestClusterConfigYAMLAndDefaults(t *testing.T) {
	const doc = `
name: backend
type: STRICT_DNS
connect_timeout: 250ms
lb_policy: LEAST_REQUEST
protocol: use_downstream
dns_refresh_rate: 10s
endpoints:
  - address: backend.svc:8080
    weight: 3
  - address: other.svc:8080
circuit_breakers:
  max_connections: 10
max_requests_per_connection: 100
http2:
  max_concurrent_streams: 50
`
	var c ClusterConfig
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate("clusters[0]"); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"connect_timeout", c.ConnectTimeout.D(), 250 * time.Millisecond},
		{"dns_refresh_rate", c.DNSRefreshRate.D(), 10 * time.Second},
		{"idle_timeout default", c.IdleTimeout.D(), time.Hour},
		{"weight", c.Endpoints[0].Weight, uint32(3)},
		{"weight default", c.Endpoints[1].Weight, uint32(1)},
		{"max_connections", c.CircuitBreakers.MaxConnections, uint32(10)},
		{"max_pending_requests default", c.CircuitBreakers.MaxPendingRequests, uint32(1024)},
		{"max_requests default", c.CircuitBreakers.MaxRequests, uint32(1024)},
		{"max_retries default", c.CircuitBreakers.MaxRetries, uint32(3)},
		{"max_concurrent_streams", c.HTTP2.MaxConcurrentStreams, uint32(50)},
		{"max_requests_per_connection", c.MaxRequestsPerConnection, uint32(100)},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}

	var d ClusterConfig
	d.ApplyDefaults()
	if d.Type != TypeStatic || d.LBPolicy != LBRoundRobin || d.Protocol != ProtocolHTTP1 ||
		d.ConnectTimeout.D() != 5*time.Second || d.DNSRefreshRate.D() != 5*time.Second {
		t.Fatalf("defaults: %+v", d)
	}
}

func TestClusterConfigValidate(t *testing.T) {
	base := func() ClusterConfig {
		c := ClusterConfig{Name: "c", Endpoints: []EndpointConfig{{Address: "127.0.0.1:80"}}}
		c.ApplyDefaults()
		return c
	}
	tests := []struct {
		name   string
		mutate func(*ClusterConfig)
		want   []string // every line of the joined error
	}{
		{"valid", func(*ClusterConfig) {}, nil},
		{"valid dns", func(c *ClusterConfig) { c.Type = TypeStrictDNS; c.Endpoints[0].Address = "localhost:80" }, nil},
		{"valid ipv6", func(c *ClusterConfig) { c.Endpoints[0].Address = "[::1]:80" }, nil},
		{"empty name", func(c *ClusterConfig) { c.Name = "" }, []string{"clusters[2].name: must not be empty"}},
		{"bad type", func(c *ClusterConfig) { c.Type = "EDS" },
			[]string{`clusters[2].type: unknown cluster type "EDS" (want STATIC, STRICT_DNS or ORIGINAL_DST)`}},
		{"bad policy", func(c *ClusterConfig) { c.LBPolicy = "LEAST_CONN" },
			[]string{`clusters[2].lb_policy: unknown policy "LEAST_CONN" (want ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH or MAGLEV)`}},
		{"bad dns family", func(c *ClusterConfig) { c.DNSLookupFamily = "V5" },
			[]string{`clusters[2].dns_lookup_family: unknown family "V5" (want V4_PREFERRED, AUTO, V4_ONLY, V6_ONLY or ALL)`}},
		{"bad protocol", func(c *ClusterConfig) { c.Protocol = "h3" },
			[]string{`clusters[2].protocol: unknown protocol "h3" (want http1, http2 or use_downstream)`}},
		{"no endpoints", func(c *ClusterConfig) { c.Endpoints = nil },
			[]string{"clusters[2].endpoints: a cluster needs at least one endpoint"}},
		{"host name in static", func(c *ClusterConfig) { c.Endpoints[0].Address = "localhost:80" },
			[]string{`clusters[2].endpoints[0].address: "localhost:80": a STATIC cluster needs an IP address (use type STRICT_DNS for host names)`}},
		{"missing port", func(c *ClusterConfig) { c.Endpoints[0].Address = "127.0.0.1" },
			[]string{`clusters[2].endpoints[0].address: "127.0.0.1" is not host:port`}},
		{"bad port", func(c *ClusterConfig) { c.Endpoints[0].Address = "127.0.0.1:99999" },
			[]string{`clusters[2].endpoints[0].address: "127.0.0.1:99999": port "99999" must be a number in 1..65535`}},
		{"empty address", func(c *ClusterConfig) { c.Endpoints[0].Address = "" },
			[]string{"clusters[2].endpoints[0].address: must not be empty"}},
		{"duplicate and weight", func(c *ClusterConfig) {
			c.Endpoints = append(c.Endpoints, EndpointConfig{Address: "127.0.0.1:80", Weight: 200})
		}, []string{
			"clusters[2].endpoints[1].address: duplicate of endpoints[0]",
			"clusters[2].endpoints[1].weight: 200 out of range 1..128",
		}},
		{"outlier detection", func(c *ClusterConfig) {
			c.OutlierDetection = &OutlierDetectionConfig{MaxEjectionPercent: 101}
			c.ApplyDefaults()
		}, []string{"clusters[2].outlier_detection.max_ejection_percent: 101 out of range 1..100"}},
		{"outlier detection defaults", func(c *ClusterConfig) {
			c.OutlierDetection = &OutlierDetectionConfig{}
			c.ApplyDefaults()
			if od := c.OutlierDetection; od.Consecutive5xx != 5 || od.Interval.D() != 10*time.Second ||
				od.BaseEjectionTime.D() != 30*time.Second || od.MaxEjectionPercent != 10 {
				c.Name = "" // fail the case visibly
			}
		}, nil},
		{"outlier detection completed", func(c *ClusterConfig) {
			over, under := uint32(101), uint32(50)
			c.OutlierDetection = &OutlierDetectionConfig{EnforcingConsecutive5xx: &over, EnforcingConsecutiveGatewayFailure: &under}
			c.OutlierDetection.BaseEjectionTime = config.Duration(time.Minute)
			c.OutlierDetection.MaxEjectionTime = config.Duration(time.Second)
			c.ApplyDefaults()
		}, []string{
			"clusters[2].outlier_detection.max_ejection_time: 1s is shorter than base_ejection_time 1m0s",
			"clusters[2].outlier_detection.enforcing_consecutive_5xx: 101 out of range 0..100",
		}},
		{"outlier detection new defaults", func(c *ClusterConfig) {
			c.OutlierDetection = &OutlierDetectionConfig{BaseEjectionTime: config.Duration(10 * time.Minute)}
			c.ApplyDefaults()
			od := c.OutlierDetection
			if od.ConsecutiveGatewayFailure != 5 || od.MaxEjectionTime.D() != 10*time.Minute ||
				*od.EnforcingConsecutive5xx != 100 || *od.EnforcingConsecutiveGatewayFailure != 0 {
				c.Name = ""
			}
		}, nil},
		{"health check defaults", func(c *ClusterConfig) {
			c.HealthChecks = []HealthCheckConfig{{HTTP: &HTTPHealthCheck{Path: "/healthz"}}}
			c.ApplyDefaults()
			hc := c.HealthChecks[0]
			if hc.Timeout.D() != time.Second || hc.Interval.D() != 10*time.Second || hc.NoTrafficInterval.D() != time.Minute ||
				hc.UnhealthyThreshold != 3 || hc.HealthyThreshold != 2 || hc.HTTP.Host != "c" ||
				len(hc.HTTP.ExpectedStatuses) != 1 || hc.HTTP.ExpectedStatuses[0] != (StatusRange{200, 201}) {
				c.Name = ""
			}
		}, nil},
		{"health check errors", func(c *ClusterConfig) {
			c.HealthChecks = []HealthCheckConfig{
				{Interval: config.Duration(-time.Second), IntervalJitter: config.Duration(-1),
					HTTP: &HTTPHealthCheck{Path: "healthz", Host: "a b", ExpectedStatuses: []StatusRange{{200, 200}, {99, 700}}}},
				{TCP: &TCPHealthCheck{Send: "zz", Receive: []string{"", "0g"}}},
				{HTTP: &HTTPHealthCheck{Path: "/"}, TCP: &TCPHealthCheck{}},
				{},
			}
			c.ApplyDefaults()
		}, []string{
			"clusters[2].health_checks: at most one health check per cluster (got 4)",
			"clusters[2].health_checks[0].interval: must be positive",
			"clusters[2].health_checks[0].interval_jitter: must not be negative",
			`clusters[2].health_checks[0].http_health_check.path: "healthz" must be an origin-form path starting with "/"`,
			`clusters[2].health_checks[0].http_health_check.host: "a b" is not a valid authority`,
			"clusters[2].health_checks[0].http_health_check.expected_statuses[0]: [200, 200) is not a non-empty range within [100, 600)",
			"clusters[2].health_checks[0].http_health_check.expected_statuses[1]: [99, 700) is not a non-empty range within [100, 600)",
			"clusters[2].health_checks[1].tcp_health_check.send: not hex: encoding/hex: invalid byte: U+007A 'z'",
			"clusters[2].health_checks[1].tcp_health_check.receive[0]: must not be empty",
			"clusters[2].health_checks[1].tcp_health_check.receive[1]: not hex: encoding/hex: invalid byte: U+0067 'g'",
			"clusters[2].health_checks[2]: http_health_check and tcp_health_check are mutually exclusive",
			"clusters[2].health_checks[3]: one of http_health_check and tcp_health_check is required",
		}},
		{"tls", func(c *ClusterConfig) {
			c.TLS = &UpstreamTLSConfig{CertFile: "c.pem", MinVersion: "1.1", SNI: "10.0.0.1", ALPN: []string{""}}
		}, []string{
			"clusters[2].tls.cert_file: cert_file and key_file go together",
			`clusters[2].tls.min_version: unknown version "1.1" (want 1.2 or 1.3)`,
			`clusters[2].tls.sni: "10.0.0.1" is not a DNS name`,
			"clusters[2].tls.alpn[0]: protocol names are 1..255 bytes",
		}},
		{"tls defaults", func(c *ClusterConfig) {
			c.TLS = &UpstreamTLSConfig{}
			c.ApplyDefaults()
			if c.TLS.MinVersion != "1.2" {
				c.Name = ""
			}
		}, nil},
		{"zero limits", func(c *ClusterConfig) {
			c.CircuitBreakers = CircuitBreakersConfig{}
			c.HTTP2.MaxConcurrentStreams = 0
			c.ConnectTimeout = 0
		}, []string{
			"clusters[2].connect_timeout: must be positive",
			"clusters[2].http2.max_concurrent_streams: must be positive",
			"clusters[2].circuit_breakers.max_connections: must be positive",
			"clusters[2].circuit_breakers.max_pending_requests: must be positive",
			"clusters[2].circuit_breakers.max_requests: must be positive",
			"clusters[2].circuit_breakers.max_retries: must be positive",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			err := c.Validate("clusters[2]")
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("errors:\n%s\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestNewManagerRejectsBadConfig(t *testing.T) {
	_, err := NewManager([]ClusterConfig{
		staticCluster("a", "127.0.0.1:1"),
		staticCluster("a", "127.0.0.1:2"),
		{Name: "b", LBPolicy: "WRR", Endpoints: []EndpointConfig{{Address: "127.0.0.1:3"}}},
	}, Options{})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`clusters[1].name: duplicate cluster name "a"`,
		`clusters[2].lb_policy: unknown policy "WRR"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func FuzzClusterConfigYAML(f *testing.F) {
	f.Add([]byte("name: a\nendpoints: [{address: 127.0.0.1:80}]\n"))
	f.Add([]byte("name: a\ntype: STRICT_DNS\nconnect_timeout: 1s\nendpoints: [{address: 'x:1', weight: 7}]\n"))
	f.Add([]byte("circuit_breakers: {max_connections: -1}\n"))
	f.Add([]byte("name: a\nendpoints: [{address: 127.0.0.1:80}]\nhealth_checks: [{interval: 1s, http_health_check: {path: /h, expected_statuses: [{start: 200, end: 400}]}}]\n"))
	f.Add([]byte("name: a\nendpoints: [{address: 127.0.0.1:80}]\nhealth_checks: [{tcp_health_check: {send: 0a0b, receive: [zz, '']}}, {}]\n"))
	f.Add([]byte("name: a\nendpoints: [{address: 127.0.0.1:80}]\ntls: {sni: x, cert_file: c, min_version: '1.3', alpn: [h2]}\n"))
	f.Add([]byte("outlier_detection: {enforcing_consecutive_5xx: 200, max_ejection_time: 1s, base_ejection_time: 1m, consecutive_gateway_failure: 0}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c ClusterConfig
		if yaml.Unmarshal(data, &c) != nil {
			return
		}
		c.ApplyDefaults()
		if err := c.Validate("c"); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "c.") {
					t.Fatalf("error line without field path: %q", line)
				}
			}
		}
	})
}
