package mixer_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/remora-mesh/remora/mixer/server"
	"github.com/remora-mesh/remora/policy"
	"github.com/remora-mesh/remora/proxy/config"
	_ "github.com/remora-mesh/remora/proxy/filters/extauthz"
	proxyserver "github.com/remora-mesh/remora/proxy/server"
)

// startRemoraMixer runs the real `remora mixer` server in-process with its
// embedded default policy and returns its gRPC address and monitoring URL.
func startRemoraMixer(t *testing.T) (string, string) {
	t.Helper()
	var cfg server.Config
	cfg.Policy.Modules = map[string]string{policy.DefaultPolicyFile: policy.DefaultPolicy}
	srv, err := server.New(context.Background(), cfg, server.Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, gl, ml) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return gl.Addr().String(), "http://" + ml.Addr().String()
}

const sidecarWithRemoraMixer = `
listeners:
- name: inbound
  address: 127.0.0.1:0
  direction: inbound
  filter_chains:
  - http_connection_manager:
      http_filters:
      - name: mixer
        config:
          server: {address: %[1]s, report: {max_batch_entries: 1, timeout: 1s}}
          identity: {uid: kubernetes://reviews-v1.default, namespace: default, workload: reviews-v1,
                     labels: {app: reviews, version: v1}, service_host: reviews.default.svc.cluster.local}
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes: [{match: {prefix: /}, route: {cluster: backend}}]
- name: authz
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      http_filters:
      - name: ext_authz
        config: {grpc_service: {address: %[1]s, timeout: 2s}}
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes: [{match: {prefix: /}, route: {cluster: backend}}]
clusters:
- name: backend
  endpoints: [{address: %[2]s}]
`

// TestAgainstRemoraMixer drives the whole path of the mission in one
// process: request → mixer filter → remora mixer (OPA default policy) →
// upstream → report → Istio metrics; and the ext_authz filter against the
// same server.
func TestAgainstRemoraMixer(t *testing.T) {
	mixerAddr, monURL := startRemoraMixer(t)
	var be seen
	cfg, err := config.Parse([]byte(fmt.Sprintf(sidecarWithRemoraMixer, mixerAddr, startBackend(t, &be))))
	if err != nil {
		t.Fatal(err)
	}
	s, err := proxyserver.New(cfg, proxyserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, listener := range []string{"inbound", "authz"} {
		t.Run(listener, func(t *testing.T) {
			base := "http://" + s.ListenerAddr(listener).String()
			for _, tc := range []struct {
				method, path, role string
				want               int
				wantBody           string
			}{
				{"GET", "/reviews/1", "", 200, "hello from /reviews/1"},
				{"GET", "/admin/x", "", 403, "admin role required\n"},
				{"GET", "/admin/x", "admin", 200, "hello from /admin/x"},
				{"DELETE", "/reviews/1", "", 405, "method DELETE is not allowed\n"},
			} {
				hdr := map[string]string{}
				if tc.role != "" {
					hdr["x-user-role"] = tc.role
				}
				resp, body := do(t, tc.method, base+tc.path, hdr)
				if resp.StatusCode != tc.want || body != tc.wantBody {
					t.Errorf("%s %s (role %q): %d %q, want %d %q", tc.method, tc.path, tc.role, resp.StatusCode, body, tc.want, tc.wantBody)
				}
				if tc.method == "DELETE" && resp.Header.Get("allow") != "GET, HEAD" {
					t.Errorf("DELETE denial lacks the policy's allow header: %v", resp.Header)
				}
			}
		})
	}

	// Closing the sidecar delivers its queued reports (and waits for the
	// server's acknowledgement), so one scrape afterwards must show them
	// as Istio metrics.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(monURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := grep(string(b), "istio_requests_total{")
	for _, want := range []string{
		`destination_app="reviews"`, `destination_service="reviews.default.svc.cluster.local"`, `destination_workload="reviews-v1"`,
		`reporter="destination"`, `response_code="200"`, `response_code="403"`, `response_code="405"`, `response_flags="UAEX"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no istio_requests_total series with %s:\n%s", want, text)
		}
	}
}

func grep(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
