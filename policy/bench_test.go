package policy

import (
	"context"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/remora-mesh/remora/attributes"
)

// benchHeaders is a realistic browser-ish header set.
var benchHeaders = map[string]string{
	":authority": "shop.example", ":method": "GET", ":path": "/api/v1/items?page=2",
	"accept": "application/json", "accept-encoding": "gzip, br", "user-agent": "Mozilla/5.0 (X11; Linux x86_64)",
	"x-request-id": "9b7c1f0e-1", "x-forwarded-proto": "https", "x-user": "bob",
	"authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl",
	"cookie":        "session=abcdef0123456789; theme=dark",
}

// benchEngine serves the RBAC example without the decision cache, so that
// every Eval evaluates the policy.
func benchEngine(b *testing.B) *Engine {
	b.Helper()
	off := false
	cfg := Config{Paths: []string{"testdata/rbac"}, Watch: &off}
	cfg.DecisionCache.Disabled = true
	return newTestEngine(b, cfg, Options{})
}

// BenchmarkEvalRBACCacheHit is BenchmarkEvalRBAC answered by the decision
// cache: key building, lookup and a copy of the decision with its own ID.
func BenchmarkEvalRBACCacheHit(b *testing.B) {
	off := false
	e := newTestEngine(b, Config{Paths: []string{"testdata/rbac"}, Watch: &off}, Options{})
	bag := mixerBagFor("GET", "/api/v1/items?page=2", benchHeaders)
	ctx := context.Background()
	mustEval(b, e, bag)
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.Eval(ctx, bag)
		if err != nil || !d.Allowed {
			b.Fatal(d, err)
		}
	}
}

// BenchmarkEvalRBAC is the server's path: bag → AST input → decision.
func BenchmarkEvalRBAC(b *testing.B) {
	e := benchEngine(b)
	bag := mixerBagFor("GET", "/api/v1/items?page=2", benchHeaders)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.Eval(ctx, bag)
		if err != nil || !d.Allowed {
			b.Fatal(d, err)
		}
	}
}

// BenchmarkEvalRBACParallel is BenchmarkEvalRBAC from GOMAXPROCS goroutines.
func BenchmarkEvalRBACParallel(b *testing.B) {
	e := benchEngine(b)
	bag := mixerBagFor("GET", "/api/v1/items?page=2", benchHeaders)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			d, err := e.Eval(ctx, bag)
			if err != nil || !d.Allowed {
				b.Error(d, err)
				return
			}
		}
	})
}

// BenchmarkEvalRBACMapInput evaluates the same policy with the input built
// as map[string]any and handed to OPA, which converts it to AST itself.
func BenchmarkEvalRBACMapInput(b *testing.B) {
	e := benchEngine(b)
	pq := e.current.Load().pq
	bag := mixerBagFor("GET", "/api/v1/items?page=2", benchHeaders)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rs, err := pq.Eval(ctx, rego.EvalInput(mapInput(bag)))
		if err != nil || len(rs) != 1 || rs[0].Expressions[0].Value != true {
			b.Fatal(rs, err)
		}
	}
}

// BenchmarkEvalRBACPluginJSON evaluates the same policy the way
// opa-envoy-plugin builds its input: CheckRequest → protojson → map → AST.
func BenchmarkEvalRBACPluginJSON(b *testing.B) {
	e := benchEngine(b)
	pq := e.current.Load().pq
	req := sampleCheckRequest("GET", "/api/v1/items?page=2", benchHeaders, "")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		bs, err := protojson.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		var input map[string]any
		if err := util.UnmarshalJSON(bs, &input); err != nil {
			b.Fatal(err)
		}
		input["version"] = map[string]any{"ext_authz": "v3", "encoding": "protojson"}
		segs, query := mapPath(req.GetAttributes().GetRequest().GetHttp().GetPath())
		input["parsed_path"], input["parsed_query"] = segs, query
		input["parsed_body"], input["truncated_body"] = nil, false
		rs, err := pq.Eval(ctx, rego.EvalInput(input))
		if err != nil || len(rs) != 1 || rs[0].Expressions[0].Value != true {
			b.Fatal(rs, err)
		}
	}
}

// BenchmarkBuildInput measures building the full AST input document alone.
func BenchmarkBuildInput(b *testing.B) {
	bag := mixerBagFor("GET", "/api/v1/items?page=2", benchHeaders)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildInput(bag); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildInputForPolicy builds only what the RBAC policy reads.
func BenchmarkBuildInputForPolicy(b *testing.B) {
	e := benchEngine(b)
	needs := &e.current.Load().analysis.needs
	bag := mixerBagFor("GET", "/api/v1/items?page=2", benchHeaders)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := buildInput(bag, needs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildMapInput measures the map[string]any form alone.
func BenchmarkBuildMapInput(b *testing.B) {
	bag := mixerBagFor("GET", "/api/v1/items?page=2", benchHeaders)
	b.ReportAllocs()
	for b.Loop() {
		_ = mapInput(bag)
	}
}

func BenchmarkEvalDefaultPolicy(b *testing.B) {
	cfg := DefaultConfig()
	cfg.DecisionCache.Disabled = true
	e := newTestEngine(b, cfg, Options{})
	bag := mixerBagFor("GET", "/products/1", benchHeaders)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Eval(ctx, bag); err != nil {
			b.Fatal(err)
		}
	}
}

// mapInput builds the same document as BuildInput as map[string]any, the
// form rego.EvalInput takes. It exists for comparison only.
func mapInput(bag attributes.Bag) map[string]any {
	str := func(n string) (string, bool) {
		v, ok := bag.Get(n)
		return v.StringValue(), ok && v.Kind() == attributes.KindString && v.StringValue() != ""
	}
	strMap := func(n string) (map[string]any, bool) {
		v, ok := bag.Get(n)
		if !ok || v.Kind() != attributes.KindStringMap || v.StringMapValue().Len() == 0 {
			return nil, false
		}
		m := make(map[string]any, v.StringMapValue().Len())
		for k, s := range v.StringMapValue().All() {
			m[k] = s
		}
		return m, true
	}
	http := map[string]any{}
	for key, name := range map[string]string{"id": attributes.RequestID, "method": attributes.RequestMethod,
		"path": attributes.RequestPath, "host": attributes.RequestHost, "scheme": attributes.RequestScheme,
		"protocol": attributes.RequestProtocol, "body": attributes.RequestBody} {
		if s, ok := str(name); ok {
			http[key] = s
		}
	}
	if v, ok := bag.Get(attributes.RequestSize); ok && v.Int64Value() != 0 {
		http["size"] = strconv.FormatInt(v.Int64Value(), 10)
	}
	if h, ok := strMap(attributes.RequestHeaders); ok {
		http["headers"] = h
	}
	request := map[string]any{"http": http}
	if v, ok := bag.Get(attributes.RequestTime); ok {
		request["time"] = formatTimestamp(v.TimeValue())
	}
	peer := func(ipName, portName, principal, labels string) map[string]any {
		p := map[string]any{}
		sock := map[string]any{}
		if v, ok := bag.Get(ipName); ok {
			ip, _ := v.IPValue()
			sock["address"] = ip.String()
		}
		if v, ok := bag.Get(portName); ok {
			sock["portValue"] = v.Int64Value()
		}
		if len(sock) > 0 {
			p["address"] = map[string]any{"socketAddress": sock}
		}
		if s, ok := str(principal); ok {
			p["principal"] = s
		}
		if l, ok := strMap(labels); ok {
			p["labels"] = l
		}
		return p
	}
	attrs := map[string]any{
		"request":     request,
		"source":      peer(attributes.SourceIP, attributes.SourcePort, attributes.SourcePrincipal, attributes.SourceLabels),
		"destination": peer(attributes.DestinationIP, attributes.DestinationPort, attributes.DestinationPrincipal, attributes.DestinationLabels),
	}
	if m, ok := strMap(attributes.ContextExtensions); ok {
		attrs["contextExtensions"] = m
	}
	path, _ := str(attributes.RequestPath)
	segs, query := mapPath(path)
	mixer := make(map[string]any, bag.Len())
	for name, v := range bag.All() {
		switch v.Kind() {
		case attributes.KindString:
			mixer[name] = v.StringValue()
		case attributes.KindInt64:
			mixer[name] = v.Int64Value()
		case attributes.KindBool:
			mixer[name] = v.BoolValue()
		case attributes.KindStringMap:
			m := map[string]any{}
			for k, s := range v.StringMapValue().All() {
				m[k] = s
			}
			mixer[name] = m
		case attributes.KindBytes:
			mixer[name] = base64.StdEncoding.EncodeToString(v.BytesValue())
		default:
			mixer[name] = v.String()
		}
	}
	return map[string]any{
		"attributes":       attrs,
		"parsed_path":      segs,
		"parsed_query":     query,
		"parsed_body":      nil,
		"truncated_body":   false,
		"version":          map[string]any{"ext_authz": "v3", "encoding": "protojson"},
		"mixer_attributes": mixer,
	}
}

func mapPath(path string) ([]any, map[string]any) {
	u, err := url.Parse(path)
	if err != nil {
		return nil, nil
	}
	parts := strings.Split(strings.TrimLeft(u.Path, "/"), "/")
	segs := make([]any, len(parts))
	for i, p := range parts {
		segs[i] = p
	}
	q := map[string]any{}
	for k, vs := range u.Query() {
		arr := make([]any, len(vs))
		for i, v := range vs {
			arr[i] = v
		}
		q[k] = arr
	}
	return segs, q
}
