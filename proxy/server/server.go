package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/hcm"
	"github.com/remora-mesh/remora/proxy/router"
	"github.com/remora-mesh/remora/proxy/tcpproxy"
	"github.com/remora-mesh/remora/proxy/upstream"
	"go.uber.org/zap"
)

// Options are the Server's injected dependencies.
type Options struct {
	// Logs gives each component its logger; nil logs nothing.
	Logs *Logs
	// Registry receives every metric; nil creates a private registry.
	Registry *prometheus.Registry
	// Quit is called by POST /quitquitquit; nil ignores it.
	Quit func()
	// UpstreamDial, when set, opens upstream connections instead of a
	// net.Dialer (tests use it to make connects hang).
	UpstreamDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Server is a built sidecar. Start it, then Drain and Close it.
type Server struct {
	cfg       *config.Bootstrap
	logs      *Logs
	log       *zap.Logger
	reg       *prometheus.Registry
	upstreams *upstream.Manager
	listeners []*listener
	admin     *admin
	closers   []func() error
	reopeners []func() error // access-log files, for SIGUSR1 and POST /reopen_logs
	started   time.Time
	draining  atomic.Bool
	quit      func()
	closeOnce sync.Once
}

// clusterAdapter adapts the upstream manager to router.Upstreams.
type clusterAdapter struct{ m *upstream.Manager }

func (a clusterAdapter) NewStream(ctx context.Context, cluster string, h *filter.HeaderMap, end bool, opts upstream.StreamOptions) (upstream.Stream, error) {
	c := a.m.Cluster(cluster)
	if c == nil {
		return nil, &upstream.Error{Flag: filter.NoClusterFound, Reason: "cluster_not_found", Err: fmt.Errorf("unknown cluster %q", cluster)}
	}
	return c.NewStream(ctx, h, end, opts)
}

// TryAcquireRetry implements router.RetryBudget with the cluster's
// max_retries circuit breaker.
func (a clusterAdapter) TryAcquireRetry(cluster string) bool {
	if c := a.m.Cluster(cluster); c != nil {
		return c.TryAcquireRetry()
	}
	return false
}

// ReleaseRetry implements router.RetryBudget.
func (a clusterAdapter) ReleaseRetry(cluster string) {
	if c := a.m.Cluster(cluster); c != nil {
		c.ReleaseRetry()
	}
}

// RecordTimeout implements router.TimeoutRecorder.
func (a clusterAdapter) RecordTimeout(cluster, host string) {
	if c := a.m.Cluster(cluster); c != nil {
		c.RecordTimeout(host)
	}
}

var (
	_ router.RetryBudget     = clusterAdapter{}
	_ router.TimeoutRecorder = clusterAdapter{}
)

// New builds every component of cfg (which must have passed Parse)
// without opening a socket.
func New(cfg *config.Bootstrap, opts Options) (s *Server, err error) {
	logs := opts.Logs
	if logs == nil {
		logs, _ = NewLogs(nil, "error", nil)
		logs = discardLogs(logs)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s = &Server{cfg: cfg, logs: logs, log: logs.Logger("main").Named("main"), reg: reg, quit: opts.Quit}
	built := s // the named result is nil by the time a failing return's defer runs
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	um, err := upstream.NewManager(cfg.Clusters, upstream.Options{Logger: logs.Logger("upstream"), Registry: reg, DialContext: opts.UpstreamDial})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.upstreams = um
	s.closers = append(s.closers, um.Close)
	rt := router.New(clusterAdapter{um})

	named := map[string]*router.Table{}
	var errs []error
	for i := range cfg.RouteConfigs {
		t, err := router.Compile(&cfg.RouteConfigs[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("route_configs[%d]: %w", i, err))
			continue
		}
		named[cfg.RouteConfigs[i].Name] = t
	}
	hm, err := hcm.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	lm, err := newListenerMetrics(reg)
	if err != nil {
		return nil, err
	}
	var tm *tcpproxy.Metrics // registered only when a chain uses tcp_proxy
	env := filter.Env{Logger: logs.Logger("filter"), Registry: reg, NodeID: cfg.Node.ID, Cluster: cfg.Node.Cluster,
		AddCloser:   func(f func() error) { s.closers = append(s.closers, f) },
		AddReopener: func(f func() error) { s.reopeners = append(s.reopeners, f) }}
	for i := range cfg.Listeners {
		lc := cfg.Listeners[i]
		l := &listener{cfg: lc, inspector: lc.HasListenerFilter(config.ListenerFilterTLSInspector) || needsInspector(lc.FilterChains),
			log: logs.Logger("listener").Named("listener"), metrics: lm}
		if lc.MaxConnections > 0 {
			l.sem = make(chan struct{}, lc.MaxConnections)
		}
		for j := range lc.FilterChains {
			fc := &lc.FilterChains[j]
			p := fmt.Sprintf("listeners[%d].filter_chains[%d]", i, j)
			if fc.TCPProxy != nil {
				if tm == nil {
					if tm, err = tcpproxy.NewMetrics(reg); err != nil {
						return nil, fmt.Errorf("server: %w", err)
					}
				}
				c, err := newTCPChain(fc, lc, um, env, tm)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s.%w", p, err))
					continue
				}
				s.closers = append(s.closers, c.tcp.Close)
				l.chains = append(l.chains, c)
				continue
			}
			h := fc.HTTPConnectionManager
			var table *router.Table
			if h.RouteConfig != nil {
				table, err = router.Compile(h.RouteConfig)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s.http_connection_manager.route_config: %w", p, err))
					continue
				}
			} else if table = named[h.RouteConfigName]; table == nil {
				errs = append(errs, fmt.Errorf("%s.http_connection_manager.route_config_name: unknown route config %q", p, h.RouteConfigName))
				continue
			}
			m, err := hcm.New(h, hcm.Options{ListenerName: lc.Name, Direction: lc.Direction, BufferLimit: lc.PerConnectionBufferLimitBytes,
				Routes: table, Router: rt, Env: env, Metrics: hm})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.http_connection_manager: %w", p, err))
				continue
			}
			c := &chain{match: fc.Match, hcm: m}
			if fc.TLS != nil {
				if c.tls, err = loadTLS(fc.TLS); err != nil {
					errs = append(errs, fmt.Errorf("%s.tls: %w", p, err))
					continue
				}
			}
			if c.srv, err = newChainServer(m, c.tls, l.log); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
				continue
			}
			l.chains = append(l.chains, c)
		}
		s.listeners = append(s.listeners, l)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := wireCapture(s.listeners, um, reg); err != nil {
		return nil, err
	}
	if cfg.Admin.Address != "-" {
		s.admin = newAdmin(s)
	}
	return s, nil
}

// newTCPChain builds a tcp_proxy chain. Errors start with the field name
// under the chain's path.
func newTCPChain(fc *config.FilterChain, lc config.Listener, um *upstream.Manager, env filter.Env, tm *tcpproxy.Metrics) (*chain, error) {
	c := &chain{match: fc.Match}
	if fc.TLS != nil {
		t, err := loadTLS(fc.TLS)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		if len(t.NextProtos) == 0 {
			t.NextProtos = nil
		}
		c.tls = t
	}
	px, err := tcpproxy.New(fc.TCPProxy, tcpproxy.Options{ListenerName: lc.Name, Direction: lc.Direction,
		Cluster: um.Cluster(fc.TCPProxy.Cluster), Env: env, Metrics: tm})
	if err != nil {
		return nil, fmt.Errorf("tcp_proxy: %w", err)
	}
	c.tcp = px
	return c, nil
}

// needsInspector reports whether a chain matches on what only the
// ClientHello tells (SNI, ALPN, TLS or not): tls_inspector is then added
// to the listener even when not configured, as Envoy does.
func needsInspector(chains []config.FilterChain) bool {
	for i := range chains {
		m := &chains[i].Match
		if len(m.ServerNames) > 0 || len(m.ApplicationProtocols) > 0 || m.TransportProtocol != "" {
			return true
		}
	}
	return false
}

// discardLogs silences every component.
func discardLogs(l *Logs) *Logs {
	_ = l.SetLevel("all", "fatal")
	return l
}

// Start opens the admin server and every listener.
func (s *Server) Start() error {
	s.started = time.Now()
	if s.admin != nil {
		if err := s.admin.start(s.cfg.Admin.Address); err != nil {
			return err
		}
	}
	for _, l := range s.listeners {
		if err := l.start(); err != nil {
			return err
		}
		s.log.Info("listening", zap.String("listener", l.cfg.Name), zap.Stringer("address", l.addrPort()))
	}
	for _, l := range s.listeners {
		l.accept()
	}
	return nil
}

// ListenerAddr returns the bound address of the named listener.
func (s *Server) ListenerAddr(name string) netip.AddrPort {
	for _, l := range s.listeners {
		if l.cfg.Name == name {
			return l.addrPort()
		}
	}
	return netip.AddrPort{}
}

// AdminAddr returns the admin server's bound address.
func (s *Server) AdminAddr() netip.AddrPort {
	if s.admin == nil {
		return netip.AddrPort{}
	}
	return s.admin.addr()
}

// Registry is the server's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Draining reports whether Drain has started.
func (s *Server) Draining() bool { return s.draining.Load() }

// DrainListeners stops accepting new connections on every listener; open
// connections keep being served.
func (s *Server) DrainListeners() {
	s.draining.Store(true)
	for _, l := range s.listeners {
		l.stopAccepting()
	}
}

// Drain stops accepting, closes idle keep-alive connections and waits for
// in-flight streams to finish, at most until ctx ends; then it closes the
// remaining connections. It returns ctx's error when streams had to be cut.
func (s *Server) Drain(ctx context.Context) error {
	s.DrainListeners()
	var wg sync.WaitGroup
	var cut atomic.Bool
	for _, l := range s.listeners {
		for _, c := range l.chains {
			if c.tcp != nil {
				continue // its connections are closed with the others below
			}
			wg.Add(1)
			go func(c *chain) {
				defer wg.Done()
				if err := c.srv.Shutdown(ctx); err != nil {
					cut.Store(true)
					c.srv.Close()
				}
				if c.ln != nil {
					c.ln.Close()
					<-c.served
				}
			}(c)
		}
	}
	wg.Wait()
	// Streams on connections http.Server no longer tracks (h2c) finish
	// too; then every connection left, idle or not, is closed.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.activeStreams() > 0 && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	if s.activeStreams() > 0 {
		cut.Store(true)
	}
	for _, l := range s.listeners {
		l.closeConns()
	}
	if cut.Load() {
		return fmt.Errorf("server: drain: %w", ctx.Err())
	}
	return nil
}

func (s *Server) activeStreams() int64 {
	var n int64
	for _, l := range s.listeners {
		n += l.activeStreams()
	}
	return n
}

// ReopenLogs reopens every access-log file (after logrotate moved them).
// It is what SIGUSR1 and the admin's POST /reopen_logs do. Every sink is
// tried; the errors of those that failed are joined.
func (s *Server) ReopenLogs() error {
	var errs []error
	for _, f := range s.reopeners {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}

// Close releases everything: listeners, connections, the admin server,
// upstream pools and filter resources.
func (s *Server) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		for _, l := range s.listeners {
			l.stopAccepting()
			l.closeConns()
			for _, c := range l.chains {
				if c.tcp != nil {
					c.tcp.Close()
				}
			}
			for _, c := range l.chains {
				if c.srv != nil {
					c.srv.Close()
				}
				if c.ln != nil {
					c.ln.Close()
					<-c.served
				}
			}
		}
		if s.admin != nil {
			errs = append(errs, s.admin.close())
		}
		for i := len(s.closers) - 1; i >= 0; i-- {
			errs = append(errs, s.closers[i]())
		}
	})
	return errors.Join(errs...)
}
