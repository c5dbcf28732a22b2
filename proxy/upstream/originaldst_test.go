package upstream

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

func originalDstCluster(name string) ClusterConfig {
	return ClusterConfig{Name: name, Type: TypeOriginalDst}
}

func TestOriginalDstDialTCP(t *testing.T) {
	a, b := echoListener(t), echoListener(t)
	m := newTestManager(t, Options{}, originalDstCluster("pass"))
	c := m.Cluster("pass")
	if c.Config().LBPolicy != LBClusterProvided {
		t.Fatalf("lb_policy default %q", c.Config().LBPolicy)
	}
	for _, dst := range []string{a, b, a} {
		info := filter.StreamInfo{DownstreamLocalAddress: netip.MustParseAddrPort(dst)}
		tc, err := c.DialTCP(testCtx(t), LBContext{}, &info)
		if err != nil {
			t.Fatal(err)
		}
		if got := tc.RemoteAddr().String(); got != dst {
			t.Fatalf("connected to %s, want the original destination %s", got, dst)
		}
		if info.UpstreamHost != dst || info.UpstreamCluster != "pass" {
			t.Fatalf("stream info host %q cluster %q", info.UpstreamHost, info.UpstreamCluster)
		}
		if _, err := tc.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1)
		if _, err := tc.Read(buf); err != nil || buf[0] != 'x' {
			t.Fatalf("echo: %v %q", err, buf)
		}
		tc.Close()
	}
	if n := len(c.Hosts()); n != 2 {
		t.Fatalf("%d hosts, want one per destination (2)", n)
	}

	for name, info := range map[string]*filter.StreamInfo{
		"no info":        nil,
		"no destination": {},
		"unspecified":    {DownstreamLocalAddress: netip.MustParseAddrPort("0.0.0.0:80")},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.DialTCP(testCtx(t), LBContext{}, info)
			if flagOf(err) != filter.NoHealthyUpstream {
				t.Fatalf("err %v, want UH", err)
			}
		})
	}
}

// TestOriginalDstCleanup: hosts idle for a cleanup interval go away when
// a new destination comes; busy ones stay.
func TestOriginalDstCleanup(t *testing.T) {
	a, b, d := echoListener(t), echoListener(t), echoListener(t)
	m := newTestManager(t, Options{}, originalDstCluster("pass"))
	c := m.Cluster("pass")
	now := time.Unix(1000, 0)
	c.origDst.now = func() time.Time { return now }
	dial := func(dst string) *TCPConn {
		t.Helper()
		info := filter.StreamInfo{DownstreamLocalAddress: netip.MustParseAddrPort(dst)}
		tc, err := c.DialTCP(testCtx(t), LBContext{}, &info)
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	dial(a).Close()
	busy := dial(b)
	defer busy.Close()
	now = now.Add(OriginalDstCleanupInterval)
	dial(d).Close()
	var addrs []string
	for _, h := range c.Hosts() {
		addrs = append(addrs, h.Address())
	}
	want := []string{b, d}
	slices.SortFunc(want, func(x, y string) int {
		return netip.MustParseAddrPort(x).Compare(netip.MustParseAddrPort(y))
	})
	if !slices.Equal(addrs, want) {
		t.Fatalf("hosts %v, want %v (idle %s removed)", addrs, want, a)
	}
}

func TestOriginalDstHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("at " + r.Host))
	}))
	defer srv.Close()
	m := newTestManager(t, Options{}, originalDstCluster("pass"))
	c := m.Cluster("pass")
	dst := srv.Listener.Addr().(*net.TCPAddr).AddrPort()
	info := filter.StreamInfo{DownstreamLocalAddress: dst}
	rh, body, _ := roundTrip(t, c, reqHeaders("GET", "/", "reviews:9080"), nil, StreamOptions{Info: &info})
	if st, _ := rh.Get(":status"); st != "200" || string(body) != "at reviews:9080" {
		t.Fatalf("got %s %q", st, body)
	}
	if info.UpstreamHost != dst.String() {
		t.Fatalf("upstream host %q", info.UpstreamHost)
	}
	if _, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{}); flagOf(err) != filter.NoHealthyUpstream {
		t.Fatalf("no destination: %v, want UH", err)
	}
}

// TestOriginalDstHTTPHeader: with use_http_header the request's
// x-envoy-original-dst-host wins over the connection's destination.
func TestOriginalDstHTTPHeader(t *testing.T) {
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(name)) })
	}
	a, b := httptest.NewServer(handler("a")), httptest.NewServer(handler("b"))
	defer a.Close()
	defer b.Close()
	cfg := originalDstCluster("pass")
	cfg.OriginalDstLBConfig = &OriginalDstLBConfig{UseHTTPHeader: true}
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("pass")
	connDst := a.Listener.Addr().(*net.TCPAddr).AddrPort()
	for _, tc := range []struct {
		name, header, want string
	}{
		{"no header", "", "a"},
		{"header", b.Listener.Addr().String(), "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := reqHeaders("GET", "/", "svc")
			if tc.header != "" {
				h.Add(OriginalDstHeader, tc.header)
			}
			info := filter.StreamInfo{DownstreamLocalAddress: connDst}
			_, body, _ := roundTrip(t, c, h, nil, StreamOptions{Info: &info})
			if string(body) != tc.want {
				t.Fatalf("reached %q, want %q", body, tc.want)
			}
		})
	}
	info := filter.StreamInfo{DownstreamLocalAddress: connDst}
	_, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "svc", OriginalDstHeader, "svc.local:80"), true, StreamOptions{Info: &info})
	if flagOf(err) != filter.NoHealthyUpstream {
		t.Fatalf("invalid header: %v, want UH", err)
	}
}

func TestOriginalDstValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ClusterConfig
		want string
	}{
		{"endpoints", ClusterConfig{Name: "p", Type: TypeOriginalDst, Endpoints: []EndpointConfig{{Address: "127.0.0.1:1"}}},
			"c.endpoints: an ORIGINAL_DST cluster has no endpoints: it connects to each connection's original destination"},
		{"lb", ClusterConfig{Name: "p", Type: TypeOriginalDst, LBPolicy: LBRandom},
			`c.lb_policy: an ORIGINAL_DST cluster needs CLUSTER_PROVIDED (the default), got "RANDOM"`},
		{"cluster provided elsewhere", ClusterConfig{Name: "p", LBPolicy: LBClusterProvided, Endpoints: []EndpointConfig{{Address: "127.0.0.1:1"}}},
			"c.lb_policy: CLUSTER_PROVIDED is only for ORIGINAL_DST clusters"},
		{"source address", ClusterConfig{Name: "p", Type: TypeOriginalDst, SourceAddress: "localhost"},
			`c.source_address: "localhost" is not an IP address`},
		{"lb config elsewhere", ClusterConfig{Name: "p", Endpoints: []EndpointConfig{{Address: "127.0.0.1:1"}}, OriginalDstLBConfig: &OriginalDstLBConfig{UseHTTPHeader: true}},
			"c.original_dst_lb_config: only for ORIGINAL_DST clusters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.ApplyDefaults()
			err := cfg.Validate("c")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestSourceAddress: upstream connections leave from source_address.
func TestSourceAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := staticCluster("c", ln.Addr().String())
	cfg.SourceAddress = "127.0.0.6"
	m := newTestManager(t, Options{}, cfg)
	tc, err := m.Cluster("c").DialTCP(testCtx(t), LBContext{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if ip := sc.RemoteAddr().(*net.TCPAddr).IP.String(); ip != "127.0.0.6" {
		t.Fatalf("connection from %s, want 127.0.0.6", ip)
	}
}

// BenchmarkOriginalDstHost measures finding the host of a known original
// destination: the per-connection (TCP) and per-request (HTTP) cost of an
// ORIGINAL_DST cluster.
func BenchmarkOriginalDstHost(b *testing.B) {
	m := newTestManager(b, Options{}, originalDstCluster("pass"))
	c := m.Cluster("pass")
	info := filter.StreamInfo{DownstreamLocalAddress: netip.MustParseAddrPort("10.0.0.7:9080")}
	if c.originalDstHost(&info) == nil {
		b.Fatal("no host")
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		info := filter.StreamInfo{DownstreamLocalAddress: netip.MustParseAddrPort("10.0.0.7:9080")}
		for pb.Next() {
			if c.originalDstHost(&info) == nil {
				b.Fatal("no host")
			}
		}
	})
}
