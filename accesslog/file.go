package accesslog

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/remora-mesh/remora/accesslog/format"
	"github.com/remora-mesh/remora/proxy/filter"
)

// fileSink renders lines into a bounded buffer that its writer goroutine
// appends to the file.
type fileSink struct {
	path       string
	formatter  *format.Formatter
	logger     *zap.Logger
	m          sinkMetrics
	maxBytes   int
	flushBytes int
	interval   time.Duration

	mu     sync.Mutex
	buf    []byte // lines waiting for the writer
	lines  int
	closed bool

	kick chan struct{}    // buffer reached flushBytes
	reqs chan fileRequest // served by the writer goroutine
	done chan struct{}    // closed when the writer goroutine exits

	// Owned by the writer goroutine.
	f       *os.File
	spare   []byte
	limiter logLimiter
	onFlush func(byTimer bool)
}

type fileOp uint8

const (
	opFlush fileOp = iota
	opReopen
	opClose
)

type fileRequest struct {
	op    fileOp
	reply chan error
}

// linePool holds render buffers: a line is formatted outside the lock and
// then copied into the shared buffer.
var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func newFileSink(name string, cfg *FileConfig, opts Options) (*fileSink, error) {
	fm, err := cfg.formatter()
	if err != nil {
		return nil, err
	}
	f, err := openLog(cfg.Path)
	if err != nil {
		return nil, err
	}
	s := &fileSink{
		path:       cfg.Path,
		formatter:  fm,
		logger:     opts.Logger.Named("accesslog").With(zap.String("sink", name), zap.String("path", cfg.Path)),
		m:          opts.Metrics.forSink(name),
		maxBytes:   cfg.BufferBytes,
		flushBytes: cfg.FlushBytes,
		interval:   cfg.FlushInterval.D(),
		kick:       make(chan struct{}, 1),
		reqs:       make(chan fileRequest),
		done:       make(chan struct{}),
		f:          f,
		limiter:    logLimiter{every: 10 * time.Second},
		onFlush:    opts.onFlush,
	}
	go s.run()
	return s, nil
}

func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open access log: %w", err)
	}
	return f, nil
}

func (s *fileSink) log(info *filter.StreamInfo) {
	bp := linePool.Get().(*[]byte)
	line := s.formatter.Append((*bp)[:0], info)
	s.mu.Lock()
	if s.closed || len(s.buf)+len(line) > s.maxBytes {
		s.mu.Unlock()
		s.m.logsDropped.Inc()
	} else {
		s.buf = append(s.buf, line...)
		s.lines++
		n := len(s.buf)
		s.mu.Unlock()
		s.m.writeBuffered.Inc()
		s.m.bufferedBytes.Add(float64(len(line)))
		if n >= s.flushBytes {
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
	}
	if cap(line) <= 64<<10 {
		*bp = line[:0]
		linePool.Put(bp)
	}
}

func (s *fileSink) run() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if s.write() {
				s.m.flushedByTimer.Inc()
				s.flushed(true)
			}
		case <-s.kick:
			if s.write() {
				s.m.flushedBySize.Inc()
				s.flushed(false)
			}
		case r := <-s.reqs:
			s.write()
			var err error
			switch r.op {
			case opReopen:
				err = s.reopenFile()
			case opClose:
				if s.f != nil {
					err = s.f.Close()
					s.f = nil
				}
			}
			r.reply <- err
			if r.op == opClose {
				return
			}
		}
	}
}

func (s *fileSink) flushed(byTimer bool) {
	if s.onFlush != nil {
		s.onFlush(byTimer)
	}
}

// write takes the buffered lines and appends them to the file, reporting
// whether there was anything to write.
func (s *fileSink) write() bool {
	s.mu.Lock()
	data, lines := s.buf, s.lines
	s.buf, s.lines = s.spare[:0], 0
	s.mu.Unlock()
	s.spare = data
	if len(data) == 0 {
		return false
	}
	s.m.bufferedBytes.Sub(float64(len(data)))
	if s.f == nil {
		// A failed reopen left no file: try again before giving up.
		if err := s.reopenFile(); err != nil {
			s.m.writeFailed.Inc()
			s.m.logsDropped.Add(float64(lines))
			return true
		}
	}
	if _, err := s.f.Write(data); err != nil {
		s.m.writeFailed.Inc()
		s.m.logsDropped.Add(float64(lines))
		if ok, n := s.limiter.allow(time.Now()); ok {
			s.logger.Warn("access log write failed", zap.Error(err), zap.Int("lines_dropped", lines), zap.Int("reports_suppressed", n))
		}
		return true
	}
	s.m.writeCompleted.Inc()
	s.m.logsWritten.Add(float64(lines))
	return true
}

// reopenFile opens the path afresh and closes the old file once the new
// one is open; on failure the old file (if any) stays in use.
func (s *fileSink) reopenFile() error {
	f, err := openLog(s.path)
	if err != nil {
		s.m.reopenFailed.Inc()
		if ok, n := s.limiter.allow(time.Now()); ok {
			s.logger.Warn("access log reopen failed", zap.Error(err), zap.Int("reports_suppressed", n))
		}
		return fmt.Errorf("accesslog: reopen %s: %w", s.path, err)
	}
	if s.f != nil {
		if err := s.f.Close(); err != nil {
			s.logger.Debug("closing rotated access log", zap.Error(err))
		}
	}
	s.f = f
	return nil
}

func (s *fileSink) call(ctx context.Context, op fileOp) error {
	r := fileRequest{op: op, reply: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-s.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *fileSink) flush(ctx context.Context) error { return s.call(ctx, opFlush) }

func (s *fileSink) reopen() error { return s.call(context.Background(), opReopen) }

func (s *fileSink) close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.call(ctx, opClose)
	if err == ErrClosed {
		return nil
	}
	return err
}
