package config

import (
	"fmt"
	"net"

	"github.com/remora-mesh/remora/proxy/upstream"
	"time"

	"github.com/remora-mesh/remora/internal/config"
	"gopkg.in/yaml.v3"
)

// Defaults, in one place. docs/configuration.md lists the same values.
const (
	DefaultAdminAddress         = "127.0.0.1:15000"
	DefaultDrainTimeout         = 15 * time.Second
	DefaultBufferLimitBytes     = 1 << 20
	DefaultListenerFilterTimout = 15 * time.Second
	DefaultMaxRequestHeadersKB  = 60
	DefaultStreamIdleTimeout    = 5 * time.Minute
	DefaultIdleTimeout          = time.Hour
	DefaultRouteTimeout         = 15 * time.Second
	DefaultServerName           = "remora"
	DefaultRedirectCode         = 301
	DefaultCodecType            = "AUTO"
	DefaultDirection            = "outbound"
	DefaultLogLevel             = "info"
	DefaultBindToPort           = true
)

// DefaultALPN is offered by a TLS filter chain without an alpn list.
var DefaultALPN = []string{"h2", "http/1.1"}

// ApplyDefaults fills every unset field with its default. It is idempotent,
// so an effective configuration printed and parsed again is unchanged.
func (b *Bootstrap) ApplyDefaults() {
	if b.Admin.Address == "" {
		b.Admin.Address = DefaultAdminAddress
	}
	if b.DrainTimeout == 0 {
		b.DrainTimeout = config.Duration(DefaultDrainTimeout)
	}
	if b.Logging.Level == "" {
		b.Logging.Level = DefaultLogLevel
	}
	for i := range b.Listeners {
		l := &b.Listeners[i]
		if l.Direction == "" {
			l.Direction = DefaultDirection
		}
		if l.PerConnectionBufferLimitBytes == 0 {
			l.PerConnectionBufferLimitBytes = DefaultBufferLimitBytes
		}
		if l.ListenerFiltersTimeout == 0 {
			l.ListenerFiltersTimeout = config.Duration(DefaultListenerFilterTimout)
		}
		if l.BindToPort == nil {
			t := DefaultBindToPort
			l.BindToPort = &t
		}
		for j := range l.FilterChains {
			fc := &l.FilterChains[j]
			if fc.TLS != nil && len(fc.TLS.ALPN) == 0 && fc.TCPProxy == nil {
				fc.TLS.ALPN = append([]string(nil), DefaultALPN...)
			}
			if h := fc.HTTPConnectionManager; h != nil {
				h.applyDefaults()
			}
			if t := fc.TCPProxy; t != nil {
				t.applyDefaults()
			}
		}
	}
	for i := range b.RouteConfigs {
		b.RouteConfigs[i].applyDefaults()
	}
	for i := range b.Clusters {
		b.Clusters[i].ApplyDefaults()
	}
}

// DefaultTCPStatPrefix is a tcp_proxy's stat_prefix when none is set.
const DefaultTCPStatPrefix = "tcp"

func (t *TCPProxy) applyDefaults() {
	if t.StatPrefix == "" {
		t.StatPrefix = DefaultTCPStatPrefix
	}
	if t.IdleTimeout == nil {
		d := config.Duration(DefaultIdleTimeout)
		t.IdleTimeout = &d
	}
}

func (h *HCM) applyDefaults() {
	if h.StatPrefix == "" {
		h.StatPrefix = "http"
	}
	if h.CodecType == "" {
		h.CodecType = DefaultCodecType
	}
	if h.MaxRequestHeadersKB == 0 {
		h.MaxRequestHeadersKB = DefaultMaxRequestHeadersKB
	}
	if h.StreamIdleTimeout == nil {
		d := config.Duration(DefaultStreamIdleTimeout)
		h.StreamIdleTimeout = &d
	}
	if h.IdleTimeout == 0 {
		h.IdleTimeout = config.Duration(DefaultIdleTimeout)
	}
	if h.GenerateRequestID == nil {
		t := true
		h.GenerateRequestID = &t
	}
	if h.UseRemoteAddress == nil {
		t := true
		h.UseRemoteAddress = &t
	}
	if h.ServerName == "" {
		h.ServerName = DefaultServerName
	}
	if h.RouteConfig != nil {
		h.RouteConfig.applyDefaults()
	}
}

func (rc *RouteConfiguration) applyDefaults() {
	for i := range rc.VirtualHosts {
		vh := &rc.VirtualHosts[i]
		for j := range vh.Routes {
			r := &vh.Routes[j]
			if r.Match.CaseSensitive == nil {
				t := true
				r.Match.CaseSensitive = &t
			}
			if r.Route != nil && r.Route.Timeout == nil {
				d := config.Duration(DefaultRouteTimeout)
				r.Route.Timeout = &d
			}
			if r.Route != nil && r.Route.RetryPolicy != nil {
				r.Route.RetryPolicy.applyDefaults()
			}
			if r.Redirect != nil && r.Redirect.ResponseCode == 0 {
				r.Redirect.ResponseCode = DefaultRedirectCode
			}
		}
	}
}

// QuickOptions are the flags of quick mode.
type QuickOptions struct {
	Listen, Upstream string
	// Admin "" keeps the default admin address.
	Admin string
	// Mixer, when set, adds the mixer filter (check and report) against
	// that server, failing open unless FailClose.
	Mixer     string
	FailClose bool
	// ExtAuthz, when set, adds the ext_authz filter against that server.
	ExtAuthz string
	// AccessLog, when set, adds a file access log in Envoy's default format.
	AccessLog string
}

// Quick returns the configuration of `remora proxy --listen --upstream`:
// one listener (HTTP/1.1 and h2c), one catch-all route to one cluster
// speaking the downstream's protocol, and the filters and access log the
// options ask for. Defaults are not applied: Parse(Marshal(Quick(...)))
// does that.
func Quick(q QuickOptions) *Bootstrap {
	typ := "STATIC"
	if host, _, err := net.SplitHostPort(q.Upstream); err == nil && net.ParseIP(host) == nil {
		typ = "STRICT_DNS"
	}
	var filters []HTTPFilter
	if q.Mixer != "" {
		policy := "open"
		if q.FailClose {
			policy = "close"
		}
		filters = append(filters, HTTPFilter{Name: "mixer", Config: yamlNode(map[string]any{
			"server": map[string]any{"address": q.Mixer, "check": map[string]any{"fail_policy": policy}},
		})})
	}
	if q.ExtAuthz != "" {
		filters = append(filters, HTTPFilter{Name: "ext_authz", Config: yamlNode(map[string]any{
			"grpc_service": map[string]any{"address": q.ExtAuthz},
		})})
	}
	var logs []AccessLog
	if q.AccessLog != "" {
		logs = append(logs, AccessLog{Type: "file", Config: yamlNode(map[string]any{"path": q.AccessLog})})
	}
	return &Bootstrap{
		Node:  Node{ID: "remora", Cluster: "remora"},
		Admin: Admin{Address: q.Admin},
		Listeners: []Listener{{
			Name:    "quick",
			Address: q.Listen,
			FilterChains: []FilterChain{{
				HTTPConnectionManager: &HCM{
					StatPrefix:  "quick",
					HTTPFilters: filters,
					AccessLog:   logs,
					RouteConfig: &RouteConfiguration{
						Name: "quick",
						VirtualHosts: []VirtualHost{{
							Name:    "all",
							Domains: []string{"*"},
							Routes:  []Route{{Match: RouteMatch{Prefix: "/"}, Route: &RouteAction{Cluster: "upstream"}}},
						}},
					},
				},
			}},
		}},
		Clusters: []upstream.ClusterConfig{{
			Name:      "upstream",
			Type:      typ,
			Protocol:  upstream.ProtocolUseDownstream,
			Endpoints: []upstream.EndpointConfig{{Address: q.Upstream}},
		}},
	}
}

// yamlNode renders v (maps, strings, numbers) as a YAML node.
func yamlNode(v any) *yaml.Node {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		panic(fmt.Sprintf("config: encoding a built-in value: %v", err)) // only literal maps reach here
	}
	return &n
}

// Retry defaults (Envoy's).
const (
	DefaultRetryOn                = "5xx,gateway-error,reset,connect-failure,retriable-status-codes"
	DefaultNumRetries             = 1
	DefaultRetryBaseInterval      = 25 * time.Millisecond
	DefaultRateLimitedMaxInterval = 300 * time.Second
	DefaultRetryBufferLimitBytes  = 1 << 20
)

func (p *RetryPolicy) applyDefaults() {
	if p.RetryOn == "" {
		p.RetryOn = DefaultRetryOn
	}
	if p.NumRetries == nil {
		n := uint32(DefaultNumRetries)
		p.NumRetries = &n
	}
	if p.RetryBackOff.BaseInterval == 0 {
		p.RetryBackOff.BaseInterval = config.Duration(DefaultRetryBaseInterval)
	}
	if p.RetryBackOff.MaxInterval == 0 {
		p.RetryBackOff.MaxInterval = 10 * p.RetryBackOff.BaseInterval
	}
	if p.RateLimitedRetryBackOff != nil && p.RateLimitedRetryBackOff.MaxInterval == 0 {
		p.RateLimitedRetryBackOff.MaxInterval = config.Duration(DefaultRateLimitedMaxInterval)
	}
	if p.PerRequestBufferLimitBytes == 0 {
		p.PerRequestBufferLimitBytes = DefaultRetryBufferLimitBytes
	}
}

// RetryOnConditions are the retry_on values the router understands.
var RetryOnConditions = []string{"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "retriable-status-codes",
	"refused-stream", "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}

// LogComponents are the components whose log level can be set
// (logging.components, the admin /logging endpoint).
var LogComponents = []string{"accesslog", "admin", "filter", "hcm", "listener", "main", "router", "upstream"}
