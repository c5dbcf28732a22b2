package router

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filter"
	"gopkg.in/yaml.v3"
)

// Table is a compiled route configuration. It is immutable and safe for
// concurrent use.
type Table struct {
	exact    map[string]*VirtualHost
	suffixes []wildcard // longest first
	prefixes []wildcard // longest first
	any      *VirtualHost
}

type wildcard struct {
	part string
	vh   *VirtualHost
}

// VirtualHost is a compiled virtual host.
type VirtualHost struct {
	name      string
	routes    []*Entry
	perFilter map[string]any
}

// Name is the virtual host's configured name.
func (v *VirtualHost) Name() string { return v.name }

// Compile builds a Table from rc. Per-filter configs are parsed by the
// registered filter factories here, once. Compile repeats the checks
// config.Validate makes on domains and regexes, so a Table never holds an
// invalid pattern even when built from an unvalidated configuration.
func Compile(rc *config.RouteConfiguration) (*Table, error) {
	t := &Table{exact: map[string]*VirtualHost{}}
	var errs []error
	global := compileMutations(&rc.HeaderMutations)
	for i := range rc.VirtualHosts {
		cvh := &rc.VirtualHosts[i]
		p := fmt.Sprintf("virtual_hosts[%d]", i)
		vh := &VirtualHost{name: cvh.Name}
		var err error
		if vh.perFilter, err = parsePerFilter(p+".typed_per_filter_config", cvh.TypedPerFilterConfig); err != nil {
			errs = append(errs, err)
		}
		vhMut := compileMutations(&cvh.HeaderMutations)
		for j := range cvh.Routes {
			e, err := compileRoute(fmt.Sprintf("%s.routes[%d]", p, j), &cvh.Routes[j], vh, global, vhMut)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			vh.routes = append(vh.routes, e)
		}
		for k, d := range cvh.Domains {
			dp := fmt.Sprintf("%s.domains[%d]", p, k)
			if err := config.CheckDomain(d); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", dp, err))
				continue
			}
			d = strings.ToLower(d)
			switch {
			case d == "*":
				if t.any != nil {
					errs = append(errs, fmt.Errorf("%s: only one virtual host may use the \"*\" domain", dp))
				}
				t.any = vh
			case d[0] == '*':
				if containsPart(t.suffixes, d[1:]) {
					errs = append(errs, fmt.Errorf("%s: duplicate domain %q", dp, d))
				}
				t.suffixes = append(t.suffixes, wildcard{d[1:], vh})
			case d[len(d)-1] == '*':
				if containsPart(t.prefixes, d[:len(d)-1]) {
					errs = append(errs, fmt.Errorf("%s: duplicate domain %q", dp, d))
				}
				t.prefixes = append(t.prefixes, wildcard{d[:len(d)-1], vh})
			default:
				if _, dup := t.exact[d]; dup {
					errs = append(errs, fmt.Errorf("%s: duplicate domain %q", dp, d))
				}
				t.exact[d] = vh
			}
		}
	}
	byLen := func(w []wildcard) {
		sort.SliceStable(w, func(a, b int) bool { return len(w[a].part) > len(w[b].part) })
	}
	byLen(t.suffixes)
	byLen(t.prefixes)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	return t, nil
}

func containsPart(ws []wildcard, part string) bool {
	for _, w := range ws {
		if w.part == part {
			return true
		}
	}
	return false
}

func parsePerFilter(path string, m map[string]*yaml.Node) (map[string]any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]any, len(m))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(m)) {
		node := m[name]
		f, ok := filter.Lookup(name)
		if !ok {
			errs = append(errs, fmt.Errorf("%s.%s: unknown filter %q", path, name, name))
			continue
		}
		c, err := f.ParsePerRouteConfig(node)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %w", path, name, err))
			continue
		}
		out[name] = c
	}
	return out, errors.Join(errs...)
}

// VirtualHost returns the virtual host for an :authority value, following
// Envoy's precedence; nil when none matches.
func (t *Table) VirtualHost(authority string) *VirtualHost {
	host := strings.ToLower(stripPort(authority))
	if vh, ok := t.exact[host]; ok {
		return vh
	}
	for _, w := range t.suffixes {
		if len(host) > len(w.part) && strings.HasSuffix(host, w.part) {
			return w.vh
		}
	}
	for _, w := range t.prefixes {
		if len(host) > len(w.part) && strings.HasPrefix(host, w.part) {
			return w.vh
		}
	}
	return t.any
}

// stripPort removes a trailing ":port" (keeping IPv6 brackets).
func stripPort(h string) string {
	i := strings.LastIndexByte(h, ':')
	if i < 0 {
		return h
	}
	if strings.IndexByte(h, ']') > i || (strings.IndexByte(h, '[') < 0 && strings.Count(h, ":") > 1) {
		return h // a bare IPv6 address, or a colon inside brackets
	}
	for j := i + 1; j < len(h); j++ {
		if h[j] < '0' || h[j] > '9' {
			return h
		}
	}
	return h[:i]
}

// Route matches headers to a route; nil when no virtual host or route
// matches. For weighted clusters the cluster is chosen here, at random by
// weight, so the returned filter.Route names the chosen cluster.
func (t *Table) Route(headers *filter.HeaderMap) *Entry {
	vh := t.VirtualHost(headers.Authority())
	if vh == nil {
		return nil
	}
	path := headers.Path()
	for _, e := range vh.routes {
		if e.matches(headers, path) {
			if e.weighted != nil {
				return e.weighted.pick(rand.Uint64())
			}
			return e
		}
	}
	return nil
}

// actionKind is what a route does.
type actionKind uint8

const (
	actionCluster actionKind = iota
	actionRedirect
	actionDirect
)

// Entry is a matched route. It implements filter.Route. Entries are shared
// by every stream and must not be modified.
type Entry struct {
	name string
	vh   *VirtualHost

	// matching
	prefix, path  string
	regex         *regexp.Regexp
	caseSensitive bool
	headers       []headerMatcher
	query         []queryMatcher
	grpc          bool

	kind          actionKind
	cluster       string
	weighted      *weightedSet
	prefixRewrite string
	hostRewrite   string
	timeout       time.Duration
	hashPolicies  []hashPolicy
	retry         *retryPolicy
	redirect      *config.Redirect
	direct        *config.DirectResponse

	// mutations applied in order: route config, virtual host, route, weighted cluster.
	mutations []*mutations
	perFilter map[string]any
}

var _ filter.Route = (*Entry)(nil)

// Name implements filter.Route.
func (e *Entry) Name() string { return e.name }

// ClusterName implements filter.Route.
func (e *Entry) ClusterName() string { return e.cluster }

// VirtualHostName is the name of the route's virtual host.
func (e *Entry) VirtualHostName() string { return e.vh.name }

// Timeout is the route's upstream timeout; 0 means none.
func (e *Entry) Timeout() time.Duration { return e.timeout }

// PerFilterConfig implements filter.Route: the route's config for the
// filter, else its virtual host's.
func (e *Entry) PerFilterConfig(name string) any {
	if c, ok := e.perFilter[name]; ok {
		return c
	}
	if c, ok := e.vh.perFilter[name]; ok {
		return c
	}
	return nil
}

type weightedSet struct {
	total   uint64
	cum     []uint64
	choices []*Entry
}

func (w *weightedSet) pick(r uint64) *Entry {
	x := r % w.total
	for i, c := range w.cum {
		if x < c {
			return w.choices[i]
		}
	}
	return w.choices[len(w.choices)-1]
}

type headerMatcher struct {
	name                            string
	exact, prefix, suffix, contains string
	hasExact                        bool
	regex                           *regexp.Regexp
	present                         *bool
	invert                          bool
}

func (m *headerMatcher) match(h *filter.HeaderMap) bool {
	v, ok := h.Get(m.name)
	var r bool
	switch {
	case m.present != nil:
		r = ok == *m.present
	case !ok:
		r = false
	case m.hasExact:
		r = v == m.exact
	case m.prefix != "":
		r = strings.HasPrefix(v, m.prefix)
	case m.suffix != "":
		r = strings.HasSuffix(v, m.suffix)
	case m.contains != "":
		r = strings.Contains(v, m.contains)
	case m.regex != nil:
		r = m.regex.MatchString(v)
	default:
		r = true
	}
	return r != m.invert
}

type queryMatcher struct {
	name     string
	exact    string
	hasExact bool
	regex    *regexp.Regexp
	present  *bool
}

func (m *queryMatcher) match(query string) bool {
	v, ok := queryValue(query, m.name)
	switch {
	case m.present != nil:
		return ok == *m.present
	case !ok:
		return false
	case m.hasExact:
		return v == m.exact
	case m.regex != nil:
		return m.regex.MatchString(v)
	}
	return true
}

// queryValue finds the first value of name in a raw query string,
// unescaping only when needed.
func queryValue(query, name string) (string, bool) {
	for query != "" {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			if uk, err := url.QueryUnescape(k); err == nil {
				k = uk
			}
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			if uv, err := url.QueryUnescape(v); err == nil {
				v = uv
			}
		}
		return v, true
	}
	return "", false
}

func anchored(re string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + re + ")$")
}

func compileRoute(p string, r *config.Route, vh *VirtualHost, global, vhMut *mutations) (*Entry, error) {
	var errs []error
	e := &Entry{name: r.Name, vh: vh, prefix: r.Match.Prefix, path: r.Match.Path, grpc: r.Match.GRPC, caseSensitive: true}
	if r.Match.CaseSensitive != nil {
		e.caseSensitive = *r.Match.CaseSensitive
	}
	if !e.caseSensitive {
		e.prefix, e.path = strings.ToLower(e.prefix), strings.ToLower(e.path)
	}
	if r.Match.SafeRegex != "" {
		re, err := anchored(r.Match.SafeRegex)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.match.safe_regex: %w", p, err))
		}
		e.regex = re
	}
	if e.prefix == "" && e.path == "" && e.regex == nil && r.Match.SafeRegex == "" {
		errs = append(errs, fmt.Errorf("%s.match: exactly one of prefix, path and safe_regex is required", p))
	}
	for i, h := range r.Match.Headers {
		hm := headerMatcher{name: strings.ToLower(h.Name), exact: h.ExactMatch, hasExact: h.ExactMatch != "",
			prefix: h.PrefixMatch, suffix: h.SuffixMatch, contains: h.ContainsMatch, present: h.PresentMatch, invert: h.InvertMatch}
		if hm.name == "host" {
			hm.name = filter.HeaderAuthority
		}
		if h.SafeRegexMatch != "" {
			re, err := anchored(h.SafeRegexMatch)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.match.headers[%d].safe_regex_match: %w", p, i, err))
			}
			hm.regex = re
		}
		e.headers = append(e.headers, hm)
	}
	for i, q := range r.Match.QueryParameters {
		qm := queryMatcher{name: q.Name, exact: q.ExactMatch, hasExact: q.ExactMatch != "", present: q.PresentMatch}
		if q.SafeRegexMatch != "" {
			re, err := anchored(q.SafeRegexMatch)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.match.query_parameters[%d].safe_regex_match: %w", p, i, err))
			}
			qm.regex = re
		}
		e.query = append(e.query, qm)
	}
	var err error
	if e.perFilter, err = parsePerFilter(p+".typed_per_filter_config", r.TypedPerFilterConfig); err != nil {
		errs = append(errs, err)
	}
	e.mutations = appendMutations(nil, global, vhMut, compileMutations(&r.HeaderMutations))
	switch {
	case r.Route != nil:
		e.kind = actionCluster
		a := r.Route
		e.cluster, e.prefixRewrite, e.hostRewrite = a.Cluster, a.PrefixRewrite, a.HostRewrite
		e.timeout = config.DefaultRouteTimeout
		if a.Timeout != nil {
			e.timeout = a.Timeout.D()
		}
		e.hashPolicies = compileHashPolicies(a.HashPolicy)
		e.retry = compileRetryPolicy(a.RetryPolicy)
		if wc := a.WeightedClusters; wc != nil {
			ws := &weightedSet{}
			for _, c := range wc.Clusters {
				if c.Weight == 0 {
					continue
				}
				ws.total += uint64(c.Weight)
				ws.cum = append(ws.cum, ws.total)
				choice := *e
				choice.cluster = c.Name
				choice.mutations = appendMutations(append([]*mutations(nil), e.mutations...), compileMutations(&c.HeaderMutations))
				ws.choices = append(ws.choices, &choice)
			}
			if ws.total == 0 {
				errs = append(errs, fmt.Errorf("%s.route.weighted_clusters: total weight must be positive", p))
			} else {
				e.weighted = ws
			}
		}
	case r.Redirect != nil:
		e.kind = actionRedirect
		e.redirect = r.Redirect
	case r.DirectResponse != nil:
		e.kind = actionDirect
		e.direct = r.DirectResponse
	default:
		errs = append(errs, fmt.Errorf("%s: exactly one of route, redirect and direct_response is required", p))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Entry) matches(h *filter.HeaderMap, path string) bool {
	switch {
	case e.prefix != "":
		if len(path) < len(e.prefix) {
			return false
		}
		if e.caseSensitive {
			if path[:len(e.prefix)] != e.prefix {
				return false
			}
		} else if !strings.EqualFold(path[:len(e.prefix)], e.prefix) {
			return false
		}
	case e.path != "":
		p, _, _ := strings.Cut(path, "?")
		if e.caseSensitive {
			if p != e.path {
				return false
			}
		} else if !strings.EqualFold(p, e.path) {
			return false
		}
	case e.regex != nil:
		p, _, _ := strings.Cut(path, "?")
		if !e.regex.MatchString(p) {
			return false
		}
	}
	if e.grpc && !strings.HasPrefix(h.Value("content-type"), "application/grpc") {
		return false
	}
	for i := range e.headers {
		if !e.headers[i].match(h) {
			return false
		}
	}
	if len(e.query) > 0 {
		_, q, _ := strings.Cut(path, "?")
		for i := range e.query {
			if !e.query[i].match(q) {
				return false
			}
		}
	}
	return true
}

// rewritePath applies prefix_rewrite to path; ok is false when the route
// does not rewrite.
func (e *Entry) rewritePath(path string) (string, bool) {
	if e.prefixRewrite == "" {
		return path, false
	}
	switch {
	case e.prefix != "":
		return e.prefixRewrite + path[len(e.prefix):], true
	case e.path != "":
		_, q, hasQ := strings.Cut(path, "?")
		if hasQ {
			return e.prefixRewrite + "?" + q, true
		}
		return e.prefixRewrite, true
	}
	return path, false
}

// mutations is one level's compiled header changes.
type mutations struct {
	reqAdd, respAdd       []config.HeaderValueOption
	reqRemove, respRemove []string
}

func compileMutations(m *config.HeaderMutations) *mutations {
	if len(m.RequestHeadersToAdd)+len(m.RequestHeadersToRemove)+len(m.ResponseHeadersToAdd)+len(m.ResponseHeadersToRemove) == 0 {
		return nil
	}
	return &mutations{reqAdd: m.RequestHeadersToAdd, respAdd: m.ResponseHeadersToAdd,
		reqRemove: m.RequestHeadersToRemove, respRemove: m.ResponseHeadersToRemove}
}

func appendMutations(dst []*mutations, ms ...*mutations) []*mutations {
	for _, m := range ms {
		if m != nil {
			dst = append(dst, m)
		}
	}
	return dst
}

func applyHeaders(h *filter.HeaderMap, remove []string, add []config.HeaderValueOption) {
	for _, n := range remove {
		h.Del(n)
	}
	for _, a := range add {
		if a.Append {
			h.Add(a.Name, a.Value)
		} else {
			h.Set(a.Name, a.Value)
		}
	}
}

// MutateRequest applies the route's request header changes, least specific first.
func (e *Entry) MutateRequest(h *filter.HeaderMap) {
	for _, m := range e.mutations {
		applyHeaders(h, m.reqRemove, m.reqAdd)
	}
}

// MutateResponse applies the route's response header changes, least specific first.
func (e *Entry) MutateResponse(h *filter.HeaderMap) {
	for _, m := range e.mutations {
		applyHeaders(h, m.respRemove, m.respAdd)
	}
}
