package tcpproxy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/remora-mesh/remora/mixer/server"
)

// tcpPolicy allows connections whose destination workload carries the
// label tcp=allow (the inbound identity's labels).
const tcpPolicy = `package envoy.authz

default allow := false

allow if input.attributes.destination.labels.tcp == "allow"
`

// startRemoraMixer runs the real `remora mixer` server in-process with
// tcpPolicy and returns its gRPC address and monitoring URL.
func startRemoraMixer(t *testing.T) (string, string) {
	t.Helper()
	var cfg server.Config
	cfg.Policy.Modules = map[string]string{"tcp.rego": tcpPolicy}
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

const mixerConfig = `
listeners:
- name: allowed
  address: 127.0.0.1:0
  direction: inbound
  filter_chains:
  - tcp_proxy:
      cluster: backend
      access_log: [{type: file, config: {path: %[3]s, flush_bytes: 1, format: "allowed %%BYTES_RECEIVED%% %%RESPONSE_FLAGS%%\n"}}]
      mixer:
        server: {address: %[1]s, report: {max_batch_entries: 1, timeout: 1s}}
        identity: {uid: kubernetes://db-v1.default, namespace: default, workload: db-v1,
                   labels: {app: db, tcp: allow}, service_host: db.default.svc.cluster.local}
        report_interval: %[4]s
- name: denied
  address: 127.0.0.1:0
  direction: inbound
  filter_chains:
  - tcp_proxy:
      cluster: backend
      access_log: [{type: file, config: {path: %[3]s, flush_bytes: 1, format: "denied %%BYTES_RECEIVED%% %%RESPONSE_FLAGS%%\n"}}]
      mixer:
        server: {address: %[1]s, report: {max_batch_entries: 1, timeout: 1s}}
        identity: {uid: kubernetes://db-v2.default, namespace: default, workload: db-v2, labels: {app: db, tcp: deny}}
clusters:
- name: backend
  endpoints: [{address: %[2]s}]
`

func scrape(t *testing.T, url, prefix string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMixerTCP drives a TCP connection through the mixer check and the
// open/continue/close reports against the real remora mixer, and checks
// the Istio TCP metrics it derives from them.
func TestMixerTCP(t *testing.T) {
	mixerAddr, monURL := startRemoraMixer(t)
	var upstreamHits int
	hit := make(chan struct{}, 10)
	up := backend(t, func(c net.Conn) { hit <- struct{}{}; echo(c) })
	path := logPath(t)
	s, _ := startProxy(t, mixerConfig, mixerAddr, up, path, "20ms")

	// Denied: closed at once, the upstream never sees the connection.
	d := dial(t, s, "denied")
	d.Write([]byte("nope"))
	if b := waitClosed(t, d); len(b) != 0 {
		t.Fatalf("denied connection read %q", b)
	}

	// Allowed: open report, periodic reports while bytes move, close report.
	c := dial(t, s, "allowed")
	if _, err := c.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	<-hit
	upstreamHits++
	// A "continue" report carries the bytes while the connection is still
	// open (the report interval is 20ms); wait for it on the server.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(scrape(t, monURL, "istio_tcp_received_bytes_total{"), "} 10") {
		select {
		case <-ctx.Done():
			t.Fatalf("no periodic report with the received bytes while open:\n%s", scrape(t, monURL, "istio_tcp"))
		case <-tick.C:
		}
	}
	if got := scrape(t, monURL, "istio_tcp_connections_closed_total{"); got != "" {
		t.Fatalf("a connection was reported closed while open:\n%s", got)
	}
	c.CloseWrite()
	waitClosed(t, c)
	if err := s.Close(); err != nil { // delivers the queued reports
		t.Fatal(err)
	}
	if upstreamHits != 1 || len(hit) != 0 {
		t.Errorf("the upstream saw %d connections, want 1 (the denied one must not connect)", upstreamHits+len(hit))
	}
	text := scrape(t, monURL, "istio_tcp_")
	for _, want := range []string{
		`istio_tcp_connections_opened_total{`, `istio_tcp_connections_closed_total{`,
		`istio_tcp_received_bytes_total{`, `istio_tcp_sent_bytes_total{`,
		`destination_workload="db-v1"`, `reporter="destination"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %s in the mixer's TCP metrics:\n%s", want, text)
		}
	}
	for _, prefix := range []string{"istio_tcp_connections_opened_total{", "istio_tcp_connections_closed_total{"} {
		if got := scrape(t, monURL, prefix); !strings.HasSuffix(got, "} 1") || strings.Contains(got, "db-v2") {
			t.Errorf("want one allowed connection in %s:\n%s", prefix, got)
		}
	}
	for _, prefix := range []string{"istio_tcp_received_bytes_total{", "istio_tcp_sent_bytes_total{"} {
		if got := scrape(t, monURL, prefix); !strings.HasSuffix(got, "} 10") {
			t.Errorf("want 10 bytes (the deltas add up to the total) in %s:\n%s", prefix, got)
		}
	}
	data, _ := os.ReadFile(path)
	for _, want := range []string{"denied 0 UAEX\n", "allowed 10 -\n"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("access log lacks %q:\n%s", want, data)
		}
	}
}
