package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestOriginalDstWithoutRedirect connects straight to capture listeners:
// the original destination cannot be recovered (no nat entry) or equals
// the socket's own address, so a passthrough chain refuses the connection
// (it would loop back to the listener) and a connection manager chain
// serves it as it came.
func TestOriginalDstWithoutRedirect(t *testing.T) {
	s := startProxy(t, `
admin: {address: "-"}
listeners:
- name: virtual
  address: 127.0.0.1:0
  use_original_dst: true
  filter_chains:
  - tcp_proxy: {cluster: passthrough}
- name: inbound
  address: 127.0.0.1:0
  listener_filters: [{name: original_dst}]
  filter_chains:
  - http_connection_manager:
      stat_prefix: in
      route_config:
        virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: served}}]}]
- name: hidden
  address: 127.0.0.1:9
  bind_to_port: false
  filter_chains:
  - tcp_proxy: {cluster: passthrough}
clusters:
- {name: passthrough, type: ORIGINAL_DST}
`)
	defer s.Close()

	c, err := net.Dial("tcp", s.ListenerAddr("virtual").String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("passthrough without original destination: read %v, want EOF (refused)", err)
	}
	c.Close()
	m := s.gen.Load().listeners[0].capture.metrics
	if n := testutil.ToFloat64(m.loopStop.WithLabelValues("virtual")); n != 1 {
		t.Fatalf("passthrough_refused_total = %v, want 1", n)
	}
	if n := testutil.ToFloat64(m.origDst.WithLabelValues("virtual", origDstRecovered)); n != 0 {
		t.Fatalf("recovered = %v for a connection no nat rule saw", n)
	}
	if n := testutil.ToFloat64(m.origDst.WithLabelValues("virtual", origDstUnknown)) +
		testutil.ToFloat64(m.origDst.WithLabelValues("virtual", origDstNotRedirected)); n != 1 {
		t.Fatalf("unknown + not_redirected = %v, want 1", n)
	}

	resp, err := http.Get(fmt.Sprintf("http://%s/", s.ListenerAddr("inbound")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "served" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if got := s.ListenerAddr("hidden"); got != netip.MustParseAddrPort("127.0.0.1:9") {
		t.Fatalf("hidden listener address %v", got)
	}
	if s.gen.Load().listeners[2].ln != nil {
		t.Fatal("a bind_to_port: false listener opened a socket")
	}
}

func TestListenerIndexLookup(t *testing.T) {
	mk := func(name, addr string) *listener {
		l := &listener{}
		l.cfg.Name, l.cfg.Address = name, addr
		return l
	}
	virtual := mk("virtual", "0.0.0.0:15001")
	ls := []*listener{
		virtual,
		mk("exact", "10.0.0.5:80"),
		mk("any4", "0.0.0.0:80"),
		mk("any6", "[::]:443"),
		mk("exact6", "[2001:db8::1]:80"),
		mk("named", "localhost:8080"),
		mk("ephemeral", "127.0.0.1:0"),
	}
	x := newListenerIndex(ls)
	for _, tc := range []struct {
		dst, want string
	}{
		{"10.0.0.5:80", "exact"},
		{"10.0.0.6:80", "any4"},
		{"10.0.0.6:443", "any6"}, // a dual-stack [::] listener takes IPv4 too
		{"[::ffff:10.0.0.5]:80", "exact"},
		{"[2001:db8::1]:80", "exact6"},
		{"[2001:db8::2]:80", ""}, // 0.0.0.0 takes no IPv6
		{"[2001:db8::2]:443", "any6"},
		{"127.0.0.1:8080", ""},
		{"127.0.0.1:0", ""},
		{"10.0.0.1:15001", ""}, // the virtual listener itself: its own chains
	} {
		t.Run(tc.dst, func(t *testing.T) {
			got := x.lookup(netip.MustParseAddrPort(tc.dst), virtual)
			name := ""
			if got != nil {
				name = got.cfg.Name
			}
			if name != tc.want {
				t.Fatalf("lookup(%s) = %q, want %q", tc.dst, name, tc.want)
			}
		})
	}
}

// TestOriginalDstSocketOption checks the getsockopt error path on a
// connection no nat rule rewrote, and on a connection that is not TCP.
func TestOriginalDstSocketOption(t *testing.T) {
	ln := listenLoopback(t)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	if sc == nil {
		t.Fatal("accept failed")
	}
	defer sc.Close()
	dst, err := originalDst(sc)
	// Without conntrack the kernel has no entry (ENOENT); with it, the
	// unchanged destination comes back. Both are clean.
	if err == nil && dst != sc.LocalAddr().(*net.TCPAddr).AddrPort() {
		t.Fatalf("original destination %v of a connection that was not redirected, want %v", dst, sc.LocalAddr())
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if _, err := originalDst(p1); err == nil {
		t.Fatal("originalDst on a pipe succeeded")
	}
}

// BenchmarkListenerIndexLookup measures the hand-off's per-connection
// lookup of the listener of an original destination (a wildcard hit, the
// common case under Istio-style configs).
func BenchmarkListenerIndexLookup(b *testing.B) {
	var ls []*listener
	for p := 9000; p < 9100; p++ {
		l := &listener{}
		l.cfg.Name, l.cfg.Address = fmt.Sprint(p), fmt.Sprintf("0.0.0.0:%d", p)
		ls = append(ls, l)
	}
	x := newListenerIndex(ls)
	dst := netip.MustParseAddrPort("10.96.3.4:9042")
	b.ReportAllocs()
	for b.Loop() {
		if x.lookup(dst, nil) == nil {
			b.Fatal("no listener")
		}
	}
}

// TestCaptureMetricsReuse: a second server on the same registry (a
// reloaded configuration) shares the capture counters instead of failing.
func TestCaptureMetricsReuse(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := newCaptureMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newCaptureMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b.handoff.WithLabelValues("v", "t").Inc()
	if n := testutil.ToFloat64(a.handoff.WithLabelValues("v", "t")); n != 1 {
		t.Fatalf("counters not shared: %v", n)
	}
}

// TestReloadWithCaptureListeners: a reload keeps the virtual listener's
// socket, opens none for a listener that does not bind, and the new
// configuration's capture wiring serves.
func TestReloadWithCaptureListeners(t *testing.T) {
	const conf = `
admin: {address: "-"}
listeners:
- name: virtual
  address: 127.0.0.1:0
  use_original_dst: true
  filter_chains:
  - http_connection_manager:
      stat_prefix: v
      route_config:
        virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: %s}}]}]
- name: hidden
  address: 127.0.0.1:9
  bind_to_port: false
  filter_chains:
  - tcp_proxy: {cluster: passthrough}
clusters:
- {name: passthrough, type: ORIGINAL_DST}
`
	s := startProxy(t, fmt.Sprintf(conf, "first"))
	defer s.Close()
	addr := s.ListenerAddr("virtual")
	// A new connection per request: an idle keep-alive connection of the
	// old configuration is closed by the reload asynchronously.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	body := func() string {
		t.Helper()
		resp, err := client.Get("http://" + addr.String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := body(); got != "first" {
		t.Fatalf("before the reload: %q", got)
	}
	// Same address text: the socket (and its port) is kept.
	if err := s.Reload(parsed(fmt.Sprintf(conf, "second"))); err != nil {
		t.Fatal(err)
	}
	if got := body(); got != "second" {
		t.Fatalf("after the reload: %q", got)
	}
	g := s.gen.Load()
	if g.listeners[1].ln != nil || s.sockets["hidden"] != nil {
		t.Fatal("a bind_to_port: false listener got a socket on reload")
	}
	if g.listeners[0].capture.index == nil {
		t.Fatal("the reloaded virtual listener has no hand-off index")
	}
}
