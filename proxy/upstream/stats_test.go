package upstream

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// statsFixture runs a fixed workload against a loopback server whose
// address is then masked, so the output is stable.
func statsFixture(t *testing.T) (*Manager, *prometheus.Registry, func([]byte) []byte) {
	srv := newCountingServer(t, okHandler("ok"))
	reg := prometheus.NewRegistry()
	web := staticCluster("web", srv.addr())
	web.CircuitBreakers.MaxConnections = 8
	other := staticCluster("other", "127.0.0.1:1")
	other.Endpoints[0].Weight = 5
	m := newTestManager(t, Options{Registry: reg}, web, other)
	c := m.Cluster("web")
	for range 3 {
		roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
	}
	s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "web"), true, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Reset()
	c.RecordTimeout(srv.addr())
	if !c.TryAcquireRetry() {
		t.Fatal("retry refused")
	}
	c.ReleaseRetry()
	mask := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(srv.addr()), []byte("SERVER")) }
	return m, reg, mask
}

func TestWriteClustersGolden(t *testing.T) {
	m, _, mask := statsFixture(t)
	var b bytes.Buffer
	if err := m.WriteClusters(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "clusters.txt", mask(b.Bytes()))
}

func TestWriteStatsGolden(t *testing.T) {
	m, _, mask := statsFixture(t)
	var b bytes.Buffer
	if err := m.WriteStats(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "stats.txt", mask(b.Bytes()))
}

func TestPrometheusMetrics(t *testing.T) {
	m, reg, _ := statsFixture(t)
	const want = `
# HELP envoy_cluster_upstream_rq_total Requests sent to upstream hosts.
# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name="other"} 0
envoy_cluster_upstream_rq_total{envoy_cluster_name="web"} 4
# HELP envoy_cluster_upstream_cx_active Connections open now.
# TYPE envoy_cluster_upstream_cx_active gauge
envoy_cluster_upstream_cx_active{envoy_cluster_name="other"} 0
envoy_cluster_upstream_cx_active{envoy_cluster_name="web"} 0
# HELP envoy_cluster_upstream_rq_xx Upstream responses by status class.
# TYPE envoy_cluster_upstream_rq_xx counter
envoy_cluster_upstream_rq_xx{envoy_cluster_name="other",envoy_response_code_class="1"} 0
envoy_cluster_upstream_rq_xx{envoy_cluster_name="other",envoy_response_code_class="2"} 0
envoy_cluster_upstream_rq_xx{envoy_cluster_name="other",envoy_response_code_class="3"} 0
envoy_cluster_upstream_rq_xx{envoy_cluster_name="other",envoy_response_code_class="4"} 0
envoy_cluster_upstream_rq_xx{envoy_cluster_name="other",envoy_response_code_class="5"} 0
envoy_cluster_upstream_rq_xx{envoy_cluster_name="web",envoy_response_code_class="1"} 0
envoy_cluster_upstream_rq_xx{envoy_cluster_name="web",envoy_response_code_class="2"} 3
envoy_cluster_upstream_rq_xx{envoy_cluster_name="web",envoy_response_code_class="3"} 0
envoy_cluster_upstream_rq_xx{envoy_cluster_name="web",envoy_response_code_class="4"} 0
envoy_cluster_upstream_rq_xx{envoy_cluster_name="web",envoy_response_code_class="5"} 0
# HELP envoy_cluster_upstream_rq_reset Requests reset before finishing.
# TYPE envoy_cluster_upstream_rq_reset counter
envoy_cluster_upstream_rq_reset{envoy_cluster_name="other"} 0
envoy_cluster_upstream_rq_reset{envoy_cluster_name="web"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"envoy_cluster_upstream_rq_total", "envoy_cluster_upstream_cx_active", "envoy_cluster_upstream_rq_reset",
		"envoy_cluster_upstream_rq_xx"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 2*(int(numStats)+8+5) {
		t.Fatalf("%d series (err %v), want %d", n, err, 2*(int(numStats)+8+5))
	}
	m.Close()
	if n, _ := testutil.GatherAndCount(reg); n != 0 {
		t.Fatalf("%d series left after Close", n)
	}
}

func TestRetryBudget(t *testing.T) {
	m := newTestManager(t, Options{}, staticCluster("c", "127.0.0.1:1"))
	c := m.Cluster("c")
	for i := range 3 {
		if !c.TryAcquireRetry() {
			t.Fatalf("retry %d refused", i)
		}
	}
	if c.TryAcquireRetry() {
		t.Fatal("4th concurrent retry admitted with max_retries 3")
	}
	c.ReleaseRetry()
	if !c.TryAcquireRetry() {
		t.Fatal("released retry not reusable")
	}
	if statOf(c, statRqRetry) != 4 || statOf(c, statRqRetryOverflow) != 1 {
		t.Fatalf("retry %d overflow %d", statOf(c, statRqRetry), statOf(c, statRqRetryOverflow))
	}
}
