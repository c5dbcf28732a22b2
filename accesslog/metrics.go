package accesslog

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the counters of every access-log sink of a process, with a
// "sink" label naming the sink (Config.Name). It implements
// prometheus.Collector. One Metrics is shared by all handlers registered on
// the same registry.
type Metrics struct {
	logsWritten    *prometheus.CounterVec
	logsDropped    *prometheus.CounterVec
	writeBuffered  *prometheus.CounterVec
	writeCompleted *prometheus.CounterVec
	writeFailed    *prometheus.CounterVec
	reopenFailed   *prometheus.CounterVec
	flushedByTimer *prometheus.CounterVec
	flushedBySize  *prometheus.CounterVec
	streamsOpened  *prometheus.CounterVec
	streamsFailed  *prometheus.CounterVec
	bufferedBytes  *prometheus.GaugeVec
}

var _ prometheus.Collector = (*Metrics)(nil)

// NewMetrics creates the access-log metrics and registers them on reg. A
// nil reg leaves them unregistered (useful in tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	c := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "remora", Subsystem: "access_log", Name: name + "_total", Help: help,
		}, []string{"sink"})
	}
	m := &Metrics{
		logsWritten:    c("logs_written", "Entries written to the file or sent to the access-log service."),
		logsDropped:    c("logs_dropped", "Entries dropped: buffer full, write failure or handler closed."),
		writeBuffered:  c("write_buffered", "Entries accepted into the sink's buffer."),
		writeCompleted: c("write_completed", "Successful writes (file) or batch sends (gRPC)."),
		writeFailed:    c("write_failed", "Failed writes (file) or batch sends (gRPC)."),
		reopenFailed:   c("reopen_failed", "Failed file reopens."),
		flushedByTimer: c("flushed_by_timer", "Flushes triggered by the flush interval."),
		flushedBySize:  c("flushed_by_size", "Flushes triggered by the buffer reaching the flush size."),
		streamsOpened:  c("streams_opened", "StreamAccessLogs streams opened (gRPC)."),
		streamsFailed:  c("streams_failed", "StreamAccessLogs streams that failed to open or broke (gRPC)."),
		bufferedBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "remora", Subsystem: "access_log", Name: "buffered_bytes",
			Help: "Bytes waiting in the sink's buffer (gRPC: protobuf size of the entries).",
		}, []string{"sink"}),
	}
	if reg != nil {
		if err := reg.Register(m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.logsWritten, m.logsDropped, m.writeBuffered, m.writeCompleted,
		m.writeFailed, m.reopenFailed, m.flushedByTimer, m.flushedBySize, m.streamsOpened,
		m.streamsFailed, m.bufferedBytes}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// sinkMetrics are one sink's children, resolved once so that the hot path
// only increments.
type sinkMetrics struct {
	logsWritten, logsDropped, writeBuffered, writeCompleted, writeFailed,
	reopenFailed, flushedByTimer, flushedBySize, streamsOpened, streamsFailed prometheus.Counter
	bufferedBytes prometheus.Gauge
}

func (m *Metrics) forSink(name string) sinkMetrics {
	return sinkMetrics{
		logsWritten:    m.logsWritten.WithLabelValues(name),
		logsDropped:    m.logsDropped.WithLabelValues(name),
		writeBuffered:  m.writeBuffered.WithLabelValues(name),
		writeCompleted: m.writeCompleted.WithLabelValues(name),
		writeFailed:    m.writeFailed.WithLabelValues(name),
		reopenFailed:   m.reopenFailed.WithLabelValues(name),
		flushedByTimer: m.flushedByTimer.WithLabelValues(name),
		flushedBySize:  m.flushedBySize.WithLabelValues(name),
		streamsOpened:  m.streamsOpened.WithLabelValues(name),
		streamsFailed:  m.streamsFailed.WithLabelValues(name),
		bufferedBytes:  m.bufferedBytes.WithLabelValues(name),
	}
}
