package accesslog

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/remora-mesh/remora/proxy/filter"
)

// Options carries a handler's dependencies.
type Options struct {
	// Logger receives the sinks' own problems (rate-limited); nil discards.
	Logger *zap.Logger
	// Metrics receives the sink's counters; nil keeps them unregistered.
	Metrics *Metrics
	// NodeID and NodeCluster identify this proxy to access-log services.
	NodeID      string
	NodeCluster string
	// DialOptions are used when dialling an access-log service. When
	// empty the connection is plaintext; when set they must include the
	// transport credentials (grpc.WithTransportCredentials).
	DialOptions []grpc.DialOption

	// onFlush, for tests, is called by a sink's goroutine after a flush
	// that wrote or sent something, with whether the timer triggered it.
	onFlush func(byTimer bool)
	// onState, for tests, is called by a gRPC sink's goroutine when a
	// stream opens (true) or ends (false).
	onState func(connected bool)
}

// sink is where a handler sends the streams its filter accepts.
type sink interface {
	log(info *filter.StreamInfo)
	flush(ctx context.Context) error
	reopen() error
	close(ctx context.Context) error
}

// Handler is one configured access log. It implements
// filter.AccessLogHandler and is safe for concurrent use. Its lifecycle is
// New → Log (many, concurrently) → Close; Flush and Reopen may be called at
// any time in between.
type Handler struct {
	name   string
	filter Filter
	sink   sink
}

var _ filter.AccessLogHandler = (*Handler)(nil)

// New builds a handler from cfg: it applies defaults, validates, compiles
// the filter and format, and starts the sink's goroutine (a file sink opens
// its file now and fails if it cannot). The caller must Close the handler.
func New(cfg Config, opts Options) (*Handler, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate("access_log"); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Metrics == nil {
		m, _ := NewMetrics(nil)
		opts.Metrics = m
	}
	h := &Handler{name: cfg.Name}
	if cfg.Filter != nil {
		h.filter = compileFilter(cfg.Filter)
	}
	var err error
	switch {
	case cfg.File != nil:
		h.sink, err = newFileSink(cfg.Name, cfg.File, opts)
	case cfg.GRPC != nil:
		h.sink, err = newGRPCSink(cfg.Name, cfg.GRPC, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("accesslog: %s: %w", cfg.Name, err)
	}
	return h, nil
}

// Name returns the handler's name (its metrics' sink label).
func (h *Handler) Name() string { return h.name }

// Log records info if the filter accepts it. It never blocks on I/O and
// does not keep info.
func (h *Handler) Log(info *filter.StreamInfo) {
	if h.filter != nil && !h.filter.Match(info) {
		return
	}
	h.sink.log(info)
}

// Flush writes (file) or sends (gRPC) everything buffered so far and waits
// for it, or for ctx. A gRPC sink that cannot reach its service returns the
// context's error, keeping the entries buffered.
func (h *Handler) Flush(ctx context.Context) error { return h.sink.flush(ctx) }

// Reopen closes and reopens a file sink's file (after log rotation: the
// lines logged before Reopen are in the old file, the later ones in the
// new). It is a no-op for other sinks.
func (h *Handler) Reopen() error { return h.sink.reopen() }

// Close flushes what it can within ctx and stops the sink. Later Logs are
// dropped and counted.
func (h *Handler) Close(ctx context.Context) error { return h.sink.close(ctx) }

// logLimiter lets one problem report through per interval and counts the
// ones it suppresses. It is used by a single goroutine.
type logLimiter struct {
	every      time.Duration
	last       time.Time
	suppressed int
}

func (l *logLimiter) allow(now time.Time) (bool, int) {
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
