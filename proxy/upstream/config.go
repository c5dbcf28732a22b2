package upstream

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
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
	DefaultConsecutiveGateway   = 5
	DefaultMaxEjectionTime      = 300 * time.Second
	// DefaultEnforcingConsecutive5xx and DefaultEnforcingConsecutiveGateway
	// are the percentages of detected outliers actually ejected (Envoy's
	// enforcing_consecutive_5xx 100 and enforcing_consecutive_gateway_failure 0).
	DefaultEnforcingConsecutive5xx     = 100
	DefaultEnforcingConsecutiveGateway = 0
	// Active health checking (Envoy requires these fields; Remora fills
	// them in).
	DefaultHCTimeout            = time.Second
	DefaultHCInterval           = 10 * time.Second
	DefaultHCNoTrafficInterval  = 60 * time.Second
	DefaultHCUnhealthyThreshold = 3
	DefaultHCHealthyThreshold   = 2
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
	// HealthChecks are the cluster's active health checks (at most one);
	// none (the default) means every host is healthy unless outlier
	// detection ejects it.
	HealthChecks []HealthCheckConfig `yaml:"health_checks"`
	// TLS, when set, makes every upstream connection a TLS client
	// connection (Envoy's UpstreamTlsContext); nil means plaintext.
	TLS *UpstreamTLSConfig `yaml:"tls"`
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

// HealthCheckConfig is one active health check (Envoy's HealthCheck): every
// Interval (NoTrafficInterval while the cluster has seen no traffic),
// plus a random share of IntervalJitter, each host is probed with a
// request bounded by Timeout. UnhealthyThreshold failures in a row mark a
// healthy host failed_active_hc; HealthyThreshold successes in a row bring
// it back. Hosts start failed_active_hc and pending_active_hc: their first
// check (run at once) decides alone, as in Envoy. Exactly one of HTTP and
// TCP is set.
type HealthCheckConfig struct {
	Timeout            config.Duration  `yaml:"timeout"`             // default 1s
	Interval           config.Duration  `yaml:"interval"`            // default 10s
	IntervalJitter     config.Duration  `yaml:"interval_jitter"`     // default 0
	NoTrafficInterval  config.Duration  `yaml:"no_traffic_interval"` // default 60s
	UnhealthyThreshold uint32           `yaml:"unhealthy_threshold"` // default 3
	HealthyThreshold   uint32           `yaml:"healthy_threshold"`   // default 2
	HTTP               *HTTPHealthCheck `yaml:"http_health_check"`
	TCP                *TCPHealthCheck  `yaml:"tcp_health_check"`
}

// HTTPHealthCheck probes a host with "GET Path" over the cluster's
// protocol (HTTP/2 for an http2 cluster, HTTP/1.1 otherwise, over TLS when
// the cluster has a tls block); a status in ExpectedStatuses passes.
type HTTPHealthCheck struct {
	// Path is the request path; required, starting with "/".
	Path string `yaml:"path"`
	// Host is the request's authority; default the cluster's name, as in
	// Envoy.
	Host string `yaml:"host"`
	// ExpectedStatuses are half-open ranges [start, end) of passing
	// statuses; default [{start: 200, end: 201}].
	ExpectedStatuses []StatusRange `yaml:"expected_statuses"`
}

// StatusRange is the status codes start <= code < end.
type StatusRange struct {
	Start uint32 `yaml:"start"`
	End   uint32 `yaml:"end"`
}

// TCPHealthCheck probes a host by connecting. Send, when set, is written
// once connected; then every block of Receive must arrive, in order but
// not necessarily adjacent (Envoy's fuzzy match), before the timeout.
// Both are hex strings, as Envoy's Payload.text.
type TCPHealthCheck struct {
	Send    string   `yaml:"send"`
	Receive []string `yaml:"receive"`
}

// UpstreamTLSConfig originates TLS to the cluster's hosts (Envoy's
// UpstreamTlsContext). The server's certificate is verified against CAFile
// (the system roots when empty) for the name sent as SNI, or for the
// endpoint's IP address when there is none. CertFile and KeyFile are a
// client certificate for mutual TLS. The files are read when the cluster
// is built and re-read on a later connection when one of them changed.
type UpstreamTLSConfig struct {
	// SNI is the server name sent and verified; default the endpoint's
	// host name for a STRICT_DNS cluster, none for an IP address.
	SNI      string `yaml:"sni"`
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ALPN is offered on connections that do not carry HTTP (tcp_proxy);
	// HTTP connections offer the protocol they speak ("h2" or
	// "http/1.1"), so that an http2 cluster negotiates h2.
	ALPN []string `yaml:"alpn"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
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
//
// ConsecutiveGatewayFailure counts only gateway failures (502, 503, 504,
// connection failures, resets and timeouts); detections of either kind
// are enforced (the host really ejected) with the Enforcing* percentage.
type OutlierDetectionConfig struct {
	Consecutive5xx            uint32          `yaml:"consecutive_5xx"`             // default 5
	ConsecutiveGatewayFailure uint32          `yaml:"consecutive_gateway_failure"` // default 5
	Interval                  config.Duration `yaml:"interval"`                    // default 10s
	BaseEjectionTime          config.Duration `yaml:"base_ejection_time"`          // default 30s
	MaxEjectionTime           config.Duration `yaml:"max_ejection_time"`           // default 300s
	MaxEjectionPercent        uint32          `yaml:"max_ejection_percent"`        // default 10
	// EnforcingConsecutive5xx is the percentage (0..100) of consecutive-5xx
	// detections that eject; nil means 100.
	EnforcingConsecutive5xx *uint32 `yaml:"enforcing_consecutive_5xx"`
	// EnforcingConsecutiveGatewayFailure is the same for gateway
	// failures; nil means 0 (detected and counted, not enforced), as in
	// Envoy.
	EnforcingConsecutiveGatewayFailure *uint32 `yaml:"enforcing_consecutive_gateway_failure"`
	// SuccessfulActiveHealthCheckUnejectHost returns an ejected host as
	// soon as an active health check of it passes; nil means true, as in
	// Envoy. Without health checks it has no effect.
	SuccessfulActiveHealthCheckUnejectHost *bool `yaml:"successful_active_health_check_uneject_host"`
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
		if od.ConsecutiveGatewayFailure == 0 {
			od.ConsecutiveGatewayFailure = DefaultConsecutiveGateway
		}
		if od.MaxEjectionTime == 0 {
			od.MaxEjectionTime = config.Duration(max(DefaultMaxEjectionTime, od.BaseEjectionTime.D()))
		}
		if od.EnforcingConsecutive5xx == nil {
			v := uint32(DefaultEnforcingConsecutive5xx)
			od.EnforcingConsecutive5xx = &v
		}
		if od.SuccessfulActiveHealthCheckUnejectHost == nil {
			v := true
			od.SuccessfulActiveHealthCheckUnejectHost = &v
		}
		if od.EnforcingConsecutiveGatewayFailure == nil {
			v := uint32(DefaultEnforcingConsecutiveGateway)
			od.EnforcingConsecutiveGatewayFailure = &v
		}
	}
	// Copied before being filled in, so that a ClusterConfig copied by
	// value (as NewManager does) never writes into its original.
	if len(c.HealthChecks) > 0 {
		c.HealthChecks = slices.Clone(c.HealthChecks)
		for i := range c.HealthChecks {
			c.HealthChecks[i].applyDefaults(c.Name)
		}
	}
	if c.TLS != nil && c.TLS.MinVersion == "" {
		t := *c.TLS
		t.MinVersion = TLSVersion12
		c.TLS = &t
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
		if od.ConsecutiveGatewayFailure == 0 {
			bad("outlier_detection.consecutive_gateway_failure", "must be positive")
		}
		if od.MaxEjectionTime <= 0 {
			bad("outlier_detection.max_ejection_time", "must be positive")
		} else if od.MaxEjectionTime < od.BaseEjectionTime {
			bad("outlier_detection.max_ejection_time", "%v is shorter than base_ejection_time %v", od.MaxEjectionTime.D(), od.BaseEjectionTime.D())
		}
		if p := od.EnforcingConsecutive5xx; p != nil && *p > 100 {
			bad("outlier_detection.enforcing_consecutive_5xx", "%d out of range 0..100", *p)
		}
		if p := od.EnforcingConsecutiveGatewayFailure; p != nil && *p > 100 {
			bad("outlier_detection.enforcing_consecutive_gateway_failure", "%d out of range 0..100", *p)
		}
	}
	if len(c.HealthChecks) > 1 {
		bad("health_checks", "at most one health check per cluster (got %d)", len(c.HealthChecks))
	}
	for i := range c.HealthChecks {
		errs = append(errs, c.HealthChecks[i].validate(path+".health_checks["+strconv.Itoa(i)+"]")...)
	}
	if c.TLS != nil {
		errs = append(errs, c.TLS.validate(path+".tls")...)
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

// TLS versions accepted by UpstreamTLSConfig.MinVersion.
const (
	TLSVersion12 = "1.2"
	TLSVersion13 = "1.3"
)

func (hc *HealthCheckConfig) applyDefaults(cluster string) {
	if hc.Timeout == 0 {
		hc.Timeout = config.Duration(DefaultHCTimeout)
	}
	if hc.Interval == 0 {
		hc.Interval = config.Duration(DefaultHCInterval)
	}
	if hc.NoTrafficInterval == 0 {
		hc.NoTrafficInterval = config.Duration(DefaultHCNoTrafficInterval)
	}
	if hc.UnhealthyThreshold == 0 {
		hc.UnhealthyThreshold = DefaultHCUnhealthyThreshold
	}
	if hc.HealthyThreshold == 0 {
		hc.HealthyThreshold = DefaultHCHealthyThreshold
	}
	if hc.HTTP != nil {
		h := *hc.HTTP
		hc.HTTP = &h
		if h.Host == "" {
			h.Host = cluster
		}
		if len(h.ExpectedStatuses) == 0 {
			h.ExpectedStatuses = []StatusRange{{Start: 200, End: 201}}
		}
		*hc.HTTP = h
	}
}

func (hc *HealthCheckConfig) validate(path string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	for _, d := range []struct {
		name string
		v    config.Duration
	}{{"timeout", hc.Timeout}, {"interval", hc.Interval}, {"no_traffic_interval", hc.NoTrafficInterval}} {
		if d.v <= 0 {
			bad(d.name, "must be positive")
		}
	}
	if hc.IntervalJitter < 0 {
		bad("interval_jitter", "must not be negative")
	}
	if hc.UnhealthyThreshold == 0 {
		bad("unhealthy_threshold", "must be positive")
	}
	if hc.HealthyThreshold == 0 {
		bad("healthy_threshold", "must be positive")
	}
	switch {
	case hc.HTTP != nil && hc.TCP != nil:
		errs = append(errs, fmt.Errorf("%s: http_health_check and tcp_health_check are mutually exclusive", path))
	case hc.HTTP == nil && hc.TCP == nil:
		errs = append(errs, fmt.Errorf("%s: one of http_health_check and tcp_health_check is required", path))
	}
	if h := hc.HTTP; h != nil {
		if !strings.HasPrefix(h.Path, "/") || !validFieldValue(h.Path) || containsSpace(h.Path) {
			bad("http_health_check.path", "%q must be an origin-form path starting with \"/\"", h.Path)
		}
		if !validFieldValue(h.Host) || containsSpace(h.Host) {
			bad("http_health_check.host", "%q is not a valid authority", h.Host)
		}
		for i, r := range h.ExpectedStatuses {
			if r.Start < 100 || r.End > 600 || r.Start >= r.End {
				bad("http_health_check.expected_statuses["+strconv.Itoa(i)+"]",
					"[%d, %d) is not a non-empty range within [100, 600)", r.Start, r.End)
			}
		}
	}
	if t := hc.TCP; t != nil {
		if _, err := hex.DecodeString(t.Send); err != nil {
			bad("tcp_health_check.send", "not hex: %v", err)
		}
		for i, r := range t.Receive {
			if b, err := hex.DecodeString(r); err != nil {
				bad("tcp_health_check.receive["+strconv.Itoa(i)+"]", "not hex: %v", err)
			} else if len(b) == 0 {
				bad("tcp_health_check.receive["+strconv.Itoa(i)+"]", "must not be empty")
			}
		}
	}
	return errs
}

func (t *UpstreamTLSConfig) validate(path string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("cert_file", "cert_file and key_file go together")
	}
	switch t.MinVersion {
	case TLSVersion12, TLSVersion13:
	default:
		bad("min_version", "unknown version %q (want 1.2 or 1.3)", t.MinVersion)
	}
	if t.SNI != "" && (net.ParseIP(t.SNI) != nil || !validFieldValue(t.SNI) || containsSpace(t.SNI)) {
		bad("sni", "%q is not a DNS name", t.SNI)
	}
	for i, p := range t.ALPN {
		if p == "" || len(p) > 255 {
			bad("alpn["+strconv.Itoa(i)+"]", "protocol names are 1..255 bytes")
		}
	}
	return errs
}
