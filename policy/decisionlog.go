package policy

import (
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/remora-mesh/remora/attributes"
)

// decisionLog writes sampled decisions to a zap logger from one goroutine,
// behind a rate limit and a bounded queue; what does not fit is dropped
// and counted, never buffered without bound.
type decisionLog struct {
	log     *zap.Logger
	sample  float64
	queue   chan logEntry
	dropped func(reason string)
	done    chan struct{}

	mu       sync.Mutex
	tokens   float64
	rate     float64
	lastFill time.Time
	closed   bool
}

// logEntry is one decision log record. It holds no header values: headers
// carry credentials, and the log must not.
type logEntry struct {
	id         string
	allowed    bool
	status     int
	err        string
	method     string
	path       string
	host       string
	principal  string
	cacheable  bool
	references int
	duration   time.Duration
	revision   string
	at         time.Time
}

func newDecisionLog(log *zap.Logger, cfg DecisionLogConfig, dropped func(reason string)) *decisionLog {
	l := &decisionLog{
		log:      log,
		sample:   cfg.SampleRate,
		queue:    make(chan logEntry, cfg.QueueSize),
		dropped:  dropped,
		done:     make(chan struct{}),
		tokens:   float64(cfg.MaxPerSecond),
		rate:     float64(cfg.MaxPerSecond),
		lastFill: time.Now(),
	}
	go l.run()
	return l
}

// sampled reports whether this decision should be logged.
func (l *decisionLog) sampled() bool {
	return l.sample >= 1 || rand.Float64() < l.sample
}

// offer queues e, or drops and counts it. It never blocks.
func (l *decisionLog) offer(e logEntry) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	// Concurrent evaluations offer slightly out of order; time only moves
	// the bucket forward.
	if now := e.at; now.After(l.lastFill) {
		l.tokens = min(l.rate, l.tokens+now.Sub(l.lastFill).Seconds()*l.rate)
		l.lastFill = now
	}
	if l.tokens < 1 {
		l.mu.Unlock()
		l.dropped("rate")
		return
	}
	l.tokens--
	select {
	case l.queue <- e:
	default:
		l.mu.Unlock()
		l.dropped("queue")
		return
	}
	l.mu.Unlock()
}

func (l *decisionLog) run() {
	defer close(l.done)
	for e := range l.queue {
		fields := []zap.Field{
			zap.String("decision_id", e.id),
			zap.Bool("allowed", e.allowed),
			zap.Duration("duration", e.duration),
			zap.Bool("cacheable", e.cacheable),
			zap.Int("referenced_attributes", e.references),
			zap.String("policy_revision", e.revision),
		}
		if e.status != 0 {
			fields = append(fields, zap.Int("http_status", e.status))
		}
		if e.err != "" {
			fields = append(fields, zap.String("error", e.err))
		}
		for _, f := range []struct{ k, v string }{
			{attributes.RequestMethod, e.method}, {attributes.RequestPath, e.path},
			{attributes.RequestHost, e.host}, {attributes.SourcePrincipal, e.principal},
		} {
			if f.v != "" {
				fields = append(fields, zap.String(f.k, f.v))
			}
		}
		l.log.Info("decision", fields...)
	}
}

// close stops accepting entries, writes those queued and returns.
func (l *decisionLog) close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.queue)
	}
	l.mu.Unlock()
	<-l.done
}
