package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	alsv3 "github.com/remora-mesh/remora/proto/envoy/service/accesslog/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/remora-mesh/remora/accesslog"
	"github.com/remora-mesh/remora/accesslog/als"
	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/proxy/filter"
)

// alsService implements envoy.service.accesslog.v3.AccessLogService: every
// entry of a stream becomes the attribute bag a Report of the same request
// carries (see als.HTTPAttributes and als.TCPAttributes) and is recorded by
// telemetry, so Envoy's access logs feed the same Istio metrics as the
// sidecar's reports.
type alsService struct {
	alsv3.UnimplementedAccessLogServiceServer
	s       *Server
	kind    string             // default reporter kind
	file    *accesslog.Handler // optional file sink; nil without one
	metrics *alsMetrics
	infos   sync.Pool // *filter.StreamInfo, for the file sink

	// stopping is closed when the server stops: streams end at once
	// (UNAVAILABLE, so that Envoy reconnects elsewhere) instead of holding
	// the graceful stop for its whole timeout, as Envoy never closes them.
	stopping chan struct{}
	stopOnce sync.Once
	// onMessage, for tests, runs after each message is recorded.
	onMessage func()
}

// ALS entry types and results of remora_mixer_als_entries_total.
const (
	alsHTTP = "http"
	alsTCP  = "tcp"

	alsOK        = "ok"        // recorded by telemetry
	alsMalformed = "malformed" // skipped, counted as a decode error
	alsSkipped   = "skipped"   // a periodic or start-of-request entry
)

// alsMetrics counts entries by type and result.
type alsMetrics struct {
	entries *prometheus.CounterVec
	streams prometheus.Counter
	bound   map[[2]string]prometheus.Counter
}

func newALSMetrics() *alsMetrics {
	m := &alsMetrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remora_mixer_als_entries_total",
			Help: "Envoy access-log entries received, by type (http, tcp) and result (ok, malformed, skipped).",
		}, []string{"type", "result"}),
		streams: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "remora_mixer_als_streams_total", Help: "StreamAccessLogs streams opened.",
		}),
		bound: map[[2]string]prometheus.Counter{},
	}
	for _, t := range []string{alsHTTP, alsTCP} {
		for _, r := range []string{alsOK, alsMalformed, alsSkipped} {
			m.bound[[2]string{t, r}] = m.entries.WithLabelValues(t, r)
		}
	}
	return m
}

func (m *alsMetrics) add(typ, result string, n int) {
	if n > 0 {
		m.bound[[2]string{typ, result}].Add(float64(n))
	}
}

// Describe implements prometheus.Collector.
func (m *alsMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.entries.Describe(ch)
	m.streams.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *alsMetrics) Collect(ch chan<- prometheus.Metric) {
	m.entries.Collect(ch)
	m.streams.Collect(ch)
}

// newALSService builds the service of cfg, registering its metrics (and
// the file sink's) on reg. The caller closes the returned service.
func newALSService(s *Server, cfg AccessLogServiceConfig, reg prometheus.Registerer) (*alsService, error) {
	a := &alsService{s: s, kind: cfg.DefaultReporterKind, metrics: newALSMetrics(), stopping: make(chan struct{})}
	a.infos.New = func() any { return new(filter.StreamInfo) }
	if err := reg.Register(a.metrics); err != nil {
		return nil, fmt.Errorf("mixer: registering access-log service metrics: %w", err)
	}
	if cfg.File != nil {
		m, err := accesslog.NewMetrics(reg)
		if err != nil {
			reg.Unregister(a.metrics)
			return nil, fmt.Errorf("mixer: access_log_service.file: %w", err)
		}
		a.file, err = accesslog.New(accesslog.Config{Name: "access_log_service", Type: accesslog.TypeFile, File: cfg.File},
			accesslog.Options{Logger: s.log.Named("als"), Metrics: m})
		if err != nil {
			reg.Unregister(a.metrics)
			return nil, fmt.Errorf("mixer: access_log_service.file: %w", err)
		}
	}
	return a, nil
}

// stop ends the streams in progress and refuses new ones.
func (a *alsService) stop() { a.stopOnce.Do(func() { close(a.stopping) }) }

// close flushes and closes the file sink.
func (a *alsService) close(ctx context.Context) error {
	if a == nil || a.file == nil {
		return nil
	}
	return a.file.Close(ctx)
}

// StreamAccessLogs records the entries of every message of the stream.
// The identifier of the first message (later ones normally omit it; one
// that carries an identifier replaces it) describes the reporting proxy.
// A malformed entry is skipped and counted; the stream goes on. The
// stream ends with an empty response when the client closes it, and with
// UNAVAILABLE when the server stops.
func (a *alsService) StreamAccessLogs(stream alsv3.AccessLogService_StreamAccessLogsServer) error {
	s := a.s
	a.metrics.streams.Inc()
	// The caller's verified identity is the server's to set, as on Check.
	var extra attributes.Bag
	var drop []string
	if p := peerPrincipal(stream.Context()); p != "" {
		extra = attributes.BagOf(map[string]attributes.Value{s.principalAttr: attributes.String(p)})
	} else {
		drop = []string{s.principalAttr}
	}
	id := als.NewIdentity(nil, a.kind, extra, drop...)
	// Recv runs on its own goroutine so that the stream can end when the
	// server stops; it exits when the stream's context ends, which
	// returning from this handler guarantees.
	msgs := make(chan *alsv3.StreamAccessLogsMessage)
	errc := make(chan error, 1)
	ctx := stream.Context()
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()
	var bags []attributes.Bag
	for {
		var msg *alsv3.StreamAccessLogsMessage
		select {
		case msg = <-msgs:
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				return stream.SendAndClose(&alsv3.StreamAccessLogsResponse{})
			}
			return err
		case <-a.stopping:
			return status.Error(codes.Unavailable, "mixer: access-log service: server stopping")
		}
		if ident := msg.GetIdentifier(); ident != nil {
			id = als.NewIdentity(ident, a.kind, extra, drop...)
		}
		bags = bags[:0]
		switch {
		case msg.GetHttpLogs() != nil:
			bags = a.http(msg.GetHttpLogs(), id, bags)
		case msg.GetTcpLogs() != nil:
			bags = a.tcp(msg.GetTcpLogs(), id, bags)
		}
		if len(bags) > 0 {
			s.tel.RecordBatch(bags)
		}
		clear(bags) // do not pin the previous message's bags
		if a.onMessage != nil {
			a.onMessage()
		}
	}
}

func (a *alsService) http(logs *alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries, id *als.Identity, bags []attributes.Bag) []attributes.Bag {
	var skipped, bad int
	for i, e := range logs.GetLogEntry() {
		bag, err := als.HTTPAttributes(e, id)
		if err != nil {
			if errors.Is(err, als.ErrSkipped) {
				skipped++
				continue
			}
			bad++
			a.s.log.Debug("malformed access-log entry", zap.String("type", alsHTTP), zap.Int("index", i), zap.Error(err))
			continue
		}
		bags = append(bags, bag)
		if a.file != nil {
			info := a.infos.Get().(*filter.StreamInfo)
			als.HTTPStreamInfo(e, info)
			a.file.Log(info)
			*info = filter.StreamInfo{}
			a.infos.Put(info)
		}
	}
	a.count(alsHTTP, len(bags), skipped, bad)
	return bags
}

func (a *alsService) tcp(logs *alsv3.StreamAccessLogsMessage_TCPAccessLogEntries, id *als.Identity, bags []attributes.Bag) []attributes.Bag {
	var skipped, bad int
	for i, e := range logs.GetLogEntry() {
		bag, err := als.TCPAttributes(e, id)
		if err != nil {
			if errors.Is(err, als.ErrSkipped) {
				skipped++
				continue
			}
			bad++
			a.s.log.Debug("malformed access-log entry", zap.String("type", alsTCP), zap.Int("index", i), zap.Error(err))
			continue
		}
		bags = append(bags, bag)
		if a.file != nil {
			info := a.infos.Get().(*filter.StreamInfo)
			als.TCPStreamInfo(e, info)
			a.file.Log(info)
			*info = filter.StreamInfo{}
			a.infos.Put(info)
		}
	}
	a.count(alsTCP, len(bags), skipped, bad)
	return bags
}

func (a *alsService) count(typ string, ok, skipped, bad int) {
	a.metrics.add(typ, alsOK, ok)
	a.metrics.add(typ, alsSkipped, skipped)
	a.metrics.add(typ, alsMalformed, bad)
	if bad > 0 {
		a.s.metrics.decodeErrors.WithLabelValues("als").Add(float64(bad))
	}
}
