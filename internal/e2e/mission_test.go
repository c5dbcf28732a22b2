package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-mesh/remora/internal/testpki"
)

// sidecarConfig is an inbound sidecar in front of the app at %[4]s.
const sidecarConfig = `node: {id: e2e-sidecar, cluster: reviews}
admin: {address: "%[1]s"}
drain_timeout: 10s
listeners:
- name: inbound
  address: "%[2]s"
  direction: inbound
  filter_chains:
  - http_connection_manager:
      access_log:
      - {type: file, config: {path: %[5]q, flush_interval: 20ms}}
      http_filters:
      - name: mixer
        config:
          server:
            address: "%[3]s"
            check: {fail_policy: %[6]s, timeout: 1s}
            report: {max_batch_time: 50ms, base_retry_wait: 10ms, max_retry_wait: 100ms, timeout: 1s}
          identity: {uid: kubernetes://reviews-v1.default, namespace: default, workload: reviews-v1,
                     labels: {app: reviews, version: v1}, service_host: reviews.default.svc.cluster.local}
      route_config:
        virtual_hosts:
        - name: reviews
          domains: ["*"]
          routes: [{match: {prefix: /}, route: {cluster: app}}]
clusters:
- name: app
  endpoints: [{address: "%[4]s"}]
`

// sidecar is a running remora proxy and what the test needs to reach it.
type sidecar struct {
	p                *proc
	url, admin, logf string
}

func startSidecar(t *testing.T, mixerAddr, appAddr, failPolicy string) *sidecar {
	t.Helper()
	ports := freePorts(t, 2)
	dir := t.TempDir()
	s := &sidecar{url: "http://" + addr(ports[1]), admin: "http://" + addr(ports[0]), logf: filepath.Join(dir, "access.log")}
	cfg := filepath.Join(dir, "proxy.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, sidecarConfig, addr(ports[0]), addr(ports[1]), mixerAddr, appAddr, s.logf, failPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	s.p = start(t, "proxy", "proxy", "--config", cfg)
	waitReady(t, s.p, s.admin+"/ready")
	return s
}

// mixer is a running remora mixer.
type mixer struct {
	p               *proc
	grpc, metrics   string
	grpcPort, mPort int
}

func startMixer(t *testing.T, ports ...int) *mixer {
	t.Helper()
	if len(ports) == 0 {
		ports = freePorts(t, 2)
	}
	m := &mixer{grpc: addr(ports[0]), metrics: "http://" + addr(ports[1]) + "/metrics", grpcPort: ports[0], mPort: ports[1]}
	m.p = start(t, "mixer", "mixer", "--grpc-addr", m.grpc, "--monitoring-addr", addr(ports[1]))
	waitReady(t, m.p, "http://"+addr(ports[1])+"/readyz")
	return m
}

func startApp(t *testing.T) string {
	t.Helper()
	ports := freePorts(t, 2)
	p := start(t, "app", "sample-upstream", "--http", addr(ports[0]), "--grpc", addr(ports[1]))
	eventually(t, "sample upstream listening", func() (bool, string) {
		c, err := net.Dial("tcp", addr(ports[0]))
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
	_ = p
	return addr(ports[0])
}

func lines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestMissionPath: request → check (miss, then a cache hit) → upstream →
// access-log line → report → Istio series on the server; and a denial.
func TestMissionPath(t *testing.T) {
	app := startApp(t)
	m := startMixer(t)
	s := startSidecar(t, m.grpc, app, "close")

	for i := range 2 {
		if code, body := get(t, s.url+"/reviews/1", nil); code != 200 || !strings.Contains(body, `"service":"reviews"`) {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if hits := metric(t, s.admin+"/stats/prometheus", "remora_mixer_client_check_cache_hits_total"); hits != 1 {
		t.Fatalf("check cache hits = %v, want 1 (the second request)", hits)
	}
	if code, body := get(t, s.url+"/admin/settings", nil); code != 403 || body != "admin role required\n" {
		t.Fatalf("denied request: %d %q", code, body)
	}
	eventually(t, "three access-log lines", func() (bool, string) {
		l := lines(s.logf)
		return len(l) == 3 && strings.Contains(l[2], `"GET /admin/settings HTTP/1.1" 403 UAEX`), strings.Join(l, "\n")
	})
	eventually(t, "reports as Istio metrics", func() (bool, string) {
		ok := metric(t, m.metrics, "istio_requests_total", `response_code="200"`, `destination_workload="reviews-v1"`)
		denied := metric(t, m.metrics, "istio_requests_total", `response_code="403"`, `response_flags="UAEX"`)
		return ok == 2 && denied == 1, fmt.Sprintf("200: %v, 403: %v", ok, denied)
	})
}

// TestFailPolicyWithMixerKilled: with the server gone, fail-open lets a new
// request through and fail-close answers 503.
func TestFailPolicyWithMixerKilled(t *testing.T) {
	app := startApp(t)
	m := startMixer(t)
	open := startSidecar(t, m.grpc, app, "open")
	closed := startSidecar(t, m.grpc, app, "close")
	m.p.kill()
	if code, _ := get(t, open.url+"/reviews/7", nil); code != 200 {
		t.Errorf("fail-open with the mixer killed: %d, want 200", code)
	}
	if code, _ := get(t, closed.url+"/reviews/7", nil); code != 503 {
		t.Errorf("fail-close with the mixer killed: %d, want 503", code)
	}
}

// TestReportsSurviveMixerRestart: reports of requests served while the
// server is down are delivered once it is back.
func TestReportsSurviveMixerRestart(t *testing.T) {
	app := startApp(t)
	m := startMixer(t)
	s := startSidecar(t, m.grpc, app, "open")
	m.p.stop(t)
	for i := range 10 {
		if code, _ := get(t, fmt.Sprintf("%s/reviews/%d", s.url, i), nil); code != 200 {
			t.Fatalf("request %d with the mixer down: %d", i, code)
		}
	}
	m2 := startMixer(t, m.grpcPort, m.mPort)
	eventually(t, "all 10 reports delivered to the restarted mixer", func() (bool, string) {
		n := metric(t, m2.metrics, "remora_mixer_report_records_total")
		return n == 10, fmt.Sprintf("%v records", n)
	})
	if d := metric(t, s.admin+"/stats/prometheus", "remora_mixer_client_report_records_dropped_total"); d != 0 {
		t.Fatalf("%v report records dropped", d)
	}
}

// TestGracefulShutdown: SIGTERM lets an in-flight request finish, then the
// proxy exits 0.
func TestGracefulShutdown(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		<-release
		fmt.Fprint(w, "finished")
	})}
	go app.Serve(ln)
	t.Cleanup(func() { app.Close() })
	m := startMixer(t)
	s := startSidecar(t, m.grpc, ln.Addr().String(), "open")

	type result struct {
		code int
		body string
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Get(s.url + "/slow")
		if err != nil {
			done <- result{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b := make([]byte, 64)
		n, _ := resp.Body.Read(b)
		done <- result{resp.StatusCode, string(b[:n])}
	}()
	<-arrived
	s.p.cmd.Process.Signal(os.Interrupt)
	// The proxy drains: it must not exit while the request is in flight.
	select {
	case <-s.p.done:
		t.Fatal("the proxy exited with a request in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if r := <-done; r.code != 200 || r.body != "finished" {
		t.Fatalf("in-flight request: %d %q", r.code, r.body)
	}
	select {
	case <-s.p.done:
		if s.p.err != nil {
			t.Fatalf("proxy exit: %v", s.p.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the proxy did not exit after draining")
	}
}

// TestValidate: configuration errors are named by field path, and every
// complete example configuration in docs/ validates.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, body string
		wantExit   int
		want       []string
	}{
		{"proxy ok", "listeners: [{name: l, address: 127.0.0.1:0, filter_chains: [{http_connection_manager: {route_config: {virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]}}}]}]\n", 0, []string{"ok (proxy configuration)"}},
		{"proxy unknown field", "listeners: [{name: l, address: 127.0.0.1:0, bogus: 1}]\n", 1, []string{"listeners[0].bogus: line 1: unknown field"}},
		{"proxy unknown cluster", "listeners: [{name: l, address: 127.0.0.1:0, filter_chains: [{http_connection_manager: {route_config: {virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: nope}}]}]}}}]}]\n", 1, []string{`unknown cluster "nope"`}},
		{"mixer ok", "grpc: {address: 127.0.0.1:9091}\n", 0, []string{"ok (mixer configuration)"}},
		{"mixer unknown field", "grpc: {adress: x}\n", 1, []string{"grpc.adress: line 1: unknown field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := validate(t, write(strings.ReplaceAll(tt.name, " ", "-")+".yaml", tt.body))
			if code != tt.wantExit {
				t.Fatalf("exit %d, want %d:\n%s", code, tt.wantExit, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	// Every yaml block in the docs that is a whole configuration (it starts
	// with a top-level key of the proxy or the mixer) must validate.
	docs, _ := filepath.Glob("../../docs/*.md")
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	topKey := regexp.MustCompile(`^(node|admin|listeners|clusters|grpc|monitoring|policy|quotas|telemetry|log):`)
	checked := 0
	for _, d := range docs {
		text, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range block.FindAllStringSubmatch(string(text), -1) {
			body := m[1]
			first := ""
			for _, l := range strings.Split(body, "\n") {
				if strings.TrimSpace(l) != "" && !strings.HasPrefix(strings.TrimSpace(l), "#") {
					first = l
					break
				}
			}
			if !topKey.MatchString(first) || strings.HasPrefix(strings.TrimSpace(body), "# field reference") {
				continue
			}
			body = materialize(t, body)
			checked++
			name := fmt.Sprintf("%s-%d.yaml", filepath.Base(d), i)
			t.Run(name, func(t *testing.T) {
				if out, code := validate(t, write(name, body)); code != 0 {
					t.Fatalf("example config in %s does not validate:\n%s\n%s", d, out, body)
				}
			})
		}
	}
	// The configurations inside the Kubernetes manifests' ConfigMaps.
	manifests, _ := filepath.Glob("../../docs/deploy/*.yaml")
	embedded := regexp.MustCompile(`(?m)^  (proxy|mixer)\.yaml: \|\n((?:    .*\n|\n)+)`)
	for _, mf := range manifests {
		text, err := os.ReadFile(mf)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range embedded.FindAllStringSubmatch(string(text), -1) {
			checked++
			body := regexp.MustCompile(`(?m)^    `).ReplaceAllString(m[2], "")
			name := filepath.Base(mf) + "-" + m[1] + ".yaml"
			t.Run(name, func(t *testing.T) {
				if out, code := validate(t, write(name, materialize(t, body))); code != 0 {
					t.Fatalf("%s in %s does not validate:\n%s\n%s", m[1], mf, out, body)
				}
			})
		}
	}
	if checked < 7 {
		t.Fatalf("only %d example configurations found in docs/", checked)
	}
}

func validate(t *testing.T, path string) (string, int) {
	t.Helper()
	out, err := exec.Command(remora, "validate", "--config", path).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// materialize makes a documentation example runnable here: the files it
// names under /etc/remora (policies, certificates) are created in a
// temporary directory and the paths rewritten to point there.
func materialize(t *testing.T, body string) string {
	t.Helper()
	if !strings.Contains(body, "/etc/remora/") {
		return body
	}
	root := filepath.Join(t.TempDir(), "etc", "remora")
	pki := testpki.New(t, "spiffe://docs/client")
	certPEM, err := os.ReadFile(pki.ServerCertFile)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(pki.ServerKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`/etc/remora/[\w./-]+`).FindAllString(body, -1) {
		local := filepath.Join(root, strings.TrimPrefix(m, "/etc/remora/"))
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			t.Fatal(err)
		}
		var data []byte
		switch {
		case strings.HasSuffix(m, "key.pem"):
			data = keyPEM
		case strings.HasSuffix(m, ".pem"):
			data = certPEM
		case strings.HasSuffix(m, ".rego"):
			data = []byte("package envoy.authz\n\ndefault allow := false\n")
		default: // a policy directory
			if err := os.MkdirAll(local, 0o755); err != nil {
				t.Fatal(err)
			}
			local = filepath.Join(local, "policy.rego")
			data = []byte("package envoy.authz\n\ndefault allow := false\n")
		}
		if err := os.WriteFile(local, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return strings.ReplaceAll(body, "/etc/remora/", root+"/")
}
