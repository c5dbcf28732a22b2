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
	// OnReload, when set, is called after every Reload attempt with its
	// result (nil: the new configuration serves). It runs on the
	// reloading goroutine, after the reload lock is released.
	OnReload func(error)
}

// Server is a built sidecar. Start it, then Drain and Close it. Reload
// replaces its configuration while it serves.
type Server struct {
	logs      *Logs
	log       *zap.Logger
	reg       *prometheus.Registry
	upstreams *upstream.Manager
	admin     *admin
	started   time.Time
	draining  atomic.Bool
	quit      func()
	onReload  func(error)
	closeOnce sync.Once

	// Metrics shared by every configuration generation: each is
	// registered once, a rebuilt chain reuses them.
	hm *hcm.Metrics
	lm *listenerMetrics
	tm *tcpproxy.Metrics // registered when a chain first uses tcp_proxy
	rm *reloadMetrics

	gen        atomic.Pointer[generation] // the configuration serving new connections
	lastReload atomic.Pointer[ReloadStatus]

	mu           sync.Mutex // serialises Start, Reload, Drain and Close
	sockets      map[string]*socket
	retiring     map[*generation]struct{}
	retireWG     sync.WaitGroup
	retireCtx    context.Context
	retireCancel context.CancelFunc
	running      bool // Start succeeded
	closed       bool
}

// generation is one configuration's built listeners and what its filters
// opened. Connections accepted by its listeners run on it until they end,
// also after a reload made another generation current.
type generation struct {
	cfg       *config.Bootstrap
	number    int
	listeners []*listener
	closers   []func() error
	reopeners []func() error // access-log files, for SIGUSR1 and POST /reopen_logs
}

// close releases what the generation's filters and chains opened, last
// opened first.
func (g *generation) close() error {
	var errs []error
	for i := len(g.closers) - 1; i >= 0; i-- {
		errs = append(errs, g.closers[i]())
	}
	g.closers = nil
	return errors.Join(errs...)
}

// clusterAdapter adapts one generation's cluster set to router.Upstreams:
// a route resolves its cluster in the set of the configuration it belongs
// to, so a reload switches routes and clusters together.
type clusterAdapter struct{ set *upstream.Set }

func (a clusterAdapter) NewStream(ctx context.Context, cluster string, h *filter.HeaderMap, end bool, opts upstream.StreamOptions) (upstream.Stream, error) {
	c := a.set.Cluster(cluster)
	if c == nil {
		return nil, &upstream.Error{Flag: filter.NoClusterFound, Reason: "cluster_not_found", Err: fmt.Errorf("unknown cluster %q", cluster)}
	}
	return c.NewStream(ctx, h, end, opts)
}

// TryAcquireRetry implements router.RetryBudget with the cluster's
// max_retries circuit breaker.
func (a clusterAdapter) TryAcquireRetry(cluster string) bool {
	if c := a.set.Cluster(cluster); c != nil {
		return c.TryAcquireRetry()
	}
	return false
}

// ReleaseRetry implements router.RetryBudget.
func (a clusterAdapter) ReleaseRetry(cluster string) {
	if c := a.set.Cluster(cluster); c != nil {
		c.ReleaseRetry()
	}
}

// RecordTimeout implements router.TimeoutRecorder.
func (a clusterAdapter) RecordTimeout(cluster, host string) {
	if c := a.set.Cluster(cluster); c != nil {
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
	s = &Server{logs: logs, log: logs.Logger("main").Named("main"), reg: reg, quit: opts.Quit, onReload: opts.OnReload,
		sockets: map[string]*socket{}, retiring: map[*generation]struct{}{}}
	s.retireCtx, s.retireCancel = context.WithCancel(context.Background())
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
	if s.hm, err = hcm.NewMetrics(reg); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	if s.lm, err = newListenerMetrics(reg); err != nil {
		return nil, err
	}
	if s.rm, err = newReloadMetrics(reg); err != nil {
		return nil, err
	}
	g, err := s.build(cfg, um.Current())
	if err != nil {
		return nil, err
	}
	s.gen.Store(g)
	if cfg.Admin.Address != "-" {
		s.admin = newAdmin(s)
	}
	return s, nil
}

// build compiles every listener, chain, filter and route of cfg against
// the cluster set, without opening a socket. On error what was built is
// closed and every problem is returned with its field path.
func (s *Server) build(cfg *config.Bootstrap, set *upstream.Set) (g *generation, err error) {
	g = &generation{cfg: cfg}
	built := g // the named result is nil by the time a failing return's defer runs
	defer func() {
		if err != nil {
			built.close()
		}
	}()
	rt := router.New(clusterAdapter{set})
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
	logs := s.logs
	env := filter.Env{Logger: logs.Logger("filter"), Registry: s.reg, NodeID: cfg.Node.ID, Cluster: cfg.Node.Cluster,
		AddCloser:   func(f func() error) { g.closers = append(g.closers, f) },
		AddReopener: func(f func() error) { g.reopeners = append(g.reopeners, f) }}
	for i := range cfg.Listeners {
		lc := cfg.Listeners[i]
		l := &listener{cfg: lc, inspector: lc.HasListenerFilter(config.ListenerFilterTLSInspector) || needsInspector(lc.FilterChains),
			log: logs.Logger("listener").Named("listener"), metrics: s.lm}
		if lc.MaxConnections > 0 {
			l.sem = make(chan struct{}, lc.MaxConnections)
		}
		for j := range lc.FilterChains {
			fc := &lc.FilterChains[j]
			p := fmt.Sprintf("listeners[%d].filter_chains[%d]", i, j)
			if fc.TCPProxy != nil {
				if s.tm == nil {
					if s.tm, err = tcpproxy.NewMetrics(s.reg); err != nil {
						return nil, fmt.Errorf("server: %w", err)
					}
				}
				c, err := newTCPChain(fc, lc, set, env, s.tm, l.log)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s.%w", p, err))
					continue
				}
				g.closers = append(g.closers, c.tcp.Close)
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
				Routes: table, Router: rt, Env: env, Metrics: s.hm})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.http_connection_manager: %w", p, err))
				continue
			}
			c := &chain{match: fc.Match, hcm: m}
			if fc.TLS != nil {
				if c.tls, err = loadTLS(fc.TLS, l.log); err != nil {
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
		g.listeners = append(g.listeners, l)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := wireCapture(g.listeners, set, s.reg); err != nil {
		return nil, err
	}
	return g, nil
}

// newTCPChain builds a tcp_proxy chain. Errors start with the field name
// under the chain's path.
func newTCPChain(fc *config.FilterChain, lc config.Listener, set *upstream.Set, env filter.Env, tm *tcpproxy.Metrics, log *zap.Logger) (*chain, error) {
	c := &chain{match: fc.Match}
	if fc.TLS != nil {
		t, err := loadTLS(fc.TLS, log)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		if len(t.NextProtos) == 0 {
			t.NextProtos = nil
		}
		c.tls = t
	}
	px, err := tcpproxy.New(fc.TCPProxy, tcpproxy.Options{ListenerName: lc.Name, Direction: lc.Direction,
		Cluster: set.Cluster(fc.TCPProxy.Cluster), Env: env, Metrics: tm})
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("server: closed")
	}
	s.started = time.Now()
	g := s.gen.Load()
	if s.admin != nil {
		if err := s.admin.start(g.cfg.Admin.Address); err != nil {
			return err
		}
	}
	for _, l := range g.listeners {
		var ln net.Listener // none for a listener that does not bind
		if l.cfg.Binds() {
			sock, err := listenSocket(l.cfg.Name, l.cfg.Address, l.log)
			if err != nil {
				return err
			}
			s.sockets[l.cfg.Name] = sock
			ln = sock.view()
		}
		l.start(ln)
		s.log.Info("listening", zap.String("listener", l.cfg.Name), zap.Stringer("address", l.addrPort()),
			zap.Bool("bound", ln != nil))
	}
	// Every listener serves before any accepts: a connection handed from
	// one listener to another (use_original_dst) finds its target ready.
	for _, l := range g.listeners {
		l.accept()
	}
	s.running = true
	return nil
}

// Config returns the configuration serving new connections. It must not
// be modified.
func (s *Server) Config() *config.Bootstrap { return s.gen.Load().cfg }

// ListenerAddr returns the bound address of the named listener of the
// current configuration.
func (s *Server) ListenerAddr(name string) netip.AddrPort {
	for _, l := range s.gen.Load().listeners {
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

// DrainListeners stops accepting new connections on every listener (the
// listening sockets are closed: connects are refused); open connections
// keep being served. A reload is refused from then on.
func (s *Server) DrainListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining.Store(true)
	for _, l := range s.gen.Load().listeners {
		l.stopAccepting()
	}
	for name, sock := range s.sockets {
		sock.close()
		delete(s.sockets, name)
	}
}

// Drain stops accepting, closes idle keep-alive connections and waits for
// in-flight streams to finish, at most until ctx ends; then it closes the
// remaining connections. Generations a reload replaced and still draining
// are cut when ctx ends too. It returns ctx's error when streams had to be
// cut.
func (s *Server) Drain(ctx context.Context) error {
	s.DrainListeners()
	cut := drainListeners(ctx, s.gen.Load().listeners)
	retired := make(chan struct{})
	go func() {
		s.retireWG.Wait()
		close(retired)
	}()
	select {
	case <-retired:
	case <-ctx.Done():
		s.retireCancel()
		<-retired
		cut = true
	}
	if cut {
		return fmt.Errorf("server: drain: %w", ctx.Err())
	}
	return nil
}

// drainListeners shuts down the listeners' HTTP chain servers (idle
// keep-alive connections are closed, busy ones once their response is
// sent), waits for every stream and TCP proxy connection to finish, at
// most until ctx ends, and then closes every connection left. The
// listeners must have stopped accepting. It reports whether streams had
// to be cut.
func drainListeners(ctx context.Context, ls []*listener) bool {
	var wg sync.WaitGroup
	var cut atomic.Bool
	for _, l := range ls {
		for _, c := range l.chains {
			if c.tcp != nil || c.srv == nil {
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
	active := func() int64 {
		var n int64
		for _, l := range ls {
			n += l.activeStreams()
		}
		return n
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for active() > 0 && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	if active() > 0 {
		cut.Store(true)
	}
	for _, l := range ls {
		l.closeConns()
	}
	return cut.Load()
}

// ReopenLogs reopens every access-log file (after logrotate moved them),
// those of generations still draining after a reload included. It is
// what SIGUSR1 and the admin's POST /reopen_logs do. Every sink is tried;
// the errors of those that failed are joined.
func (s *Server) ReopenLogs() error {
	s.mu.Lock()
	gens := []*generation{s.gen.Load()}
	for g := range s.retiring {
		gens = append(gens, g)
	}
	s.mu.Unlock()
	var errs []error
	for _, g := range gens {
		for _, f := range g.reopeners {
			errs = append(errs, f())
		}
	}
	return errors.Join(errs...)
}

// Close releases everything: listeners, connections, the admin server,
// upstream pools and filter resources, those of generations still
// draining after a reload included.
func (s *Server) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.retireCancel()
		s.retireWG.Wait() // each retiring generation closes its own
		if g := s.gen.Load(); g != nil {
			closeListeners(g.listeners)
		}
		s.mu.Lock()
		for name, sock := range s.sockets {
			sock.close()
			delete(s.sockets, name)
		}
		s.mu.Unlock()
		if s.admin != nil {
			errs = append(errs, s.admin.close())
		}
		if g := s.gen.Load(); g != nil {
			errs = append(errs, g.close())
		}
		if s.upstreams != nil {
			errs = append(errs, s.upstreams.Close())
		}
	})
	return errors.Join(errs...)
}

// closeListeners stops the listeners and closes their connections and
// chain servers at once.
func closeListeners(ls []*listener) {
	for _, l := range ls {
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
}
