package accesslog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/remora-mesh/remora/internal/sockio"
	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	datav3 "github.com/remora-mesh/remora/proto/envoy/data/accesslog/v3"
	alsv3 "github.com/remora-mesh/remora/proto/envoy/service/accesslog/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/accesslog/als"
	"github.com/remora-mesh/remora/proxy/filter"
)

// grpcSink buffers HTTPAccessLogEntries for a sender goroutine that
// streams them to an Envoy access-log service.
//
// Entries leave the buffer only once Send has accepted them on a healthy
// stream; while the service is unreachable they stay buffered (up to
// MaxBufferBytes) and are sent after reconnecting. Like Envoy's, the
// protocol has no acknowledgements: entries handed to a stream that breaks
// right afterwards can still be lost in transit.
type grpcSink struct {
	cfg      *GRPCConfig
	entryOpt *als.EntryOptions
	logger   *zap.Logger
	m        sinkMetrics
	ident    *alsv3.StreamAccessLogsMessage_Identifier
	conn     *grpc.ClientConn
	client   alsv3.AccessLogServiceClient

	mu           sync.Mutex
	pending      []pendingEntry
	pendingBytes int
	closed       bool

	kick    chan struct{}
	flushes chan chan error
	stop    chan struct{}
	done    chan struct{}
	cancel  context.CancelFunc // cancels the sender's context

	// Owned by the sender goroutine.
	stream       alsv3.AccessLogService_StreamAccessLogsClient
	streamCancel context.CancelFunc
	broken       chan struct{} // closed when the current stream ends
	sendIdent    bool
	retry        time.Duration // current backoff
	nextTry      time.Time
	limiter      logLimiter
	onFlush      func(byTimer bool)
	onState      func(connected bool)
}

// pendingEntry is a buffered HTTP entry, or a TCP entry for a stream
// without an HTTP protocol (tcp_proxy), with its protobuf size.
type pendingEntry struct {
	http *datav3.HTTPAccessLogEntry
	tcp  *datav3.TCPAccessLogEntry
	size int
}

func newGRPCSink(name string, cfg *GRPCConfig, opts Options) (*grpcSink, error) {
	dial := opts.DialOptions
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	dial = append([]grpc.DialOption{grpc.WithContextDialer(sockio.DialContext)}, dial...)
	dial = append(dial, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: backoff.Config{
			BaseDelay:  cfg.ReconnectBaseInterval.D(),
			Multiplier: 1.6,
			Jitter:     0.2,
			MaxDelay:   cfg.ReconnectMaxInterval.D(),
		},
		MinConnectTimeout: 5 * time.Second,
	}))
	conn, err := grpc.NewClient(cfg.Address, dial...)
	if err != nil {
		return nil, fmt.Errorf("access log service %q: %w", cfg.Address, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &grpcSink{
		cfg:      cfg,
		entryOpt: als.NewEntryOptions(cfg.AdditionalRequestHeadersToLog, cfg.AdditionalResponseHeadersToLog, cfg.AdditionalResponseTrailersToLog, cfg.MetadataNamespaces),
		logger:   opts.Logger.Named("accesslog").With(zap.String("sink", name), zap.String("address", cfg.Address)),
		m:        opts.Metrics.forSink(name),
		ident: &alsv3.StreamAccessLogsMessage_Identifier{
			Node:    &corev3.Node{Id: opts.NodeID, Cluster: opts.NodeCluster},
			LogName: cfg.LogName,
		},
		conn:    conn,
		client:  alsv3.NewAccessLogServiceClient(conn),
		kick:    make(chan struct{}, 1),
		flushes: make(chan chan error),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		cancel:  cancel,
		limiter: logLimiter{every: 10 * time.Second},
		onFlush: opts.onFlush,
		onState: opts.onState,
	}
	go s.run(ctx)
	return s, nil
}

func (s *grpcSink) log(info *filter.StreamInfo) {
	var e pendingEntry
	if info.Protocol == filter.ProtocolTCP {
		e.tcp = als.TCPEntry(info, s.entryOpt)
		e.size = proto.Size(e.tcp)
	} else {
		e.http = als.HTTPEntry(info, s.entryOpt)
		e.size = proto.Size(e.http)
	}
	n := e.size
	s.mu.Lock()
	if s.closed || s.pendingBytes+n > s.cfg.MaxBufferBytes {
		s.mu.Unlock()
		s.m.logsDropped.Inc()
		return
	}
	s.pending = append(s.pending, e)
	s.pendingBytes += n
	full := s.pendingBytes >= s.cfg.BufferSizeBytes
	s.mu.Unlock()
	s.m.writeBuffered.Inc()
	s.m.bufferedBytes.Add(float64(n))
	if full {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *grpcSink) run(ctx context.Context) {
	defer close(s.done)
	ticker := time.NewTicker(s.cfg.BufferFlushInterval.D())
	defer ticker.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	var waiters []chan error // Flush calls waiting for an empty buffer
	for {
		var broken chan struct{}
		if s.stream != nil {
			broken = s.broken
		}
		trigger := ""
		select {
		case <-ticker.C:
			trigger = "timer"
		case <-s.kick:
			trigger = "size"
		case <-retry.C:
			trigger = "retry"
		case w := <-s.flushes:
			waiters = append(waiters, w)
			trigger = "flush"
		case <-broken:
			s.streamEnded(nil)
			trigger = "retry"
		case <-s.stop:
			s.shutdown(ctx, waiters)
			return
		}
		sent, err := s.sendAll(ctx)
		if sent {
			switch trigger {
			case "timer":
				s.m.flushedByTimer.Inc()
			case "size":
				s.m.flushedBySize.Inc()
			}
			if s.onFlush != nil {
				s.onFlush(trigger == "timer")
			}
		}
		if err == nil {
			for _, w := range waiters {
				w <- nil
			}
			waiters = waiters[:0]
		} else if s.hasPending() {
			// Try again when the backoff allows.
			retry.Reset(max(time.Until(s.nextTry), time.Millisecond))
		}
	}
}

func (s *grpcSink) hasPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) > 0
}

// sendAll sends every buffered entry in batches, opening a stream if
// needed. It reports whether anything was sent, and an error if entries
// remain because the service is unreachable.
func (s *grpcSink) sendAll(ctx context.Context) (bool, error) {
	sent := false
	for {
		// A message carries HTTP or TCP entries: take the leading run of
		// one kind, up to the message size limit.
		s.mu.Lock()
		n, bytes := 0, 0
		var httpBatch []*datav3.HTTPAccessLogEntry
		var tcpBatch []*datav3.TCPAccessLogEntry
		for n < len(s.pending) && (n == 0 || bytes+s.pending[n].size <= DefaultGRPCMaxMessageBytes) {
			e := &s.pending[n]
			if n > 0 && (e.http == nil) != (s.pending[0].http == nil) {
				break
			}
			if e.http != nil {
				httpBatch = append(httpBatch, e.http)
			} else {
				tcpBatch = append(tcpBatch, e.tcp)
			}
			bytes += e.size
			n++
		}
		s.mu.Unlock()
		if n == 0 {
			return sent, nil
		}
		if err := s.ensureStream(ctx); err != nil {
			return sent, err
		}
		msg := &alsv3.StreamAccessLogsMessage{}
		if httpBatch != nil {
			msg.LogEntries = &alsv3.StreamAccessLogsMessage_HttpLogs{
				HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: httpBatch},
			}
		} else {
			msg.LogEntries = &alsv3.StreamAccessLogsMessage_TcpLogs{
				TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: tcpBatch},
			}
		}
		if s.sendIdent {
			msg.Identifier = s.ident
		}
		if err := s.stream.Send(msg); err != nil {
			s.m.writeFailed.Inc()
			s.streamEnded(err)
			return sent, err
		}
		s.sendIdent = false
		sent = true
		s.retry = 0
		s.mu.Lock()
		clear(s.pending[:n])
		s.pending = s.pending[n:]
		s.pendingBytes -= bytes
		if len(s.pending) == 0 {
			s.pending = nil // let the consumed backing array go
		}
		s.mu.Unlock()
		s.m.bufferedBytes.Sub(float64(bytes))
		s.m.writeCompleted.Inc()
		s.m.logsWritten.Add(float64(n))
	}
}

// ensureStream opens a StreamAccessLogs stream unless one is open or the
// backoff forbids trying yet.
func (s *grpcSink) ensureStream(ctx context.Context) error {
	if s.stream != nil {
		return nil
	}
	if time.Now().Before(s.nextTry) {
		return errNotConnected
	}
	streamCtx, cancel := context.WithCancel(ctx)
	st, err := s.client.StreamAccessLogs(streamCtx)
	if err != nil {
		cancel()
		s.m.streamsFailed.Inc()
		s.backoff(err)
		return errNotConnected
	}
	s.stream, s.streamCancel, s.sendIdent = st, cancel, true
	broken := make(chan struct{})
	s.broken = broken
	go func() {
		// The service answers only when the stream ends.
		var resp alsv3.StreamAccessLogsResponse
		_ = st.RecvMsg(&resp)
		cancel()
		close(broken)
	}()
	s.m.streamsOpened.Inc()
	if s.onState != nil {
		s.onState(true)
	}
	return nil
}

// streamEnded forgets a broken stream and schedules a reconnect.
func (s *grpcSink) streamEnded(err error) {
	if s.stream == nil {
		return
	}
	s.streamCancel() // ends the receiving goroutine if it still waits
	s.stream = nil
	s.m.streamsFailed.Inc()
	if err == nil {
		err = errors.New("stream closed by the service")
	}
	s.backoff(err)
	if s.onState != nil {
		s.onState(false)
	}
}

// backoff schedules the next connection attempt: exponential with full
// jitter between half and all of the current interval.
func (s *grpcSink) backoff(err error) {
	base, limit := s.cfg.ReconnectBaseInterval.D(), s.cfg.ReconnectMaxInterval.D()
	if s.retry == 0 {
		s.retry = base
	} else {
		s.retry = min(s.retry*2, limit)
	}
	wait := s.retry/2 + rand.N(s.retry/2+1)
	s.nextTry = time.Now().Add(wait)
	if ok, n := s.limiter.allow(time.Now()); ok {
		s.logger.Warn("access log service unavailable, buffering", zap.Error(err),
			zap.Duration("retry_in", wait), zap.Int("reports_suppressed", n))
	}
}

// shutdown sends what it can (until ctx is cancelled by close's deadline),
// ends the stream cleanly and counts what is left as dropped.
func (s *grpcSink) shutdown(ctx context.Context, waiters []chan error) {
	s.nextTry = time.Time{}
	_, err := s.sendAll(ctx)
	for _, w := range waiters {
		w <- ErrClosed
	}
	if s.stream != nil {
		// Half-close and wait for the service's answer, which the stream's
		// receiving goroutine gets: then the service has read everything.
		if cerr := s.stream.CloseSend(); cerr != nil {
			s.logger.Debug("closing access log stream", zap.Error(cerr))
		}
		select {
		case <-s.broken:
		case <-ctx.Done():
		}
		s.stream = nil
	}
	s.mu.Lock()
	left, bytes := len(s.pending), s.pendingBytes
	s.pending, s.pendingBytes = nil, 0
	s.mu.Unlock()
	if left > 0 {
		s.m.logsDropped.Add(float64(left))
		s.m.bufferedBytes.Sub(float64(bytes))
		s.logger.Warn("access log entries dropped at close", zap.Int("entries", left), zap.Error(err))
	}
}

func (s *grpcSink) flush(ctx context.Context) error {
	w := make(chan error, 1)
	select {
	case s.flushes <- w:
	case <-s.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-w:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *grpcSink) reopen() error { return nil }

func (s *grpcSink) close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	var err error
	select {
	case <-s.done:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancel()
		<-s.done
	}
	s.cancel()
	if cerr := s.conn.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}
