package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	_ "github.com/remora-mesh/remora/accesslog" // the file access-log sink
	"github.com/remora-mesh/remora/proxy/config"
	_ "github.com/remora-mesh/remora/proxy/filters/extauthz"
	_ "github.com/remora-mesh/remora/proxy/filters/mixer"
)

// waitUntil polls cond until it holds or 5s pass; it waits on a condition
// with a deadline, never on a fixed sleep.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// textUpstream answers every request with body.
func textUpstream(t *testing.T, body string) string {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })}
	ln := listenLoopback(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// reloadConfig is a template: %[1]s is the listeners' extra YAML, %[2]s
// main's cluster, %[3]s the clusters.
const reloadConfig = `
node: {id: n, cluster: c}
admin: {address: "127.0.0.1:0"}
drain_timeout: 5s
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      stat_prefix: main
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: %[2]s}}]}]}
%[1]s
clusters:
%[3]s
`

func reloadYAML(extra, cluster, clusters string) string {
	return fmt.Sprintf(reloadConfig, extra, cluster, clusters)
}

func endpoint(name, addr string) string {
	return fmt.Sprintf("- name: %s\n  endpoints: [{address: %s}]\n", name, addr)
}

func parsed(yml string) func() (*config.Bootstrap, error) {
	return func() (*config.Bootstrap, error) { return config.Parse([]byte(yml)) }
}

// rawGet sends GET path on c (HTTP/1.1 keep-alive) and returns the status
// line's code, the Connection header and the body.
func rawGet(t *testing.T, c net.Conn, br *bufio.Reader, path string) (int, string, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Connection"), string(b)
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	code, body := doGet(t, tr, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return body
}

func counter(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// TestReloadSwitchesRouteKeepsInFlight: a reload points the route at
// another cluster; the next request goes there while a long request
// started before finishes on the old cluster over its keep-alive
// connection, which is then closed (Connection: close) as in a drain.
func TestReloadSwitchesRouteKeepsInFlight(t *testing.T) {
	g, gateAddr := newGate(t)
	bAddr := textUpstream(t, "from b")
	keepAddr := textUpstream(t, "kept")
	s := startProxy(t, reloadYAML("", "a", endpoint("a", gateAddr)+endpoint("keep", keepAddr)))
	addr := s.ListenerAddr("main")
	kept := s.upstreams.Cluster("keep")

	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	type result struct {
		code       int
		conn, body string
	}
	done := make(chan result, 1)
	go func() {
		code, conn, body := rawGet(t, c, br, "/long")
		done <- result{code, conn, body}
	}()
	g.wait(t)

	if err := s.Reload(parsed(reloadYAML("", "b", endpoint("b", bAddr)+endpoint("keep", keepAddr)))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := s.ListenerAddr("main"); got != addr {
		t.Fatalf("listener moved from %s to %s: the socket must be kept", addr, got)
	}
	if s.upstreams.Cluster("keep") != kept {
		t.Error("an unchanged cluster was rebuilt")
	}
	if s.upstreams.Cluster("a") != nil {
		t.Error("removed cluster a still in the set")
	}
	if body := getBody(t, "http://"+addr.String()+"/next"); body != "from b" {
		t.Fatalf("request after the reload got %q, want the new cluster", body)
	}
	close(g.release)
	r := <-done
	if r.code != 200 || r.body != "released" {
		t.Fatalf("in-flight request: %d %q, want 200 released from the old cluster", r.code, r.body)
	}
	// The old generation drains: the connection is closed after the
	// response, so the client's next request reaches the new one.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := br.ReadByte(); err != io.EOF {
		t.Errorf("keep-alive connection of the old generation after its response: %v %v, want EOF", n, err)
	}
	waitUntil(t, "old generation retired", func() bool { return s.retiringCount() == 0 })
	if got := counter(t, s.Registry(), "remora_server_config_reload_success_total"); got != 1 {
		t.Errorf("config_reload_success_total = %v, want 1", got)
	}
	if st := s.LastReload(); st == nil || st.Result != "success" || st.Generation != 1 {
		t.Errorf("LastReload = %+v", st)
	}
}

const tcpReloadListener = `
- name: tcp
  address: 127.0.0.1:0
  filter_chains:
  - tcp_proxy: {stat_prefix: echo, cluster: echo}
`

func echoUpstream(t *testing.T) string {
	ln := listenLoopback(t)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q: got %q, %v", msg, buf, err)
	}
}

// TestReloadKeepsTCPProxyConnection: a TCP proxy connection opened before
// a reload keeps working after it; new connections use the new
// generation; the old one retires when the connection ends.
func TestReloadKeepsTCPProxyConnection(t *testing.T) {
	echoAddr := echoUpstream(t)
	other := textUpstream(t, "other")
	s := startProxy(t, reloadYAML(tcpReloadListener, "echo", endpoint("echo", echoAddr)))
	tcpAddr := s.ListenerAddr("tcp").String()
	c, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, "before")
	if err := s.Reload(parsed(reloadYAML(tcpReloadListener, "other", endpoint("echo", echoAddr)+endpoint("other", other)))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	echo(t, c, "after")
	c2, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatalf("listener not kept: %v", err)
	}
	defer c2.Close()
	echo(t, c2, "new")
	if s.retiringCount() != 1 {
		t.Fatalf("old generation retired with a TCP connection open")
	}
	c.Close()
	waitUntil(t, "old generation retired", func() bool { return s.retiringCount() == 0 })
	echo(t, c2, "still")
}

// TestReloadRemovesAndMovesListeners: a removed listener stops accepting
// while its in-flight request completes; a listener whose address changed
// is re-bound; a new one starts.
func TestReloadRemovesAndMovesListeners(t *testing.T) {
	g, gateAddr := newGate(t)
	a := textUpstream(t, "a")
	second := func(addr string) string {
		return fmt.Sprintf(`
- name: second
  address: %s
  filter_chains:
  - http_connection_manager:
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: gate}}]}]}
`, addr)
	}
	moved := deadAddr(t)
	s := startProxy(t, reloadYAML(second("127.0.0.1:0"), "a", endpoint("a", a)+endpoint("gate", gateAddr)))
	secondAddr := s.ListenerAddr("second").String()
	mainAddr := s.ListenerAddr("main").String()
	result := make(chan string, 1)
	go func() {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		_, body := doGet(t, tr, "http://"+secondAddr+"/inflight")
		result <- body
	}()
	g.wait(t)

	third := strings.Replace(second(moved), "name: second", "name: third", 1)
	if err := s.Reload(parsed(reloadYAML(third, "a", endpoint("a", a)+endpoint("gate", gateAddr)))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if c, err := net.Dial("tcp", secondAddr); err == nil {
		c.Close()
		t.Fatal("removed listener still accepts")
	}
	if got := s.ListenerAddr("third").String(); got != moved {
		t.Fatalf("new listener at %q, want %q", got, moved)
	}
	if body := getBody(t, "http://"+mainAddr+"/"); body != "a" {
		t.Fatalf("kept listener: %q", body)
	}
	close(g.release)
	if body := <-result; body != "released" {
		t.Fatalf("in-flight request on the removed listener got %q", body)
	}
	waitUntil(t, "old generation retired", func() bool { return s.retiringCount() == 0 })

	// Address change: remove + add under the same name.
	if err := s.Reload(parsed(reloadYAML(second(moved), "a", endpoint("a", a)+endpoint("gate", gateAddr)))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := s.ListenerAddr("second").String(); got != moved {
		t.Fatalf("renamed listener at %q, want the socket of %q kept", got, moved)
	}
	if err := s.Reload(parsed(reloadYAML(second("127.0.0.1:0"), "a", endpoint("a", a)+endpoint("gate", gateAddr)))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := s.ListenerAddr("second").String(); got == moved {
		t.Fatal("listener whose address changed kept its socket")
	}
	if c, err := net.Dial("tcp", moved); err == nil {
		c.Close()
		t.Fatal("the old address still accepts")
	}
	waitUntil(t, "generations retired", func() bool { return s.retiringCount() == 0 })
}

// TestReloadRejected: every kind of bad configuration is rejected; the old
// configuration keeps serving; the failure is counted and shown in
// /config_dump.
func TestReloadRejected(t *testing.T) {
	a := textUpstream(t, "a")
	good := reloadYAML("", "a", endpoint("a", a))
	s := startProxy(t, good)
	base := "http://" + s.ListenerAddr("main").String() + "/"
	admin := "http://" + s.AdminAddr().String()
	busy := listenLoopback(t)
	defer busy.Close()
	busyListener := fmt.Sprintf(`
- name: busy
  address: %s
  filter_chains: [{http_connection_manager: {route_config: {virtual_hosts: []}}}]
`, busy.Addr())
	tlsListener := `
- name: tls
  address: 127.0.0.1:0
  filter_chains:
  - tls: {cert_file: /nonexistent/cert.pem, key_file: /nonexistent/key.pem}
    http_connection_manager: {route_config: {virtual_hosts: []}}
`
	tests := []struct {
		name string
		yml  string
		want string
	}{
		{"unknown field", strings.Replace(good, "drain_timeout: 5s", "drain_timeout: 5s\nbogus: 1", 1), "bogus"},
		{"bad cluster ref", reloadYAML("", "nope", endpoint("a", a)), `unknown cluster "nope"`},
		{"bad cluster", reloadYAML("", "a", "- name: a\n  endpoints: [{address: not-an-address}]\n"), "clusters[0]"},
		{"admin change", strings.Replace(good, `admin: {address: "127.0.0.1:0"}`, `admin: {address: "127.0.0.1:1"}`, 1), "admin.address"},
		{"pprof change", strings.Replace(good, `admin: {address: "127.0.0.1:0"}`, `admin: {address: "127.0.0.1:0", pprof: true}`, 1), "admin.pprof"},
		{"node change", strings.Replace(good, "id: n,", "id: other,", 1), "node"},
		{"node metadata change", strings.Replace(good, "cluster: c}", "cluster: c, metadata: {k: v}}", 1), "node"},
		{"bind fails", reloadYAML(busyListener, "a", endpoint("a", a)), `listener "busy"`},
		{"build fails", reloadYAML(tlsListener, "a", endpoint("a", a)), "listeners[1].filter_chains[0].tls"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Reload(parsed(tc.yml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reload error %v, want it to contain %q", err, tc.want)
			}
			if body := getBody(t, base); body != "a" {
				t.Fatalf("old configuration no longer serves: %q", body)
			}
			if got := counter(t, s.Registry(), "remora_server_config_reload_failed_total"); got != float64(i+1) {
				t.Errorf("config_reload_failed_total = %v, want %d", got, i+1)
			}
			_, dump := get(t, "GET", admin+"/config_dump")
			if !strings.Contains(dump, "last_reload:\n") || !strings.Contains(dump, "result: failure") || !strings.Contains(dump, "generation: 0") {
				t.Errorf("config_dump lacks the failed last_reload:\n%s", dump)
			}
			if !strings.Contains(dump, "stat_prefix: main") {
				t.Errorf("config_dump lost the active configuration:\n%s", dump)
			}
		})
	}
	_, stats := get(t, "GET", admin+"/stats?filter=config_reload")
	if !strings.Contains(stats, fmt.Sprintf("server.config_reload_failed: %d", len(tests))) || !strings.Contains(stats, "server.config_reload_success: 0") {
		t.Errorf("/stats:\n%s", stats)
	}
	if s.retiringCount() != 0 {
		t.Error("a rejected reload retired the serving generation")
	}
}

// TestConfigDumpUnchangedBeforeReload: until a reload is attempted the
// dump is exactly the configuration (it parses back as one).
func TestConfigDumpUnchangedBeforeReload(t *testing.T) {
	s := startProxy(t, reloadYAML("", "a", endpoint("a", "127.0.0.1:9")))
	_, dump := get(t, "GET", "http://"+s.AdminAddr().String()+"/config_dump")
	if strings.Contains(dump, "last_reload") {
		t.Fatalf("dump has last_reload before any reload:\n%s", dump)
	}
	if _, err := config.Parse([]byte(dump)); err != nil {
		t.Fatalf("dump does not parse: %v", err)
	}
}

// TestReloadLoopLeaksNothing reloads many times, with a file access log
// and a TCP proxy in the configuration and a request after each reload;
// once the replaced generations retired, goroutines and file descriptors
// are back to where they were, and the registry gathers cleanly (no
// collector registered twice).
func TestReloadLoopLeaksNothing(t *testing.T) {
	a := textUpstream(t, "a")
	b := textUpstream(t, "b")
	echoAddr := echoUpstream(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	withLog := func(cluster string) string {
		yml := reloadYAML(tcpReloadListener, cluster, endpoint("a", a)+endpoint("b", b)+endpoint("echo", echoAddr))
		return strings.Replace(yml, "stat_prefix: main\n", "stat_prefix: main\n      access_log: [{type: file, config: {path: "+logPath+", format: \"%UPSTREAM_CLUSTER%\\n\", flush_interval: 10ms}}]\n", 1)
	}
	var reloads int
	s, err := New(mustParse(t, withLog("a")), Options{OnReload: func(error) { reloads++ }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.ListenerAddr("main").String() + "/"
	const n = 20
	load := func(i int) {
		t.Helper()
		cluster := []string{"b", "a"}[i%2]
		if err := s.Reload(parsed(withLog(cluster))); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		if body := getBody(t, base); body != cluster {
			t.Fatalf("reload %d: got %q, want %q", i, body, cluster)
		}
	}
	// Warm up: both clusters get their pooled upstream connection.
	load(0)
	load(1)
	waitUntil(t, "settled", func() bool { return s.retiringCount() == 0 })
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	for i := 2; i < n; i++ {
		load(i)
	}
	if reloads != n {
		t.Errorf("OnReload called %d times, want %d", reloads, n)
	}
	waitUntil(t, "generations retired", func() bool { return s.retiringCount() == 0 })
	waitUntil(t, "goroutines back", func() bool { return runtime.NumGoroutine() <= goroutines })
	waitUntil(t, "file descriptors back", func() bool { return openFDs(t) <= fds })
	if _, err := s.Registry().Gather(); err != nil {
		t.Fatalf("registry: %v", err)
	}
	if n, err := testutil.GatherAndCount(s.Registry(), "remora_http_downstream_rq_total"); err != nil || n != 1 {
		t.Errorf("downstream_rq_total series = %d, %v", n, err)
	}
	// Every generation's access log went to the same file.
	waitUntil(t, "access log written", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), "\n") == n
	})
}

func openFDs(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(es)
}

// TestReloadH2CStreamFinishes: an HTTP/2 (h2c) stream in flight finishes
// on the old configuration; the connection gets a GOAWAY, so the client's
// next request opens a new one and reaches the new configuration.
func TestReloadH2CStreamFinishes(t *testing.T) {
	g, gateAddr := newGate(t)
	b := textUpstream(t, "from b")
	s := startProxy(t, reloadYAML("", "gate", endpoint("gate", gateAddr)+endpoint("b", b)))
	base := "http://" + s.ListenerAddr("main").String()
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	result := make(chan string, 1)
	go func() {
		_, body := doGet(t, tr, base+"/long")
		result <- body
	}()
	g.wait(t)
	if err := s.Reload(parsed(reloadYAML("", "b", endpoint("gate", gateAddr)+endpoint("b", b)))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	close(g.release)
	if body := <-result; body != "released" {
		t.Fatalf("in-flight h2c stream got %q", body)
	}
	waitUntil(t, "old generation retired", func() bool { return s.retiringCount() == 0 })
	if code, body := doGet(t, tr, base+"/next"); code != 200 || body != "from b" {
		t.Fatalf("next request: %d %q", code, body)
	}
}

// BenchmarkReload measures one reload of a small configuration (one
// listener kept, one cluster changed), the replaced generation retired.
func BenchmarkReload(b *testing.B) {
	a, c := listenLoopback(b), listenLoopback(b)
	defer a.Close()
	defer c.Close()
	cfgs := [2]*config.Bootstrap{
		mustParse(b, reloadYAML("", "a", endpoint("a", a.Addr().String()))),
		mustParse(b, reloadYAML("", "a", endpoint("a", c.Addr().String()))),
	}
	s := startProxy(b, reloadYAML("", "a", endpoint("a", a.Addr().String())))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		cfg := cfgs[(i+1)%2]
		if err := s.Reload(func() (*config.Bootstrap, error) { return cfg, nil }); err != nil {
			b.Fatal(err)
		}
		for s.retiringCount() > 0 {
			runtime.Gosched()
		}
	}
}

// TestReloadWithGRPCFilters reloads a chain whose mixer and ext_authz
// filters hold gRPC clients and register metrics: every generation's
// filters build (no collector registered twice), requests pass (fail
// open, no server), and the replaced generations' clients are closed.
func TestReloadWithGRPCFilters(t *testing.T) {
	a, b := textUpstream(t, "a"), textUpstream(t, "b")
	dead := deadAddr(t)
	withFilters := func(cluster string) string {
		yml := reloadYAML("", cluster, endpoint("a", a)+endpoint("b", b))
		return strings.Replace(yml, "stat_prefix: main\n", `stat_prefix: main
      http_filters:
      - name: mixer
        config:
          server: {address: "`+dead+`", check: {fail_policy: open, timeout: 50ms}, report: {timeout: 50ms, max_batch_time: 10ms}}
          identity: {uid: test, namespace: default}
      - name: ext_authz
        config: {grpc_service: {address: "`+dead+`", timeout: 50ms}, failure_mode_allow: true}
`, 1)
	}
	s := startProxy(t, withFilters("a"))
	base := "http://" + s.ListenerAddr("main").String() + "/"
	if body := getBody(t, base); body != "a" {
		t.Fatalf("got %q", body)
	}
	goroutines := runtime.NumGoroutine()
	for i, cluster := range []string{"b", "a", "b", "a"} {
		if err := s.Reload(parsed(withFilters(cluster))); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		if body := getBody(t, base); body != cluster {
			t.Fatalf("reload %d: got %q, want %q", i, body, cluster)
		}
	}
	waitUntil(t, "generations retired", func() bool { return s.retiringCount() == 0 })
	waitUntil(t, "the replaced clients' goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines+2 })
	if _, err := s.Registry().Gather(); err != nil {
		t.Fatalf("registry: %v", err)
	}
	if n, err := testutil.GatherAndCount(s.Registry(), "remora_ext_authz_checks_total"); err != nil || n == 0 {
		t.Errorf("ext_authz metrics after reloads: %d series, %v", n, err)
	}
}

// TestReloadAppliesLogging: changed log levels apply; node metadata that
// is empty rather than absent is no identity change.
func TestReloadAppliesLogging(t *testing.T) {
	logs, err := NewLogs(nil, "error", nil)
	if err != nil {
		t.Fatal(err)
	}
	yml := reloadYAML("", "a", endpoint("a", "127.0.0.1:9"))
	s, err := New(mustParse(t, yml), Options{Logs: logs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(yml, "cluster: c}", "cluster: c, metadata: {}}\nlogging: {level: error, components: {router: debug}}", 1)
	if err := s.Reload(parsed(next)); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	for _, l := range logs.Levels() {
		if l[0] == "router" && l[1] != "debug" {
			t.Errorf("router level %s after reload, want debug", l[1])
		}
	}
}

// TestDrainCoversReplacedGenerations: Drain waits for connections of a
// generation a reload replaced too, and cuts them when its context ends.
func TestDrainCoversReplacedGenerations(t *testing.T) {
	g, gateAddr := newGate(t)
	defer close(g.release)
	s := startProxy(t, reloadYAML("", "gate", endpoint("gate", gateAddr)))
	base := "http://" + s.ListenerAddr("main").String()
	result := make(chan error, 1)
	go func() {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := tr.RoundTrip(mustReq(base + "/long"))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		result <- err
	}()
	g.wait(t)
	if err := s.Reload(parsed(reloadYAML("", "gate", endpoint("gate", gateAddr)+endpoint("x", "127.0.0.1:9")))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Drain(ctx); err == nil {
		t.Fatal("Drain returned nil with a stream of the replaced generation still running")
	}
	if s.retiringCount() != 0 {
		t.Error("Drain returned before the replaced generation was closed")
	}
	if err := <-result; err == nil {
		t.Error("the cut request ended without an error")
	}
	if err := s.Reload(parsed(reloadYAML("", "gate", endpoint("gate", gateAddr)))); err == nil || !strings.Contains(err.Error(), "draining") {
		t.Errorf("Reload while draining: %v", err)
	}
}
