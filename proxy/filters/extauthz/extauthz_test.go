package extauthz_test

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

	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
	typev3 "github.com/remora-mesh/remora/proto/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/remora-mesh/remora/proxy/config"
	_ "github.com/remora-mesh/remora/proxy/filters/extauthz"
	"github.com/remora-mesh/remora/proxy/server"
)

// authServer is a real ext_authz gRPC server on loopback: it allows
// requests with x-user: alice, denies the rest with 401 and a body, and
// fails with an error for /error.
type authServer struct {
	authv3.UnimplementedAuthorizationServer
	addr string
	mu   sync.Mutex
	last *authv3.CheckRequest
	hold chan struct{} // when set, Check waits on it
}

func newAuthServer(t *testing.T) *authServer {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &authServer{addr: lis.Addr().String()}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, a)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return a
}

func (a *authServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.mu.Lock()
	a.last = req
	hold := a.hold
	a.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	h := req.GetAttributes().GetRequest().GetHttp()
	if strings.HasPrefix(h.GetPath(), "/error") {
		return nil, fmt.Errorf("policy engine exploded")
	}
	if h.GetHeaders()["x-user"] == "alice" {
		md, _ := structpb.NewStruct(map[string]any{"user": "alice"})
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers:              []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-auth-user", Value: "alice"}}},
				HeadersToRemove:      []string{"x-secret"},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-authz", Value: "ok"}}},
			}},
			DynamicMetadata: md,
		}, nil
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "www-authenticate", Value: "Bearer"}}},
			Body:    "who are you?",
		}},
	}, nil
}

func (a *authServer) lastRequest() *authv3.CheckRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

const proxyConfig = `
admin: {address: "127.0.0.1:0"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      http_filters:
      - name: ext_authz
        config:
          grpc_service: {address: %s, timeout: %s}
          failure_mode_allow: %t
          with_request_body: {max_request_bytes: 16, allow_partial_message: true}
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes:
          - match: {prefix: /open}
            route: {cluster: backend}
            typed_per_filter_config: {ext_authz: {disabled: true}}
          - match: {prefix: /}
            route: {cluster: backend}
            typed_per_filter_config: {ext_authz: {context_extensions: {tier: gold}}}
clusters:
- name: backend
  endpoints: [{address: %s}]
`

func startProxy(t *testing.T, authAddr, timeout string, failOpen bool) (string, *http.Header) {
	t.Helper()
	var mu sync.Mutex
	seen := &http.Header{}
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		*seen = r.Header.Clone()
		mu.Unlock()
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(be.Close)
	cfg, err := config.Parse([]byte(fmt.Sprintf(proxyConfig, authAddr, timeout, failOpen, be.Listener.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return "http://" + s.ListenerAddr("main").String(), seen
}

func send(t *testing.T, method, url, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestExtAuthz(t *testing.T) {
	auth := newAuthServer(t)
	base, seen := startProxy(t, auth.addr, "2s", false)

	resp, _ := send(t, "POST", base+"/api?x=1", "a body longer than sixteen bytes", map[string]string{"x-user": "alice", "x-secret": "s"})
	if resp.StatusCode != 200 || resp.Header.Get("x-authz") != "ok" {
		t.Fatalf("allowed: %d x-authz=%q", resp.StatusCode, resp.Header.Get("x-authz"))
	}
	if seen.Get("x-auth-user") != "alice" || seen.Get("x-secret") != "" {
		t.Fatalf("header mutations: x-auth-user=%q x-secret=%q", seen.Get("x-auth-user"), seen.Get("x-secret"))
	}
	req := auth.lastRequest()
	h := req.GetAttributes().GetRequest().GetHttp()
	if h.GetMethod() != "POST" || h.GetPath() != "/api?x=1" || h.GetQuery() != "x=1" || h.GetBody() != "a body longer th" {
		t.Fatalf("check request: method %q path %q query %q body %q", h.GetMethod(), h.GetPath(), h.GetQuery(), h.GetBody())
	}
	if req.GetAttributes().GetContextExtensions()["tier"] != "gold" {
		t.Fatalf("context extensions: %v", req.GetAttributes().GetContextExtensions())
	}
	if req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress() != "127.0.0.1" {
		t.Fatalf("source address: %v", req.GetAttributes().GetSource())
	}

	resp, body := send(t, "GET", base+"/api", "", nil)
	if resp.StatusCode != 401 || body != "who are you?" || resp.Header.Get("www-authenticate") != "Bearer" {
		t.Fatalf("denied: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	resp, _ = send(t, "GET", base+"/error", "", nil)
	if resp.StatusCode != 403 {
		t.Fatalf("service error without failure_mode_allow: %d, want 403", resp.StatusCode)
	}

	before := auth.lastRequest()
	if resp, _ := send(t, "GET", base+"/open", "", nil); resp.StatusCode != 200 || auth.lastRequest() != before {
		t.Fatalf("disabled route: %d, checked=%v", resp.StatusCode, auth.lastRequest() != before)
	}
}

func TestFailureModeAllowAndTimeout(t *testing.T) {
	auth := newAuthServer(t)
	auth.hold = make(chan struct{})
	defer close(auth.hold)
	for _, tt := range []struct {
		failOpen bool
		want     int
	}{{true, 200}, {false, 403}} {
		t.Run(fmt.Sprint("failure_mode_allow=", tt.failOpen), func(t *testing.T) {
			base, seen := startProxy(t, auth.addr, "50ms", tt.failOpen)
			resp, _ := send(t, "GET", base+"/api", "", nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.failOpen && seen.Get("x-envoy-auth-failure-mode-allowed") != "true" {
				t.Fatal("failure-mode header missing")
			}
		})
	}
}
