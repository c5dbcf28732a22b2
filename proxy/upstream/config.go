package upstream

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/remora-mesh/remora/internal/config"
)

// Cluster discovery types.
const (
	TypeStatic    = "STATIC"
	TypeStrictDNS = "STRICT_DNS"
	// TypeOriginalDst is Envoy's ORIGINAL_DST (passthrough) cluster: it
	// has no configured endpoints; each connection goes to the downstream
	// connection's original destination, as the original_dst listener
	// filter recovered it (StreamInfo.DownstreamLocalAddress).
	TypeOriginalDst = "ORIGINAL_DST"
)

// Load-balancing policies.
const (
	LBRoundRobin   = "ROUND_ROBIN"
	LBLeastRequest = "LEAST_REQUEST"
	LBRandom       = "RANDOM"
	LBRingHash     = "RING_HASH"
	LBMaglev       = "MAGLEV"
	// LBClusterProvided is the only policy of an ORIGINAL_DST cluster
	// (and its default): the destination picks the host.
	LBClusterProvided = "CLUSTER_PROVIDED"
)

// DNS lookup families of a STRICT_DNS cluster (Envoy's dns_lookup_family).
const (
	DNSV4Preferred = "V4_PREFERRED"
	DNSAuto        = "AUTO"
	DNSV4Only      = "V4_ONLY"
	DNSV6Only      = "V6_ONLY"
	DNSAll         = "ALL"
)

// Upstream protocols.
const (
	ProtocolHTTP1         = "http1"
	ProtocolHTTP2         = "http2"
	ProtocolUseDownstream = "use_downstream"
)

// Defaults applied by ApplyDefaults (Envoy's).
const (
	DefaultConnectTimeout       = 5 * time.Second
	DefaultDNSRefreshRate       = 5 * time.Second
	DefaultIdleTimeout          = time.Hour
	DefaultMaxConnections       = 1024
	DefaultMaxPendingRequests   = 1024
	DefaultMaxRequests          = 1024
	DefaultMaxRetries           = 3
	DefaultMaxConcurrentStreams = 100
	DefaultConsecutive5xx       = 5
	DefaultOutlierInterval      = 10 * time.Second
	DefaultBaseEjectionTime     = 30 * time.Second
	DefaultMaxEjectionPercent   = 10
	// MaxEndpointWeight bounds an endpoint's weight, as Envoy's
	// load_balancing_weight (1..128) does.
	MaxEndpointWeight = 128
)

// ClusterConfig is one upstream cluster: a named set of endpoints, how they
// are discovered, balanced across and connected to. The zero value of every
// optional field means "the default"; ApplyDefaults fills them in.
type ClusterConfig struct {
	// Name identifies the cluster in routes, stats and the admin views.
	Name string `yaml:"name"`
	// Type is STATIC (endpoints are IP:port) or STRICT_DNS (endpoints are
	// host:port, resolved every DNSRefreshRate; every address becomes a
	// host). Default STATIC.
	Type string `yaml:"type"`
	// ConnectTimeout bounds establishing a TCP connection. Default 5s.
	ConnectTimeout config.Duration `yaml:"connect_timeout"`
	// LBPolicy is ROUND_ROBIN (smooth weighted), LEAST_REQUEST (power of
	// two choices), RANDOM (weighted), RING_HASH or MAGLEV (consistent
	// hashing on StreamOptions.LB.HashKey; random without a key). Default
	// ROUND_ROBIN.
	LBPolicy string `yaml:"lb_policy"`
	// Endpoints are the cluster's members.
	Endpoints []EndpointConfig `yaml:"endpoints"`
	// Protocol is http1, http2 (h2c with prior knowledge) or use_downstream
	// (the downstream request's protocol). Default http1.
	Protocol string `yaml:"protocol"`
	// DNSRefreshRate is how often a STRICT_DNS cluster re-resolves its
	// endpoints. Default 5s.
	DNSRefreshRate config.Duration `yaml:"dns_refresh_rate"`
	// DNSLookupFamily chooses which resolved addresses of a STRICT_DNS
	// endpoint become hosts: V4_PREFERRED (IPv4 ones if there are any,
	// else IPv6), AUTO (IPv6 ones if there are any, else IPv4), V4_ONLY,
	// V6_ONLY or ALL. Default V4_PREFERRED, so that "localhost" does not
	// become two hosts of which one (::1) nobody listens on.
	DNSLookupFamily string `yaml:"dns_lookup_family"`
	// CircuitBreakers bound the cluster's connections and requests.
	CircuitBreakers CircuitBreakersConfig `yaml:"circuit_breakers"`
	// MaxRequestsPerConnection closes a connection after this many
	// requests; 0 means unlimited.
	MaxRequestsPerConnection uint32 `yaml:"max_requests_per_connection"`
	// IdleTimeout closes a connection that carried no request for this
	// long. Default 1h.
	IdleTimeout config.Duration `yaml:"idle_timeout"`
	// HTTP2 holds HTTP/2 connection settings.
	HTTP2 HTTP2Config `yaml:"http2"`
	// OutlierDetection ejects hosts that keep failing; nil (the default)
	// disables it, as in Envoy.
	OutlierDetection *OutlierDetectionConfig `yaml:"outlier_detection"`
	// SourceAddress, when set, is the IP upstream connections are bound
	// to (Envoy's upstream_bind_config). Istio's inbound passthrough binds
	// 127.0.0.6 so that the capture rules let it reach the pod's own IP
	// without being redirected again. Default: chosen by the kernel.
	SourceAddress string `yaml:"source_address,omitempty"`
	// OriginalDstLBConfig tunes an ORIGINAL_DST cluster; nil means the
	// defaults.
	OriginalDstLBConfig *OriginalDstLBConfig `yaml:"original_dst_lb_config,omitempty"`
}

// OriginalDstLBConfig is Envoy's original_dst_lb_config.
type OriginalDstLBConfig struct {
	// UseHTTPHeader lets an HTTP request name its destination in the
	// x-envoy-original-dst-host header ("ip:port"), overriding the
	// connection's original destination; a request with an invalid value
	// fails with UH. Any client that reaches the listener can then send
	// requests anywhere: enable it only where that is intended. Default
	// false.
	UseHTTPHeader bool `yaml:"use_http_header,omitempty"`
}

// OutlierDetectionConfig is Envoy's consecutive-5xx outlier detection: a
// host whose responses are 5xx (or whose connections fail, or which resets
// before answering) Consecutive5xx times in a row is taken out of load
// balancing for BaseEjectionTime times the number of times it has been
// ejected (at most 300s or BaseEjectionTime, whichever is larger).
// Ejected hosts are checked for return every Interval. At most
// MaxEjectionPercent of the hosts are ejected at once, but always at
// least one may be. When fewer than half the hosts are left, the load
// balancer uses all of them (Envoy's 50% panic threshold).
type OutlierDetectionConfig struct {
	Consecutive5xx     uint32          `yaml:"consecutive_5xx"`      // default 5
	Interval           config.Duration `yaml:"interval"`             // default 10s
	BaseEjectionTime   config.Duration `yaml:"base_ejection_time"`   // default 30s
	MaxEjectionPercent uint32          `yaml:"max_ejection_percent"` // default 10
}

// EndpointConfig is one cluster member.
type EndpointConfig struct {
	// Address is "ip:port" (STATIC) or "host:port" (STRICT_DNS).
	Address string `yaml:"address"`
	// Weight is the endpoint's relative share of requests, 1..128.
	// Default 1.
	Weight uint32 `yaml:"weight"`
}

// CircuitBreakersConfig holds the cluster's resource limits. A zero limit
// means the default (Envoy cannot express "0 allowed" either without
// disabling the cluster, so 0 is not a useful value).
type CircuitBreakersConfig struct {
	MaxConnections     uint32 `yaml:"max_connections"`      // default 1024
	MaxPendingRequests uint32 `yaml:"max_pending_requests"` // default 1024
	MaxRequests        uint32 `yaml:"max_requests"`         // default 1024
	MaxRetries         uint32 `yaml:"max_retries"`          // default 3
}

// HTTP2Config holds settings for HTTP/2 upstream connections.
type HTTP2Config struct {
	// MaxConcurrentStreams is how many streams one connection carries
	// before the pool opens another (also bounded by the server's
	// SETTINGS_MAX_CONCURRENT_STREAMS). Default 100.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
}

// ApplyDefaults fills every unset field with its default.
func (c *ClusterConfig) ApplyDefaults() {
	if c.Type == "" {
		c.Type = TypeStatic
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = config.Duration(DefaultConnectTimeout)
	}
	if c.LBPolicy == "" {
		c.LBPolicy = LBRoundRobin
		if c.Type == TypeOriginalDst {
			c.LBPolicy = LBClusterProvided
		}
	}
	if c.Protocol == "" {
		c.Protocol = ProtocolHTTP1
	}
	if c.DNSRefreshRate == 0 {
		c.DNSRefreshRate = config.Duration(DefaultDNSRefreshRate)
	}
	if c.DNSLookupFamily == "" {
		c.DNSLookupFamily = DNSV4Preferred
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = config.Duration(DefaultIdleTimeout)
	}
	cb := &c.CircuitBreakers
	if cb.MaxConnections == 0 {
		cb.MaxConnections = DefaultMaxConnections
	}
	if cb.MaxPendingRequests == 0 {
		cb.MaxPendingRequests = DefaultMaxPendingRequests
	}
	if cb.MaxRequests == 0 {
		cb.MaxRequests = DefaultMaxRequests
	}
	if cb.MaxRetries == 0 {
		cb.MaxRetries = DefaultMaxRetries
	}
	if c.HTTP2.MaxConcurrentStreams == 0 {
		c.HTTP2.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if od := c.OutlierDetection; od != nil {
		if od.Consecutive5xx == 0 {
			od.Consecutive5xx = DefaultConsecutive5xx
		}
		if od.Interval == 0 {
			od.Interval = config.Duration(DefaultOutlierInterval)
		}
		if od.BaseEjectionTime == 0 {
			od.BaseEjectionTime = config.Duration(DefaultBaseEjectionTime)
		}
		if od.MaxEjectionPercent == 0 {
			od.MaxEjectionPercent = DefaultMaxEjectionPercent
		}
	}
	for i := range c.Endpoints {
		if c.Endpoints[i].Weight == 0 {
			c.Endpoints[i].Weight = 1
		}
	}
}

// Validate returns every problem in c, each prefixed by path and the field's
// path below it (path "clusters[2]" gives
// "clusters[2].endpoints[0].address: ..."), joined with errors.Join. It
// expects ApplyDefaults to have run; unset enumerations are errors.
func (c *ClusterConfig) Validate(path string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	if c.Name == "" {
		bad("name", "must not be empty")
	}
	switch c.Type {
	case TypeStatic, TypeStrictDNS, TypeOriginalDst:
	default:
		bad("type", "unknown cluster type %q (want STATIC, STRICT_DNS or ORIGINAL_DST)", c.Type)
	}
	switch c.LBPolicy {
	case LBRoundRobin, LBLeastRequest, LBRandom, LBRingHash, LBMaglev:
		if c.Type == TypeOriginalDst {
			bad("lb_policy", "an ORIGINAL_DST cluster needs CLUSTER_PROVIDED (the default), got %q", c.LBPolicy)
		}
	case LBClusterProvided:
		if c.Type != TypeOriginalDst {
			bad("lb_policy", "CLUSTER_PROVIDED is only for ORIGINAL_DST clusters")
		}
	default:
		bad("lb_policy", "unknown policy %q (want ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH or MAGLEV)", c.LBPolicy)
	}
	if c.SourceAddress != "" {
		if ip := net.ParseIP(c.SourceAddress); ip == nil {
			bad("source_address", "%q is not an IP address", c.SourceAddress)
		}
	}
	switch c.Protocol {
	case ProtocolHTTP1, ProtocolHTTP2, ProtocolUseDownstream:
	default:
		bad("protocol", "unknown protocol %q (want http1, http2 or use_downstream)", c.Protocol)
	}
	switch c.DNSLookupFamily {
	case DNSV4Preferred, DNSAuto, DNSV4Only, DNSV6Only, DNSAll:
	default:
		bad("dns_lookup_family", "unknown family %q (want V4_PREFERRED, AUTO, V4_ONLY, V6_ONLY or ALL)", c.DNSLookupFamily)
	}
	if c.ConnectTimeout <= 0 {
		bad("connect_timeout", "must be positive")
	}
	if c.Type == TypeStrictDNS && c.DNSRefreshRate <= 0 {
		bad("dns_refresh_rate", "must be positive")
	}
	if c.IdleTimeout <= 0 {
		bad("idle_timeout", "must be positive")
	}
	if c.HTTP2.MaxConcurrentStreams == 0 {
		bad("http2.max_concurrent_streams", "must be positive")
	}
	if od := c.OutlierDetection; od != nil {
		if od.Consecutive5xx == 0 {
			bad("outlier_detection.consecutive_5xx", "must be positive")
		}
		if od.Interval <= 0 {
			bad("outlier_detection.interval", "must be positive")
		}
		if od.BaseEjectionTime <= 0 {
			bad("outlier_detection.base_ejection_time", "must be positive")
		}
		if od.MaxEjectionPercent == 0 || od.MaxEjectionPercent > 100 {
			bad("outlier_detection.max_ejection_percent", "%d out of range 1..100", od.MaxEjectionPercent)
		}
	}
	cb := c.CircuitBreakers
	for _, f := range []struct {
		name string
		v    uint32
	}{
		{"max_connections", cb.MaxConnections},
		{"max_pending_requests", cb.MaxPendingRequests},
		{"max_requests", cb.MaxRequests},
		{"max_retries", cb.MaxRetries},
	} {
		if f.v == 0 {
			bad("circuit_breakers."+f.name, "must be positive")
		}
	}
	if c.Type == TypeOriginalDst {
		if len(c.Endpoints) > 0 {
			bad("endpoints", "an ORIGINAL_DST cluster has no endpoints: it connects to each connection's original destination")
		}
		if c.OutlierDetection != nil {
			bad("outlier_detection", "not supported on an ORIGINAL_DST cluster")
		}
	} else if c.OriginalDstLBConfig != nil {
		bad("original_dst_lb_config", "only for ORIGINAL_DST clusters")
	} else if len(c.Endpoints) == 0 {
		bad("endpoints", "a cluster needs at least one endpoint")
	}
	seen := make(map[string]int, len(c.Endpoints))
	for i, ep := range c.Endpoints {
		field := "endpoints[" + strconv.Itoa(i) + "]"
		if err := validateAddress(ep.Address, c.Type); err != nil {
			bad(field+".address", "%v", err)
		} else if j, dup := seen[ep.Address]; dup {
			bad(field+".address", "duplicate of endpoints[%d]", j)
		} else {
			seen[ep.Address] = i
		}
		if ep.Weight == 0 || ep.Weight > MaxEndpointWeight {
			bad(field+".weight", "%d out of range 1..%d", ep.Weight, MaxEndpointWeight)
		}
	}
	return errors.Join(errs...)
}

func validateAddress(addr, typ string) error {
	if addr == "" {
		return errors.New("must not be empty")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q: port %q must be a number in 1..65535", addr, port)
	}
	if host == "" {
		return fmt.Errorf("%q: missing host", addr)
	}
	if typ == TypeStatic && net.ParseIP(host) == nil {
		return fmt.Errorf("%q: a STATIC cluster needs an IP address (use type STRICT_DNS for host names)", addr)
	}
	return nil
}
