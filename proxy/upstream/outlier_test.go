package upstream

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/proxy/filter"
)

func statusHandler(code int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		io.WriteString(w, http.StatusText(code))
	})
}

func outlierCluster(name string, consecutive uint32, base string, addrs ...string) ClusterConfig {
	c := staticCluster(name, addrs...)
	c.OutlierDetection = &OutlierDetectionConfig{Consecutive5xx: consecutive}
	c.OutlierDetection.BaseEjectionTime.UnmarshalYAML(yamlScalar(base))
	c.OutlierDetection.Interval.UnmarshalYAML(yamlScalar("5ms"))
	return c
}

func hostOf(t *testing.T, c *Cluster) string {
	t.Helper()
	var info filter.StreamInfo
	roundTrip(t, c, reqHeaders("GET", "/", "x"), nil, StreamOptions{Info: &info})
	return info.UpstreamHost
}

func TestOutlierEjectsFailingHost(t *testing.T) {
	bad := newCountingServer(t, statusHandler(503))
	good := newCountingServer(t, statusHandler(200))
	m := newTestManager(t, Options{}, outlierCluster("od", 3, "2m", bad.addr(), good.addr()))
	c := m.Cluster("od")
	for range 6 { // round robin: three 503s from the bad host
		hostOf(t, c)
	}
	if statOf(c, statOutlierEjectionsActive) != 1 || !c.Hosts()[0].Ejected() {
		t.Fatalf("ejections_active %d", statOf(c, statOutlierEjectionsActive))
	}
	for range 20 {
		if h := hostOf(t, c); h != good.addr() {
			t.Fatalf("request went to the ejected host %s", h)
		}
	}
	var b bytes.Buffer
	m.WriteClusters(&b)
	if !strings.Contains(b.String(), "od::"+bad.addr()+"::health_flags::/failed_outlier_check") {
		t.Fatalf("/clusters does not show the ejection:\n%s", b.String())
	}

	// The ejection time passes (2m, so only a clock jump returns it).
	c.unejectExpired(time.Now().Add(3 * time.Minute))
	if statOf(c, statOutlierEjectionsActive) != 0 || c.Hosts()[0].Ejected() {
		t.Fatal("host not returned")
	}
	seen := map[string]bool{}
	for range 4 {
		seen[hostOf(t, c)] = true
	}
	if !seen[bad.addr()] {
		t.Fatal("the returned host gets no traffic")
	}
	// A second ejection lasts twice as long.
	for range 6 {
		hostOf(t, c)
	}
	h := c.Hosts()[0]
	c.mu.Lock()
	until, n := h.ejectedUntil, h.ejections
	c.mu.Unlock()
	if n != 2 || time.Until(until) < 3*time.Minute {
		t.Fatalf("second ejection: count %d, until %v", n, time.Until(until))
	}
}

func TestOutlierIntervalReturnsHost(t *testing.T) {
	bad := newCountingServer(t, statusHandler(500))
	good := newCountingServer(t, statusHandler(200))
	m := newTestManager(t, Options{}, outlierCluster("od", 1, "10ms", bad.addr(), good.addr()))
	c := m.Cluster("od")
	for statOf(c, statOutlierEnforcedTotal) == 0 {
		hostOf(t, c)
	}
	waitFor(t, "the interval to return the host", func() bool { return statOf(c, statOutlierEjectionsActive) == 0 })
}

func TestOutlierMaxEjectionPercentAndPanic(t *testing.T) {
	bads := make([]string, 3)
	for i := range bads {
		bads[i] = newCountingServer(t, statusHandler(502)).addr()
	}
	good := newCountingServer(t, statusHandler(200))
	// 4 hosts, 10%: only one may be ejected (the at-least-one rule).
	m := newTestManager(t, Options{}, outlierCluster("od", 1, "1h", append(bads, good.addr())...))
	c := m.Cluster("od")
	for range 12 {
		hostOf(t, c)
	}
	if statOf(c, statOutlierEjectionsActive) != 1 || statOf(c, statOutlierEjectionsOverflow) == 0 {
		t.Fatalf("active %d overflow %d", statOf(c, statOutlierEjectionsActive), statOf(c, statOutlierEjectionsOverflow))
	}

	// A single-host cluster whose host is ejected keeps using it: with
	// fewer than half the hosts left the balancer panics to all of them.
	single := newCountingServer(t, statusHandler(503))
	m2 := newTestManager(t, Options{}, outlierCluster("one", 1, "1h", single.addr()))
	c2 := m2.Cluster("one")
	hostOf(t, c2)
	if !c2.Hosts()[0].Ejected() {
		t.Fatal("not ejected")
	}
	if h := hostOf(t, c2); h != single.addr() {
		t.Fatalf("went to %q", h)
	}
}

func TestOutlierCountsConnectFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	good := newCountingServer(t, statusHandler(200))
	m := newTestManager(t, Options{}, outlierCluster("od", 2, "1h", dead, good.addr()))
	c := m.Cluster("od")
	fails := 0
	for fails < 2 {
		var info filter.StreamInfo
		s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{Info: &info})
		if err != nil {
			fails++
			continue
		}
		s.ReadHeaders(testCtx(t))
		readAll(t, s)
		s.Close()
	}
	waitFor(t, "the dead host's ejection", func() bool { return statOf(c, statOutlierEjectionsActive) == 1 })
	for range 10 {
		if h := hostOf(t, c); h != good.addr() {
			t.Fatalf("went to %s", h)
		}
	}
}

// testClock is a settable clock for ejection times.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Unix(1_700_000_000, 0)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// awaitSweep waits for the outlier-detection loop to run one more sweep
// with the clock as it is now.
func awaitSweep(t *testing.T, c *Cluster) {
	t.Helper()
	n := c.odSweeps.Load()
	waitFor(t, "an outlier-detection sweep", func() bool { return c.odSweeps.Load() >= n+2 })
}

// TestOutlierEjectionTimeGrows ejects a host that answers 503, lets the
// (test) clock pass the ejection time, and ejects it again: the second
// ejection lasts twice as long, the third is capped at
// max_ejection_time. The interval loop really runs (every 5ms); only the
// clock it reads is the test's.
func TestOutlierEjectionTimeGrows(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	flaky := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(503)
		}
	}))
	good := newCountingServer(t, statusHandler(200))
	clock := newTestClock()
	cfg := outlierCluster("od", 2, "30s", flaky.addr(), good.addr())
	cfg.OutlierDetection.MaxEjectionTime = config.Duration(75 * time.Second)
	cfg.OutlierDetection.MaxEjectionPercent = 50
	m := newTestManager(t, Options{now: clock.Now}, cfg)
	c := m.Cluster("od")
	h := c.Hosts()[0]
	ejectOnce := func(want int64) {
		t.Helper()
		for statOf(c, statOutlierEnforcedTotal) < want {
			hostOf(t, c)
		}
		if !h.Ejected() {
			t.Fatal("not ejected")
		}
	}
	for i, want := range []time.Duration{30 * time.Second, 60 * time.Second, 75 * time.Second} {
		ejectOnce(int64(i + 1))
		c.mu.Lock()
		got := h.ejectedUntil.Sub(clock.Now())
		c.mu.Unlock()
		if got != want {
			t.Fatalf("ejection %d lasts %v, want %v", i+1, got, want)
		}
		// Just before the end: the sweeps keep it out.
		clock.Advance(want - time.Second)
		awaitSweep(t, c)
		if !h.Ejected() {
			t.Fatalf("ejection %d ended early", i+1)
		}
		clock.Advance(time.Second)
		waitFor(t, "the host's return", func() bool { return !h.Ejected() })
	}
	// 503s are gateway failures too, detected (consecutive_gateway_failure
	// defaults to 5) but not enforced by default: the ejections were 5xx.
	if e5, eg := statOf(c, statOutlierEnforced5xx), statOf(c, statOutlierEnforcedGateway); e5 != 3 || eg != 0 {
		t.Fatalf("enforced 5xx %d gateway %d, want 3 and 0", e5, eg)
	}
	failing.Store(false)
	for range 4 {
		hostOf(t, c)
	}
	if statOf(c, statOutlierEjectionsActive) != 0 || statOf(c, statMembershipHealthy) != 2 {
		t.Fatalf("active %d healthy %d", statOf(c, statOutlierEjectionsActive), statOf(c, statMembershipHealthy))
	}
}

// TestOutlierGatewayVersus5xx checks which counter a response feeds: 500
// is a 5xx but not a gateway failure (and breaks a run of gateway
// failures); 502/503/504 and dead hosts are both.
func TestOutlierGatewayVersus5xx(t *testing.T) {
	enforceAll := uint32(100)
	tests := []struct {
		name          string
		codes         []int // the host answers these in turn
		c5xx, cGW     uint32
		wantType      stat // the enforced ejection counter, or -1 for none
		detected5xx   int64
		detectedGW    int64
		enforceGW     *uint32
		wantEjections int64
	}{
		{"500s eject as 5xx", []int{500, 500, 500}, 3, 2, statOutlierEnforced5xx, 1, 0, &enforceAll, 1},
		{"gateway failures eject as gateway", []int{502, 504}, 3, 2, statOutlierEnforcedGateway, 0, 1, &enforceAll, 1},
		{"a 500 breaks a gateway run", []int{502, 500, 503}, 5, 2, -1, 0, 0, &enforceAll, 0},
		{"gateway not enforced by default", []int{503, 503}, 5, 2, -1, 0, 1, nil, 0},
		{"5xx counts gateway failures too", []int{503, 500, 503}, 3, 5, statOutlierEnforced5xx, 1, 0, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var next atomic.Int64
			srv := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := next.Add(1) - 1
				w.WriteHeader(tt.codes[int(i)%len(tt.codes)])
			}))
			others := []string{srv.addr()}
			for range 3 {
				others = append(others, newCountingServer(t, statusHandler(200)).addr())
			}
			cfg := outlierCluster("od", tt.c5xx, "1h", others...)
			cfg.OutlierDetection.ConsecutiveGatewayFailure = tt.cGW
			cfg.OutlierDetection.EnforcingConsecutiveGatewayFailure = tt.enforceGW
			m := newTestManager(t, Options{}, cfg)
			c := m.Cluster("od")
			h := c.Hosts()[0]
			for range tt.codes {
				h.recordResponse(tt.codes[int(next.Add(1)-1)%len(tt.codes)])
			}
			if got := statOf(c, statOutlierEnforcedTotal); got != tt.wantEjections {
				t.Fatalf("enforced_total %d, want %d", got, tt.wantEjections)
			}
			if tt.wantType >= 0 && statOf(c, tt.wantType) != 1 {
				t.Fatalf("%s = %d", statDescs[tt.wantType].name, statOf(c, tt.wantType))
			}
			if got := statOf(c, statOutlierDetected5xx); got != tt.detected5xx {
				t.Fatalf("detected_consecutive_5xx %d, want %d", got, tt.detected5xx)
			}
			if got := statOf(c, statOutlierDetectedGateway); got != tt.detectedGW {
				t.Fatalf("detected_consecutive_gateway_failure %d, want %d", got, tt.detectedGW)
			}
			if h.Ejected() != (tt.wantEjections > 0) {
				t.Fatalf("ejected %v", h.Ejected())
			}
		})
	}
}

// TestOutlierDeadHostEnd2End kills a host mid-test: its refused
// connections are gateway failures that eject it, and requests keep
// succeeding on the other hosts.
func TestOutlierDeadHostEnd2End(t *testing.T) {
	a := newCountingServer(t, statusHandler(200))
	b := newCountingServer(t, statusHandler(200))
	cfg := outlierCluster("od", 5, "1h", a.addr(), b.addr())
	cfg.OutlierDetection.ConsecutiveGatewayFailure = 2
	enforce := uint32(100)
	cfg.OutlierDetection.EnforcingConsecutiveGatewayFailure = &enforce
	cfg.OutlierDetection.MaxEjectionPercent = 50
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("od")
	for range 4 {
		hostOf(t, c)
	}
	a.CloseClientConnections()
	a.Close()
	failures := 0
	for statOf(c, statOutlierEjectionsActive) == 0 {
		var info filter.StreamInfo
		s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{Info: &info})
		if err != nil {
			failures++
			if failures > 10 {
				t.Fatal("dead host never ejected")
			}
			continue
		}
		if _, _, err := s.ReadHeaders(testCtx(t)); err != nil {
			s.Reset()
			continue
		}
		readAll(t, s)
		s.Close()
	}
	if statOf(c, statOutlierEnforcedGateway) != 1 {
		t.Fatalf("enforced gateway %d", statOf(c, statOutlierEnforcedGateway))
	}
	for range 10 {
		if h := hostOf(t, c); h != b.addr() {
			t.Fatalf("went to %s", h)
		}
	}
	var buf bytes.Buffer
	m.WriteClusters(&buf)
	if !strings.Contains(buf.String(), "od::"+a.addr()+"::health_flags::/failed_outlier_check\n") {
		t.Fatalf("/clusters:\n%s", buf.String())
	}
}
