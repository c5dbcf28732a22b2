// Package telemetry turns Report records (attribute bags) into Prometheus
// metrics: Istio's standard mesh metrics (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes,
// istio_response_bytes and the istio_tcp_* family) plus metrics defined in
// configuration.
//
// Records enter through (*Telemetry).RecordRows, called by the Report
// handler with the rows an attributes.ProjectionDecoder produced for
// (*Telemetry).Projection (only the attributes the metrics read), or as
// bags through Record and RecordBatch (Envoy access logs); metrics leave
// through the Telemetry's prometheus.Collector methods when /metrics is
// scraped.
//
// The metrics are not client_golang vectors. Each metric keeps its own
// series map keyed by a hash of the label values, because the server must
// bound it two ways a vector cannot: a per-metric series limit (a record that
// would create one series too many is counted in
// remora_mixer_telemetry_series_overflow_total instead) and expiry of series
// that have not been updated for a while (a vector can delete a series with
// DeleteLabelValues, but it cannot tell which series are idle, and every
// WithLabelValues call allocates its variadic slice and re-validates the
// label values). On the hot path a record's label values are written into a
// pooled byte buffer, hashed with hash/maphash, and the series found in a
// per-batch cache or a lock-free map and updated with atomic operations: no
// allocation unless the series is new.
package telemetry
