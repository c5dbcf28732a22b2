package server

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// metrics are the server's own metrics. They are registered on the
// injected registry as one collector.
type metrics struct {
	started  *prometheus.CounterVec
	handled  *prometheus.CounterVec
	handling *prometheus.HistogramVec

	decisions    *prometheus.CounterVec
	decodeErrors *prometheus.CounterVec
	records      prometheus.Counter
	quotas       *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	inflight     prometheus.Gauge

	// decided holds the decision counters by api and result, bound once.
	decided map[[2]string]prometheus.Counter

	// methods caches the label-bound metrics of each full method name so
	// the interceptor neither splits strings nor hashes labels per call.
	methods sync.Map // string -> *methodMetrics
}

type methodMetrics struct {
	started  prometheus.Counter
	handling prometheus.Observer
	handled  [17]prometheus.Counter // by codes.Code
}

func newMetrics() *metrics {
	m := &metrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total", Help: "Total number of RPCs started on the server.",
		}, []string{"grpc_type", "grpc_service", "grpc_method"}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total", Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, []string{"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "grpc_server_handling_seconds", Help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"grpc_type", "grpc_service", "grpc_method"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remora_mixer_check_decisions_total", Help: "Check decisions by API and result (allow, deny, error).",
		}, []string{"api", "result"}),
		decodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remora_mixer_decode_errors_total", Help: "Requests rejected as malformed, by API.",
		}, []string{"api"}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "remora_mixer_report_records_total", Help: "Report records ingested into telemetry.",
		}),
		quotas: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remora_mixer_quota_results_total", Help: "Quota allocations by quota and outcome (granted, partial, exhausted, unknown).",
		}, []string{"quota", "outcome"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remora_mixer_overload_rejected_total", Help: "RPCs answered RESOURCE_EXHAUSTED because max_inflight_requests were in flight.",
		}, []string{"grpc_method"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "remora_mixer_inflight_requests", Help: "Unary RPCs being handled.",
		}),
		decided: map[[2]string]prometheus.Counter{},
	}
	for _, api := range []string{"mixer", "ext_authz"} {
		for _, result := range []string{"allow", "deny", "error"} {
			m.decided[[2]string{api, result}] = m.decisions.WithLabelValues(api, result)
		}
	}
	return m
}

// decision counts one decision; api and result must be among those bound
// in newMetrics.
func (m *metrics) decision(api, result string) { m.decided[[2]string{api, result}].Inc() }

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.started, m.handled, m.handling, m.decisions, m.decodeErrors, m.records, m.quotas, m.rejected, m.inflight}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// method returns the metrics of fullMethod ("/pkg.Service/Method").
func (m *metrics) method(fullMethod, typ string) *methodMetrics {
	if v, ok := m.methods.Load(fullMethod); ok {
		return v.(*methodMetrics)
	}
	svc, meth := splitMethod(fullMethod)
	mm := &methodMetrics{
		started:  m.started.WithLabelValues(typ, svc, meth),
		handling: m.handling.WithLabelValues(typ, svc, meth),
	}
	for c := range mm.handled {
		mm.handled[c] = m.handled.WithLabelValues(typ, svc, meth, codes.Code(c).String())
	}
	v, _ := m.methods.LoadOrStore(fullMethod, mm)
	return v.(*methodMetrics)
}

func splitMethod(full string) (string, string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}

func (mm *methodMetrics) done(c codes.Code, start time.Time) {
	if int(c) < len(mm.handled) {
		mm.handled[c].Inc()
	}
	mm.handling.Observe(time.Since(start).Seconds())
}
