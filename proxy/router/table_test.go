package router

import (
	"math"
	"strings"
	"testing"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filter"
	"gopkg.in/yaml.v3"
)

func compileYAML(t testing.TB, y string) *Table {
	t.Helper()
	var rc config.RouteConfiguration
	if err := yaml.Unmarshal([]byte(y), &rc); err != nil {
		t.Fatal(err)
	}
	tbl, err := Compile(&rc)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func req(method, authority, path string, extra ...string) *filter.HeaderMap {
	h := filter.NewHeaderMap(filter.HeaderField{Name: ":method", Value: method}, filter.HeaderField{Name: ":authority", Value: authority},
		filter.HeaderField{Name: ":path", Value: path}, filter.HeaderField{Name: ":scheme", Value: "http"})
	for i := 0; i+1 < len(extra); i += 2 {
		h.Add(extra[i], extra[i+1])
	}
	return h
}

// TestVirtualHostPrecedence is Envoy's table: exact, then the longest
// *suffix, then the longest prefix*, then *; the port is stripped and the
// wildcard must match at least one character.
func TestVirtualHostPrecedence(t *testing.T) {
	tbl := compileYAML(t, `
virtual_hosts:
- {name: exact, domains: [foo.example.com, "[::1]"], routes: []}
- {name: suffix-long, domains: ["*.bar.example.com"], routes: []}
- {name: suffix-short, domains: ["*.example.com"], routes: []}
- {name: suffix-dash, domains: ["*-api.example.com"], routes: []}
- {name: prefix-long, domains: ["foo.example.*"], routes: []}
- {name: prefix-short, domains: ["foo.*"], routes: []}
- {name: any, domains: ["*"], routes: []}
`)
	tests := []struct{ host, want string }{
		{"foo.example.com", "exact"},
		{"FOO.Example.COM", "exact"},
		{"foo.example.com:8080", "exact"},
		{"[::1]:443", "exact"},
		{"a.bar.example.com", "suffix-long"},
		{"bar.example.com", "suffix-short"},
		{"x.example.com", "suffix-short"},
		{"my-api.example.com", "suffix-dash"},
		{"-api.example.com", "suffix-short"},
		{".example.com", "any"}, // "*.example.com" needs at least one character before the suffix
		{"foo.example.org", "prefix-long"},
		{"foo.bar", "prefix-short"},
		{"foo.", "any"},
		{"other.org", "any"},
		{"", "any"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			vh := tbl.VirtualHost(tt.host)
			if vh == nil || vh.Name() != tt.want {
				got := "<nil>"
				if vh != nil {
					got = vh.Name()
				}
				t.Fatalf("VirtualHost(%q) = %s, want %s", tt.host, got, tt.want)
			}
		})
	}
	noDefault := compileYAML(t, `virtual_hosts: [{name: a, domains: [a.com], routes: []}]`)
	if vh := noDefault.VirtualHost("b.com"); vh != nil {
		t.Fatalf("no * domain: got %s", vh.Name())
	}
}

func TestCompileRejectsDuplicateDomains(t *testing.T) {
	tests := []struct{ name, y, want string }{
		{"second star", `virtual_hosts: [{name: a, domains: ["*"]}, {name: b, domains: ["*"]}]`, `virtual_hosts[1].domains[0]: only one virtual host may use the "*" domain`},
		{"duplicate exact", `virtual_hosts: [{name: a, domains: [x.com]}, {name: b, domains: [X.com]}]`, `virtual_hosts[1].domains[0]: duplicate domain "x.com"`},
		{"duplicate suffix", `virtual_hosts: [{name: a, domains: ["*.x.com", "*.x.com"]}]`, `duplicate domain "*.x.com"`},
		{"bad regex", `virtual_hosts: [{name: a, domains: [a], routes: [{match: {safe_regex: "("}, route: {cluster: c}}]}]`, "routes[0].match.safe_regex"},
		{"unknown per-filter", `virtual_hosts: [{name: a, domains: [a], typed_per_filter_config: {nope: {}}}]`, `typed_per_filter_config.nope: unknown filter "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rc config.RouteConfiguration
			if err := yaml.Unmarshal([]byte(tt.y), &rc); err != nil {
				t.Fatal(err)
			}
			_, err := Compile(&rc)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

const routesYAML = `
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - {name: exact-path, match: {path: /exact}, route: {cluster: c-path}}
  - {name: ci-path, match: {path: /CI, case_sensitive: false}, route: {cluster: c-ci}}
  - {name: regex, match: {safe_regex: "/items/[0-9]+"}, route: {cluster: c-regex}}
  - name: header
    match: {prefix: /h, headers: [{name: x-canary, exact_match: "yes"}]}
    route: {cluster: c-header}
  - name: header-regex
    match: {prefix: /h, headers: [{name: x-user, safe_regex_match: "[a-z]+"}]}
    route: {cluster: c-header-regex}
  - name: header-absent
    match: {prefix: /h, headers: [{name: x-block, present_match: false}, {name: x-tier, prefix_match: gold, invert_match: true}]}
    route: {cluster: c-header-absent}
  - name: query
    match: {prefix: /q, query_parameters: [{name: debug, exact_match: "1"}]}
    route: {cluster: c-query}
  - name: query-present
    match: {prefix: /q, query_parameters: [{name: trace}]}
    route: {cluster: c-query-present}
  - {name: grpc, match: {prefix: /pkg.Svc/, grpc: true}, route: {cluster: c-grpc}}
  - {name: prefix-ci, match: {prefix: /API/, case_sensitive: false}, route: {cluster: c-api}}
  - {name: catch-all, match: {prefix: /}, route: {cluster: c-default}}
`

func TestRouteMatching(t *testing.T) {
	tbl := compileYAML(t, routesYAML)
	tests := []struct {
		name  string
		h     *filter.HeaderMap
		route string
	}{
		{"exact path", req("GET", "a", "/exact"), "exact-path"},
		{"exact path ignores query", req("GET", "a", "/exact?x=1"), "exact-path"},
		{"exact path is exact", req("GET", "a", "/exactly"), "catch-all"},
		{"path case sensitive by default", req("GET", "a", "/EXACT"), "catch-all"},
		{"path case insensitive", req("GET", "a", "/ci"), "ci-path"},
		{"regex full match", req("GET", "a", "/items/42"), "regex"},
		{"regex anchored", req("GET", "a", "/items/42/x"), "catch-all"},
		{"header exact", req("GET", "a", "/h", "x-canary", "yes"), "header"},
		{"header regex", req("GET", "a", "/h", "x-user", "bob"), "header-regex"},
		{"header regex anchored", req("GET", "a", "/h", "x-user", "bob1", "x-block", "1"), "catch-all"},
		{"header absent and inverted prefix", req("GET", "a", "/h", "x-tier", "silver"), "header-absent"},
		{"inverted prefix excludes", req("GET", "a", "/h", "x-tier", "gold-plus"), "catch-all"},
		{"query exact", req("GET", "a", "/q?a=b&debug=1"), "query"},
		{"query escaped", req("GET", "a", "/q?de%62ug=%31"), "query"},
		{"query wrong value", req("GET", "a", "/q?debug=2"), "catch-all"},
		{"query present", req("GET", "a", "/q?trace"), "query-present"},
		{"grpc only", req("POST", "a", "/pkg.Svc/M", "content-type", "application/grpc+proto"), "grpc"},
		{"not grpc", req("POST", "a", "/pkg.Svc/M", "content-type", "application/json"), "catch-all"},
		{"prefix case insensitive", req("GET", "a", "/api/v1"), "prefix-ci"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tbl.Route(tt.h)
			if e == nil || e.Name() != tt.route {
				got := "<nil>"
				if e != nil {
					got = e.Name()
				}
				t.Fatalf("route = %s, want %s", got, tt.route)
			}
		})
	}
	none := compileYAML(t, `virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: /x}, route: {cluster: c}}]}]`)
	if e := none.Route(req("GET", "a", "/y")); e != nil {
		t.Fatalf("unmatched path got route %q", e.Name())
	}
}

// TestWeightedClusters checks the split stays within statistical bounds
// (5 standard deviations of a binomial) over many picks.
func TestWeightedClusters(t *testing.T) {
	tbl := compileYAML(t, `
virtual_hosts:
- name: a
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      weighted_clusters:
        clusters: [{name: a, weight: 70}, {name: b, weight: 20}, {name: c, weight: 10}, {name: never, weight: 0}]
`)
	const n = 20000
	counts := map[string]int{}
	h := req("GET", "x", "/")
	for i := 0; i < n; i++ {
		counts[tbl.Route(h).ClusterName()]++
	}
	for name, w := range map[string]float64{"a": 0.7, "b": 0.2, "c": 0.1} {
		mean := n * w
		sd := math.Sqrt(n * w * (1 - w))
		if got := float64(counts[name]); math.Abs(got-mean) > 5*sd {
			t.Errorf("cluster %s: %v picks, want %.0f ± %.0f", name, got, mean, 5*sd)
		}
	}
	if counts["never"] != 0 {
		t.Errorf("zero-weight cluster picked %d times", counts["never"])
	}
}

func TestRewritesAndRedirects(t *testing.T) {
	tbl := compileYAML(t, `
virtual_hosts:
- name: a
  domains: ["*"]
  routes:
  - {match: {prefix: /old/}, route: {cluster: c, prefix_rewrite: /new/}}
  - {match: {path: /p}, route: {cluster: c, prefix_rewrite: /q}}
  - {match: {prefix: /https}, redirect: {https_redirect: true}}
  - {match: {prefix: /moved/}, redirect: {host_redirect: b.com, prefix_rewrite: /here/, response_code: 302, port_redirect: 8443}}
  - {match: {prefix: /strip}, redirect: {path_redirect: /s, strip_query: true}}
`)
	rw := []struct{ in, want string }{{"/old/x?y=1", "/new/x?y=1"}, {"/p?z", "/q?z"}}
	for _, tt := range rw {
		e := tbl.Route(req("GET", "a", tt.in))
		if got, ok := e.rewritePath(tt.in); !ok || got != tt.want {
			t.Errorf("rewrite %s = %s, want %s", tt.in, got, tt.want)
		}
	}
	rd := []struct{ host, path, want string }{
		{"a.com:8080", "/https/x?q=1", "https://a.com/https/x?q=1"},
		{"a.com", "/moved/doc", "http://b.com:8443/here/doc"},
		{"a.com", "/strip?x=1", "http://a.com/s"},
	}
	for _, tt := range rd {
		h := req("GET", tt.host, tt.path)
		e := tbl.Route(h)
		if got := e.redirectURL(h); got != tt.want {
			t.Errorf("redirect %s%s = %s, want %s", tt.host, tt.path, got, tt.want)
		}
	}
}

func TestStripPort(t *testing.T) {
	for in, want := range map[string]string{"a.com": "a.com", "a.com:80": "a.com", "[::1]:80": "[::1]", "[::1]": "[::1]", "::1": "::1", "a:b": "a:b"} {
		if got := stripPort(in); got != want {
			t.Errorf("stripPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkRouteMatch(b *testing.B) {
	tbl := compileYAML(b, routesYAML)
	h := req("GET", "reviews.default.svc:9080", "/api/v1/items?debug=0", "x-user", "Bob", "content-type", "application/json")
	b.ReportAllocs()
	for b.Loop() {
		if tbl.Route(h) == nil {
			b.Fatal("no route")
		}
	}
}

// FuzzCompile feeds arbitrary route configurations to Compile and routes a
// request through whatever compiles: neither may panic.
func FuzzCompile(f *testing.F) {
	f.Add(routesYAML, "a.example.com", "/items/1?debug=1")
	f.Add(`virtual_hosts: [{name: a, domains: ["*.x", "y*", "*"], routes: [{match: {prefix: /, headers: [{name: h}]}, redirect: {}}]}]`, "q.x:80", "/")
	f.Add(`virtual_hosts: [{name: a, domains: [a], routes: [{match: {path: /p, case_sensitive: false}, route: {weighted_clusters: {clusters: [{name: c, weight: 1}]}}}]}]`, "A", "/P")
	f.Fuzz(func(t *testing.T, y, authority, path string) {
		if len(y) > 4096 {
			return // large documents only slow the YAML decoder down, which is not what this target tests
		}
		var rc config.RouteConfiguration
		if yaml.Unmarshal([]byte(y), &rc) != nil {
			return
		}
		tbl, err := Compile(&rc)
		if err != nil {
			return
		}
		h := req("GET", authority, path, "h", "v")
		if e := tbl.Route(h); e != nil {
			e.rewritePath(path)
			if e.redirect != nil {
				e.redirectURL(h)
			}
		}
	})
}
