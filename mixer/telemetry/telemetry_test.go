package telemetry

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/internal/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

// httpRecord is an inbound HTTP record as the sidecar reports it.
func httpRecord(code int64, dur time.Duration) attributes.Bag {
	return attributes.BagOf(map[string]attributes.Value{
		attributes.ContextProtocol:              attributes.String("http"),
		attributes.ContextReporterKind:          attributes.String("inbound"),
		attributes.SourceWorkloadName:           attributes.String("productpage-v1"),
		attributes.SourceWorkloadNamespace:      attributes.String("default"),
		attributes.SourcePrincipal:              attributes.String("spiffe://cluster.local/ns/default/sa/productpage"),
		attributes.SourceLabels:                 attributes.StringMapValue(attributes.StringMapOf(map[string]string{"app": "productpage", "version": "v1"})),
		attributes.DestinationWorkloadName:      attributes.String("reviews-v2"),
		attributes.DestinationWorkloadNamespace: attributes.String("default"),
		attributes.DestinationPrincipal:         attributes.String("spiffe://cluster.local/ns/default/sa/reviews"),
		attributes.DestinationLabels:            attributes.StringMapValue(attributes.StringMapOf(map[string]string{"app": "reviews", "version": "v2"})),
		attributes.DestinationServiceHost:       attributes.String("reviews.default.svc.cluster.local"),
		attributes.DestinationServiceName:       attributes.String("reviews"),
		attributes.DestinationServiceNamespace:  attributes.String("default"),
		attributes.ResponseCode:                 attributes.Int64(code),
		attributes.ResponseDuration:             attributes.Duration(dur),
		attributes.RequestSize:                  attributes.Int64(120),
		attributes.ResponseSize:                 attributes.Int64(2048),
		attributes.ConnectionMTLS:               attributes.Bool(true),
		attributes.RequestMethod:                attributes.String("GET"),
		attributes.DestinationIP:                attributes.IPAddress(netip.MustParseAddr("10.0.0.7")),
	})
}

func tcpRecord(event string, sent, received int64) attributes.Bag {
	return attributes.BagOf(map[string]attributes.Value{
		attributes.ContextProtocol:         attributes.String("tcp"),
		attributes.ContextReporterKind:     attributes.String("outbound"),
		attributes.ConnectionEvent:         attributes.String(event),
		attributes.ConnectionSentBytes:     attributes.Int64(sent),
		attributes.ConnectionReceivedBytes: attributes.Int64(received),
		attributes.DestinationServiceHost:  attributes.String("mysql.db.svc.cluster.local"),
		attributes.ContextProxyErrorCode:   attributes.String("UF"),
	})
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newTelemetry(t testing.TB, cfg Config, now func() time.Time) *Telemetry {
	t.Helper()
	cfg.ApplyDefaults()
	tel, err := New(cfg, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return tel
}

// exposition gathers reg and renders the text format.
func exposition(t *testing.T, reg *prometheus.Registry) []byte {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output:\n%s", path, got)
	}
}

func TestStandardMetricsGolden(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	tel := newTelemetry(t, Config{}, c.Now)
	tel.RecordBatch([]attributes.Bag{
		httpRecord(200, 3*time.Millisecond),
		httpRecord(200, 70*time.Millisecond),
		httpRecord(503, 2*time.Second),
		attributes.BagOf(map[string]attributes.Value{attributes.ContextProtocol: attributes.String("grpc")}),
		tcpRecord("open", 10, 20),
		tcpRecord("continue", 1000, 2000),
		tcpRecord("close", 5, 0),
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(tel)
	golden(t, "standard.golden", exposition(t, reg))
}

func TestCustomMetrics(t *testing.T) {
	cfg := Config{DisableStandard: true, Metrics: []MetricConfig{
		{Name: "requests_by_method_total", Kind: "counter", Labels: []LabelConfig{
			{Name: "method", Attribute: "request.method"},
			{Name: "ua", Attribute: "request.headers[user-agent] | request.useragent", Default: "none"},
		}},
		{Name: "request_size_bytes", Kind: "histogram", Value: "request.size", Buckets: []float64{100, 1000}, Protocols: []string{"http"},
			Labels: []LabelConfig{{Name: "dest_ip", Attribute: "destination.ip"}}},
		{Name: "last_response_code", Kind: "gauge", Value: "response.code"},
	}}
	tel := newTelemetry(t, cfg, nil)
	tel.Record(httpRecord(404, time.Millisecond))
	tel.Record(attributes.BagOf(map[string]attributes.Value{
		attributes.RequestMethod:   attributes.String("POST"),
		attributes.RequestHeaders:  attributes.StringMapValue(attributes.StringMapOf(map[string]string{"user-agent": "curl/8"})),
		attributes.RequestSize:     attributes.Int64(5000),
		attributes.ContextProtocol: attributes.String("grpc"),
	}))
	want := `
# HELP last_response_code Custom metric last_response_code.
# TYPE last_response_code gauge
last_response_code 404
# HELP request_size_bytes Custom metric request_size_bytes.
# TYPE request_size_bytes histogram
request_size_bytes_bucket{dest_ip="10.0.0.7",le="100"} 0
request_size_bytes_bucket{dest_ip="10.0.0.7",le="1000"} 1
request_size_bytes_bucket{dest_ip="10.0.0.7",le="+Inf"} 1
request_size_bytes_sum{dest_ip="10.0.0.7"} 120
request_size_bytes_count{dest_ip="10.0.0.7"} 1
# HELP requests_by_method_total Custom metric requests_by_method_total.
# TYPE requests_by_method_total counter
requests_by_method_total{method="GET",ua="none"} 1
requests_by_method_total{method="POST",ua="curl/8"} 1
`
	if err := testutil.CollectAndCompare(tel, strings.NewReader(want), "last_response_code", "request_size_bytes", "requests_by_method_total"); err != nil {
		t.Error(err)
	}
}

func TestSeriesLimitAndExpiry(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	cfg := Config{DisableStandard: true, MaxSeriesPerMetric: 2, SeriesExpiry: config.Duration(time.Minute),
		Metrics: []MetricConfig{{Name: "by_path_total", Kind: "counter", Labels: []LabelConfig{{Name: "path", Attribute: "request.path"}}}}}
	tel := newTelemetry(t, cfg, c.Now)
	rec := func(p string) {
		tel.Record(attributes.BagOf(map[string]attributes.Value{attributes.RequestPath: attributes.String(p)}))
	}
	rec("/a")
	rec("/b")
	rec("/c") // over the limit
	rec("/c")
	rec("/a")
	want := `
# HELP by_path_total Custom metric by_path_total.
# TYPE by_path_total counter
by_path_total{path="/a"} 2
by_path_total{path="/b"} 1
# HELP remora_mixer_telemetry_series Series currently held per telemetry metric.
# TYPE remora_mixer_telemetry_series gauge
remora_mixer_telemetry_series{metric="by_path_total"} 2
# HELP remora_mixer_telemetry_series_overflow_total Observations dropped because the metric reached max_series_per_metric.
# TYPE remora_mixer_telemetry_series_overflow_total counter
remora_mixer_telemetry_series_overflow_total{metric="by_path_total"} 2
`
	if err := testutil.CollectAndCompare(tel, strings.NewReader(want), "by_path_total", "remora_mixer_telemetry_series", "remora_mixer_telemetry_series_overflow_total"); err != nil {
		t.Fatal(err)
	}
	c.Advance(45 * time.Second)
	rec("/b")
	c.Advance(30 * time.Second) // /a idle 75s, /b idle 30s
	rec("/c")                   // room again after expiry? not yet: expiry runs on collect
	want = `
# HELP by_path_total Custom metric by_path_total.
# TYPE by_path_total counter
by_path_total{path="/b"} 2
# HELP remora_mixer_telemetry_series_expired_total Series removed after series_expiry without updates.
# TYPE remora_mixer_telemetry_series_expired_total counter
remora_mixer_telemetry_series_expired_total{metric="by_path_total"} 1
`
	if err := testutil.CollectAndCompare(tel, strings.NewReader(want), "by_path_total", "remora_mixer_telemetry_series_expired_total"); err != nil {
		t.Fatal(err)
	}
	rec("/c")
	want = `
# HELP by_path_total Custom metric by_path_total.
# TYPE by_path_total counter
by_path_total{path="/b"} 2
by_path_total{path="/c"} 1
`
	if err := testutil.CollectAndCompare(tel, strings.NewReader(want), "by_path_total"); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidUTF8Label(t *testing.T) {
	cfg := Config{DisableStandard: true, Metrics: []MetricConfig{{Name: "p_total", Kind: "counter", Labels: []LabelConfig{
		{Name: "a", Attribute: "request.path"}, {Name: "b", Attribute: "request.host"}}}}}
	tel := newTelemetry(t, cfg, nil)
	tel.Record(attributes.BagOf(map[string]attributes.Value{
		attributes.RequestPath: attributes.String("x\xffy"), attributes.RequestHost: attributes.String("h\xff")}))
	want := "# HELP p_total Custom metric p_total.\n# TYPE p_total counter\np_total{a=\"x\uFFFDy\",b=\"h\uFFFD\"} 1\n"
	if err := testutil.CollectAndCompare(tel, strings.NewReader(want), "p_total"); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentRecordAndCollect(t *testing.T) {
	tel := newTelemetry(t, Config{}, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(tel)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				tel.Record(httpRecord(int64(200+(g*i)%5), time.Duration(i)*time.Millisecond))
			}
		}()
	}
	for range 5 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if got := testutil.ToFloat64(prometheusSum(t, reg, RequestsTotal)); got != 800 {
		t.Fatalf("requests total = %v, want 800", got)
	}
}

// prometheusSum returns a gauge holding the sum of a counter's series.
func prometheusSum(t *testing.T, reg *prometheus.Registry, name string) prometheus.Gauge {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sum"})
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				g.Add(m.GetCounter().GetValue())
			}
		}
	}
	return g
}
