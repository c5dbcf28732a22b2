package mixer_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
	"github.com/remora-mesh/remora/proxy/config"
	_ "github.com/remora-mesh/remora/proxy/filters/mixer"
	"github.com/remora-mesh/remora/proxy/server"
)

// policyServer is a real Mixer gRPC server on loopback with a small
// policy: /admin needs x-role: admin; everything else is allowed and gets
// header operations. It records every check bag and report record.
type policyServer struct {
	mixerv1.UnimplementedMixerServer
	addr    string
	srv     *grpc.Server
	mu      sync.Mutex
	checks  []attributes.Bag
	reports chan attributes.Bag
	discard bool // drop report records (benchmarks)
}

func newPolicyServer(t testing.TB) *policyServer {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &policyServer{addr: lis.Addr().String(), srv: grpc.NewServer(), reports: make(chan attributes.Bag, 1000)}
	mixerv1.RegisterMixerServer(p.srv, p)
	go p.srv.Serve(lis)
	t.Cleanup(p.srv.Stop)
	return p
}

func (p *policyServer) Check(_ context.Context, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
	bag, err := attributes.Decompress(req.Attributes, req.GlobalWordCount)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.checks = append(p.checks, bag)
	p.mu.Unlock()
	path, _ := bag.Get(attributes.RequestURLPath)
	hdrs, _ := bag.Get(attributes.RequestHeaders)
	role, hasRole := hdrs.StringMapValue().Get("x-role")
	enc := attributes.NewWordEncoder(req.GlobalWordCount)
	roleCond := mixerv1.ReferencedAttributes_ABSENCE
	if hasRole {
		roleCond = mixerv1.ReferencedAttributes_EXACT
	}
	ra := &mixerv1.ReferencedAttributes{AttributeMatches: []*mixerv1.ReferencedAttributes_AttributeMatch{
		{Name: enc.Index(attributes.RequestURLPath), Condition: mixerv1.ReferencedAttributes_EXACT},
		{Name: enc.Index(attributes.RequestHeaders), MapKey: enc.Index("x-role"), Condition: roleCond},
	}}
	ra.Words = enc.Words()
	pre := &mixerv1.CheckResponse_PreconditionResult{
		Status: &rpcstatus.Status{}, ValidDuration: durationpb.New(time.Minute), ValidUseCount: 1000, ReferencedAttributes: ra,
		RouteDirective: &mixerv1.RouteDirective{
			RequestHeaderOperations:  []*mixerv1.HeaderOperation{{Name: "x-checked", Value: "yes"}},
			ResponseHeaderOperations: []*mixerv1.HeaderOperation{{Name: "x-policy", Value: "remora"}},
		},
	}
	if strings.HasPrefix(path.StringValue(), "/admin") && role != "admin" {
		pre.Status = &rpcstatus.Status{Code: int32(codes.PermissionDenied), Message: "admins only"}
		pre.RouteDirective = nil
	}
	return &mixerv1.CheckResponse{Precondition: pre}, nil
}

func (p *policyServer) Report(_ context.Context, req *mixerv1.ReportRequest) (*mixerv1.ReportResponse, error) {
	bags, err := attributes.DecodeReport(req)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	discard := p.discard
	p.mu.Unlock()
	for _, b := range bags {
		if !discard {
			p.reports <- b
		}
	}
	return &mixerv1.ReportResponse{}, nil
}

func (p *policyServer) checkCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.checks)
}

func (p *policyServer) lastCheck() attributes.Bag {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checks[len(p.checks)-1]
}

// nextReport waits for the next report record.
func (p *policyServer) nextReport(t *testing.T) attributes.Bag {
	t.Helper()
	select {
	case b := <-p.reports:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no report record arrived")
		return attributes.Bag{}
	}
}

const proxyConfig = `
node: {id: sidecar-1, cluster: reviews}
admin: {address: "127.0.0.1:0"}
listeners:
- name: inbound
  address: 127.0.0.1:0
  direction: %s
  filter_chains:
  - http_connection_manager:
      stat_prefix: inbound
      http_filters:
      - name: mixer
        config:
          server:
            address: %s
            check: {fail_policy: %s, timeout: 2s}
            report: {max_batch_entries: 1, timeout: 300ms}
          identity:
            uid: kubernetes://reviews-v2.default
            namespace: default
            workload: reviews-v2
            labels: {app: reviews, version: v2}
            service_host: reviews.default.svc.cluster.local
          mixer_attributes: {destination.service.name: reviews}
          forward_attributes: {source.principal: cluster.local/ns/default/sa/productpage}
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes:
          - match: {prefix: /public}
            route: {cluster: backend}
            typed_per_filter_config:
              mixer: {disable_check_calls: true, mixer_attributes: {api.operation: public}}
          - match: {prefix: /}
            route: {cluster: backend}
clusters:
- name: backend
  endpoints: [{address: %s}]
`

// seen is what the backend saw of the last request.
type seen struct {
	mu     sync.Mutex
	header http.Header
}

func startBackend(t testing.TB, s *seen) string {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.header = r.Header.Clone()
		s.mu.Unlock()
		io.WriteString(w, "hello from "+r.URL.Path)
	}))
	t.Cleanup(be.Close)
	return be.Listener.Addr().String()
}

func startProxy(t testing.TB, direction, mixerAddr, failPolicy, backend string) string {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(proxyConfig, direction, mixerAddr, failPolicy, backend)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return "http://" + s.ListenerAddr("inbound").String()
}

func do(t *testing.T, method, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestCheckAllowDenyAndReport(t *testing.T) {
	mixer := newPolicyServer(t)
	var be seen
	base := startProxy(t, "inbound", mixer.addr, "close", startBackend(t, &be))

	// Allowed: the server's header operations apply both ways.
	resp, body := do(t, "GET", base+"/reviews/1", map[string]string{"user-agent": "test-agent"})
	if resp.StatusCode != 200 || body != "hello from /reviews/1" || resp.Header.Get("x-policy") != "remora" {
		t.Fatalf("allowed: %d %q x-policy=%q", resp.StatusCode, body, resp.Header.Get("x-policy"))
	}
	be.mu.Lock()
	checked := be.header.Get("x-checked")
	be.mu.Unlock()
	if checked != "yes" {
		t.Fatalf("request header operation not applied: x-checked=%q", checked)
	}
	bag := mixer.lastCheck()
	for name, want := range map[string]string{
		attributes.RequestMethod:           "GET",
		attributes.RequestPath:             "/reviews/1",
		attributes.RequestUserAgent:        "test-agent",
		attributes.DestinationUID:          "kubernetes://reviews-v2.default",
		attributes.DestinationServiceHost:  "reviews.default.svc.cluster.local",
		attributes.DestinationServiceName:  "reviews",
		attributes.ContextReporterKind:     "inbound",
		attributes.ContextProtocol:         "http",
		attributes.DestinationWorkloadName: "reviews-v2",
	} {
		if v, _ := bag.Get(name); v.StringValue() != want {
			t.Errorf("check attribute %s = %v, want %q", name, v, want)
		}
	}
	if v, ok := bag.Get(attributes.SourceIP); !ok || v.Kind() != attributes.KindIPAddress {
		t.Errorf("source.ip = %v", v)
	}
	rec := mixer.nextReport(t)
	if v, _ := rec.Get(attributes.ResponseCode); v.Int64Value() != 200 {
		t.Errorf("report response.code = %v", v)
	}
	if v, _ := rec.Get(attributes.ResponseSize); v.Int64Value() != int64(len(body)) {
		t.Errorf("report response.size = %v, want %d", v, len(body))
	}
	if v, _ := rec.Get(attributes.CheckCacheHit); v.BoolValue() {
		t.Errorf("first request reported as a cache hit")
	}

	// Denied: a local 403 with Istio's body, flag UAEX in the report.
	resp, body = do(t, "GET", base+"/admin/users", nil)
	if resp.StatusCode != 403 || body != "PERMISSION_DENIED:admins only" {
		t.Fatalf("denied: %d %q", resp.StatusCode, body)
	}
	rec = mixer.nextReport(t)
	if v, _ := rec.Get(attributes.ContextProxyErrorCode); v.StringValue() != "UAEX" {
		t.Errorf("denied report context.proxy_error_code = %v", v)
	}
	if v, _ := rec.Get(attributes.CheckErrorCode); v.Int64Value() != int64(codes.PermissionDenied) {
		t.Errorf("denied report check.error_code = %v", v)
	}

	// The same admin path with the admin role is allowed: never a wrong hit.
	if resp, _ := do(t, "GET", base+"/admin/users", map[string]string{"x-role": "admin"}); resp.StatusCode != 200 {
		t.Fatalf("admin: %d", resp.StatusCode)
	}
	mixer.nextReport(t)

	// Cache: equal requests reach the server once.
	before := mixer.checkCount()
	for range 5 {
		if resp, _ := do(t, "GET", base+"/reviews/1", map[string]string{"x-request-id": "differs-each-time-" + fmt.Sprint(time.Now().UnixNano())}); resp.StatusCode != 200 {
			t.Fatalf("cached request: %d", resp.StatusCode)
		}
		if v, _ := mixer.nextReport(t).Get(attributes.CheckCacheHit); !v.BoolValue() {
			t.Fatal("repeated request not answered from the cache")
		}
	}
	if n := mixer.checkCount(); n != before {
		t.Fatalf("server saw %d more checks for cached requests", n-before)
	}

	// Per route: checks disabled, reports kept, route attributes added.
	before = mixer.checkCount()
	if resp, _ := do(t, "GET", base+"/public/x", nil); resp.StatusCode != 200 || mixer.checkCount() != before {
		t.Fatalf("public route: %d, checks %d → %d", resp.StatusCode, before, mixer.checkCount())
	}
	if v, _ := mixer.nextReport(t).Get(attributes.APIOperation); v.StringValue() != "public" {
		t.Fatalf("route mixer_attributes missing from the report: %v", v)
	}
}

func TestForwardedAttributes(t *testing.T) {
	mixer := newPolicyServer(t)
	var be seen
	backend := startBackend(t, &be)

	// Outbound: the request leaves with x-istio-attributes naming the caller.
	out := startProxy(t, "outbound", mixer.addr, "close", backend)
	if resp, _ := do(t, "GET", out+"/reviews/1", nil); resp.StatusCode != 200 {
		t.Fatalf("outbound: %d", resp.StatusCode)
	}
	be.mu.Lock()
	fwd := be.header.Get(attributes.ForwardedHeader)
	be.mu.Unlock()
	got, err := attributes.DecodeForwarded(fwd, 0)
	if err != nil {
		t.Fatalf("forwarded header %q: %v", fwd, err)
	}
	if v, _ := got.Get(attributes.SourceUID); v.StringValue() != "kubernetes://reviews-v2.default" {
		t.Fatalf("forwarded source.uid = %v", v)
	}
	if v, _ := got.Get(attributes.SourcePrincipal); v.StringValue() != "cluster.local/ns/default/sa/productpage" {
		t.Fatalf("forwarded source.principal = %v", v)
	}

	// Inbound: the header's attributes join the check bag and the header
	// does not reach the application.
	in := startProxy(t, "inbound", mixer.addr, "close", backend)
	if resp, _ := do(t, "GET", in+"/reviews/2", map[string]string{attributes.ForwardedHeader: fwd}); resp.StatusCode != 200 {
		t.Fatalf("inbound: %d", resp.StatusCode)
	}
	if v, _ := mixer.lastCheck().Get(attributes.SourceUID); v.StringValue() != "kubernetes://reviews-v2.default" {
		t.Fatalf("inbound check source.uid = %v", v)
	}
	be.mu.Lock()
	leaked := be.header.Get(attributes.ForwardedHeader)
	be.mu.Unlock()
	if leaked != "" {
		t.Fatal("x-istio-attributes reached the application")
	}
	// Garbage in the header is ignored, not fatal.
	if resp, _ := do(t, "GET", in+"/reviews/3", map[string]string{attributes.ForwardedHeader: "!!not base64"}); resp.StatusCode != 200 {
		t.Fatalf("garbage forwarded header: %d", resp.StatusCode)
	}
}

func TestFailPolicyWithServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	var be seen
	backend := startBackend(t, &be)
	for _, tt := range []struct {
		policy string
		want   int
	}{{"open", 200}, {"close", 503}} {
		t.Run(tt.policy, func(t *testing.T) {
			base := startProxy(t, "inbound", dead, tt.policy, backend)
			if resp, body := do(t, "GET", base+"/reviews/1", nil); resp.StatusCode != tt.want {
				t.Fatalf("fail-%s: %d %q, want %d", tt.policy, resp.StatusCode, body, tt.want)
			}
		})
	}
}

// TestReportsOfConcurrentStreams sends concurrent requests, most of them
// answered from the check cache, each with its own trace header and query,
// and checks that every report record describes exactly its own request.
// The filter and its reports reuse pooled storage from stream to stream: a
// check or report bag recycled while still in use would show up here as a
// record mixing two requests, a duplicate, or a changed string map.
func TestReportsOfConcurrentStreams(t *testing.T) {
	mixer := newPolicyServer(t)
	var be seen
	base := startProxy(t, "inbound", mixer.addr, "close", startBackend(t, &be))
	const workers, each = 4, 25
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				trace := fmt.Sprintf("%d-%d", w, i)
				req, err := http.NewRequest("GET", fmt.Sprintf("%s/reviews/%d?q=%s", base, w, trace), nil)
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("x-trace", trace)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("request %s: status %d", trace, resp.StatusCode)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	labels := attributes.StringMapOf(map[string]string{"app": "reviews", "version": "v2"})
	seenTraces := map[string]bool{}
	for range workers * each {
		bag := mixer.nextReport(t)
		hdrs, _ := bag.Get(attributes.RequestHeaders)
		trace, _ := hdrs.StringMapValue().Get("x-trace")
		if seenTraces[trace] {
			t.Fatalf("two records for request %q", trace)
		}
		seenTraces[trace] = true
		var w, i int
		if _, err := fmt.Sscanf(trace, "%d-%d", &w, &i); err != nil {
			t.Fatalf("record with x-trace %q:\n%s", trace, bag)
		}
		path, _ := bag.Get(attributes.RequestPath)
		urlPath, _ := bag.Get(attributes.RequestURLPath)
		query, _ := bag.Get(attributes.RequestQueryParams)
		q, _ := query.StringMapValue().Get("q")
		hpath, _ := hdrs.StringMapValue().Get(":path")
		dl, _ := bag.Get(attributes.DestinationLabels)
		code, _ := bag.Get(attributes.ResponseCode)
		respHdrs, _ := bag.Get(attributes.ResponseHeaders)
		ct, _ := respHdrs.StringMapValue().Get("content-type")
		wantPath := fmt.Sprintf("/reviews/%d?q=%s", w, trace)
		if path.StringValue() != wantPath || hpath != wantPath || urlPath.StringValue() != fmt.Sprintf("/reviews/%d", w) ||
			q != trace || !dl.StringMapValue().Equal(labels) || code.Int64Value() != 200 || !strings.HasPrefix(ct, "text/plain") {
			t.Fatalf("record of request %q does not describe it:\n%s", trace, bag)
		}
	}
	if mixer.checkCount() >= workers*each {
		t.Fatalf("%d checks reached the server: the cache never answered", mixer.checkCount())
	}
}
