package upstream

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
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
