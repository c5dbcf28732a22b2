package upstream

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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
	for statOf(c, statOutlierEjectionsTotal) == 0 {
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
