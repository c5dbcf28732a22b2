package client

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the client's own metrics, registered on the injected
// registry. Counters are resolved once so that the request path does no
// label lookups.
type metrics struct {
	cacheHits, cacheMisses, cacheEvictions prometheus.Counter
	cacheEntries                           prometheus.GaugeFunc

	checkOK, checkDenied, checkFailOpen, checkFailClose prometheus.Counter
	checkRetries                                        prometheus.Counter

	reportRecordsSent, reportRecordsDropped prometheus.Counter
	reportBatchesSent, reportSendFailures   prometheus.Counter
	reportFlushBySize, reportFlushByTimer   prometheus.Counter
	reportQueueRecords, reportQueueBytes    prometheus.Gauge
	collectors                              []prometheus.Collector
}

func newMetrics(cacheLen func() float64) *metrics {
	m := &metrics{}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "remora", Subsystem: "mixer_client", Name: name, Help: help})
		m.collectors = append(m.collectors, c)
		return c
	}
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "remora", Subsystem: "mixer_client",
		Name: "checks_total", Help: "Check answers by result: ok, denied, fail_open, fail_close."}, []string{"result"})
	m.collectors = append(m.collectors, checks)
	m.checkOK = checks.WithLabelValues("ok")
	m.checkDenied = checks.WithLabelValues("denied")
	m.checkFailOpen = checks.WithLabelValues("fail_open")
	m.checkFailClose = checks.WithLabelValues("fail_close")
	m.checkRetries = counter("check_retries_total", "Check attempts retried after a transport failure.")
	m.cacheHits = counter("check_cache_hits_total", "Checks answered from the decision cache.")
	m.cacheMisses = counter("check_cache_misses_total", "Checks the decision cache could not answer.")
	m.cacheEvictions = counter("check_cache_evictions_total", "Cached decisions evicted to respect the size bound.")
	m.cacheEntries = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "remora", Subsystem: "mixer_client",
		Name: "check_cache_entries", Help: "Decisions in the cache."}, cacheLen)
	m.collectors = append(m.collectors, m.cacheEntries)

	m.reportRecordsSent = counter("report_records_sent_total", "Report records delivered to the server.")
	m.reportRecordsDropped = counter("report_records_dropped_total", "Report records dropped because the queue was full or the client closed before delivering them.")
	m.reportBatchesSent = counter("report_batches_sent_total", "Report batches delivered to the server.")
	m.reportSendFailures = counter("report_send_failures_total", "Report calls that failed (the batch is retried).")
	m.reportFlushBySize = counter("report_flushed_by_size_total", "Batches closed because they reached max_batch_entries.")
	m.reportFlushByTimer = counter("report_flushed_by_timer_total", "Batches closed because max_batch_time passed.")
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "remora", Subsystem: "mixer_client", Name: name, Help: help})
		m.collectors = append(m.collectors, g)
		return g
	}
	m.reportQueueRecords = gauge("report_queue_records", "Report records waiting for delivery.")
	m.reportQueueBytes = gauge("report_queue_bytes", "Approximate size of the report records waiting for delivery.")
	return m
}

// register adds every metric to reg (nil: none).
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
