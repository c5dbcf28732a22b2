package policy

import "github.com/prometheus/client_golang/prometheus"

// metrics are the engine's Prometheus metrics. They implement
// prometheus.Collector and are registered on the injected registry.
type metrics struct {
	evaluations  *prometheus.CounterVec
	evalDuration prometheus.Histogram
	reloads      *prometheus.CounterVec
	lastReload   prometheus.Gauge
	cacheable    prometheus.Gauge
	logDropped   *prometheus.CounterVec

	allow, deny, evalError prometheus.Counter
	reloadOK, reloadFailed prometheus.Counter
	droppedRate, droppedQ  prometheus.Counter
}

var _ prometheus.Collector = (*metrics)(nil)

func newMetrics() *metrics {
	m := &metrics{
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remora_policy_evaluations_total",
			Help: "Policy evaluations by result (allow, deny, error).",
		}, []string{"result"}),
		evalDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "remora_policy_evaluation_duration_seconds",
			Help:    "Time to build the input and evaluate the policy.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1},
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remora_policy_reloads_total",
			Help: "Policy loads and reloads by result (success, failure).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "remora_policy_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful policy load.",
		}),
		cacheable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "remora_policy_cacheable",
			Help: "1 when the serving policy's decisions are cacheable, 0 otherwise.",
		}),
		logDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remora_policy_decision_log_dropped_total",
			Help: "Decision log entries dropped by reason (rate, queue).",
		}, []string{"reason"}),
	}
	m.allow = m.evaluations.WithLabelValues("allow")
	m.deny = m.evaluations.WithLabelValues("deny")
	m.evalError = m.evaluations.WithLabelValues("error")
	m.reloadOK = m.reloads.WithLabelValues("success")
	m.reloadFailed = m.reloads.WithLabelValues("failure")
	m.droppedRate = m.logDropped.WithLabelValues("rate")
	m.droppedQ = m.logDropped.WithLabelValues("queue")
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.evaluations.Describe(ch)
	m.evalDuration.Describe(ch)
	m.reloads.Describe(ch)
	m.lastReload.Describe(ch)
	m.cacheable.Describe(ch)
	m.logDropped.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.evaluations.Collect(ch)
	m.evalDuration.Collect(ch)
	m.reloads.Collect(ch)
	m.lastReload.Collect(ch)
	m.cacheable.Collect(ch)
	m.logDropped.Collect(ch)
}
