package config

import (
	"github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/proxy/upstream"
	"gopkg.in/yaml.v3"
)

// Bootstrap is the whole sidecar configuration.
type Bootstrap struct {
	Node  Node  `yaml:"node"`
	Admin Admin `yaml:"admin"`
	// DrainTimeout bounds how long in-flight streams may run after SIGTERM
	// (or /quitquitquit) before the proxy exits. Default 15s.
	DrainTimeout config.Duration `yaml:"drain_timeout"`
	Logging      Logging         `yaml:"logging,omitempty"`
	Listeners    []Listener      `yaml:"listeners"`
	// RouteConfigs are named route configurations that connection
	// managers reference with route_config_name.
	RouteConfigs []RouteConfiguration     `yaml:"route_configs,omitempty"`
	Clusters     []upstream.ClusterConfig `yaml:"clusters"`
}

// Node identifies this proxy.
type Node struct {
	ID      string `yaml:"id"`
	Cluster string `yaml:"cluster"`
	// Metadata is free-form, exposed by /server_info.
	Metadata map[string]string `yaml:"metadata,omitempty"`
}

// Admin is the admin HTTP server.
type Admin struct {
	// Address to listen on; default 127.0.0.1:15000. "-" disables it.
	Address string `yaml:"address"`
	// Pprof serves Go's profiles under /debug/pprof/ (Envoy's
	// /cpuprofiler and /heapprofiler, in Go's form). Off by default.
	Pprof bool `yaml:"pprof,omitempty"`
}

// Logging sets log levels.
type Logging struct {
	// Level is the default level: debug, info, warn, error. Default info.
	Level string `yaml:"level,omitempty"`
	// Components overrides the level per component (router, hcm, listener, admin, upstream ...).
	Components map[string]string `yaml:"components,omitempty"`
}

// Listener is one TCP listening socket.
type Listener struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// Direction is "inbound" or "outbound" (default outbound); filters see it.
	Direction string `yaml:"direction,omitempty"`
	// MaxConnections caps concurrently open downstream connections; 0 is unlimited.
	MaxConnections int `yaml:"max_connections,omitempty"`
	// PerConnectionBufferLimitBytes bounds the body a filter may buffer
	// (StopAndBuffer) per stream; default 1 MiB.
	PerConnectionBufferLimitBytes int              `yaml:"per_connection_buffer_limit_bytes"`
	ListenerFilters               []ListenerFilter `yaml:"listener_filters,omitempty"`
	FilterChains                  []FilterChain    `yaml:"filter_chains"`
	// ListenerFiltersTimeout bounds how long listener filters (tls_inspector)
	// wait for the first bytes; default 15s.
	ListenerFiltersTimeout config.Duration `yaml:"listener_filters_timeout"`
	// UseOriginalDst makes this a virtual listener (Istio's 15001 and
	// 15006): each connection whose original destination (before an
	// iptables REDIRECT) is known is handed to the listener bound to that
	// destination, exact ip:port first, then 0.0.0.0:port or [::]:port;
	// when none matches, this listener's own filter chains serve it. It
	// implies the original_dst listener filter. Default false.
	UseOriginalDst bool `yaml:"use_original_dst,omitempty"`
	// BindToPort false makes a listener that opens no socket: it only
	// serves connections a use_original_dst listener hands to it, so its
	// address must be an IP literal with a port. Default true.
	BindToPort *bool `yaml:"bind_to_port,omitempty"`
}

// Binds reports whether the listener opens its own socket (bind_to_port,
// true when unset).
func (l *Listener) Binds() bool { return l.BindToPort == nil || *l.BindToPort }

// Listener filter names.
const (
	// ListenerFilterTLSInspector reads the ClientHello (SNI, ALPN) without
	// consuming it.
	ListenerFilterTLSInspector = "tls_inspector"
	// ListenerFilterOriginalDst recovers the destination a connection had
	// before an iptables REDIRECT (Linux only); it always runs first.
	ListenerFilterOriginalDst = "original_dst"
)

// ListenerFilter runs on a new connection before a filter chain is chosen.
// The built-ins are original_dst and tls_inspector.
type ListenerFilter struct {
	Name string `yaml:"name"`
}

// HasListenerFilter reports whether the listener lists the named filter.
func (l *Listener) HasListenerFilter(name string) bool {
	for _, f := range l.ListenerFilters {
		if f.Name == name {
			return true
		}
	}
	return false
}

// FilterChain is a network filter chain with the conditions that select it.
type FilterChain struct {
	Name  string           `yaml:"name,omitempty"`
	Match FilterChainMatch `yaml:"filter_chain_match,omitempty"`
	// TLS terminates TLS on the connection when set.
	TLS *DownstreamTLS `yaml:"tls,omitempty"`
	// Exactly one network filter is set: HTTPConnectionManager or TCPProxy.
	HTTPConnectionManager *HCM      `yaml:"http_connection_manager,omitempty"`
	TCPProxy              *TCPProxy `yaml:"tcp_proxy,omitempty"`
}

// TCPProxy is the tcp_proxy network filter: every connection of the
// chain is relayed byte for byte to a host of Cluster.
type TCPProxy struct {
	// StatPrefix labels the filter's remora_tcp_* metrics; default "tcp".
	StatPrefix string `yaml:"stat_prefix"`
	// Cluster is the upstream cluster; required.
	Cluster string `yaml:"cluster"`
	// IdleTimeout closes a connection on which neither direction carried
	// a byte for this long; default 1h, 0s disables it.
	IdleTimeout *config.Duration `yaml:"idle_timeout"`
	// AccessLog entries are the same as the connection manager's; each
	// sink is called once per connection, when it ends.
	AccessLog []AccessLog `yaml:"access_log,omitempty"`
	// Mixer, when set, checks each connection and reports it to the Mixer
	// server (the mixer HTTP filter's config plus report_interval; see
	// docs/configuration.md). It is decoded by the mixer package.
	Mixer *yaml.Node `yaml:"mixer,omitempty"`
}

// FilterChainMatch selects a filter chain; empty fields match anything.
// The most specific chain wins, in Envoy's order: destination port, then
// server name (exact before the longest *.suffix wildcard), then transport
// protocol, then application protocols.
type FilterChainMatch struct {
	DestinationPort int `yaml:"destination_port,omitempty"`
	// ServerNames are SNI names, exact or "*.suffix" wildcards.
	ServerNames []string `yaml:"server_names,omitempty"`
	// TransportProtocol is "tls" or "raw_buffer" (as tls_inspector detects).
	TransportProtocol string `yaml:"transport_protocol,omitempty"`
	// ApplicationProtocols are ALPN names offered by the client ("h2", "http/1.1").
	ApplicationProtocols []string `yaml:"application_protocols,omitempty"`
}

// DownstreamTLS terminates TLS.
type DownstreamTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ALPN protocols offered; default [h2, http/1.1].
	ALPN []string `yaml:"alpn"`
	// ClientCAFile, when set, requests and verifies client certificates.
	ClientCAFile string `yaml:"client_ca_file,omitempty"`
	// RequireClientCertificate rejects clients without a verified certificate.
	RequireClientCertificate bool `yaml:"require_client_certificate,omitempty"`
}

// HCM is the HTTP connection manager network filter.
type HCM struct {
	StatPrefix string `yaml:"stat_prefix"`
	// CodecType is AUTO (HTTP/1.1, h2c and TLS-negotiated HTTP/2; the
	// default), HTTP1 or HTTP2.
	CodecType string `yaml:"codec_type"`
	// RouteConfigName names one of the bootstrap's route_configs;
	// RouteConfig is an inline one. Exactly one must be set.
	RouteConfigName string              `yaml:"route_config_name,omitempty"`
	RouteConfig     *RouteConfiguration `yaml:"route_config,omitempty"`
	HTTPFilters     []HTTPFilter        `yaml:"http_filters,omitempty"`
	AccessLog       []AccessLog         `yaml:"access_log,omitempty"`
	// MaxRequestHeadersKB bounds request headers; larger gets 431. Default 60.
	MaxRequestHeadersKB int `yaml:"max_request_headers_kb"`
	// StreamIdleTimeout ends a stream with no activity (408/SI); default 5m, 0s disables.
	StreamIdleTimeout *config.Duration `yaml:"stream_idle_timeout"`
	// RequestTimeout bounds receiving the whole request (408); default 0 (disabled).
	RequestTimeout config.Duration `yaml:"request_timeout"`
	// IdleTimeout closes idle downstream connections; default 1h.
	IdleTimeout config.Duration `yaml:"idle_timeout"`
	// GenerateRequestID adds x-request-id when absent; default true.
	GenerateRequestID *bool `yaml:"generate_request_id"`
	// UseRemoteAddress appends the peer address to x-forwarded-for; default true.
	UseRemoteAddress *bool `yaml:"use_remote_address"`
	// ServerName is the server header on responses; default "remora".
	ServerName string `yaml:"server_name"`
}

// HTTPFilter is one entry of http_filters.
type HTTPFilter struct {
	Name   string     `yaml:"name"`
	Config *yaml.Node `yaml:"config,omitempty"`
}

// AccessLog is one access-log sink, built by the factory registered for
// Type (file and grpc: see docs/access-log.md).
type AccessLog struct {
	// Name labels the sink's metrics and log lines; the sink derives one
	// from its config when empty.
	Name string `yaml:"name,omitempty"`
	Type string `yaml:"type"`
	// Filter selects the streams that are logged (Envoy's access-log
	// filters); nil logs every stream.
	Filter *yaml.Node `yaml:"filter,omitempty"`
	Config *yaml.Node `yaml:"config,omitempty"`
}

// RouteConfiguration is a set of virtual hosts.
type RouteConfiguration struct {
	Name            string        `yaml:"name,omitempty"`
	VirtualHosts    []VirtualHost `yaml:"virtual_hosts"`
	HeaderMutations `yaml:",inline"`
}

// HeaderMutations adds and removes headers.
type HeaderMutations struct {
	RequestHeadersToAdd     []HeaderValueOption `yaml:"request_headers_to_add,omitempty"`
	RequestHeadersToRemove  []string            `yaml:"request_headers_to_remove,omitempty"`
	ResponseHeadersToAdd    []HeaderValueOption `yaml:"response_headers_to_add,omitempty"`
	ResponseHeadersToRemove []string            `yaml:"response_headers_to_remove,omitempty"`
}

// HeaderValueOption is a header to add. Append adds a value next to
// existing ones; otherwise the value replaces them.
type HeaderValueOption struct {
	Name   string `yaml:"name"`
	Value  string `yaml:"value"`
	Append bool   `yaml:"append,omitempty"`
}

// VirtualHost is a set of routes for some domains.
type VirtualHost struct {
	Name string `yaml:"name"`
	// Domains are matched against :authority (port stripped): exact, then
	// the longest "*suffix", then the longest "prefix*", then "*".
	Domains         []string `yaml:"domains"`
	Routes          []Route  `yaml:"routes"`
	HeaderMutations `yaml:",inline"`
	// TypedPerFilterConfig configures filters for this host's routes, by filter name.
	TypedPerFilterConfig map[string]*yaml.Node `yaml:"typed_per_filter_config,omitempty"`
}

// Route matches requests and says what to do with them. Exactly one of
// Route, Redirect and DirectResponse is set.
type Route struct {
	Name                 string          `yaml:"name,omitempty"`
	Match                RouteMatch      `yaml:"match"`
	Route                *RouteAction    `yaml:"route,omitempty"`
	Redirect             *Redirect       `yaml:"redirect,omitempty"`
	DirectResponse       *DirectResponse `yaml:"direct_response,omitempty"`
	HeaderMutations      `yaml:",inline"`
	TypedPerFilterConfig map[string]*yaml.Node `yaml:"typed_per_filter_config,omitempty"`
}

// RouteMatch is a route's conditions; all must hold. Exactly one of
// Prefix, Path and SafeRegex is set.
type RouteMatch struct {
	Prefix    string `yaml:"prefix,omitempty"`
	Path      string `yaml:"path,omitempty"`
	SafeRegex string `yaml:"safe_regex,omitempty"`
	// CaseSensitive applies to prefix and path; default true.
	CaseSensitive   *bool                   `yaml:"case_sensitive,omitempty"`
	Headers         []HeaderMatcher         `yaml:"headers,omitempty"`
	QueryParameters []QueryParameterMatcher `yaml:"query_parameters,omitempty"`
	// GRPC matches only gRPC requests (content-type application/grpc*).
	GRPC bool `yaml:"grpc,omitempty"`
}

// HeaderMatcher matches a request header. With no condition set it
// matches when the header is present. InvertMatch negates the result.
type HeaderMatcher struct {
	Name           string `yaml:"name"`
	ExactMatch     string `yaml:"exact_match,omitempty"`
	PrefixMatch    string `yaml:"prefix_match,omitempty"`
	SuffixMatch    string `yaml:"suffix_match,omitempty"`
	ContainsMatch  string `yaml:"contains_match,omitempty"`
	SafeRegexMatch string `yaml:"safe_regex_match,omitempty"`
	PresentMatch   *bool  `yaml:"present_match,omitempty"`
	InvertMatch    bool   `yaml:"invert_match,omitempty"`
}

// QueryParameterMatcher matches a query parameter. With no condition set
// it matches when the parameter is present.
type QueryParameterMatcher struct {
	Name           string `yaml:"name"`
	ExactMatch     string `yaml:"exact_match,omitempty"`
	SafeRegexMatch string `yaml:"safe_regex_match,omitempty"`
	PresentMatch   *bool  `yaml:"present_match,omitempty"`
}

// RouteAction forwards to a cluster. Exactly one of Cluster and
// WeightedClusters is set.
type RouteAction struct {
	Cluster          string            `yaml:"cluster,omitempty"`
	WeightedClusters *WeightedClusters `yaml:"weighted_clusters,omitempty"`
	// PrefixRewrite replaces the matched prefix (prefix routes only) or path.
	PrefixRewrite string `yaml:"prefix_rewrite,omitempty"`
	// HostRewrite replaces :authority sent upstream.
	HostRewrite string `yaml:"host_rewrite,omitempty"`
	// Timeout bounds the whole upstream exchange (504, flag UT); default
	// 15s, 0s disables it.
	Timeout *config.Duration `yaml:"timeout,omitempty"`
	// HashPolicy computes the request's hash key for RING_HASH and MAGLEV
	// clusters; policies are combined in order.
	HashPolicy []HashPolicy `yaml:"hash_policy,omitempty"`
	// RetryPolicy retries failed attempts; nil means no retries.
	RetryPolicy *RetryPolicy `yaml:"retry_policy,omitempty"`
}

// RetryPolicy says when and how often the router tries again. Retries
// happen only before any of the response went downstream, and only while
// the request body sent so far fits in PerRequestBufferLimitBytes (it is
// replayed to the next attempt).
type RetryPolicy struct {
	// RetryOn lists the conditions, comma-separated: 5xx, gateway-error,
	// reset, connect-failure, retriable-4xx, retriable-status-codes,
	// refused-stream, and the gRPC ones cancelled, deadline-exceeded,
	// internal, resource-exhausted, unavailable. Default
	// "5xx,gateway-error,reset,connect-failure,retriable-status-codes".
	RetryOn string `yaml:"retry_on"`
	// NumRetries is the most retries per request; default 1.
	NumRetries *uint32 `yaml:"num_retries"`
	// PerTryTimeout bounds each attempt until its response headers; 0s
	// (the default) leaves only the route timeout.
	PerTryTimeout config.Duration `yaml:"per_try_timeout"`
	// RetriableStatusCodes are retried under retriable-status-codes.
	RetriableStatusCodes []int `yaml:"retriable_status_codes,omitempty"`
	// RetryBackOff is fully jittered exponential back-off between tries.
	RetryBackOff RetryBackOff `yaml:"retry_back_off"`
	// RateLimitedRetryBackOff waits as long as the upstream asked for
	// (Retry-After, X-RateLimit-Reset ...) when a retriable response says so.
	RateLimitedRetryBackOff *RateLimitedRetryBackOff `yaml:"rate_limited_retry_back_off,omitempty"`
	// PerRequestBufferLimitBytes bounds the request body kept for replay;
	// a larger body disables retries for that request. Default 1 MiB.
	PerRequestBufferLimitBytes int `yaml:"per_request_buffer_limit_bytes"`
}

// RetryBackOff is the back-off between retries: attempt n waits a random
// time in [0, min(max_interval, base_interval * 2^(n-1))).
type RetryBackOff struct {
	BaseInterval config.Duration `yaml:"base_interval"` // default 25ms
	MaxInterval  config.Duration `yaml:"max_interval"`  // default 10 x base_interval
}

// RateLimitedRetryBackOff honours the upstream's reset headers.
type RateLimitedRetryBackOff struct {
	ResetHeaders []ResetHeader `yaml:"reset_headers"`
	// MaxInterval caps the wait; a longer one means no retry. Default 300s.
	MaxInterval config.Duration `yaml:"max_interval"`
}

// ResetHeader names a response header holding when to retry.
type ResetHeader struct {
	Name string `yaml:"name"`
	// Format is SECONDS (a delay, also accepting an HTTP date as
	// Retry-After does) or UNIX_TIMESTAMP.
	Format string `yaml:"format"`
}

// HashPolicy is one source of a request's hash key. Exactly one of
// Header, Cookie, ConnectionProperties and QueryParameter is set. Terminal
// stops at this policy when it produced a value.
type HashPolicy struct {
	Header               *HashHeader               `yaml:"header,omitempty"`
	Cookie               *HashName                 `yaml:"cookie,omitempty"`
	ConnectionProperties *HashConnectionProperties `yaml:"connection_properties,omitempty"`
	QueryParameter       *HashName                 `yaml:"query_parameter,omitempty"`
	Terminal             bool                      `yaml:"terminal,omitempty"`
}

// HashHeader hashes a request header's value.
type HashHeader struct {
	HeaderName string `yaml:"header_name"`
}

// HashName names a cookie or query parameter to hash.
type HashName struct {
	Name string `yaml:"name"`
}

// HashConnectionProperties hashes the downstream address.
type HashConnectionProperties struct {
	SourceIP bool `yaml:"source_ip"`
}

// WeightedClusters splits traffic by weight.
type WeightedClusters struct {
	Clusters []WeightedCluster `yaml:"clusters"`
}

// WeightedCluster is one cluster of a split.
type WeightedCluster struct {
	Name            string `yaml:"name"`
	Weight          uint32 `yaml:"weight"`
	HeaderMutations `yaml:",inline"`
}

// Redirect answers with a redirect. Empty fields keep the request's value.
type Redirect struct {
	SchemeRedirect string `yaml:"scheme_redirect,omitempty"`
	HTTPSRedirect  bool   `yaml:"https_redirect,omitempty"`
	HostRedirect   string `yaml:"host_redirect,omitempty"`
	PortRedirect   int    `yaml:"port_redirect,omitempty"`
	PathRedirect   string `yaml:"path_redirect,omitempty"`
	PrefixRewrite  string `yaml:"prefix_rewrite,omitempty"`
	StripQuery     bool   `yaml:"strip_query,omitempty"`
	// ResponseCode is 301 (default), 302, 303, 307 or 308.
	ResponseCode int `yaml:"response_code,omitempty"`
}

// DirectResponse answers with a fixed response.
type DirectResponse struct {
	Status int    `yaml:"status"`
	Body   string `yaml:"body,omitempty"`
}
