package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/config"
)

func get(t *testing.T, method, u string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdmin(t *testing.T) {
	be := backend(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(testConfig, be.Listener.Addr(), deadAddr(t))))
	if err != nil {
		t.Fatal(err)
	}
	quit := make(chan struct{}, 1)
	s, err := New(cfg, Options{Quit: func() { quit <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	admin := "http://" + s.AdminAddr().String()
	// One proxied request so that the stats have something to show.
	if code, _ := get(t, "GET", "http://"+s.ListenerAddr("main").String()+"/x"); code != 200 {
		t.Fatalf("proxied request: %d", code)
	}
	tests := []struct {
		method, path string
		code         int
		contains     string
	}{
		{"GET", "/ready", 200, "LIVE"},
		{"GET", "/server_info", 200, `"id": "test-node"`},
		{"GET", "/stats", 200, "http.ingress.downstream_rq_total: 1"},
		{"GET", "/stats", 200, "http.ingress.downstream_rq_2xx: 1"},
		{"GET", "/stats", 200, "listener.main.downstream_cx_total: 1"},
		{"GET", "/stats", 200, "http.ingress.downstream_cx_total: 1"},
		{"GET", "/stats?filter=cluster.backend", 200, "cluster.backend."},
		{"GET", "/stats/prometheus", 200, `remora_http_downstream_rq_total{stat_prefix="ingress"} 1`},
		{"GET", "/clusters", 200, "backend"},
		{"GET", "/config_dump", 200, "stat_prefix: ingress"},
		{"GET", "/logging", 200, "router: fatal"},
		{"GET", "/logging?router=debug", 405, "POST"},
		{"POST", "/logging?router=debug", 200, "router: debug"},
		{"POST", "/logging?router=shouting", 400, "log level"},
		{"POST", "/logging?nope=debug", 400, "unknown log component"},
		{"GET", "/quitquitquit", 405, "POST"},
		{"GET", "/drain_listeners", 405, "POST"},
		{"GET", "/nope", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, body := get(t, tt.method, admin+tt.path)
			if code != tt.code || !strings.Contains(body, tt.contains) {
				t.Fatalf("got %d %q, want %d containing %q", code, body, tt.code, tt.contains)
			}
		})
	}
	if code, _ := get(t, "POST", admin+"/quitquitquit"); code != 200 {
		t.Fatalf("quitquitquit: %d", code)
	}
	select {
	case <-quit:
	case <-time.After(5 * time.Second):
		t.Fatal("quit not called")
	}
	if code, _ := get(t, "POST", admin+"/drain_listeners"); code != 200 {
		t.Fatal("drain_listeners failed")
	}
	if code, body := get(t, "GET", admin+"/ready"); code != 503 || !strings.Contains(body, "DRAINING") {
		t.Fatalf("ready while draining: %d %q", code, body)
	}
	if _, err := net.Dial("tcp", s.ListenerAddr("main").String()); err == nil {
		t.Fatal("listener still accepting after drain_listeners")
	}
}

// gate is an upstream whose requests block until released.
type gate struct {
	arrived chan struct{}
	release chan struct{}
}

func newGate(t *testing.T) (*gate, string) {
	g := &gate{arrived: make(chan struct{}, 100), release: make(chan struct{})}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/idle" {
			io.WriteString(w, "idle")
			return
		}
		g.arrived <- struct{}{}
		select {
		case <-g.release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "released")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return g, ln.Addr().String()
}

func (g *gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("request did not reach the upstream")
	}
}

const gateConfig = `
admin: {address: "-"}
drain_timeout: 5s
# gate
listeners:
- name: main
  address: 127.0.0.1:0
  max_connections: %d
  filter_chains:
  - http_connection_manager:
      access_log: [{type: test}]
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: gate}}]}]}
clusters:
- name: gate
  circuit_breakers: {max_connections: 1, max_pending_requests: 1, max_requests: 1}
  endpoints: [{address: %s}]
`

// TestDrainLetsInFlightFinish: Drain stops accepting, waits for the
// in-flight request (HTTP/1.1, and h2c whose connections net/http does not
// track), closes idle keep-alive connections and returns nil.
func TestDrainLetsInFlightFinish(t *testing.T) {
	for _, proto := range []string{"h1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			g, addr := newGate(t)
			s := startProxy(t, fmt.Sprintf(gateConfig, 0, addr))
			base := "http://" + s.ListenerAddr("main").String()
			newRT := func() (http.RoundTripper, func()) {
				if proto == "h1" {
					tr := &http.Transport{}
					return tr, tr.CloseIdleConnections
				}
				tr := h2cTransport()
				return tr, tr.CloseIdleConnections
			}
			// An idle keep-alive connection.
			idle, closeIdle := newRT()
			defer closeIdle()
			if code, _ := doGet(t, idle, base+"/idle"); code != 200 {
				t.Fatal("warm-up request failed")
			}
			result := make(chan string, 1)
			rt, closeRT := newRT()
			defer closeRT()
			go func() {
				_, body := doGet(t, rt, base+"/inflight")
				result <- body
			}()
			select {
			case <-g.arrived:
			case body := <-result:
				info := lastLog(t)
				t.Fatalf("in-flight request ended early: %q (%s %s %s)", body, info.ResponseFlags, info.ResponseCodeDetails, info.UpstreamTransportFailureReason)
			case <-time.After(5 * time.Second):
				t.Fatal("request did not reach the upstream")
			}
			drained := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				drained <- s.Drain(ctx)
			}()
			// Wait until the listener refuses connections, then release.
			deadline := time.Now().Add(5 * time.Second)
			for {
				c, err := net.DialTimeout("tcp", s.ListenerAddr("main").String(), time.Second)
				if err != nil {
					break
				}
				c.Close()
				if time.Now().After(deadline) {
					t.Fatal("still accepting")
				}
				runtimeGosched()
			}
			select {
			case err := <-drained:
				t.Fatalf("drain returned (%v) with a request in flight", err)
			default:
			}
			close(g.release)
			if body := <-result; body != "released" {
				t.Fatalf("in-flight request got %q", body)
			}
			if err := <-drained; err != nil {
				t.Fatalf("drain: %v", err)
			}
		})
	}
}

func doGet(t *testing.T, tr http.RoundTripper, u string) (int, string) {
	resp, err := tr.RoundTrip(mustReq(u))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mustReq(u string) *http.Request {
	r, _ := http.NewRequest("GET", u, nil)
	return r
}

// TestCircuitBreakerOverflow: with one connection, one request and one
// pending request allowed, a third concurrent request gets 503 UO.
func TestCircuitBreakerOverflow(t *testing.T) {
	g, addr := newGate(t)
	s := startProxy(t, fmt.Sprintf(gateConfig, 0, addr))
	base := "http://" + s.ListenerAddr("main").String()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	wg.Add(1)
	go func() { defer wg.Done(); c, _ := doGet(t, tr, base+"/1"); codes <- c }()
	g.wait(t)
	drainLogs()
	wg.Add(1)
	go func() { defer wg.Done(); c, _ := doGet(t, tr, base+"/2"); codes <- c }()
	// The third one overflows (the second is pending or active).
	var code int
	var body string
	for i := 0; i < 50; i++ {
		code, body = doGet(t, tr, base+"/3")
		if code == 503 {
			break
		}
	}
	if code != 503 {
		t.Fatalf("third request: %d %q, want 503", code, body)
	}
	found := false
	for !found {
		info := lastLog(t)
		found = info.ResponseFlags.String() == "UO"
	}
	close(g.release)
	wg.Wait()
}

// TestMaxConnections: a listener with max_connections 1 closes the
// second connection at once.
func TestMaxConnections(t *testing.T) {
	_, addr := newGate(t)
	s := startProxy(t, fmt.Sprintf(gateConfig, 1, addr))
	a := s.ListenerAddr("main").String()
	c1, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c2.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Fatalf("second connection not closed (n=%d err=%v)", n, err)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("second connection left open")
	}
}

// TestAdminPprof: Go's profiles are served only when admin.pprof is on.
func TestAdminPprof(t *testing.T) {
	be := backend(t)
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("pprof=", on), func(t *testing.T) {
			text := fmt.Sprintf(testConfig, be.Listener.Addr(), deadAddr(t))
			if on {
				text = strings.Replace(text, `admin: {address: "127.0.0.1:0"}`, `admin: {address: "127.0.0.1:0", pprof: true}`, 1)
			}
			cfg, err := config.Parse([]byte(text))
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			admin := "http://" + s.AdminAddr().String()
			code, body := get(t, "GET", admin+"/debug/pprof/")
			if on != (code == 200 && strings.Contains(body, "goroutine")) {
				t.Fatalf("GET /debug/pprof/ = %d with admin.pprof %v", code, on)
			}
			if _, help := get(t, "GET", admin+"/"); on != strings.Contains(help, "/debug/pprof/") {
				t.Fatalf("help lists pprof: %v, want %v", !on, on)
			}
		})
	}
}

const healthConfig = `
admin: {address: "127.0.0.1:0"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      stat_prefix: ingress
      route_config:
        virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: web, retry_policy: {num_retries: 0}}}]}]
clusters:
- name: web
  endpoints: [{address: %s}, {address: %s}, {address: %s}]
  health_checks:
  - interval: 5ms
    no_traffic_interval: 5ms
    unhealthy_threshold: 1
    healthy_threshold: 1
    http_health_check: {path: /healthz}
  outlier_detection:
    consecutive_5xx: 2
    max_ejection_percent: 34
    base_ejection_time: 1h
    successful_active_health_check_uneject_host: false   # the 503 host passes its health checks
`

// TestAdminClustersHealth runs the whole proxy against three upstreams: one
// that starts failing its health path, one that answers 503 to traffic
// (ejected by outlier detection), one healthy. /clusters (text and JSON)
// and /stats show both mechanisms.
func TestAdminClustersHealth(t *testing.T) {
	var sickHealth atomic.Bool
	mk := func(status int, health *atomic.Bool) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				if health != nil && health.Load() {
					w.WriteHeader(503)
				}
				return
			}
			w.WriteHeader(status)
		}))
		t.Cleanup(s.Close)
		return s
	}
	sick, failing, good := mk(200, &sickHealth), mk(503, nil), mk(200, nil)
	addr := func(s *httptest.Server) string { return s.Listener.Addr().String() }
	cfg, err := config.Parse([]byte(fmt.Sprintf(healthConfig, addr(sick), addr(failing), addr(good))))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	admin := "http://" + s.AdminAddr().String()
	proxy := "http://" + s.ListenerAddr("main").String()

	waitBody := func(path, want string) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			_, body := get(t, "GET", admin+path)
			if strings.Contains(body, want) {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never showed %q:\n%s", path, want, body)
			}
			<-tick.C
		}
	}

	// Traffic until the 503 host is ejected (round robin over 3 hosts).
	for i := 0; i < 30 && !strings.Contains(clusterText(t, admin), addr(failing)+"::health_flags::/failed_outlier_check"); i++ {
		get(t, "GET", proxy+"/x")
	}
	sickHealth.Store(true)
	text := waitBody("/clusters", "web::"+addr(sick)+"::health_flags::/failed_active_hc\n")
	for _, want := range []string{
		"web::" + addr(failing) + "::health_flags::/failed_outlier_check\n",
		"web::" + addr(good) + "::health_flags::healthy\n",
		"web::added_via_api::false\n",
		"web::outlier_detection::consecutive_5xx::2\n",
		"web::outlier_detection::max_ejection_time::1h0m0s\n", // base_ejection_time is longer than 300s,
		"web::health_check::path::/healthz\n",
		"web::health_check::unhealthy_threshold::1\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/clusters lacks %q", want)
		}
	}
	// 1 of 3 healthy: panic mode, every host is used again.
	for range 6 {
		get(t, "GET", proxy+"/x")
	}
	_, stats := get(t, "GET", admin+"/stats?filter=cluster.web")
	for _, want := range []string{
		// The admin /stats view is rendered from the Prometheus registry,
		// so Envoy's dots are underscores there.
		"cluster.web.outlier_detection_ejections_enforced_consecutive_5xx: 1",
		"cluster.web.outlier_detection_ejections_active: 1",
		"cluster.web.membership_healthy: 1",
		"cluster.web.membership: 3",
	} {
		if !strings.Contains(stats, want) {
			t.Errorf("/stats lacks %q:\n%s", want, stats)
		}
	}
	if strings.Contains(stats, "cluster.web.lb_healthy_panic: 0\n") || strings.Contains(stats, "cluster.web.health_check_failure: 0\n") {
		t.Errorf("panic or health-check failures not counted:\n%s", stats)
	}

	code, body := get(t, "GET", admin+"/clusters?format=json")
	var js struct {
		ClusterStatuses []struct {
			Name             string
			OutlierDetection struct {
				Consecutive5xx int `json:"consecutive_5xx"`
			} `json:"outlier_detection"`
			HostStatuses []struct {
				Address struct {
					SocketAddress struct {
						PortValue int `json:"port_value"`
					} `json:"socket_address"`
				}
				HealthStatus struct {
					FailedActiveHealthCheck bool `json:"failed_active_health_check"`
					FailedOutlierCheck      bool `json:"failed_outlier_check"`
				} `json:"health_status"`
			} `json:"host_statuses"`
		} `json:"cluster_statuses"`
	}
	if err := json.Unmarshal([]byte(body), &js); err != nil || code != 200 {
		t.Fatalf("%d %v\n%s", code, err, body)
	}
	web := js.ClusterStatuses[0]
	if web.Name != "web" || web.OutlierDetection.Consecutive5xx != 2 || len(web.HostStatuses) != 3 ||
		!web.HostStatuses[0].HealthStatus.FailedActiveHealthCheck || !web.HostStatuses[1].HealthStatus.FailedOutlierCheck ||
		web.HostStatuses[2].HealthStatus.FailedActiveHealthCheck || web.HostStatuses[2].Address.SocketAddress.PortValue == 0 {
		t.Fatalf("json view:\n%s", body)
	}
	if code, _ := get(t, "GET", admin+"/clusters?format=yaml"); code != 400 {
		t.Fatalf("unknown format: %d", code)
	}
}

func clusterText(t *testing.T, admin string) string {
	_, body := get(t, "GET", admin+"/clusters")
	return body
}
