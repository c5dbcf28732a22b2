package upstream

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remora-mesh/remora/internal/config"
)

// healthServer answers its health path with the current status (200 at
// first) and everything else with 200, counting health checks.
type healthServer struct {
	*countingServer
	status atomic.Int64
	checks atomic.Int64
	proto  atomic.Int64 // ProtoMajor of the last check
	host   atomic.Value // Host of the last check
}

func newHealthServer(t *testing.T, h2 bool) *healthServer {
	hs := &healthServer{}
	hs.status.Store(200)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			hs.checks.Add(1)
			hs.proto.Store(int64(r.ProtoMajor))
			hs.host.Store(r.Host)
			w.WriteHeader(int(hs.status.Load()))
			io.WriteString(w, "health")
			return
		}
		io.WriteString(w, "ok")
	})
	if h2 {
		hs.countingServer = newH2CServer(t, handler, 100)
	} else {
		hs.countingServer = newCountingServer(t, handler)
	}
	return hs
}

func hcCluster(name string, hc HealthCheckConfig, addrs ...string) ClusterConfig {
	c := staticCluster(name, addrs...)
	if hc.Interval == 0 {
		hc.Interval = config.Duration(2 * time.Millisecond)
	}
	if hc.NoTrafficInterval == 0 {
		hc.NoTrafficInterval = config.Duration(2 * time.Millisecond)
	}
	if hc.UnhealthyThreshold == 0 {
		hc.UnhealthyThreshold = 2
	}
	if hc.HealthyThreshold == 0 {
		hc.HealthyThreshold = 2
	}
	c.HealthChecks = []HealthCheckConfig{hc}
	return c
}

func httpHC(path string) HealthCheckConfig {
	return HealthCheckConfig{HTTP: &HTTPHealthCheck{Path: path}}
}

func clustersText(t *testing.T, m *Manager) string {
	t.Helper()
	var b bytes.Buffer
	if err := m.WriteClusters(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestHealthCheckHTTPFailsAndRecovers: a host whose health path starts
// failing leaves load balancing after unhealthy_threshold failures and
// returns after healthy_threshold successes; /clusters and the stats
// follow.
func TestHealthCheckHTTPFailsAndRecovers(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		name := "http1"
		if h2 {
			name = "http2"
		}
		t.Run(name, func(t *testing.T) {
			a, b := newHealthServer(t, h2), newHealthServer(t, h2)
			cfg := hcCluster("hc", httpHC("/healthz"), a.addr(), b.addr())
			if h2 {
				cfg.Protocol = ProtocolHTTP2
			}
			m := newTestManager(t, Options{}, cfg)
			c := m.Cluster("hc")
			// NewManager waited for the first checks: both hosts are in.
			ha := c.Hosts()[0]
			if !ha.Healthy() || ha.HealthFlags() != "healthy" || statOf(c, statMembershipHealthy) != 2 {
				t.Fatalf("after start: flags %q healthy %d", ha.HealthFlags(), statOf(c, statMembershipHealthy))
			}
			if got, want := a.proto.Load(), map[bool]int64{false: 1, true: 2}[h2]; got != want {
				t.Fatalf("health check over HTTP/%d, want HTTP/%d", got, want)
			}
			if got := a.host.Load(); got != "hc" {
				t.Fatalf("health check host %q, want the cluster name", got)
			}

			a.status.Store(503)
			waitFor(t, "the failing host to be marked", func() bool { return statOf(c, statMembershipHealthy) == 1 })
			if !ha.FailedActiveHealthCheck() {
				t.Fatalf("flags %q", ha.HealthFlags())
			}
			if !strings.Contains(clustersText(t, m), "hc::"+a.addr()+"::health_flags::/failed_active_hc\n") {
				t.Fatalf("/clusters:\n%s", clustersText(t, m))
			}
			for range 10 {
				if h := hostOf(t, c); h != b.addr() {
					t.Fatalf("request went to the unhealthy host %s", h)
				}
			}
			if statOf(c, statMembershipHealthy) != 1 || statOf(c, statHCFailure) == 0 || statOf(c, statLBHealthyPanic) != 0 {
				t.Fatalf("healthy %d failures %d panic %d", statOf(c, statMembershipHealthy), statOf(c, statHCFailure), statOf(c, statLBHealthyPanic))
			}
			if statOf(c, statHCNetworkFailure) != 0 {
				t.Fatalf("a 503 is no network failure: %d", statOf(c, statHCNetworkFailure))
			}

			a.status.Store(200)
			waitFor(t, "the host's return", func() bool { return statOf(c, statMembershipHealthy) == 2 })
			seen := map[string]bool{}
			for range 4 {
				seen[hostOf(t, c)] = true
			}
			if !seen[a.addr()] {
				t.Fatal("the recovered host gets no traffic")
			}
			if st := statOf(c, statHCAttempt); st < statOf(c, statHCSuccess)+statOf(c, statHCFailure) {
				t.Fatalf("attempts %d < success %d + failure %d", st, statOf(c, statHCSuccess), statOf(c, statHCFailure))
			}
		})
	}
}

// TestHealthCheckPanicMode: with fewer than half the hosts healthy the
// balancer uses all of them and counts lb_healthy_panic.
func TestHealthCheckPanicMode(t *testing.T) {
	srvs := []*healthServer{newHealthServer(t, false), newHealthServer(t, false), newHealthServer(t, false)}
	srvs[1].status.Store(500)
	srvs[2].status.Store(500)
	m := newTestManager(t, Options{}, hcCluster("hc", httpHC("/healthz"), srvs[0].addr(), srvs[1].addr(), srvs[2].addr()))
	c := m.Cluster("hc")
	// The first check decides alone: the failing hosts are out at once.
	if got := statOf(c, statMembershipHealthy); got != 1 {
		t.Fatalf("membership_healthy %d, want 1", got)
	}
	seen := map[string]bool{}
	for range 9 {
		seen[hostOf(t, c)] = true
	}
	if len(seen) != 3 {
		t.Fatalf("panic mode should use every host, used %v", seen)
	}
	if got := statOf(c, statLBHealthyPanic); got != 9 {
		t.Fatalf("lb_healthy_panic %d, want 9", got)
	}
	// One more healthy host: 2 of 3, no panic, the failing one is skipped.
	srvs[1].status.Store(200)
	h1 := c.Hosts()[1]
	waitFor(t, "the second host's return", func() bool { return statOf(c, statMembershipHealthy) == 2 })
	if !h1.Healthy() {
		t.Fatalf("flags %q", h1.HealthFlags())
	}
	for range 6 {
		if h := hostOf(t, c); h == srvs[2].addr() {
			t.Fatal("went to the unhealthy host outside panic mode")
		}
	}
	if got := statOf(c, statLBHealthyPanic); got != 9 {
		t.Fatalf("lb_healthy_panic %d after recovery, want 9", got)
	}
}

// TestHealthCheckExpectedStatusesAndDeadHost: ranges of passing statuses;
// a host nobody listens on fails with network failures from its first
// check; a host that dies mid-test is marked after unhealthy_threshold.
func TestHealthCheckExpectedStatusesAndDeadHost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	ok204 := newHealthServer(t, false)
	ok204.status.Store(204)
	dying := newHealthServer(t, false)
	hc := httpHC("/healthz")
	hc.HTTP.ExpectedStatuses = []StatusRange{{200, 300}}
	m := newTestManager(t, Options{}, hcCluster("hc", hc, ok204.addr(), dead, dying.addr()))
	c := m.Cluster("hc")
	hosts := c.Hosts()
	if !hosts[0].Healthy() || hosts[1].Healthy() || !hosts[2].Healthy() {
		t.Fatalf("flags %q %q %q", hosts[0].HealthFlags(), hosts[1].HealthFlags(), hosts[2].HealthFlags())
	}
	if hosts[1].HealthFlags() != "/failed_active_hc" || statOf(c, statHCNetworkFailure) == 0 {
		t.Fatalf("dead host flags %q network failures %d", hosts[1].HealthFlags(), statOf(c, statHCNetworkFailure))
	}
	dying.CloseClientConnections()
	dying.Close()
	waitFor(t, "the dead host to be marked", func() bool { return statOf(c, statMembershipHealthy) == 1 })
	if !hosts[2].FailedActiveHealthCheck() {
		t.Fatalf("flags %q", hosts[2].HealthFlags())
	}
	// 1 of 3 healthy: panic, every host is used (requests to the dead
	// ones fail), which the panic counter records.
	if statOf(c, statMembershipHealthy) != 1 {
		t.Fatalf("membership_healthy %d", statOf(c, statMembershipHealthy))
	}
}

// TestHealthCheckTCP connects, sends a payload and expects blocks of the
// answer in order; a wrong answer or a closed port fails.
func TestHealthCheckTCP(t *testing.T) {
	serve := func(answer string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		t.Cleanup(func() { ln.Close(); wg.Wait() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer conn.Close()
					buf := make([]byte, 4)
					if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
						return
					}
					io.WriteString(conn, answer)
				}()
			}
		}()
		return ln.Addr().String()
	}
	good := serve("xxpo" + "ng--OK")
	wrong := serve("nope")
	hc := HealthCheckConfig{TCP: &TCPHealthCheck{
		Send:    "70696e67",                   // "ping"
		Receive: []string{"706f6e67", "4f4b"}, // "pong" then "OK"
	}, Timeout: config.Duration(2 * time.Second)}
	m := newTestManager(t, Options{}, hcCluster("tcp", hc, good, wrong))
	c := m.Cluster("tcp")
	hosts := c.Hosts()
	if !hosts[0].Healthy() || hosts[1].Healthy() {
		t.Fatalf("flags %q %q", hosts[0].HealthFlags(), hosts[1].HealthFlags())
	}
	if statOf(c, statHCSuccess) == 0 || statOf(c, statHCFailure) == 0 {
		t.Fatalf("success %d failure %d", statOf(c, statHCSuccess), statOf(c, statHCFailure))
	}
}

// TestHealthCheckIntervals: no_traffic_interval until the cluster carries
// traffic, then interval, plus at most interval_jitter.
func TestHealthCheckIntervals(t *testing.T) {
	srv := newHealthServer(t, false)
	hc := httpHC("/healthz")
	hc.Interval = config.Duration(time.Hour)
	hc.NoTrafficInterval = config.Duration(2 * time.Hour)
	hc.IntervalJitter = config.Duration(time.Minute)
	m := newTestManager(t, Options{}, hcCluster("hc", hc, srv.addr()))
	c := m.Cluster("hc")
	if srv.checks.Load() != 1 {
		t.Fatalf("first check not run at start: %d", srv.checks.Load())
	}
	for range 20 {
		if d := c.hc.nextInterval(); d < 2*time.Hour || d >= 2*time.Hour+time.Minute {
			t.Fatalf("before traffic: %v", d)
		}
	}
	hostOf(t, c)
	for range 20 {
		if d := c.hc.nextInterval(); d < time.Hour || d >= time.Hour+time.Minute {
			t.Fatalf("after traffic: %v", d)
		}
	}
}

// TestHealthCheckStopsOnClose: closing the manager while checks hang
// ends them (the leak check in TestMain would catch a survivor).
func TestHealthCheckStopsOnClose(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	srv := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		once.Do(func() { first = true })
		if first { // the first check passes, the next ones hang
			return
		}
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer close(release)
	hc := httpHC("/slow")
	hc.Timeout = config.Duration(time.Hour)
	cfg := hcCluster("hc", hc, srv.addr())
	m, err := NewManager([]ClusterConfig{cfg}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-testCtx(t).Done():
		t.Fatal("Close did not stop a hanging health check")
	}
}

// TestHealthCheckFollowsDNS: a host a DNS answer adds is checked from its
// arrival (pending, then failed: nothing listens on 127.0.0.2), and a host
// the answer drops stops being checked.
func TestHealthCheckFollowsDNS(t *testing.T) {
	srv := newHealthServer(t, false)
	_, port, _ := net.SplitHostPort(srv.addr())
	res := &scriptedResolver{answers: map[string][]netip.Addr{}}
	res.set("svc.local", "127.0.0.1")
	cfg := hcCluster("dns", httpHC("/healthz"))
	cfg.Type = TypeStrictDNS
	cfg.Endpoints = []EndpointConfig{{Address: "svc.local:" + port}}
	cfg.DNSRefreshRate = config.Duration(5 * time.Millisecond)
	m := newTestManager(t, Options{Resolver: res}, cfg)
	c := m.Cluster("dns")
	first := c.Hosts()[0]
	if !first.Healthy() {
		t.Fatalf("flags %q", first.HealthFlags())
	}
	res.set("svc.local", "127.0.0.1", "127.0.0.2")
	waitFor(t, "the new host's first check", func() bool {
		hs := c.Hosts()
		return len(hs) == 2 && hs[1].HealthFlags() == "/failed_active_hc"
	})
	for range 6 {
		if h := hostOf(t, c); h != first.Address() {
			t.Fatalf("went to %s", h)
		}
	}
	res.set("svc.local", "127.0.0.2")
	waitFor(t, "the shrunk host set", func() bool { return len(c.Hosts()) == 1 && c.Hosts()[0] != first })
	c.mu.Lock()
	stopped := first.hc == nil
	c.mu.Unlock()
	if !stopped {
		t.Fatal("the removed host is still checked")
	}
}

// TestHealthCheckUnejectsHost: a host ejected for 503s to traffic whose
// health check passes returns at the next check (Envoy's default
// successful_active_health_check_uneject_host), unless that is turned off.
func TestHealthCheckUnejectsHost(t *testing.T) {
	for _, uneject := range []bool{true, false} {
		t.Run(map[bool]string{true: "default", false: "disabled"}[uneject], func(t *testing.T) {
			bad := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/healthz" {
					w.WriteHeader(503)
				}
			}))
			good := newHealthServer(t, false)
			cfg := hcCluster("od", httpHC("/healthz"), bad.addr(), good.addr())
			cfg.OutlierDetection = &OutlierDetectionConfig{Consecutive5xx: 1, BaseEjectionTime: config.Duration(time.Hour), MaxEjectionPercent: 50}
			if !uneject {
				cfg.OutlierDetection.SuccessfulActiveHealthCheckUnejectHost = &uneject
			}
			m := newTestManager(t, Options{}, cfg)
			c := m.Cluster("od")
			for statOf(c, statOutlierEnforcedTotal) == 0 {
				hostOf(t, c)
			}
			attempts := statOf(c, statHCAttempt)
			if uneject {
				waitFor(t, "the health check to return the host", func() bool { return statOf(c, statOutlierEjectionsActive) == 0 })
				if c.Hosts()[0].Ejected() || statOf(c, statMembershipHealthy) != 2 {
					t.Fatalf("flags %q healthy %d", c.Hosts()[0].HealthFlags(), statOf(c, statMembershipHealthy))
				}
				return
			}
			waitFor(t, "more health checks", func() bool { return statOf(c, statHCAttempt) > attempts+4 })
			if !c.Hosts()[0].Ejected() {
				t.Fatal("a passing health check returned the host though disabled")
			}
		})
	}
}
