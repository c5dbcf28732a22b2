package policy

import (
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/remora-mesh/remora/attributes"
)

// refStrings renders an analysis' references as name or name[key].
func refStrings(a *analysis) []string {
	out := make([]string, 0, len(a.refs))
	for _, r := range a.refs {
		if r.keyed {
			out = append(out, r.name+"["+r.key+"]")
		} else {
			out = append(out, r.name)
		}
	}
	return out
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReferencedAttributesAnalysis(t *testing.T) {
	tests := []struct {
		name      string
		rego      string
		want      []string
		cacheable bool
		reason    string
	}{
		{"constant", `allow := true`, []string{}, true, ""},
		{"method and path",
			`allow if { input.attributes.request.http.method == "GET"; input.attributes.request.http.path == "/" }`,
			[]string{"request.method", "request.path"}, true, ""},
		{"header by bracket key",
			`allow if input.attributes.request.http.headers["x-user"] == "alice"`,
			[]string{"request.headers[x-user]"}, true, ""},
		{"header by dot key",
			`allow if startswith(input.attributes.request.http.headers.authorization, "Bearer ")`,
			[]string{"request.headers[authorization]"}, true, ""},
		{"header with variable key references the whole map",
			`allow if { some k; input.attributes.request.http.headers[k] == "x"; input.attributes.request.http.headers["x-user"] }`,
			[]string{"request.headers"}, true, ""},
		{"headers through an alias",
			`allow if { h := input.attributes.request.http.headers; h["x-user"] == "a"; not h.debug }`,
			[]string{"request.headers[debug]", "request.headers[x-user]"}, true, ""},
		{"http object through an alias",
			`allow if { r := input.attributes.request.http; r.method == "GET"; r.headers["x-user"] == "a" }`,
			[]string{"request.headers[x-user]", "request.method"}, true, ""},
		{"alias used whole",
			`allow if { h := input.attributes.request.http.headers; h["x-user"] == "a"; count(h) > 1 }`,
			[]string{"request.headers"}, true, ""},
		{"alias with a variable key",
			`allow if { h := input.attributes.request.http.headers; some k; h[k] == "a" }`,
			[]string{"request.headers"}, true, ""},
		{"alias in the rule head",
			`allow := h if { h := input.attributes.request.http.headers; h["x-user"] }`,
			[]string{"request.headers"}, true, ""},
		{"alias bound twice",
			`allow if { h = input.attributes.request.http.headers; h = input.attributes.request.http.headers; h["x-user"] }`,
			[]string{"request.headers"}, true, ""},
		{"labels are no alias target",
			`allow if { l := input.attributes.source.labels; l.app == "a" }`,
			[]string{"source.labels"}, true, ""},
		{"rule alias of the http object",
			`http_request := input.attributes.request.http
			 allow if { http_request.method == "GET"; http_request.headers["x-user"] == "a" }`,
			[]string{"request.headers[x-user]", "request.method"}, true, ""},
		{"rule alias of labels",
			`labels := input.attributes.source.labels
			 allow if { labels.app == "web" }`,
			[]string{"source.labels[app]"}, true, ""},
		{"rule alias used whole",
			`labels := input.attributes.source.labels
			 allow if { labels.app == "web"; count(labels) == 1 }`,
			[]string{"source.labels"}, true, ""},
		{"rule alias with a default is walked",
			`default labels := {}
			 labels := input.attributes.source.labels
			 allow if { labels.app == "web" }`,
			[]string{"source.labels"}, true, ""},
		{"alias in a helper rule",
			`allow if user == "alice"
			 user := u if { h := input.attributes.request.http.headers; u := h["x-user"] }`,
			[]string{"request.headers[x-user]"}, true, ""},
		{"empty header name is the whole map",
			`allow if input.attributes.request.http.headers[""] == "x"`,
			[]string{"request.headers"}, true, ""},
		{"parsed path and query",
			`allow if { input.parsed_path[0] == "api"; input.parsed_query.page[0] == "1" }`,
			[]string{"request.path"}, true, ""},
		{"parsed body",
			`allow if input.parsed_body.user == "a"`,
			[]string{"request.body", "request.headers[content-length]", "request.headers[content-type]"}, true, ""},
		{"source address and principal",
			`allow if { input.attributes.source.address.socketAddress.address == "10.0.0.1"; input.attributes.source.principal == "p" }`,
			[]string{"source.ip", "source.principal"}, true, ""},
		{"whole source address",
			`allow if count(input.attributes.source.address) > 0`,
			[]string{"source.ip", "source.port"}, true, ""},
		{"whole http object",
			`allow if count(input.attributes.request.http) > 3`,
			[]string{"request.body", "request.headers", "request.host", "request.id", "request.method", "request.path", "request.protocol", "request.scheme", "request.size"}, true, ""},
		{"mixer attributes",
			`allow if { input.mixer_attributes["destination.service.host"] == "a"; input.mixer_attributes["request.auth.claims"].sub == "u" }`,
			[]string{"destination.service.host", "request.auth.claims[sub]"}, true, ""},
		{"mixer attribute that is not a map",
			`allow if input.mixer_attributes["source.namespace"].x`,
			[]string{"source.namespace"}, true, ""},
		{"unknown input path references nothing",
			`allow if input.attributes.metadataContext.filterMetadata.x == "y"`,
			[]string{}, true, ""},
		{"version is constant",
			`allow if input.version.ext_authz == "v3"`,
			[]string{}, true, ""},
		{"through rules and functions",
			`allow if is_get(input.attributes.request.http.method)
			 allow if user_ok
			 is_get(m) if m == "GET"
			 user_ok if data.envoy.helpers.user == "root"`,
			[]string{"request.headers[x-user]", "request.method"}, true, ""},
		{"else chain",
			`allow := x if { input.attributes.request.http.method == "GET"; x := true } else := y if { y := input.attributes.request.http.host == "h" }`,
			[]string{"request.host", "request.method"}, true, ""},
		{"comprehension",
			`allow if count([h | some h in input.attributes.request.http.headers["x-tags"]]) > 0`,
			[]string{"request.headers[x-tags]"}, true, ""},
		{"whole input",
			`allow if count(input) > 0`, nil, false, "reads input as a whole"},
		{"input passed to a function",
			`allow if f(input)
			 f(x) if x.attributes.request.http.method == "GET"`, nil, false, "reads input as a whole"},
		{"json.filter on input",
			`allow if json.filter(input, ["a"]) == {}`, nil, false, "reads input as a whole"},
		{"whole mixer attributes",
			`allow if count(input.mixer_attributes) > 0`, nil, false, "mixer_attributes as a whole"},
		{"mixer attribute with a variable name",
			`allow if { some k; input.mixer_attributes[k] == "x" }`, nil, false, "mixer_attributes as a whole"},
		{"time.now_ns",
			`allow if time.now_ns() > 0`, nil, false, "non-deterministic built-in time.now_ns"},
		{"http.send in a helper",
			`allow if ok
			 ok if http.send({"method": "GET", "url": "http://127.0.0.1:1"}).status_code == 200`, nil, false, "non-deterministic built-in http.send"},
		{"rand",
			`allow if rand.intn("x", 10) == 1`, nil, false, "rand.intn"},
		{"uuid",
			`allow if uuid.rfc4122("x") != ""`, nil, false, "uuid.rfc4122"},
		{"jwt verification checks the time",
			`allow if { [ok, _, _] := io.jwt.decode_verify("t", {"secret": "s"}); ok }`, nil, false, "io.jwt.decode_verify"},
		{"unrelated rule is not walked",
			`allow if input.attributes.request.http.method == "GET"
			 other if time.now_ns() > 0`, []string{"request.method"}, true, ""},
		{"default policy", strings.TrimPrefix(DefaultPolicy, ""),
			[]string{"request.headers[content-type]", "request.headers[x-user-role]", "request.method", "request.path"}, true, ""},
		{"rbac testdata", readTestdata(t, "testdata/rbac/policy.rego"),
			[]string{"request.headers[x-user]", "request.method", "request.path"}, true, ""},
		{"jwt testdata", readTestdata(t, "testdata/jwt/policy.rego"),
			[]string{"request.headers[authorization]", "request.method"}, true, ""},
		{"v0 testdata", readTestdata(t, "testdata/v0/policy.rego"), nil, false, "io.jwt.decode_verify"},
		{"object testdata", readTestdata(t, "testdata/object/policy.rego"),
			[]string{"request.headers[x-api-key]"}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.rego
			if !strings.HasPrefix(src, "package") && !strings.Contains(src, "\npackage ") {
				src = "package envoy.authz\n" + src + "\n"
				if strings.Contains(tt.rego, "data.envoy.helpers") {
					src += "package envoy.helpers\nuser := input.attributes.request.http.headers[\"x-user\"]\n"
				}
			}
			a := analyzeMulti(t, src)
			if a.cacheable != tt.cacheable {
				t.Fatalf("cacheable = %v (%s), want %v", a.cacheable, a.reason, tt.cacheable)
			}
			if !tt.cacheable {
				if !strings.Contains(a.reason, tt.reason) {
					t.Errorf("reason %q does not contain %q", a.reason, tt.reason)
				}
				return
			}
			got := refStrings(a)
			if !slices.Equal(got, tt.want) {
				t.Errorf("references = %q, want %q", got, tt.want)
			}
		})
	}
}

// analyzeMulti analyses source that may hold several modules separated by
// their package lines.
func analyzeMulti(t *testing.T, src string) *analysis {
	t.Helper()
	parts := strings.Split(src, "\npackage ")
	l := &loaded{modules: map[string]*ast.Module{}, data: map[string]any{}}
	pending := ""
	for i, p := range parts {
		if i > 0 {
			p = pending + "package " + p
		} else if !strings.HasPrefix(p, "package") {
			pending = p + "\n" // leading comments belong to the next module
			continue
		}
		if err := l.addModule(fmt.Sprintf("m%d.rego", i), p, RegoVersionAuto); err != nil {
			t.Fatal(err)
		}
	}
	c := ast.NewCompiler()
	c.Compile(l.modules)
	if c.Failed() {
		t.Fatal(c.Errors)
	}
	q, _ := parseQuery(DefaultQuery)
	return analyze(c, q)
}

func TestReferencesPresence(t *testing.T) {
	a := &analysis{cacheable: true, refs: []attrRef{
		{name: attributes.RequestHeaders, key: "x-user", keyed: true},
		{name: attributes.RequestHeaders, key: "x-none", keyed: true},
		{name: attributes.RequestMethod},
		{name: attributes.RequestPath},
		{name: attributes.SourceNamespace, key: "k", keyed: true},
	}}
	bag := attributes.BagOf(map[string]attributes.Value{
		attributes.RequestHeaders:  attributes.StringMapValue(attributes.StringMapOf(map[string]string{"x-user": "a"})),
		attributes.RequestMethod:   attributes.String("GET"),
		attributes.SourceNamespace: attributes.String("ns"),
	})
	got := a.references(bag)
	want := []Reference{
		{Name: attributes.RequestHeaders, MapKey: "x-user", Present: true},
		{Name: attributes.RequestHeaders, MapKey: "x-none", Present: false},
		{Name: attributes.RequestMethod, Present: true},
		{Name: attributes.RequestPath, Present: false},
		{Name: attributes.SourceNamespace, MapKey: "k", Present: false},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("references:\n got %+v\nwant %+v", got, want)
	}
}

// TestCacheabilityProperty checks the promise behind Referenced: two bags
// that agree on a decision's referenced attributes get equal decisions.
// For each example policy it draws random bags from a small universe,
// evaluates one, derives a second bag that keeps the referenced
// attributes and randomises everything else, and compares.
func TestCacheabilityProperty(t *testing.T) {
	policies := map[string]Config{
		"default": DefaultConfig(),
		"rbac":    {Paths: []string{"testdata/rbac"}},
		"jwt":     {Paths: []string{"testdata/jwt"}},
		"object":  {Paths: []string{"testdata/object"}},
		// Aliases whose binding would fail on a missing object: the
		// decision must not depend on whether the bag has headers at all.
		"alias": {Modules: map[string]string{"a.rego": `package envoy.authz
default allow := false
allow if {
	h := input.attributes.request.http.headers
	not h["x-user"]
}
allow if {
	r := input.attributes.request.http
	not r.method
}
`}},
		"rule alias": {Modules: map[string]string{"r.rego": `package envoy.authz
default allow := false
http_request := input.attributes.request.http
labels := input.attributes.source.labels
allow if {
	http_request.method == "GET"
	not http_request.headers["x-user"]
}
allow if not labels.app
`}},
		"body": {Modules: map[string]string{"b.rego": `package envoy.authz
default allow := false
allow if input.parsed_body.user == "alice"
allow if input.parsed_query.debug[0] == "1"
allow if input.mixer_attributes["source.labels"].app == "admin"
allow if input.attributes.source.address.socketAddress.portValue == 443
`}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	reader := hs256(t, "k", map[string]any{"role": "reader"})
	admin := hs256(t, "k", map[string]any{"role": "admin"})
	for name, cfg := range policies {
		t.Run(name, func(t *testing.T) {
			off := false
			cfg.Watch = &off
			// Every decision evaluated: the decision cache would answer
			// the second bag from the first one's decision.
			cfg.DecisionCache.Disabled = true
			e := newTestEngine(t, cfg, Options{})
			if !e.current.Load().analysis.cacheable {
				t.Fatalf("policy not cacheable: %s", e.current.Load().analysis.reason)
			}
			var allowed, denied int
			for range 300 {
				b1 := randomBag(rng, reader, admin)
				d1 := mustEval(t, e, b1)
				if d1.Allowed {
					allowed++
				} else {
					denied++
				}
				b2 := rerollUnreferenced(rng, b1, d1.Referenced, reader, admin)
				d2 := mustEval(t, e, b2)
				if !sameDecision(d1, d2) {
					t.Fatalf("bags equal on %+v got different decisions:\nbag1:\n%s%+v\nbag2:\n%s%+v", d1.Referenced, b1, d1, b2, d2)
				}
			}
			if allowed == 0 || denied == 0 {
				t.Errorf("the random bags gave %d allowed and %d denied decisions; the property needs both", allowed, denied)
			}
		})
	}
}

func sameDecision(a, b *Decision) bool {
	x, y := *a, *b
	x.ID, y.ID = "", ""
	x.Referenced, y.Referenced = nil, nil
	x.memo, y.memo = nil, nil // the renderings of a cached decision
	return reflect.DeepEqual(x, y) && slices.Equal(a.Referenced, b.Referenced)
}

// universe lists the attributes randomBag draws, each with a few values.
func universe(reader, admin string) map[string][]attributes.Value {
	str := func(ss ...string) []attributes.Value {
		out := make([]attributes.Value, len(ss))
		for i, s := range ss {
			out[i] = attributes.String(s)
		}
		return out
	}
	return map[string][]attributes.Value{
		attributes.RequestMethod: str("GET", "HEAD", "POST", "DELETE"),
		attributes.RequestPath:   str("/", "/admin", "/admin/x", "/api/v1/items", "/api/v1/items?debug=1", "/people"),
		attributes.RequestHost:   str("a", "b"),
		attributes.RequestBody:   str(`{"user":"alice"}`, `{"user":"bob"}`),
		attributes.SourcePort:    {attributes.Int64(443), attributes.Int64(80)},
		attributes.SourceLabels: {
			attributes.StringMapValue(attributes.StringMapOf(map[string]string{"app": "admin"})),
			attributes.StringMapValue(attributes.StringMapOf(map[string]string{"app": "web"})),
		},
		attributes.SourcePrincipal: str("p1", "p2"),
	}
}

var headerUniverse = map[string][]string{
	"x-user":         {"alice", "bob", "carol", "mallory"},
	"x-user-role":    {"admin", "viewer"},
	"x-api-key":      {"k-123", "k-456", "k-0"},
	"content-type":   {"application/json", "text/plain"},
	"content-length": {"16", "2"},
	"x-other":        {"1", "2"},
}

func randomHeaders(rng *rand.Rand, reader, admin string) attributes.Value {
	kvs := []attributes.KV{}
	for k, vs := range headerUniverse {
		if rng.IntN(2) == 0 {
			kvs = append(kvs, attributes.KV{Key: k, Value: vs[rng.IntN(len(vs))]})
		}
	}
	if rng.IntN(2) == 0 {
		kvs = append(kvs, attributes.KV{Key: "authorization", Value: "Bearer " + []string{reader, admin}[rng.IntN(2)]})
	}
	return attributes.StringMapValue(attributes.NewStringMap(kvs))
}

func randomBag(rng *rand.Rand, reader, admin string) attributes.Bag {
	bd := attributes.NewBuilder(16)
	for name, vs := range universe(reader, admin) {
		if rng.IntN(4) > 0 {
			bd.Set(name, vs[rng.IntN(len(vs))])
		}
	}
	if rng.IntN(5) > 0 {
		bd.Set(attributes.RequestHeaders, randomHeaders(rng, reader, admin))
	}
	return bd.Build()
}

// rerollUnreferenced returns a bag equal to b on refs and random elsewhere.
func rerollUnreferenced(rng *rand.Rand, b attributes.Bag, refs []Reference, reader, admin string) attributes.Bag {
	whole := map[string]bool{}
	keys := map[string]map[string]bool{}
	for _, r := range refs {
		if r.MapKey == "" {
			whole[r.Name] = true
		} else {
			if keys[r.Name] == nil {
				keys[r.Name] = map[string]bool{}
			}
			keys[r.Name][r.MapKey] = true
		}
	}
	fresh := randomBag(rng, reader, admin)
	bd := attributes.NewBuilder(16)
	for name, v := range fresh.All() {
		bd.Set(name, v)
	}
	for name := range whole {
		v, _ := b.Get(name)
		bd.Set(name, v) // the zero Value deletes
	}
	for name, ks := range keys {
		if whole[name] {
			continue
		}
		orig, _ := b.Get(name)
		cur, _ := bd.Get(name)
		var kvs []attributes.KV
		for k, v := range cur.StringMapValue().All() {
			if !ks[k] {
				kvs = append(kvs, attributes.KV{Key: k, Value: v})
			}
		}
		for k := range ks {
			if v, ok := orig.StringMapValue().Get(k); ok {
				kvs = append(kvs, attributes.KV{Key: k, Value: v})
			}
		}
		if len(kvs) > 0 || cur.IsValid() {
			bd.Set(name, attributes.StringMapValue(attributes.NewStringMap(kvs)))
		}
	}
	return bd.Build()
}
