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
	cacheLookups *prometheus.CounterVec
	cacheRemoved *prometheus.CounterVec
	cacheEntries prometheus.GaugeFunc // set by the engine; nil until then

	allow, deny, evalError prometheus.Counter
	reloadOK, reloadFailed prometheus.Counter
	droppedRate, droppedQ  prometheus.Counter

	cacheHit, cacheMiss                     prometheus.Counter
	cacheEvicted, cacheExpired, cacheUsedUp prometheus.Counter
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
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remora_policy_decision_cache_lookups_total",
			Help: "Server-side decision cache lookups by result (hit, miss).",
		}, []string{"result"}),
		cacheRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remora_policy_decision_cache_removals_total",
			Help: "Server-side decision cache entries removed by reason (evicted: LRU bound, expired: ttl or valid_duration, used_up: valid_use_count).",
		}, []string{"reason"}),
	}
	m.cacheHit = m.cacheLookups.WithLabelValues("hit")
	m.cacheMiss = m.cacheLookups.WithLabelValues("miss")
	m.cacheEvicted = m.cacheRemoved.WithLabelValues("evicted")
	m.cacheExpired = m.cacheRemoved.WithLabelValues("expired")
	m.cacheUsedUp = m.cacheRemoved.WithLabelValues("used_up")
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
	m.cacheLookups.Describe(ch)
	m.cacheRemoved.Describe(ch)
	if m.cacheEntries != nil {
		m.cacheEntries.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.evaluations.Collect(ch)
	m.evalDuration.Collect(ch)
	m.reloads.Collect(ch)
	m.lastReload.Collect(ch)
	m.cacheable.Collect(ch)
	m.logDropped.Collect(ch)
	m.cacheLookups.Collect(ch)
	m.cacheRemoved.Collect(ch)
	if m.cacheEntries != nil {
		m.cacheEntries.Collect(ch)
	}
}
