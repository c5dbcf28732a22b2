package server

import (
	"context"
	"crypto/tls"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/internal/testpki"
	"github.com/remora-mesh/remora/mixer/quota"
	"github.com/remora-mesh/remora/policy"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

func TestMixerCheckRBAC(t *testing.T) {
	ts := start(t, policyConfig(rbacPolicy), Options{}, nil)
	gwc := attributes.GlobalWordCount()
	tests := []struct {
		name, method, path string
		hdrs               attributes.Value
		want               code.Code
	}{
		{"public get", "GET", "/public/index.html", headers(), code.Code_OK},
		{"private get", "GET", "/private", headers(), code.Code_PERMISSION_DENIED},
		{"post", "POST", "/public/form", headers("x-role", "user"), code.Code_PERMISSION_DENIED},
		{"admin post", "POST", "/private", headers("x-role", "admin"), code.Code_OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := ts.mixer.Check(ctxT(t), checkRequest(tt.method, tt.path, tt.hdrs))
			if err != nil {
				t.Fatal(err)
			}
			pr := resp.GetPrecondition()
			if got := code.Code(pr.GetStatus().GetCode()); got != tt.want {
				t.Fatalf("status %v (%s), want %v", got, pr.GetStatus().GetMessage(), tt.want)
			}
			if tt.want == code.Code_PERMISSION_DENIED && !strings.Contains(pr.GetStatus().GetMessage(), "denied by policy") {
				t.Errorf("deny message %q", pr.GetStatus().GetMessage())
			}
			refs := referenced(t, pr.GetReferencedAttributes(), gwc)
			if _, ok := refs[attributes.RequestMethod]; !ok {
				t.Errorf("referenced attributes %v lack request.method", refs)
			}
			if pr.GetValidUseCount() < 1 || pr.GetValidDuration() == nil {
				t.Errorf("validity %v / %d", pr.GetValidDuration(), pr.GetValidUseCount())
			}
		})
	}
	// Older clients know fewer global words: the answer must only use
	// the words they know.
	req := checkRequest("GET", "/public/x", headers())
	req.GlobalWordCount = 10
	req.Attributes = attributes.Compress(attributes.BagOf(map[string]attributes.Value{
		attributes.RequestMethod: attributes.String("GET"), attributes.RequestPath: attributes.String("/public/x")}), 10)
	resp, err := ts.mixer.Check(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range resp.GetPrecondition().GetReferencedAttributes().GetAttributeMatches() {
		if m.GetName() >= 10 {
			t.Errorf("name index %d beyond the client's 10 global words", m.GetName())
		}
	}
	referenced(t, resp.GetPrecondition().GetReferencedAttributes(), 10)

	want := `
# HELP remora_mixer_check_decisions_total Check decisions by API and result (allow, deny, error).
# TYPE remora_mixer_check_decisions_total counter
remora_mixer_check_decisions_total{api="ext_authz",result="allow"} 0
remora_mixer_check_decisions_total{api="ext_authz",result="deny"} 0
remora_mixer_check_decisions_total{api="ext_authz",result="error"} 0
remora_mixer_check_decisions_total{api="mixer",result="allow"} 3
remora_mixer_check_decisions_total{api="mixer",result="deny"} 2
remora_mixer_check_decisions_total{api="mixer",result="error"} 0
`
	if err := testutil.GatherAndCompare(ts.reg, strings.NewReader(want), "remora_mixer_check_decisions_total"); err != nil {
		t.Error(err)
	}
}

func TestMixerCheckRouteDirective(t *testing.T) {
	var cfg Config
	cfg.Policy = policy.DefaultConfig()
	ts := start(t, cfg, Options{}, nil)

	resp, err := ts.mixer.Check(ctxT(t), checkRequest("DELETE", "/items/1", headers()))
	if err != nil {
		t.Fatal(err)
	}
	pr := resp.GetPrecondition()
	rd := pr.GetRouteDirective()
	if code.Code(pr.GetStatus().GetCode()) != code.Code_PERMISSION_DENIED || rd.GetDirectResponseCode() != 405 ||
		rd.GetDirectResponseBody() != "method DELETE is not allowed\n" {
		t.Fatalf("delete: status %v, directive %v", pr.GetStatus(), rd)
	}
	if len(rd.GetResponseHeaderOperations()) != 1 || rd.GetResponseHeaderOperations()[0].GetName() != "allow" {
		t.Errorf("delete: header operations %v", rd.GetResponseHeaderOperations())
	}

	resp, err = ts.mixer.Check(ctxT(t), checkRequest("GET", "/items/1", headers()))
	if err != nil {
		t.Fatal(err)
	}
	pr = resp.GetPrecondition()
	ops := pr.GetRouteDirective().GetRequestHeaderOperations()
	if code.Code(pr.GetStatus().GetCode()) != code.Code_OK || len(ops) != 1 || ops[0].GetName() != "x-remora-policy" ||
		ops[0].GetOperation() != mixerv1.HeaderOperation_REPLACE {
		t.Fatalf("get: status %v, operations %v", pr.GetStatus(), ops)
	}
	refs := referenced(t, pr.GetReferencedAttributes(), attributes.GlobalWordCount())
	if refs["request.headers[x-user-role]"] != mixerv1.ReferencedAttributes_ABSENCE {
		t.Errorf("referenced %v: want request.headers[x-user-role] ABSENCE", refs)
	}
	if pr.GetValidUseCount() != policy.DefaultValidUseCount || pr.GetValidDuration().AsDuration() != policy.DefaultValidDuration {
		t.Errorf("cacheable decision validity %v / %d", pr.GetValidDuration().AsDuration(), pr.GetValidUseCount())
	}

	resp, err = ts.mixer.Check(ctxT(t), checkRequest("GET", "/admin/users", headers()))
	if err != nil {
		t.Fatal(err)
	}
	if rd := resp.GetPrecondition().GetRouteDirective(); rd.GetDirectResponseCode() != 403 || rd.GetDirectResponseBody() != "admin role required\n" {
		t.Fatalf("admin: directive %v", rd)
	}
}

func TestMixerCheckMalformed(t *testing.T) {
	ts := start(t, policyConfig(rbacPolicy), Options{}, nil)
	gwc := attributes.GlobalWordCount()
	tests := []struct {
		name string
		req  *mixerv1.CheckRequest
		want string
	}{
		{"bad name index", &mixerv1.CheckRequest{GlobalWordCount: gwc, Attributes: &mixerv1.CompressedAttributes{Strings: map[int32]int32{99999: 1}}},
			"global index 99999 is beyond global_word_count"},
		{"bad local index", &mixerv1.CheckRequest{GlobalWordCount: gwc, Attributes: &mixerv1.CompressedAttributes{Words: []string{"a"}, Strings: map[int32]int32{-1: -7}}},
			"index -7 names local word 6"},
		{"bad global word count", &mixerv1.CheckRequest{GlobalWordCount: gwc + 100, Attributes: &mixerv1.CompressedAttributes{}},
			"global word count"},
		{"wrong type", &mixerv1.CheckRequest{GlobalWordCount: gwc, Attributes: &mixerv1.CompressedAttributes{Words: []string{"request.method"}, Int64S: map[int32]int64{-1: 3}}},
			`attribute "request.method"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ts.mixer.Check(ctxT(t), tt.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want INVALID_ARGUMENT containing %q", err, tt.want)
			}
		})
	}
	_, err := ts.mixer.Report(ctxT(t), &mixerv1.ReportRequest{GlobalWordCount: gwc, Attributes: []*mixerv1.CompressedAttributes{{}, {Bools: map[int32]bool{5000: true}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "record 1") {
		t.Fatalf("report error %v", err)
	}
	want := `
# HELP remora_mixer_decode_errors_total Requests rejected as malformed, by API.
# TYPE remora_mixer_decode_errors_total counter
remora_mixer_decode_errors_total{api="check"} 4
remora_mixer_decode_errors_total{api="report"} 1
`
	if err := testutil.GatherAndCompare(ts.reg, strings.NewReader(want), "remora_mixer_decode_errors_total"); err != nil {
		t.Error(err)
	}
}

func TestMixerCheckQuota(t *testing.T) {
	cfg := policyConfig(rbacPolicy)
	cfg.Quotas = []quota.Config{{Name: "requestcount", MaxAmount: 3, Dimensions: map[string]string{"path": "request.path"}}}
	now := time.Unix(1_700_000_000, 0)
	ts := start(t, cfg, Options{Now: func() time.Time { return now }}, nil)
	ask := func(amount int64, bestEffort bool) *mixerv1.CheckResponse_QuotaResult {
		t.Helper()
		req := checkRequest("GET", "/public/q", headers())
		req.Quotas = map[string]*mixerv1.CheckRequest_QuotaParams{"requestcount": {Amount: amount, BestEffort: bestEffort}}
		resp, err := ts.mixer.Check(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		if c := code.Code(resp.GetPrecondition().GetStatus().GetCode()); c != code.Code_OK {
			t.Fatalf("precondition %v", c)
		}
		return resp.GetQuotas()["requestcount"]
	}
	if qr := ask(2, false); qr.GetGrantedAmount() != 2 || qr.GetStatus().GetCode() != 0 {
		t.Fatalf("first: %v", qr)
	}
	if qr := ask(2, false); qr.GetGrantedAmount() != 0 || code.Code(qr.GetStatus().GetCode()) != code.Code_RESOURCE_EXHAUSTED {
		t.Fatalf("all or nothing: %v", qr)
	}
	qr := ask(2, true)
	if qr.GetGrantedAmount() != 1 || qr.GetStatus().GetCode() != 0 {
		t.Fatalf("best effort: %v", qr)
	}
	if refs := referenced(t, qr.GetReferencedAttributes(), attributes.GlobalWordCount()); refs[attributes.RequestPath] != mixerv1.ReferencedAttributes_EXACT {
		t.Errorf("quota referenced %v", refs)
	}
	// A denied request allocates nothing.
	req := checkRequest("GET", "/private", headers())
	req.Quotas = map[string]*mixerv1.CheckRequest_QuotaParams{"requestcount": {Amount: 1}}
	resp, err := ts.mixer.Check(ctxT(t), req)
	if err != nil || len(resp.GetQuotas()) != 0 {
		t.Fatalf("denied request: quotas %v, err %v", resp.GetQuotas(), err)
	}
}

func TestReportMetrics(t *testing.T) {
	ts := start(t, Config{Policy: policy.DefaultConfig()}, Options{}, nil)
	rec := func(code int64) attributes.Bag {
		return attributes.BagOf(map[string]attributes.Value{
			attributes.ContextProtocol:         attributes.String("http"),
			attributes.ContextReporterKind:     attributes.String("inbound"),
			attributes.DestinationServiceHost:  attributes.String("reviews.default.svc.cluster.local"),
			attributes.DestinationWorkloadName: attributes.String("reviews-v1"),
			attributes.ResponseCode:            attributes.Int64(code),
			attributes.ResponseDuration:        attributes.Duration(7 * time.Millisecond),
		})
	}
	gwc := attributes.GlobalWordCount()
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{mixerv1.ReportRequest_DELTA_ENCODING, mixerv1.ReportRequest_INDEPENDENT_ENCODING} {
		req := attributes.EncodeReport([]attributes.Bag{rec(200), rec(200), rec(404)}, sem, gwc)
		if _, err := ts.mixer.Report(ctxT(t), req); err != nil {
			t.Fatal(err)
		}
	}
	const labels = `connection_security_policy="none",destination_app="unknown",destination_principal="unknown",destination_service="reviews.default.svc.cluster.local",destination_service_name="unknown",destination_service_namespace="unknown",destination_version="unknown",destination_workload="reviews-v1",destination_workload_namespace="unknown",grpc_response_status="",reporter="destination",request_protocol="http",response_code="%s",response_flags="-",source_app="unknown",source_principal="unknown",source_version="unknown",source_workload="unknown",source_workload_namespace="unknown"`
	want := `
# HELP istio_requests_total Requests reported, by source, destination and response.
# TYPE istio_requests_total counter
istio_requests_total{` + strings.Replace(labels, "%s", "200", 1) + `} 4
istio_requests_total{` + strings.Replace(labels, "%s", "404", 1) + `} 2
# HELP remora_mixer_report_records_total Report records ingested into telemetry.
# TYPE remora_mixer_report_records_total counter
remora_mixer_report_records_total 6
`
	if err := testutil.ScrapeAndCompare(ts.monURL+"/metrics", strings.NewReader(want), "istio_requests_total", "remora_mixer_report_records_total"); err != nil {
		t.Error(err)
	}
	// The gRPC server metrics saw both Reports.
	if _, body := httpGet(t, ts.monURL+"/metrics"); !strings.Contains(body, `grpc_server_handled_total{grpc_code="OK",grpc_method="Report",grpc_service="istio.mixer.v1.Mixer",grpc_type="unary"} 2`) {
		t.Errorf("grpc_server_handled_total for Report missing")
	}
}

func authzRequest(method, path string, hdrs map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "example.com", Headers: hdrs}}}}
}

func TestExtAuthz(t *testing.T) {
	ts := start(t, Config{Policy: policy.DefaultConfig()}, Options{}, nil)

	resp, err := ts.authz.Check(ctxT(t), authzRequest("GET", "/items", map[string]string{"x-user-role": "dev"}))
	if err != nil {
		t.Fatal(err)
	}
	ok := resp.GetOkResponse()
	if resp.GetStatus().GetCode() != 0 || ok == nil || len(ok.GetHeaders()) != 1 {
		t.Fatalf("allowed: %v", resp)
	}
	if h := ok.GetHeaders()[0]; h.GetHeader().GetKey() != "x-remora-policy" || h.GetHeader().GetValue() != "default" ||
		h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
		t.Errorf("allowed header %v", h)
	}

	resp, err = ts.authz.Check(ctxT(t), authzRequest("DELETE", "/items/1", nil))
	if err != nil {
		t.Fatal(err)
	}
	denied := resp.GetDeniedResponse()
	if code.Code(resp.GetStatus().GetCode()) != code.Code_PERMISSION_DENIED || denied.GetStatus().GetCode() != 405 ||
		denied.GetBody() != "method DELETE is not allowed\n" || len(denied.GetHeaders()) != 1 || denied.GetHeaders()[0].GetHeader().GetKey() != "allow" {
		t.Fatalf("denied: %v", resp)
	}

	resp, err = ts.authz.Check(ctxT(t), authzRequest("POST", "/items", nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
		t.Fatalf("denied without http_status: %v", resp)
	}
}

func TestExtAuthzObjectDecision(t *testing.T) {
	const pol = `package envoy.authz

import rego.v1

default allow := {"allowed": false, "http_status": 401, "body": "login", "headers": {"www-authenticate": "Bearer"}}

allow := {
	"allowed": true,
	"headers": {"x-user": input.attributes.request.http.headers["x-user"]},
	"request_headers_to_remove": ["authorization"],
	"response_headers_to_add": {"x-checked": "yes"},
	"dynamic_metadata": {"user": input.attributes.request.http.headers["x-user"], "level": 3},
} if input.attributes.request.http.headers["x-user"]
`
	ts := start(t, policyConfig(pol), Options{}, nil)
	resp, err := ts.authz.Check(ctxT(t), authzRequest("GET", "/", map[string]string{"x-user": "alice", "authorization": "Bearer x"}))
	if err != nil {
		t.Fatal(err)
	}
	ok := resp.GetOkResponse()
	if ok == nil || len(ok.GetHeaders()) != 1 || ok.GetHeaders()[0].GetHeader().GetValue() != "alice" ||
		len(ok.GetHeadersToRemove()) != 1 || ok.GetHeadersToRemove()[0] != "authorization" ||
		len(ok.GetResponseHeadersToAdd()) != 1 || ok.GetResponseHeadersToAdd()[0].GetHeader().GetKey() != "x-checked" {
		t.Fatalf("ok response %v", resp)
	}
	md := resp.GetDynamicMetadata().AsMap()
	if md["user"] != "alice" || md["level"] != 3.0 {
		t.Errorf("dynamic metadata %v", md)
	}
	resp, err = ts.authz.Check(ctxT(t), authzRequest("GET", "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	if d := resp.GetDeniedResponse(); d.GetStatus().GetCode() != 401 || d.GetBody() != "login" {
		t.Fatalf("denied %v", resp)
	}
	// The same decision through the Mixer API: a RouteDirective.
	mresp, err := ts.mixer.Check(ctxT(t), checkRequest("GET", "/", headers("x-user", "bob")))
	if err != nil {
		t.Fatal(err)
	}
	rd := mresp.GetPrecondition().GetRouteDirective()
	var names []string
	for _, op := range rd.GetRequestHeaderOperations() {
		names = append(names, op.GetName()+":"+op.GetOperation().String())
	}
	if strings.Join(names, ",") != "x-user:REPLACE,authorization:REMOVE" || len(rd.GetResponseHeaderOperations()) != 1 {
		t.Fatalf("route directive %v", rd)
	}
}

// gate holds evaluations until released.
type gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{entered: make(chan struct{}, 16), release: make(chan struct{})} }

func (g *gate) hook(ctx context.Context) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func TestOverload(t *testing.T) {
	cfg := policyConfig(rbacPolicy)
	cfg.GRPC.MaxInflightRequests = 1
	g := newGate()
	ts := start(t, cfg, Options{BeforeEval: g.hook}, nil)
	defer g.open()
	first := make(chan error, 1)
	go func() {
		_, err := ts.mixer.Check(ctxT(t), checkRequest("GET", "/public/a", headers()))
		first <- err
	}()
	<-g.entered
	_, err := ts.mixer.Check(ctxT(t), checkRequest("GET", "/public/b", headers()))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second check: %v, want RESOURCE_EXHAUSTED", err)
	}
	// Health checks are not limited.
	if _, err := ts.health.Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health during overload: %v", err)
	}
	g.open()
	if err := <-first; err != nil {
		t.Fatalf("first check: %v", err)
	}
	want := `
# HELP remora_mixer_overload_rejected_total RPCs answered RESOURCE_EXHAUSTED because max_inflight_requests were in flight.
# TYPE remora_mixer_overload_rejected_total counter
remora_mixer_overload_rejected_total{grpc_method="/istio.mixer.v1.Mixer/Check"} 1
`
	if err := testutil.GatherAndCompare(ts.reg, strings.NewReader(want), "remora_mixer_overload_rejected_total"); err != nil {
		t.Error(err)
	}
}

func TestMTLS(t *testing.T) {
	const id = "spiffe://cluster.local/ns/default/sa/client"
	pki := testpki.New(t, id)
	cfg := policyConfig(principalPolicy)
	cfg.GRPC.TLS = TLSConfig{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile, ClientCAFile: pki.CAFile, RequireClientCert: true,
		PrincipalAttribute: attributes.SourcePrincipal}

	t.Run("client certificate identity wins", func(t *testing.T) {
		ts := start(t, cfg, Options{}, &tls.Config{RootCAs: pki.CAPool(), Certificates: []tls.Certificate{pki.ClientCertificate(t)}, ServerName: "127.0.0.1"})
		forged := attributes.BagOf(map[string]attributes.Value{attributes.SourcePrincipal: attributes.String("spiffe://cluster.local/ns/default/sa/other")})
		gwc := attributes.GlobalWordCount()
		resp, err := ts.mixer.Check(ctxT(t), &mixerv1.CheckRequest{Attributes: attributes.Compress(forged, gwc), GlobalWordCount: gwc})
		if err != nil {
			t.Fatal(err)
		}
		if c := code.Code(resp.GetPrecondition().GetStatus().GetCode()); c != code.Code_OK {
			t.Fatalf("status %v: the certificate's identity should have been used", c)
		}
		aresp, err := ts.authz.Check(ctxT(t), authzRequest("GET", "/", nil))
		if err != nil || aresp.GetOkResponse() == nil {
			t.Fatalf("ext_authz: %v %v", aresp, err)
		}
	})
	t.Run("client without certificate refused", func(t *testing.T) {
		ts := start(t, cfg, Options{}, &tls.Config{RootCAs: pki.CAPool(), ServerName: "127.0.0.1"})
		_, err := ts.mixer.Check(ctxT(t), checkRequest("GET", "/", headers()))
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("check without a client certificate: %v, want UNAVAILABLE (handshake refused)", err)
		}
	})
	t.Run("plaintext client refused", func(t *testing.T) {
		ts := start(t, cfg, Options{}, nil)
		if _, err := ts.mixer.Check(ctxT(t), checkRequest("GET", "/", headers())); err == nil {
			t.Fatal("plaintext check succeeded against a TLS server")
		}
	})
}

func TestHealthAndMonitoring(t *testing.T) {
	ts := start(t, policyConfig(rbacPolicy), Options{}, nil)
	for _, svc := range []string{"", "istio.mixer.v1.Mixer", "envoy.service.auth.v3.Authorization"} {
		resp, err := ts.health.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, resp, err)
		}
	}
	if c, body := httpGet(t, ts.monURL+"/healthz"); c != 200 || body != "ok\n" {
		t.Errorf("/healthz %d %q", c, body)
	}
	if c, body := httpGet(t, ts.monURL+"/readyz"); c != 200 || !strings.HasPrefix(body, "ready: policy") {
		t.Errorf("/readyz %d %q", c, body)
	}
	if c, _ := httpGet(t, ts.monURL+"/debug/pprof/"); c != 404 {
		t.Errorf("pprof served without monitoring.pprof: %d", c)
	}
}

// notReady is an evaluator whose policy has not loaded; it is a real
// implementation of the Evaluator contract for a server without policy.
type notReady struct{}

func (notReady) Eval(context.Context, attributes.Bag) (*policy.Decision, error) {
	return nil, policy.ErrNotReady
}
func (notReady) Ready() (bool, string) { return false, "no policy loaded: compile error in a.rego" }

func TestNotReady(t *testing.T) {
	ts := start(t, policyConfig(rbacPolicy), Options{Evaluator: notReady{}}, nil)
	resp, err := ts.health.Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health: %v %v", resp, err)
	}
	if c, body := httpGet(t, ts.monURL+"/readyz"); c != 503 || !strings.Contains(body, "compile error in a.rego") {
		t.Errorf("/readyz %d %q", c, body)
	}
	if _, err := ts.mixer.Check(ctxT(t), checkRequest("GET", "/", headers())); status.Code(err) != codes.Unavailable {
		t.Errorf("check without policy: %v, want UNAVAILABLE", err)
	}
}

func TestGracefulStop(t *testing.T) {
	g := newGate()
	ts := start(t, policyConfig(rbacPolicy), Options{BeforeEval: g.hook}, nil)
	defer g.open()
	inflight := make(chan error, 1)
	go func() {
		resp, err := ts.mixer.Check(ctxT(t), checkRequest("GET", "/public/a", headers()))
		if err == nil && resp.GetPrecondition().GetStatus().GetCode() != 0 {
			t.Errorf("in-flight check denied: %v", resp.GetPrecondition().GetStatus())
		}
		inflight <- err
	}()
	<-g.entered
	wctx, wcancel := context.WithCancel(ctxT(t))
	watch, err := ts.health.Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", st, err)
	}
	ts.cancel() // SIGTERM
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch after stop: %v %v", st, err)
	}
	wcancel()
	g.open()
	if err := <-inflight; err != nil {
		t.Fatalf("in-flight check during graceful stop: %v", err)
	}
	ts.stop(t)
}

func TestGracefulStopTimeout(t *testing.T) {
	g := newGate() // never opened: the RPC only ends when cancelled
	cfg := policyConfig(rbacPolicy)
	cfg.GRPC.ShutdownTimeout = 1 // 1ns: hard stop at once
	ts := start(t, cfg, Options{BeforeEval: g.hook}, nil)
	inflight := make(chan error, 1)
	go func() {
		_, err := ts.mixer.Check(ctxT(t), checkRequest("GET", "/public/a", headers()))
		inflight <- err
	}()
	<-g.entered
	ts.stop(t)
	if err := <-inflight; err == nil {
		t.Fatal("in-flight check survived a hard stop")
	}
}

func TestTLSCertificateRotation(t *testing.T) {
	pki := testpki.New(t, "spiffe://cluster.local/ns/default/sa/client")
	cfg := policyConfig(rbacPolicy)
	cfg.GRPC.TLS = TLSConfig{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile}
	ts := start(t, cfg, Options{}, &tls.Config{RootCAs: pki.CAPool(), ServerName: "127.0.0.1"})
	// serial dials a new connection and returns the server certificate's
	// serial number.
	serial := func() int64 {
		t.Helper()
		var got int64
		conn, err := grpc.NewClient(ts.grpcAd, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: pki.CAPool(), ServerName: "127.0.0.1",
			VerifyConnection: func(cs tls.ConnectionState) error {
				got = cs.PeerCertificates[0].SerialNumber.Int64()
				return nil
			},
		})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := mixerv1.NewMixerClient(conn).Check(ctxT(t), checkRequest("GET", "/public/x", headers())); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if s := serial(); s != 2 {
		t.Fatalf("serial %d, want 2", s)
	}
	pki.ReissueServer(t, 3)
	if s := serial(); s != 3 {
		t.Fatalf("after rotation: serial %d, want 3", s)
	}
	// A broken file keeps the previous certificate in use.
	if err := os.WriteFile(pki.ServerCertFile, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s := serial(); s != 3 {
		t.Fatalf("after a broken rotation: serial %d, want 3", s)
	}
}

// TestReporterPrincipal: by default the caller's verified identity lands in
// context.reporter.principal, and a value the caller sends there itself is
// removed.
func TestReporterPrincipal(t *testing.T) {
	const id = "spiffe://cluster.local/ns/istio-system/sa/sidecar"
	const policy = `package envoy.authz
import rego.v1
default allow := false
allow if input.mixer_attributes["context.reporter.principal"] == "spiffe://cluster.local/ns/istio-system/sa/sidecar"
`
	forged := attributes.BagOf(map[string]attributes.Value{attributes.ContextReporterPrincipal: attributes.String(id)})
	gwc := attributes.GlobalWordCount()
	check := func(t *testing.T, ts *testServer) code.Code {
		resp, err := ts.mixer.Check(ctxT(t), &mixerv1.CheckRequest{Attributes: attributes.Compress(forged, gwc), GlobalWordCount: gwc})
		if err != nil {
			t.Fatal(err)
		}
		return code.Code(resp.GetPrecondition().GetStatus().GetCode())
	}
	t.Run("verified certificate", func(t *testing.T) {
		pki := testpki.New(t, id)
		cfg := policyConfig(policy)
		cfg.GRPC.TLS = TLSConfig{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile, ClientCAFile: pki.CAFile, RequireClientCert: true}
		ts := start(t, cfg, Options{}, &tls.Config{RootCAs: pki.CAPool(), Certificates: []tls.Certificate{pki.ClientCertificate(t)}, ServerName: "127.0.0.1"})
		if c := check(t, ts); c != code.Code_OK {
			t.Fatalf("status %v, want OK from the certificate's identity", c)
		}
	})
	t.Run("claimed without a certificate", func(t *testing.T) {
		ts := start(t, policyConfig(policy), Options{}, nil)
		if c := check(t, ts); c != code.Code_PERMISSION_DENIED {
			t.Fatalf("status %v: a caller claimed an identity through its attributes", c)
		}
	})
}
