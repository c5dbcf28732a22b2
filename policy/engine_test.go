package policy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/remora-mesh/remora/attributes"
)

// newTestEngine starts an engine that is closed when the test ends.
func newTestEngine(t testing.TB, cfg Config, opts Options) *Engine {
	t.Helper()
	if opts.Logger == nil {
		if tt, ok := t.(*testing.T); ok {
			opts.Logger = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
		}
	}
	e, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// moduleEngine serves one embedded module without watching.
func moduleEngine(t testing.TB, src string) *Engine {
	t.Helper()
	off := false
	return newTestEngine(t, Config{Modules: map[string]string{"test.rego": src}, Watch: &off}, Options{})
}

// httpBag is the bag of one HTTP request as the sidecar sends it.
func httpBag(method, path string, headers map[string]string) attributes.Bag {
	bd := attributes.NewBuilder(8)
	bd.Set(attributes.RequestMethod, attributes.String(method))
	bd.Set(attributes.RequestPath, attributes.String(path))
	bd.Set(attributes.RequestHost, attributes.String("shop.example"))
	if headers != nil {
		bd.Set(attributes.RequestHeaders, attributes.StringMapValue(attributes.StringMapOf(headers)))
	}
	bd.Set(attributes.SourceIP, attributes.IPAddress(netip.MustParseAddr("10.0.0.7")))
	bd.Set(attributes.SourcePrincipal, attributes.String("spiffe://cluster.local/ns/shop/sa/web"))
	return bd.Build()
}

// hs256 returns a signed HS256 JWT with the given claims.
func hs256(t testing.TB, secret string, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

func mustEval(t testing.TB, e *Engine, bag attributes.Bag) *Decision {
	t.Helper()
	d, err := e.Eval(context.Background(), bag)
	if err != nil {
		t.Fatalf("Eval: %v", err)
	}
	return d
}

func TestAllowDeny(t *testing.T) {
	off := false
	now := time.Now().Unix()
	guest := hs256(t, "secret", map[string]any{"role": "guest", "nbf": now - 60, "exp": now + 3600})
	expired := hs256(t, "secret", map[string]any{"role": "guest", "nbf": now - 7200, "exp": now - 3600})
	forged := hs256(t, "not-the-secret", map[string]any{"role": "guest", "nbf": now - 60, "exp": now + 3600})
	admin := hs256(t, "whatever", map[string]any{"role": "admin"})
	reader := hs256(t, "whatever", map[string]any{"role": "reader"})

	tests := []struct {
		name  string
		paths []string
		cases []struct {
			method, path string
			headers      map[string]string
			want         bool
		}
	}{
		{"rbac with data documents", []string{"testdata/rbac"}, []struct {
			method, path string
			headers      map[string]string
			want         bool
		}{
			{"GET", "/anything", map[string]string{"x-user": "alice"}, true},
			{"DELETE", "/api/v1/items/3", map[string]string{"x-user": "alice"}, true},
			{"GET", "/api/v1/items", map[string]string{"x-user": "bob"}, true},
			{"POST", "/api/v1/items", map[string]string{"x-user": "bob"}, false},
			{"POST", "/api/v1/items", map[string]string{"x-user": "carol"}, true},
			{"GET", "/admin", map[string]string{"x-user": "bob"}, false},
			{"GET", "/api/v1/items", map[string]string{"x-user": "mallory"}, false},
			{"GET", "/api/v1/items", nil, false},
		}},
		{"jwt claims via io.jwt.decode", []string{"testdata/jwt/policy.rego"}, []struct {
			method, path string
			headers      map[string]string
			want         bool
		}{
			{"DELETE", "/x", map[string]string{"authorization": "Bearer " + admin}, true},
			{"GET", "/x", map[string]string{"authorization": "Bearer " + reader}, true},
			{"POST", "/x", map[string]string{"authorization": "Bearer " + reader}, false},
			{"GET", "/x", map[string]string{"authorization": "Basic Zm9vOmJhcg=="}, false},
			{"GET", "/x", nil, false},
		}},
		{"v0 syntax, verified token with time window", []string{"testdata/v0"}, []struct {
			method, path string
			headers      map[string]string
			want         bool
		}{
			{"GET", "/people", map[string]string{"authorization": "Bearer " + guest}, true},
			{"GET", "/people?page=2", map[string]string{"authorization": "Bearer " + guest}, true},
			{"POST", "/people", map[string]string{"authorization": "Bearer " + guest}, false},
			{"GET", "/people", map[string]string{"authorization": "Bearer " + expired}, false},
			{"GET", "/people", map[string]string{"authorization": "Bearer " + forged}, false},
			{"GET", "/people", nil, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(t, Config{Paths: tt.paths, Watch: &off}, Options{})
			for _, c := range tt.cases {
				d := mustEval(t, e, httpBag(c.method, c.path, c.headers))
				if d.Allowed != c.want {
					t.Errorf("%s %s %v: allowed = %v, want %v", c.method, c.path, c.headers, d.Allowed, c.want)
				}
				if d.ID == "" {
					t.Errorf("decision has no id")
				}
			}
		})
	}
}

func TestDefaultPolicy(t *testing.T) {
	e := newTestEngine(t, DefaultConfig(), Options{})
	tests := []struct {
		method, path string
		headers      map[string]string
		allowed      bool
		status       int
	}{
		{"GET", "/", nil, true, 0},
		{"HEAD", "/products/1?x=y", nil, true, 0},
		{"POST", "/products", nil, false, 0},
		{"POST", "/grpc.health.v1.Health/Check", map[string]string{"content-type": "application/grpc"}, true, 0},
		{"POST", "/admin.Service/Call", map[string]string{"content-type": "application/grpc+proto"}, true, 0},
		{"POST", "/admin/x", map[string]string{"content-type": "application/grpc"}, false, 403},
		{"PUT", "/x", map[string]string{"content-type": "application/grpc"}, false, 0},
		{"DELETE", "/products/1", nil, false, 405},
		{"DELETE", "/admin/users", map[string]string{"x-user-role": "admin"}, false, 405},
		{"GET", "/admin/users", nil, false, 403},
		{"GET", "/admin", map[string]string{"x-user-role": "viewer"}, false, 403},
		{"GET", "/admin/users", map[string]string{"x-user-role": "admin"}, true, 0},
		{"POST", "/admin/users", map[string]string{"x-user-role": "admin"}, true, 0},
		{"GET", "/administrator", nil, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			d := mustEval(t, e, httpBag(tt.method, tt.path, tt.headers))
			if d.Allowed != tt.allowed || d.HTTPStatus != tt.status {
				t.Errorf("allowed=%v status=%d, want allowed=%v status=%d", d.Allowed, d.HTTPStatus, tt.allowed, tt.status)
			}
			if !d.Cacheable {
				t.Errorf("default policy decision not cacheable")
			}
		})
	}
}

func TestObjectDecision(t *testing.T) {
	off := false
	e := newTestEngine(t, Config{Paths: []string{"testdata/object"}, Watch: &off}, Options{})

	d := mustEval(t, e, httpBag("GET", "/", map[string]string{"x-api-key": "k-123"}))
	want := &Decision{
		ID:                     d.ID,
		Allowed:                true,
		Headers:                []HeaderValue{{"x-tags", "a"}, {"x-tags", "b"}, {"x-tenant", "acme"}},
		ResponseHeadersToAdd:   []HeaderValue{{"x-checked-by", "remora"}},
		RequestHeadersToRemove: []string{"x-api-key"},
		DynamicMetadata:        map[string]any{"tenant": "acme", "weight": json.Number("3")},
		Referenced:             []Reference{{Name: attributes.RequestHeaders, MapKey: "x-api-key", Present: true}},
		Cacheable:              true,
		ValidDuration:          30 * time.Second,
		ValidUseCount:          50,
		memo:                   d.memo, // the decision is cached: it has room for renderings
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("allowed decision:\n got %+v\nwant %+v", d, want)
	}

	d = mustEval(t, e, httpBag("GET", "/", nil))
	want = &Decision{
		ID:            d.ID,
		HTTPStatus:    401,
		Body:          "missing or unknown api key\n",
		Headers:       []HeaderValue{{"www-authenticate", "ApiKey"}},
		Referenced:    []Reference{{Name: attributes.RequestHeaders, MapKey: "x-api-key", Present: false}},
		Cacheable:     true,
		ValidDuration: DefaultValidDuration,
		ValidUseCount: DefaultValidUseCount,
		memo:          d.memo,
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("denied decision:\n got %+v\nwant %+v", d, want)
	}
}

func TestDecisionValues(t *testing.T) {
	tests := []struct {
		name    string
		rego    string
		allowed bool
		err     string
	}{
		{"true", `allow := true`, true, ""},
		{"false", `allow := false`, false, ""},
		{"undefined is deny", `allow if input.nothing`, false, ""},
		{"object", `allow := {"allowed": true}`, true, ""},
		{"object missing allowed", `allow := {"body": "x"}`, false, `no "allowed" key`},
		{"allowed not boolean", `allow := {"allowed": "yes"}`, false, `"allowed" must be a boolean, not a string`},
		{"string decision", `allow := "yes"`, false, "must be a boolean or an object, not a string"},
		{"bad status", `allow := {"allowed": false, "http_status": 999}`, false, "invalid http_status 999"},
		{"status not number", `allow := {"allowed": false, "http_status": "403"}`, false, `"http_status" must be a number`},
		{"bad header value", `allow := {"allowed": true, "headers": {"a": 1}}`, false, `headers["a"] must be a string or an array of strings`},
		{"headers array of objects", `allow := {"allowed": true, "headers": [{"a": "1"}, {"a": "2"}]}`, true, ""},
		{"headers not object", `allow := {"allowed": true, "headers": "a"}`, false, `"headers" must be an object or an array of objects`},
		{"remove not array", `allow := {"allowed": true, "request_headers_to_remove": "a"}`, false, "must be an array of strings"},
		{"body not string", `allow := {"allowed": false, "body": 1}`, false, `"body" must be a string`},
		{"metadata not object", `allow := {"allowed": true, "dynamic_metadata": 1}`, false, `"dynamic_metadata" must be an object`},
		{"bad valid_duration", `allow := {"allowed": true, "valid_duration": "soon"}`, false, `invalid valid_duration "soon"`},
		{"bad valid_use_count", `allow := {"allowed": true, "valid_use_count": -1}`, false, "invalid valid_use_count -1"},
		{"bad cacheable", `allow := {"allowed": true, "cacheable": 1}`, false, `"cacheable" must be a boolean`},
		{"eval error", "allow := true if input.attributes.request.http.method == \"GET\"\nallow := false if input.attributes.request.http.path == \"/\"", false, "evaluation failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := moduleEngine(t, "package envoy.authz\n"+tt.rego+"\n")
			d, err := e.Eval(context.Background(), httpBag("GET", "/", nil))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				if !errors.Is(err, ErrDecision) && !errors.Is(err, ErrEval) {
					t.Errorf("err %v is neither ErrDecision nor ErrEval", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if d.Allowed != tt.allowed {
				t.Errorf("allowed = %v, want %v", d.Allowed, tt.allowed)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	off := false
	e := newTestEngine(t, Config{Modules: map[string]string{"m.rego": `package envoy.authz
allow if input.attributes.request.http.method == "GET"
allow := {"allowed": "oops"} if input.attributes.request.http.method == "PUT"
`}, Watch: &off}, Options{Registry: reg})
	for _, m := range []string{"GET", "GET", "POST", "PUT"} {
		_, _ = e.Eval(context.Background(), httpBag(m, "/", nil))
	}
	want := `
# HELP remora_policy_evaluations_total Policy evaluations by result (allow, deny, error).
# TYPE remora_policy_evaluations_total counter
remora_policy_evaluations_total{result="allow"} 2
remora_policy_evaluations_total{result="deny"} 1
remora_policy_evaluations_total{result="error"} 1
# HELP remora_policy_reloads_total Policy loads and reloads by result (success, failure).
# TYPE remora_policy_reloads_total counter
remora_policy_reloads_total{result="failure"} 0
remora_policy_reloads_total{result="success"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "remora_policy_evaluations_total", "remora_policy_reloads_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(e.metrics, "remora_policy_evaluation_duration_seconds"); n != 1 {
		t.Errorf("duration histogram series = %d", n)
	}
	if v := testutil.ToFloat64(e.metrics.lastReload); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last reload timestamp = %v", v)
	}
	// A second engine on the same registry is refused, not silently merged.
	if _, err := New(context.Background(), Config{Modules: map[string]string{"m.rego": "package x\np := 1"}, Watch: &off}, Options{Registry: reg}); err == nil {
		t.Error("second engine on one registry: want an error")
	}
}

func TestReadyAndNotReady(t *testing.T) {
	e := moduleEngine(t, "package envoy.authz\nallow := true\n")
	ready, detail := e.Ready()
	if !ready || !strings.Contains(detail, "1 modules") {
		t.Errorf("Ready() = %v, %q", ready, detail)
	}
	e.Close()
	if _, err := e.Eval(context.Background(), attributes.Bag{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Eval after Close: %v, want ErrClosed", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	var zero Engine
	if ready, _ := zero.Ready(); ready {
		t.Error("engine without policy is ready")
	}
	if _, err := zero.Eval(context.Background(), attributes.Bag{}); !errors.Is(err, ErrNotReady) {
		t.Errorf("Eval without policy: %v", err)
	}
}

func TestQueryMatchingNothingWarns(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	off := false
	e := newTestEngine(t, Config{Modules: map[string]string{"m.rego": allowGET}, Query: "data.envoy.authz.alow", Watch: &off},
		Options{Logger: zap.New(core)})
	if n := logs.FilterMessageSnippet("matches no rule").Len(); n != 1 {
		t.Errorf("%d warnings about the query, want 1", n)
	}
	if mustEval(t, e, httpBag("GET", "/", nil)).Allowed {
		t.Error("undefined decision allowed")
	}
	// A query into data documents is no mistake.
	logs.TakeAll()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.rego"), "package x\np := 1\n")
	writeFile(t, filepath.Join(dir, "envoy", "authz", "data.json"), `{"allow": true}`)
	e2 := newTestEngine(t, Config{Paths: []string{dir}, Watch: &off}, Options{Logger: zap.New(core)})
	if logs.FilterMessageSnippet("matches no rule").Len() != 0 {
		t.Error("warned about a query answered by a data document")
	}
	if !mustEval(t, e2, httpBag("GET", "/", nil)).Allowed {
		t.Error("data document decision not used")
	}
}
