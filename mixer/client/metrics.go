package client

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the client's own metrics. Counters are resolved once so that
// the request path does no label lookups. Several clients in one process
// (one per listener, say) share the same series: registering a metric that
// already exists reuses it, so the numbers are per process.
type metrics struct {
	cacheHits, cacheMisses, cacheEvictions, cacheCoalesced prometheus.Counter
	cacheEntries                                           prometheus.Gauge

	checkOK, checkDenied, checkFailOpen, checkFailClose prometheus.Counter
	checkRetries                                        prometheus.Counter

	reportRecordsSent, reportRecordsDropped prometheus.Counter
	reportBatchesSent, reportSendFailures   prometheus.Counter
	reportFlushBySize, reportFlushByTimer   prometheus.Counter
	reportQueueRecords, reportQueueBytes    prometheus.Gauge
}

// registerOrReuse registers c on reg, or returns the collector already
// registered under the same description. A nil reg registers nothing.
func registerOrReuse[T prometheus.Collector](reg prometheus.Registerer, c T, errs *[]error) T {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
		*errs = append(*errs, err)
	}
	return c
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var errs []error
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "remora", Subsystem: "mixer_client", Name: name, Help: help}
	}
	counter := func(name, help string) prometheus.Counter {
		return registerOrReuse(reg, prometheus.NewCounter(prometheus.CounterOpts(opts(name, help))), &errs)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return registerOrReuse(reg, prometheus.NewGauge(prometheus.GaugeOpts(opts(name, help))), &errs)
	}
	m := &metrics{}
	checks := registerOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts(opts("checks_total",
		"Check answers by result: ok, denied, fail_open, fail_close.")), []string{"result"}), &errs)
	m.checkOK = checks.WithLabelValues("ok")
	m.checkDenied = checks.WithLabelValues("denied")
	m.checkFailOpen = checks.WithLabelValues("fail_open")
	m.checkFailClose = checks.WithLabelValues("fail_close")
	m.checkRetries = counter("check_retries_total", "Check attempts retried after a transport failure.")
	m.cacheHits = counter("check_cache_hits_total", "Checks answered from the decision cache.")
	m.cacheMisses = counter("check_cache_misses_total", "Checks the decision cache could not answer.")
	m.cacheCoalesced = counter("check_cache_coalesced_total", "Cache misses that waited for another request's server call about the same attribute values instead of making their own.")
	m.cacheEvictions = counter("check_cache_evictions_total", "Cached decisions evicted to respect the size bound.")
	m.cacheEntries = gauge("check_cache_entries", "Decisions in the cache.")

	m.reportRecordsSent = counter("report_records_sent_total", "Report records delivered to the server.")
	m.reportRecordsDropped = counter("report_records_dropped_total", "Report records dropped because the queue was full or the client closed before delivering them.")
	m.reportBatchesSent = counter("report_batches_sent_total", "Report batches delivered to the server.")
	m.reportSendFailures = counter("report_send_failures_total", "Report calls that failed (the batch is retried).")
	m.reportFlushBySize = counter("report_flushed_by_size_total", "Batches closed because they reached max_batch_entries.")
	m.reportFlushByTimer = counter("report_flushed_by_timer_total", "Batches closed because max_batch_time passed.")
	m.reportQueueRecords = gauge("report_queue_records", "Report records waiting for delivery, including the batch being sent.")
	m.reportQueueBytes = gauge("report_queue_bytes", "Approximate size of the report records waiting for delivery.")
	return m, errors.Join(errs...)
}
