package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	alsv3 "github.com/remora-mesh/remora/proto/envoy/service/accesslog/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/internal/sockio"
	"github.com/remora-mesh/remora/mixer/quota"
	"github.com/remora-mesh/remora/mixer/telemetry"
	"github.com/remora-mesh/remora/policy"
)

// Evaluator decides Check requests; *policy.Engine is the production one.
type Evaluator interface {
	Eval(ctx context.Context, bag attributes.Bag) (*policy.Decision, error)
	// Ready reports whether a policy serves, with a human-readable detail
	// (which also names a failed reload while an older policy serves).
	Ready() (bool, string)
}

// Options are a Server's collaborators.
type Options struct {
	// Logger is the server's logger; nil means no logging.
	Logger *zap.Logger
	// Registry receives every metric and is served on /metrics. Nil means a
	// new registry.
	Registry *prometheus.Registry
	// Evaluator decides Checks; nil means a policy.Engine built from
	// Config.Policy and owned (closed) by the Server.
	Evaluator Evaluator
	// BeforeEval, when set, runs before every policy evaluation with the
	// RPC's context. Tests use it to hold evaluations in flight.
	BeforeEval func(ctx context.Context)
	// Now is the clock of quotas and telemetry expiry; nil means time.Now.
	Now func() time.Time
}

// Server is a configured `remora mixer`. Create it with New, run it with
// Serve or Run, release it with Close.
type Server struct {
	cfg           Config
	log           *zap.Logger
	reg           *prometheus.Registry
	eval          Evaluator
	engine        *policy.Engine // owned, closed by Close
	hook          func(context.Context)
	quotas        *quota.Manager
	tel           *telemetry.Telemetry
	metrics       *metrics
	sem           chan struct{}
	health        *health.Server
	grpc          *grpc.Server
	http          *http.Server
	principalAttr string
	als           *alsService // nil when access_log_service.disabled

	readyMu     sync.Mutex
	ready       bool
	readyDetail string
}

// New builds a server from cfg, which gets its defaults applied and is
// validated. It compiles the policy (unless opts.Evaluator is given).
func New(ctx context.Context, cfg Config, opts Options) (*Server, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mixer: invalid configuration: %w", err)
	}
	s := &Server{
		cfg:           cfg,
		log:           opts.Logger,
		reg:           opts.Registry,
		eval:          opts.Evaluator,
		hook:          opts.BeforeEval,
		metrics:       newMetrics(),
		principalAttr: cfg.GRPC.TLS.PrincipalAttribute,
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("mixer")
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	var err error
	if s.quotas, err = quota.New(cfg.Quotas, s.log.Named("quota"), opts.Now); err != nil {
		return nil, fmt.Errorf("mixer: %w", err)
	}
	if s.tel, err = telemetry.New(cfg.Telemetry, telemetry.Options{Logger: s.log.Named("telemetry"), Now: opts.Now}); err != nil {
		return nil, fmt.Errorf("mixer: %w", err)
	}
	creds, err := serverCredentials(cfg.GRPC.TLS, s.log.Named("tls"))
	if err != nil {
		return nil, err
	}
	for _, c := range []prometheus.Collector{s.metrics, s.tel} {
		if err := s.reg.Register(c); err != nil {
			return nil, fmt.Errorf("mixer: registering metrics: %w", err)
		}
	}
	if s.eval == nil {
		s.engine, err = policy.New(ctx, cfg.Policy, policy.Options{Logger: s.log, Registry: s.reg})
		if err != nil {
			s.reg.Unregister(s.metrics)
			s.reg.Unregister(s.tel)
			return nil, fmt.Errorf("mixer: %w", err)
		}
		s.eval = s.engine
	}
	if !cfg.AccessLogService.Disabled {
		if s.als, err = newALSService(s, cfg.AccessLogService, s.reg); err != nil {
			s.reg.Unregister(s.metrics)
			s.reg.Unregister(s.tel)
			s.Close()
			return nil, err
		}
	}
	if n := cfg.GRPC.MaxInflightRequests; n > 0 {
		s.sem = make(chan struct{}, n)
	}

	g := cfg.GRPC
	kp := keepalive.ServerParameters{
		Time:                  g.Keepalive.Time.D(),
		Timeout:               g.Keepalive.Timeout.D(),
		MaxConnectionIdle:     g.Keepalive.MaxConnectionIdle.D(),
		MaxConnectionAge:      g.Keepalive.MaxConnectionAge.D(),
		MaxConnectionAgeGrace: g.Keepalive.MaxConnectionAgeGrace.D(),
	}
	sopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(g.MaxRecvMessageSize),
		grpc.MaxSendMsgSize(g.MaxSendMessageSize),
		grpc.MaxConcurrentStreams(g.MaxConcurrentStreams),
		grpc.KeepaliveParams(kp),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: g.Keepalive.MinTime.D(), PermitWithoutStream: g.Keepalive.PermitWithoutStream}),
		grpc.ChainUnaryInterceptor(s.unaryMetrics, s.unaryLimit),
		grpc.ChainStreamInterceptor(s.streamMetrics),
		grpc.ForceServerCodecV2(newServerCodec()), // see mixer.go: Report decoding
		// Run RPCs on reusable worker goroutines instead of one new
		// goroutine per stream, whose stack OPA's recursive evaluator grows
		// anew every time (grpc starts a new goroutine when every worker
		// is busy). RPCs are CPU-bound, so all of a busy server's callers
		// are in a handler at once: one worker per core (the old setting)
		// left most RPCs growing fresh stacks, 30 % of the CPU of uncached
		// Checks under 16 callers.
		grpc.NumStreamWorkers(uint32(streamWorkersPerCore * runtime.GOMAXPROCS(0))),
	}
	if creds != nil {
		sopts = append(sopts, grpc.Creds(creds))
	}
	s.grpc = grpc.NewServer(sopts...)
	registerMixer(s.grpc, &mixerService{s: s})
	registerAuthz(s.grpc, &authzService{s: s})
	if s.als != nil {
		alsv3.RegisterAccessLogServiceServer(s.grpc, s.als)
	}
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.http = &http.Server{Handler: s.monitoringHandler(), ReadHeaderTimeout: 10 * time.Second}
	s.updateReadiness()
	return s, nil
}

// healthServices are the names the health service reports on; "" is the
// whole server.
var healthServices = []string{"", "istio.mixer.v1.Mixer", "envoy.service.auth.v3.Authorization"}

// updateReadiness polls the evaluator and publishes its state to the
// health service and /readyz.
func (s *Server) updateReadiness() {
	ok, detail := s.eval.Ready()
	s.readyMu.Lock()
	changed := ok != s.ready || detail != s.readyDetail
	s.ready, s.readyDetail = ok, detail
	s.readyMu.Unlock()
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range healthServices {
		s.health.SetServingStatus(name, st)
	}
	if changed {
		s.log.Info("readiness changed", zap.Bool("ready", ok), zap.String("detail", detail))
	}
}

// Readiness returns the last readiness state and detail.
func (s *Server) Readiness() (bool, string) {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	return s.ready, s.readyDetail
}

// Run listens on the configured addresses and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	gl, err := net.Listen("tcp", s.cfg.GRPC.Address)
	if err != nil {
		return fmt.Errorf("mixer: grpc listener: %w", err)
	}
	ml, err := net.Listen("tcp", s.cfg.Monitoring.Address)
	if err != nil {
		gl.Close()
		return fmt.Errorf("mixer: monitoring listener: %w", err)
	}
	return s.Serve(ctx, gl, ml)
}

// readinessInterval is how often the policy's readiness is polled.
const readinessInterval = time.Second

// streamWorkersPerCore is the number of gRPC worker goroutines per core.
// Idle workers cost little: the collector shrinks their stacks.
const streamWorkersPerCore = 32

// Serve serves gRPC on grpcLis and monitoring HTTP on monLis until ctx is
// done, then stops gracefully: health turns NOT_SERVING, new RPCs are
// refused, RPCs in flight finish within grpc.shutdown_timeout and are then
// cancelled. It returns nil after a stop caused by ctx, or the error that
// ended a listener. Serve closes both listeners.
func (s *Server) Serve(ctx context.Context, grpcLis, monLis net.Listener) error {
	s.log.Info("serving", zap.String("grpc", grpcLis.Addr().String()), zap.String("monitoring", monLis.Addr().String()),
		zap.Bool("tls", s.cfg.GRPC.TLS.Enabled()))
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(sockio.Listener(grpcLis)) }()
	go func() {
		if err := s.http.Serve(monLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	tick := time.NewTicker(readinessInterval)
	defer tick.Stop()
	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			serveErr = fmt.Errorf("mixer: serve: %w", err)
			break loop
		case <-tick.C:
			s.updateReadiness()
		}
	}
	s.shutdown()
	return serveErr
}

func (s *Server) shutdown() {
	timeout := s.cfg.GRPC.ShutdownTimeout.D()
	s.log.Info("stopping", zap.Duration("timeout", timeout))
	s.health.Shutdown()
	if s.als != nil {
		s.als.stop()
	}
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.log.Warn("graceful stop timed out; cancelling RPCs in flight")
		s.grpc.Stop()
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.http.Close()
	}
	s.log.Info("stopped")
}

// Close releases the policy engine the server built and flushes and
// closes the access-log service's file sink. Call it after Serve returned
// (or instead of Serve).
func (s *Server) Close() error {
	var errs []error
	if s.als != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.GRPC.ShutdownTimeout.D())
		errs = append(errs, s.als.close(ctx))
		cancel()
	}
	if s.engine != nil {
		errs = append(errs, s.engine.Close())
	}
	return errors.Join(errs...)
}
