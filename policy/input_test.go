package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/util"
	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/remora-mesh/remora/attributes"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// sampleCheckRequest is an ext_authz request using every field the input
// document carries.
func sampleCheckRequest(method, path string, headers map[string]string, body string) *authv3.CheckRequest {
	sock := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:   sock("10.0.0.7", 52000),
			Principal: "spiffe://cluster.local/ns/shop/sa/web",
			Labels:    map[string]string{"app": "web"},
		},
		Destination: &authv3.AttributeContext_Peer{
			Address:   sock("10.0.0.9", 8080),
			Principal: "spiffe://cluster.local/ns/shop/sa/api",
		},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Date(2026, 11, 22, 4, 5, 6, 789000000, time.UTC)),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       "9b7c1f0e-1",
				Method:   method,
				Headers:  headers,
				Path:     path,
				Host:     "shop.example",
				Scheme:   "https",
				Size:     int64(len(body)),
				Protocol: "HTTP/1.1",
				Body:     body,
			},
		},
		ContextExtensions: map[string]string{"virtual_host": "shop"},
		TlsSession:        &authv3.AttributeContext_TLSSession{Sni: "shop.example"},
	}}
}

// pluginInput computes the input opa-envoy-plugin builds for req: the
// request's protojson form plus version, parsed_path, parsed_query,
// parsed_body and truncated_body. It is this test's oracle.
func pluginInput(t *testing.T, req *authv3.CheckRequest) map[string]any {
	t.Helper()
	bs, err := protojson.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var input map[string]any
	if err := util.UnmarshalJSON(bs, &input); err != nil {
		t.Fatal(err)
	}
	input["version"] = map[string]any{"ext_authz": "v3", "encoding": "protojson"}
	h := req.GetAttributes().GetRequest().GetHttp()
	u, err := url.Parse(h.GetPath())
	if err != nil {
		t.Fatal(err)
	}
	var segs []any
	for _, s := range strings.Split(strings.TrimLeft(u.Path, "/"), "/") {
		segs = append(segs, s)
	}
	input["parsed_path"] = segs
	q := map[string]any{}
	for k, vs := range u.Query() {
		arr := make([]any, len(vs))
		for i, v := range vs {
			arr[i] = v
		}
		q[k] = arr
	}
	input["parsed_query"] = q
	// The one deliberate difference: Remora's input always has a headers
	// object (empty when the request has none), so that a policy may alias
	// it (h := input.attributes.request.http.headers) without its decision
	// depending on whether the map exists. Envoy always sends headers.
	if attrs, ok := input["attributes"].(map[string]any); ok {
		if req, ok := attrs["request"].(map[string]any); ok {
			if http, ok := req["http"].(map[string]any); ok && http["headers"] == nil {
				http["headers"] = map[string]any{}
			}
		}
	}
	input["parsed_body"] = nil
	input["truncated_body"] = false
	if strings.Contains(h.GetHeaders()["content-type"], "application/json") && h.GetBody() != "" {
		var body any
		if err := util.UnmarshalJSON([]byte(h.GetBody()), &body); err != nil {
			t.Fatal(err)
		}
		input["parsed_body"] = body
	}
	return input
}

func astToJSON(t *testing.T, v ast.Value) map[string]any {
	t.Helper()
	x, err := ast.JSON(v)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := x.(map[string]any)
	if !ok {
		t.Fatalf("input is %T, not an object", x)
	}
	return m
}

func TestInputMatchesOPAEnvoyPlugin(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		headers                  map[string]string
	}{
		{"get with query", "GET", "/api/v1/items?page=2&tag=a&tag=b", "", map[string]string{"x-user": "alice", ":authority": "shop.example"}},
		{"root", "GET", "/", "", map[string]string{"accept": "*/*"}},
		{"empty path", "GET", "", "", nil},
		{"json body", "POST", "/api/v1/items", `{"name":"lamp","count":2,"tags":["x"]}`, map[string]string{"content-type": "application/json; charset=utf-8"}},
		{"text body", "POST", "/upload", "hello", map[string]string{"content-type": "text/plain"}},
		{"escaped path", "GET", "/a%2Fb/c%20d?x=%41", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := sampleCheckRequest(tt.method, tt.path, tt.headers, tt.body)
			v, err := BuildInput(BagFromCheckRequest(req))
			if err != nil {
				t.Fatal(err)
			}
			got := astToJSON(t, v)
			delete(got, inputKeyMixer)
			want := pluginInput(t, req)
			if !reflect.DeepEqual(got, want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				w, _ := json.MarshalIndent(want, "", "  ")
				t.Errorf("input differs from opa-envoy-plugin's\n got %s\nwant %s", g, w)
			}
		})
	}
}

// fullBag holds one attribute of every kind, for the golden input.
func fullBag() attributes.Bag {
	bd := attributes.NewBuilder(32)
	bd.Set(attributes.RequestID, attributes.String("9b7c1f0e-1"))
	bd.Set(attributes.RequestMethod, attributes.String("POST"))
	bd.Set(attributes.RequestPath, attributes.String("/api/v1/items?page=2&tag=a&tag=b"))
	bd.Set(attributes.RequestURLPath, attributes.String("/api/v1/items"))
	bd.Set(attributes.RequestHost, attributes.String("shop.example"))
	bd.Set(attributes.RequestScheme, attributes.String("https"))
	bd.Set(attributes.RequestProtocol, attributes.String("HTTP/2"))
	bd.Set(attributes.RequestSize, attributes.Int64(15))
	bd.Set(attributes.RequestHeaders, attributes.StringMapValue(attributes.StringMapOf(map[string]string{
		"content-type": "application/json", "content-length": "15", "x-user": "alice"})))
	bd.Set(attributes.RequestBody, attributes.String(`{"name":"lamp"}`))
	bd.Set(attributes.RequestTime, attributes.Timestamp(time.Date(2026, 11, 22, 4, 5, 6, 500, time.UTC)))
	bd.Set(attributes.SourceIP, attributes.IPAddress(netip.MustParseAddr("::ffff:10.0.0.7")))
	bd.Set(attributes.SourcePort, attributes.Int64(52000))
	bd.Set(attributes.SourcePrincipal, attributes.String("spiffe://cluster.local/ns/shop/sa/web"))
	bd.Set(attributes.SourceLabels, attributes.StringMapValue(attributes.StringMapOf(map[string]string{"app": "web"})))
	bd.Set(attributes.DestinationIP, attributes.IPAddress(netip.MustParseAddr("fd00::9")))
	bd.Set(attributes.DestinationPort, attributes.Int64(8080))
	bd.Set(attributes.DestinationPrincipal, attributes.String("spiffe://cluster.local/ns/shop/sa/api"))
	bd.Set(attributes.DestinationLabels, attributes.StringMapValue(attributes.StringMapOf(map[string]string{"app": "api", "version": "v2"})))
	bd.Set(attributes.DestinationServiceHost, attributes.String("api.shop.svc.cluster.local"))
	bd.Set(attributes.ContextExtensions, attributes.StringMapValue(attributes.StringMapOf(map[string]string{"virtual_host": "shop"})))
	bd.Set(attributes.ConnectionRequestedServerName, attributes.String("shop.example"))
	bd.Set(attributes.ConnectionMTLS, attributes.Bool(true))
	bd.Set(attributes.ResponseDuration, attributes.Duration(1500*time.Millisecond))
	bd.Set("custom.ratio", attributes.Double(0.25))
	bd.Set("custom.nan", attributes.Double(math.NaN()))
	bd.Set("custom.bytes", attributes.Bytes([]byte{0, 1, 2, 0xff}))
	return bd.Build()
}

func TestInputGolden(t *testing.T) {
	v, err := BuildInput(fullBag())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(astToJSON(t, v)); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	const golden = "testdata/input.golden.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestInputGolden -update)", err)
	}
	if string(got) != string(want) {
		t.Errorf("input document differs from %s (rerun with -update if intended):\n%s", golden, got)
	}
}

// TestInputLeavesMatchBuilder checks that every leaf of the analysis table
// is where the builder puts the attribute it names, so that references
// and input cannot drift apart.
func TestInputLeavesMatchBuilder(t *testing.T) {
	full := astToJSON(t, mustInput(t, fullBag()))
	for _, leaf := range inputLeaves {
		t.Run(strings.Join(leaf.path, "."), func(t *testing.T) {
			var cur any = full
			for _, k := range leaf.path {
				m, ok := cur.(map[string]any)
				if !ok {
					t.Fatalf("no object at %s", k)
				}
				if cur, ok = m[k]; !ok {
					t.Fatalf("input has no %s", strings.Join(leaf.path, "."))
				}
			}
			if leaf.path[0] == "truncated_body" {
				return // false with or without a body; TestInputErrors covers true
			}
			// Without the leaf's attributes the value changes or vanishes.
			bd := attributes.NewBuilder(32)
			drop := map[string]bool{}
			for _, r := range leaf.attrs {
				drop[r.name] = true
			}
			for name, v := range fullBag().All() {
				if !drop[name] {
					bd.Set(name, v)
				}
			}
			without := astToJSON(t, mustInput(t, bd.Build()))
			var other any = without
			for _, k := range leaf.path {
				m, _ := other.(map[string]any)
				other = m[k]
			}
			if reflect.DeepEqual(cur, other) {
				t.Errorf("%s does not depend on %v", strings.Join(leaf.path, "."), leaf.attrs)
			}
		})
	}
}

func mustInput(t *testing.T, bag attributes.Bag) ast.Value {
	t.Helper()
	v, err := BuildInput(bag)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestInputErrors(t *testing.T) {
	headers := func(kv ...string) attributes.Value {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return attributes.StringMapValue(attributes.StringMapOf(m))
	}
	tests := []struct {
		name string
		bag  map[string]attributes.Value
		want string
	}{
		{"bad path", map[string]attributes.Value{attributes.RequestPath: attributes.String("/a%zz")}, `request.path "/a%zz"`},
		{"bad json body", map[string]attributes.Value{
			attributes.RequestHeaders: headers("content-type", "application/json"),
			attributes.RequestBody:    attributes.String(`{"a":`)}, "request body"},
		{"bad content-length", map[string]attributes.Value{
			attributes.RequestHeaders: headers("content-type", "application/json", "content-length", "ten"),
			attributes.RequestBody:    attributes.String(`{}`)}, `content-length "ten"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := BuildInput(attributes.BagOf(tt.bag))
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrInput containing %q", err, tt.want)
			}
		})
	}
	// A truncated JSON body is not parsed: parsed_body is null.
	v := mustInput(t, attributes.BagOf(map[string]attributes.Value{
		attributes.RequestHeaders: headers("content-type", "application/json", "content-length", "100"),
		attributes.RequestBody:    attributes.String(`{"a":`),
	}))
	m := astToJSON(t, v)
	if m["parsed_body"] != nil || m["truncated_body"] != true {
		t.Errorf("truncated body: parsed_body=%v truncated_body=%v", m["parsed_body"], m["truncated_body"])
	}
}

// TestExtAuthzAndMixerAgree evaluates each example policy on ext_authz
// requests converted by BagFromCheckRequest and on the bag a Mixer client
// sends for the same request.
func TestExtAuthzAndMixerAgree(t *testing.T) {
	admin := hs256(t, "k", map[string]any{"role": "admin"})
	requests := []struct {
		method, path string
		headers      map[string]string
	}{
		{"GET", "/", nil},
		{"GET", "/admin/users", map[string]string{"x-user-role": "admin"}},
		{"DELETE", "/products/1", nil},
		{"GET", "/api/v1/items", map[string]string{"x-user": "bob"}},
		{"POST", "/api/v1/items", map[string]string{"x-user": "carol"}},
		{"PUT", "/x", map[string]string{"authorization": "Bearer " + admin}},
		{"GET", "/", map[string]string{"x-api-key": "k-456"}},
	}
	for name, cfg := range map[string]Config{
		"default": DefaultConfig(),
		"rbac":    {Paths: []string{"testdata/rbac"}},
		"jwt":     {Paths: []string{"testdata/jwt"}},
		"object":  {Paths: []string{"testdata/object"}},
	} {
		t.Run(name, func(t *testing.T) {
			off := false
			cfg.Watch = &off
			e := newTestEngine(t, cfg, Options{})
			for _, r := range requests {
				fromExt := BagFromCheckRequest(sampleCheckRequest(r.method, r.path, r.headers, ""))
				mixer := mixerBagFor(r.method, r.path, r.headers)
				d1, err1 := e.Eval(context.Background(), fromExt)
				d2, err2 := e.Eval(context.Background(), mixer)
				if err1 != nil || err2 != nil {
					t.Fatalf("Eval: %v, %v", err1, err2)
				}
				if !sameDecision(d1, d2) {
					t.Errorf("%s %s: ext_authz %+v, mixer %+v", r.method, r.path, d1, d2)
				}
			}
		})
	}
}

// mixerBagFor is what the sidecar's check filter sends for the request
// sampleCheckRequest describes.
func mixerBagFor(method, path string, headers map[string]string) attributes.Bag {
	bd := attributes.NewBuilder(24)
	s := func(n, v string) { bd.Set(n, attributes.String(v)) }
	s(attributes.RequestID, "9b7c1f0e-1")
	s(attributes.RequestMethod, method)
	s(attributes.RequestPath, path)
	s(attributes.RequestURLPath, strings.SplitN(path, "?", 2)[0])
	s(attributes.RequestHost, "shop.example")
	s(attributes.RequestScheme, "https")
	s(attributes.RequestProtocol, "HTTP/1.1")
	s(attributes.SourcePrincipal, "spiffe://cluster.local/ns/shop/sa/web")
	s(attributes.DestinationPrincipal, "spiffe://cluster.local/ns/shop/sa/api")
	s(attributes.ContextProtocol, "http")
	s(attributes.ConnectionRequestedServerName, "shop.example")
	if len(headers) > 0 {
		bd.Set(attributes.RequestHeaders, attributes.StringMapValue(attributes.StringMapOf(headers)))
	}
	bd.Set(attributes.SourceIP, attributes.IPAddress(netip.MustParseAddr("10.0.0.7")))
	bd.Set(attributes.SourcePort, attributes.Int64(52000))
	bd.Set(attributes.SourceLabels, attributes.StringMapValue(attributes.StringMapOf(map[string]string{"app": "web"})))
	bd.Set(attributes.DestinationIP, attributes.IPAddress(netip.MustParseAddr("10.0.0.9")))
	bd.Set(attributes.DestinationPort, attributes.Int64(8080))
	bd.Set(attributes.RequestTime, attributes.Timestamp(time.Date(2026, 11, 22, 4, 5, 6, 789000000, time.UTC)))
	bd.Set(attributes.ContextExtensions, attributes.StringMapValue(attributes.StringMapOf(map[string]string{"virtual_host": "shop"})))
	return bd.Build()
}

func TestBagFromCheckRequest(t *testing.T) {
	req := sampleCheckRequest("GET", "/a/b?x=1", map[string]string{"user-agent": "curl/8", "content-type": "application/grpc"}, "")
	bag := BagFromCheckRequest(req)
	want := mixerBagFor("GET", "/a/b?x=1", map[string]string{"user-agent": "curl/8", "content-type": "application/grpc"})
	bd := attributes.NewBuilder(32)
	bd.Merge(want)
	bd.Set(attributes.RequestUserAgent, attributes.String("curl/8"))
	bd.Set(attributes.ContextProtocol, attributes.String("grpc"))
	want = bd.Build()
	if !bag.Equal(want) {
		t.Errorf("bag:\n%s\nwant:\n%s", bag, want)
	}
	// Raw header_map (encode_raw_headers) gives the same headers attribute.
	raw := sampleCheckRequest("GET", "/", nil, "")
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "X-User", RawValue: []byte("bob")}, {Key: "accept", Value: "a"}, {Key: "Accept", Value: "b"}}}
	hv, _ := BagFromCheckRequest(raw).Get(attributes.RequestHeaders)
	if want := attributes.StringMapOf(map[string]string{"x-user": "bob", "accept": "a,b"}); !hv.StringMapValue().Equal(want) {
		t.Errorf("headers from header_map = %v, want %v", hv.StringMapValue(), want)
	}
	if BagFromCheckRequest(nil).Len() != 0 {
		t.Error("nil request: want an empty bag")
	}
	// A pipe address is not an IP: no source.ip, no panic.
	req.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/s"}}}
	if BagFromCheckRequest(req).Has(attributes.SourceIP) {
		t.Error("pipe address became source.ip")
	}
}

func TestInputOnlyWhatThePolicyReads(t *testing.T) {
	e := moduleEngine(t, `package envoy.authz
allow if {
	input.attributes.request.http.method == "GET"
	input.attributes.request.http.headers["x-user"] == "bob"
	input.mixer_attributes["destination.service.host"] == "api"
}
`)
	a := e.current.Load().analysis
	if a.needs.leaves != 1<<leafHTTPMethod|1<<leafHTTPHeaders || a.needs.mixerAll || len(a.needs.mixer) != 1 {
		t.Errorf("needs = %+v", a.needs)
	}
	v, err := buildInput(fullBag(), &a.needs)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(astToJSON(t, v))
	// Only the header the policy reads: it cannot observe the others.
	want := `{"attributes":{"request":{"http":{"headers":{"x-user":"alice"},"method":"POST"}}},` +
		`"mixer_attributes":{"destination.service.host":"api.shop.svc.cluster.local"},"version":{"encoding":"protojson","ext_authz":"v3"}}`
	if string(got) != want {
		t.Errorf("input:\n got %s\nwant %s", got, want)
	}
	// The path is not parsed, so a bad one is no error for this policy.
	bag := mixerBagFor("GET", "/a%zz", map[string]string{"x-user": "bob"})
	if _, err := e.Eval(context.Background(), bag); err != nil {
		t.Errorf("Eval with an unparsed bad path: %v", err)
	}
	// A policy that reads parsed_path fails on it, as opa-envoy-plugin does.
	e2 := moduleEngine(t, "package envoy.authz\nallow if input.parsed_path[0] == \"a\"\n")
	if _, err := e2.Eval(context.Background(), bag); !errors.Is(err, ErrInput) {
		t.Errorf("Eval with a bad parsed path: %v, want ErrInput", err)
	}
}

// TestPartialInputSameDecisions checks that the input built for what a
// policy reads gives the decisions the whole input gives, for the example
// policies and policies reading the headers by key, as a whole and
// through aliases.
func TestPartialInputSameDecisions(t *testing.T) {
	policies := map[string]Config{
		"default": DefaultConfig(),
		"rbac":    {Paths: []string{"testdata/rbac"}},
		"jwt":     {Paths: []string{"testdata/jwt"}},
		"object":  {Paths: []string{"testdata/object"}},
		"keys and count": {Modules: map[string]string{"a.rego": `package envoy.authz
default allow := false
allow if input.attributes.request.http.headers["x-user"] == "alice"
allow if count(input.attributes.request.http.headers) > 4
`}},
		"alias": {Modules: map[string]string{"a.rego": `package envoy.authz
default allow := false
allow if {
	h := input.attributes.request.http.headers
	h["x-user-role"] == "admin"
	not h["x-other"]
}
`}},
		"body": {Modules: map[string]string{"b.rego": `package envoy.authz
default allow := false
allow if input.parsed_body.user == "alice"
allow if input.attributes.request.http.headers["x-user"] == "bob"
`}},
	}
	rng := rand.New(rand.NewPCG(5, 6))
	reader := hs256(t, "k", map[string]any{"role": "reader"})
	admin := hs256(t, "k", map[string]any{"role": "admin"})
	for name, cfg := range policies {
		t.Run(name, func(t *testing.T) {
			off := false
			cfg.Watch = &off
			e := newTestEngine(t, cfg, Options{})
			p := e.current.Load()
			for range 200 {
				bag := randomBag(rng, reader, admin)
				part, err1 := buildInput(bag, &p.analysis.needs)
				whole, err2 := buildInput(bag, &fullInput)
				if (err1 != nil) != (err2 != nil) {
					t.Fatalf("input errors differ: %v, %v", err1, err2)
				}
				if err1 != nil {
					continue
				}
				rs1, err1 := p.pq.Eval(context.Background(), rego.EvalParsedInput(part))
				rs2, err2 := p.pq.Eval(context.Background(), rego.EvalParsedInput(whole))
				if err1 != nil || err2 != nil {
					t.Fatalf("Eval: %v, %v", err1, err2)
				}
				if !reflect.DeepEqual(rs1, rs2) {
					t.Fatalf("bag:\n%s\npartial input %v\ngave %v\nwhole input gave %v", bag, part, rs1, rs2)
				}
			}
		})
	}
}
