package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/upstream"
	"gopkg.in/yaml.v3"
)

// Validate reports every problem in b, each prefixed with its field path,
// joined with errors.Join. It expects defaults to have been applied.
func (b *Bootstrap) Validate() error {
	v := &validator{}
	if b.Admin.Address != "-" {
		v.addr("admin.address", b.Admin.Address)
	}
	if _, ok := parseLevel(b.Logging.Level); !ok {
		v.errf("logging.level", "unknown level %q (debug, info, warn, error)", b.Logging.Level)
	}
	for _, c := range slices.Sorted(maps.Keys(b.Logging.Components)) {
		l := b.Logging.Components[c]
		if !slices.Contains(LogComponents, c) {
			v.errf("logging.components."+c, "unknown component (known: %s)", strings.Join(LogComponents, ", "))
		} else if _, ok := parseLevel(l); !ok {
			v.errf("logging.components."+c, "unknown level %q (debug, info, warn, error)", l)
		}
	}
	clusters := make(map[string]bool, len(b.Clusters))
	for i := range b.Clusters {
		c := &b.Clusters[i]
		p := fmt.Sprintf("clusters[%d]", i)
		if err := c.Validate(p); err != nil {
			v.errs = append(v.errs, err)
		}
		if clusters[c.Name] {
			v.errf(p+".name", "duplicate cluster %q", c.Name)
		}
		clusters[c.Name] = true
		if c.Type == upstream.TypeOriginalDst {
			if v.origDstClusters == nil {
				v.origDstClusters = map[string]bool{}
			}
			v.origDstClusters[c.Name] = true
		}
	}
	v.clusters = clusters
	routeConfigs := make(map[string]bool, len(b.RouteConfigs))
	for i := range b.RouteConfigs {
		rc := &b.RouteConfigs[i]
		p := fmt.Sprintf("route_configs[%d]", i)
		if rc.Name == "" {
			v.errf(p+".name", "required")
		} else if routeConfigs[rc.Name] {
			v.errf(p+".name", "duplicate route config %q", rc.Name)
		}
		routeConfigs[rc.Name] = true
		v.routeConfig(p, rc)
	}
	names := map[string]bool{}
	addrs := map[string]bool{}
	virtual := slices.ContainsFunc(b.Listeners, func(l Listener) bool { return l.UseOriginalDst })
	for i := range b.Listeners {
		l := &b.Listeners[i]
		p := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			v.errf(p+".name", "required")
		} else if names[l.Name] {
			v.errf(p+".name", "duplicate listener %q", l.Name)
		}
		names[l.Name] = true
		v.addr(p+".address", l.Address)
		if l.Address != "" && !strings.HasSuffix(l.Address, ":0") && addrs[l.Address] { // port 0 picks a free port each time
			v.errf(p+".address", "duplicate listener address %q", l.Address)
		}
		addrs[l.Address] = true
		if l.Direction != "inbound" && l.Direction != "outbound" {
			v.errf(p+".direction", "must be inbound or outbound, got %q", l.Direction)
		}
		if l.MaxConnections < 0 {
			v.errf(p+".max_connections", "must not be negative")
		}
		if l.PerConnectionBufferLimitBytes < 0 {
			v.errf(p+".per_connection_buffer_limit_bytes", "must not be negative")
		}
		v.listenerFilters(p, l.ListenerFilters)
		v.capture(p, l, virtual)
		if len(l.FilterChains) == 0 {
			v.errf(p+".filter_chains", "at least one filter chain is required")
		}
		for j := range l.FilterChains {
			v.filterChain(fmt.Sprintf("%s.filter_chains[%d]", p, j), &l.FilterChains[j], routeConfigs)
		}
		v.duplicateMatches(p, l.FilterChains)
	}
	return errors.Join(v.errs...)
}

type validator struct {
	errs            []error
	clusters        map[string]bool
	origDstClusters map[string]bool // ORIGINAL_DST clusters (capture.go)
}

func (v *validator) errf(path, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (v *validator) addr(path, a string) {
	if a == "" {
		v.errf(path, "required")
		return
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		v.errf(path, "invalid address %q: want host:port", a)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.errf(path, "invalid port %q", port)
	}
}

func (v *validator) filterChain(p string, fc *FilterChain, routeConfigs map[string]bool) {
	m := fc.Match
	if m.DestinationPort < 0 || m.DestinationPort > 65535 {
		v.errf(p+".filter_chain_match.destination_port", "must be 0..65535")
	}
	for k, sn := range m.ServerNames {
		if sn == "" || strings.Contains(sn[1:], "*") || (sn[0] == '*' && !strings.HasPrefix(sn, "*.")) {
			v.errf(fmt.Sprintf("%s.filter_chain_match.server_names[%d]", p, k), "invalid server name %q: exact or *.suffix", sn)
		}
	}
	switch m.TransportProtocol {
	case "", "tls", "raw_buffer":
	default:
		v.errf(p+".filter_chain_match.transport_protocol", "must be tls or raw_buffer, got %q", m.TransportProtocol)
	}
	if t := fc.TLS; t != nil {
		if t.CertFile == "" {
			v.errf(p+".tls.cert_file", "required")
		}
		if t.KeyFile == "" {
			v.errf(p+".tls.key_file", "required")
		}
		for k, a := range t.ALPN {
			if fc.TCPProxy != nil {
				if a == "" {
					v.errf(fmt.Sprintf("%s.tls.alpn[%d]", p, k), "empty protocol")
				}
				continue
			}
			if a != "h2" && a != "http/1.1" {
				v.errf(fmt.Sprintf("%s.tls.alpn[%d]", p, k), "unsupported protocol %q (h2, http/1.1)", a)
			}
		}
		if t.RequireClientCertificate && t.ClientCAFile == "" {
			v.errf(p+".tls.client_ca_file", "required with require_client_certificate")
		}
	}
	h := fc.HTTPConnectionManager
	switch {
	case h != nil && fc.TCPProxy != nil:
		v.errf(p, "http_connection_manager and tcp_proxy are mutually exclusive")
		return
	case fc.TCPProxy != nil:
		v.tcpProxy(p+".tcp_proxy", fc.TCPProxy)
		return
	case h == nil:
		v.errf(p, "a network filter is required: http_connection_manager or tcp_proxy")
		return
	}
	hp := p + ".http_connection_manager"
	switch h.CodecType {
	case "AUTO", "HTTP1", "HTTP2":
	default:
		v.errf(hp+".codec_type", "must be AUTO, HTTP1 or HTTP2, got %q", h.CodecType)
	}
	switch {
	case h.RouteConfig != nil && h.RouteConfigName != "":
		v.errf(hp, "route_config and route_config_name are mutually exclusive")
	case h.RouteConfig != nil:
		v.routeConfig(hp+".route_config", h.RouteConfig)
	case h.RouteConfigName != "":
		if !routeConfigs[h.RouteConfigName] {
			v.errf(hp+".route_config_name", "unknown route config %q", h.RouteConfigName)
		}
	default:
		v.errf(hp, "route_config or route_config_name is required")
	}
	if h.MaxRequestHeadersKB < 0 || h.MaxRequestHeadersKB > 8192 {
		v.errf(hp+".max_request_headers_kb", "must be 1..8192")
	}
	seen := map[string]bool{}
	for k, f := range h.HTTPFilters {
		fp := fmt.Sprintf("%s.http_filters[%d]", hp, k)
		if f.Name == "router" {
			if k != len(h.HTTPFilters)-1 {
				v.errf(fp, "router must be the last filter")
			}
			continue
		}
		if seen[f.Name] {
			v.errf(fp+".name", "duplicate filter %q", f.Name)
		}
		seen[f.Name] = true
		if _, ok := filter.Lookup(f.Name); !ok {
			v.errf(fp+".name", "unknown filter %q (registered: %s)", f.Name, registered(filter.Names()))
		}
	}
	v.accessLogs(hp, h.AccessLog)
}

func (v *validator) accessLogs(p string, logs []AccessLog) {
	for k, a := range logs {
		if a.Type == "" {
			v.errf(fmt.Sprintf("%s.access_log[%d].type", p, k), "required")
		} else if _, ok := filter.LookupAccessLog(a.Type); !ok {
			v.errf(fmt.Sprintf("%s.access_log[%d].type", p, k), "unknown access log type %q (registered: %s)", a.Type, registered(filter.AccessLogNames()))
		}
	}
}

// tcpProxy checks a tcp_proxy. Its mixer config is decoded and checked
// when the filter is built (the mixer package owns its schema); here only
// its shape is.
func (v *validator) tcpProxy(p string, t *TCPProxy) {
	if t.Cluster == "" {
		v.errf(p+".cluster", "required")
	} else if !v.clusters[t.Cluster] {
		v.errf(p+".cluster", "unknown cluster %q", t.Cluster)
	}
	if t.IdleTimeout != nil && *t.IdleTimeout < 0 {
		v.errf(p+".idle_timeout", "must not be negative")
	}
	v.accessLogs(p, t.AccessLog)
	if t.Mixer != nil && t.Mixer.Kind != yaml.MappingNode {
		v.errf(p+".mixer", "must be a mapping")
	}
}

// duplicateMatches rejects two filter chains with identical match criteria:
// the choice between them would be arbitrary.
func (v *validator) duplicateMatches(p string, chains []FilterChain) {
	seen := map[string]int{}
	for j := range chains {
		m := chains[j].Match
		key := fmt.Sprintf("%d|%s|%s|%s", m.DestinationPort, strings.Join(m.ServerNames, ","), m.TransportProtocol, strings.Join(m.ApplicationProtocols, ","))
		if k, dup := seen[key]; dup {
			v.errf(fmt.Sprintf("%s.filter_chains[%d].filter_chain_match", p, j), "same match as filter_chains[%d]", k)
		}
		seen[key] = j
	}
}

func (v *validator) routeConfig(p string, rc *RouteConfiguration) {
	v.mutations(p, &rc.HeaderMutations)
	domains := map[string]string{}
	for i := range rc.VirtualHosts {
		vh := &rc.VirtualHosts[i]
		vp := fmt.Sprintf("%s.virtual_hosts[%d]", p, i)
		if vh.Name == "" {
			v.errf(vp+".name", "required")
		}
		if len(vh.Domains) == 0 {
			v.errf(vp+".domains", "at least one domain is required")
		}
		for k, d := range vh.Domains {
			dp := fmt.Sprintf("%s.domains[%d]", vp, k)
			if err := CheckDomain(d); err != nil {
				v.errf(dp, "%v", err)
				continue
			}
			ld := strings.ToLower(d)
			if other, dup := domains[ld]; dup {
				if ld == "*" {
					v.errf(dp, "only one virtual host may use the \"*\" domain (already %s)", other)
				} else {
					v.errf(dp, "duplicate domain %q (already %s)", d, other)
				}
				continue
			}
			domains[ld] = vp
		}
		v.mutations(vp, &vh.HeaderMutations)
		v.perFilter(vp+".typed_per_filter_config", vh.TypedPerFilterConfig)
		for j := range vh.Routes {
			v.route(fmt.Sprintf("%s.routes[%d]", vp, j), &vh.Routes[j])
		}
	}
}

// CheckDomain reports whether d is a valid virtual-host domain: "*", an
// exact host, "*suffix" or "prefix*", with at most one wildcard.
func CheckDomain(d string) error {
	switch {
	case d == "":
		return errors.New("empty domain")
	case d == "*":
		return nil
	case strings.Count(d, "*") > 1:
		return fmt.Errorf("invalid domain %q: at most one wildcard", d)
	case len(d) > 2 && strings.Contains(d[1:len(d)-1], "*"):
		return fmt.Errorf("invalid domain %q: the wildcard must be first or last", d)
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; c <= ' ' || c == '/' || c >= 0x7f {
			return fmt.Errorf("invalid domain %q", d)
		}
	}
	return nil
}

func (v *validator) mutations(p string, m *HeaderMutations) {
	check := func(field string, i int, name string, value string, isAdd bool) {
		fp := fmt.Sprintf("%s.%s[%d]", p, field, i)
		if name == "" {
			v.errf(fp, "header name required")
			return
		}
		if name != strings.ToLower(name) {
			v.errf(fp, "header name %q must be lower-case", name)
		}
		if strings.HasPrefix(name, ":") && (!isAdd || name != ":authority") {
			v.errf(fp, "pseudo-header %q cannot be changed here", name)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			v.errf(fp, "header value contains a control character")
		}
		if strings.ContainsAny(name, " \t\r\n:") && !strings.HasPrefix(name, ":") {
			v.errf(fp, "invalid header name %q", name)
		}
	}
	for i, h := range m.RequestHeadersToAdd {
		check("request_headers_to_add", i, h.Name, h.Value, true)
	}
	for i, h := range m.ResponseHeadersToAdd {
		check("response_headers_to_add", i, h.Name, h.Value, false)
	}
	for i, n := range m.RequestHeadersToRemove {
		check("request_headers_to_remove", i, n, "", false)
	}
	for i, n := range m.ResponseHeadersToRemove {
		check("response_headers_to_remove", i, n, "", false)
	}
}

func (v *validator) perFilter(p string, m map[string]*yaml.Node) {
	for _, name := range slices.Sorted(maps.Keys(m)) {
		node := m[name]
		f, ok := filter.Lookup(name)
		if !ok {
			v.errf(p+"."+name, "unknown filter %q", name)
			continue
		}
		if _, err := f.ParsePerRouteConfig(node); err != nil {
			v.errf(p+"."+name, "%v", err)
		}
	}
}

func (v *validator) route(p string, r *Route) {
	m := &r.Match
	n := 0
	for _, s := range []string{m.Prefix, m.Path, m.SafeRegex} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		v.errf(p+".match", "exactly one of prefix, path and safe_regex is required")
	}
	if m.Prefix != "" && m.Prefix[0] != '/' {
		v.errf(p+".match.prefix", "must start with /")
	}
	if m.Path != "" && m.Path[0] != '/' {
		v.errf(p+".match.path", "must start with /")
	}
	if m.SafeRegex != "" {
		if _, err := regexp.Compile(m.SafeRegex); err != nil {
			v.errf(p+".match.safe_regex", "%v", err)
		}
	}
	for i, h := range m.Headers {
		hp := fmt.Sprintf("%s.match.headers[%d]", p, i)
		if h.Name == "" {
			v.errf(hp+".name", "required")
		}
		k := 0
		for _, s := range []string{h.ExactMatch, h.PrefixMatch, h.SuffixMatch, h.ContainsMatch, h.SafeRegexMatch} {
			if s != "" {
				k++
			}
		}
		if h.PresentMatch != nil {
			k++
		}
		if k > 1 {
			v.errf(hp, "at most one of exact_match, prefix_match, suffix_match, contains_match, safe_regex_match and present_match")
		}
		if h.SafeRegexMatch != "" {
			if _, err := regexp.Compile(h.SafeRegexMatch); err != nil {
				v.errf(hp+".safe_regex_match", "%v", err)
			}
		}
	}
	for i, q := range m.QueryParameters {
		qp := fmt.Sprintf("%s.match.query_parameters[%d]", p, i)
		if q.Name == "" {
			v.errf(qp+".name", "required")
		}
		if q.ExactMatch != "" && q.SafeRegexMatch != "" {
			v.errf(qp, "at most one of exact_match and safe_regex_match")
		}
		if q.SafeRegexMatch != "" {
			if _, err := regexp.Compile(q.SafeRegexMatch); err != nil {
				v.errf(qp+".safe_regex_match", "%v", err)
			}
		}
	}
	actions := 0
	if r.Route != nil {
		actions++
		v.routeAction(p+".route", r.Route, m)
	}
	if r.Redirect != nil {
		actions++
		switch r.Redirect.ResponseCode {
		case 301, 302, 303, 307, 308:
		default:
			v.errf(p+".redirect.response_code", "must be 301, 302, 303, 307 or 308")
		}
		if r.Redirect.PathRedirect != "" && r.Redirect.PrefixRewrite != "" {
			v.errf(p+".redirect", "path_redirect and prefix_rewrite are mutually exclusive")
		}
		if r.Redirect.PortRedirect < 0 || r.Redirect.PortRedirect > 65535 {
			v.errf(p+".redirect.port_redirect", "must be 0..65535")
		}
	}
	if r.DirectResponse != nil {
		actions++
		if r.DirectResponse.Status < 200 || r.DirectResponse.Status > 599 {
			v.errf(p+".direct_response.status", "must be 200..599")
		}
	}
	if actions != 1 {
		v.errf(p, "exactly one of route, redirect and direct_response is required")
	}
	v.mutations(p, &r.HeaderMutations)
	v.perFilter(p+".typed_per_filter_config", r.TypedPerFilterConfig)
}

func (v *validator) routeAction(p string, a *RouteAction, m *RouteMatch) {
	switch {
	case a.Cluster != "" && a.WeightedClusters != nil:
		v.errf(p, "cluster and weighted_clusters are mutually exclusive")
	case a.Cluster != "":
		if !v.clusters[a.Cluster] {
			v.errf(p+".cluster", "unknown cluster %q", a.Cluster)
		}
	case a.WeightedClusters != nil:
		if len(a.WeightedClusters.Clusters) == 0 {
			v.errf(p+".weighted_clusters.clusters", "at least one cluster is required")
		}
		var total uint64
		for i, wc := range a.WeightedClusters.Clusters {
			wp := fmt.Sprintf("%s.weighted_clusters.clusters[%d]", p, i)
			if !v.clusters[wc.Name] {
				v.errf(wp+".name", "unknown cluster %q", wc.Name)
			}
			total += uint64(wc.Weight)
			v.mutations(wp, &wc.HeaderMutations)
		}
		if len(a.WeightedClusters.Clusters) > 0 && total == 0 {
			v.errf(p+".weighted_clusters", "total weight must be positive")
		}
	default:
		v.errf(p, "cluster or weighted_clusters is required")
	}
	for i, hp := range a.HashPolicy {
		pp := fmt.Sprintf("%s.hash_policy[%d]", p, i)
		n := 0
		if hp.Header != nil {
			n++
			if hp.Header.HeaderName == "" {
				v.errf(pp+".header.header_name", "required")
			}
		}
		if hp.Cookie != nil {
			n++
			if hp.Cookie.Name == "" {
				v.errf(pp+".cookie.name", "required")
			}
		}
		if hp.QueryParameter != nil {
			n++
			if hp.QueryParameter.Name == "" {
				v.errf(pp+".query_parameter.name", "required")
			}
		}
		if hp.ConnectionProperties != nil {
			n++
			if !hp.ConnectionProperties.SourceIP {
				v.errf(pp+".connection_properties.source_ip", "must be true")
			}
		}
		if n != 1 {
			v.errf(pp, "exactly one of header, cookie, connection_properties and query_parameter is required")
		}
	}
	if rp := a.RetryPolicy; rp != nil {
		rpp := p + ".retry_policy"
		for _, c := range strings.Split(rp.RetryOn, ",") {
			if c = strings.TrimSpace(c); !slices.Contains(RetryOnConditions, c) {
				v.errf(rpp+".retry_on", "unknown condition %q (known: %s)", c, strings.Join(RetryOnConditions, ", "))
			}
		}
		for i, code := range rp.RetriableStatusCodes {
			if code < 100 || code > 599 {
				v.errf(fmt.Sprintf("%s.retriable_status_codes[%d]", rpp, i), "must be 100..599")
			}
		}
		if rp.RetryBackOff.MaxInterval < rp.RetryBackOff.BaseInterval {
			v.errf(rpp+".retry_back_off.max_interval", "must not be below base_interval")
		}
		if rl := rp.RateLimitedRetryBackOff; rl != nil {
			if len(rl.ResetHeaders) == 0 {
				v.errf(rpp+".rate_limited_retry_back_off.reset_headers", "at least one header is required")
			}
			for i, h := range rl.ResetHeaders {
				hp := fmt.Sprintf("%s.rate_limited_retry_back_off.reset_headers[%d]", rpp, i)
				if h.Name == "" {
					v.errf(hp+".name", "required")
				}
				if h.Format != "SECONDS" && h.Format != "UNIX_TIMESTAMP" {
					v.errf(hp+".format", "must be SECONDS or UNIX_TIMESTAMP, got %q", h.Format)
				}
			}
		}
		if rp.PerRequestBufferLimitBytes < 0 {
			v.errf(rpp+".per_request_buffer_limit_bytes", "must not be negative")
		}
	}
	if a.PrefixRewrite != "" && m.Prefix == "" && m.Path == "" {
		v.errf(p+".prefix_rewrite", "needs a prefix or path match")
	}
}

func parseLevel(s string) (string, bool) {
	switch s {
	case "debug", "info", "warn", "error":
		return s, true
	}
	return "", false
}

func registered(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
