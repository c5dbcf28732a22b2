package tcpproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/filters/mixer"
	"github.com/remora-mesh/remora/proxy/upstream"
)

// Options are a Proxy's dependencies.
type Options struct {
	// ListenerName and Direction describe the listener (for logs; the
	// mixer takes the direction from Downstream.Info).
	ListenerName, Direction string
	// Cluster is the upstream cluster named by the config; required.
	Cluster *upstream.Cluster
	// Env gives access-log sinks and the mixer client their logger,
	// registry and closers.
	Env filter.Env
	// Metrics is shared by every proxy of a server; required.
	Metrics *Metrics
}

// Downstream is an accepted connection handed to Serve.
type Downstream struct {
	// Conn is what the proxy reads and writes: the *net.TCPConn itself
	// for the zero-copy path, or a *tls.Conn after TLS termination.
	Conn net.Conn
	// Close closes the connection and releases whatever the listener
	// holds for it; nil means Conn.Close.
	Close func() error
	// Initial are bytes already read from Conn (by tls_inspector); they
	// are sent upstream first.
	Initial []byte
	// Info describes the connection (id, listener, direction, peer
	// certificate) for the mixer check.
	Info filter.ConnectionInfo
	// LocalAddress, when valid, replaces Conn.LocalAddr() as the
	// connection's local (destination) address: the original destination
	// the original_dst listener filter recovered. Conn itself stays the
	// socket, so that splicing still works.
	LocalAddress netip.AddrPort
	// TLS facts of a TLS-terminated connection.
	TLS                 bool
	RequestedServerName string
	PeerURISAN          string
}

// Proxy is one tcp_proxy filter. It is safe for concurrent use.
type Proxy struct {
	cfg     config.TCPProxy
	cluster *upstream.Cluster
	idle    time.Duration
	period  time.Duration // read-deadline period; 0: no deadlines
	logs    []filter.AccessLogHandler
	mixer   *mixer.TCP
	stats   prefixed
	log     *zap.Logger

	ctx    context.Context // cancelled by Close: aborts connects and checks
	cancel context.CancelFunc
	mu     sync.Mutex
	open   map[*session]struct{}
	closed bool
	wg     sync.WaitGroup
	pool   sync.Pool
}

// New builds a Proxy from a validated config (defaults applied).
func New(cfg *config.TCPProxy, opts Options) (*Proxy, error) {
	if opts.Cluster == nil {
		return nil, fmt.Errorf("tcpproxy: cluster: unknown cluster %q", cfg.Cluster)
	}
	if opts.Metrics == nil {
		return nil, errors.New("tcpproxy: no metrics")
	}
	log := opts.Env.Logger
	if log == nil {
		log = zap.NewNop()
	}
	p := &Proxy{cfg: *cfg, cluster: opts.Cluster, stats: opts.Metrics.with(cfg.StatPrefix), log: log.Named("tcp_proxy").With(zap.String("listener", opts.ListenerName)),
		open: map[*session]struct{}{}}
	if cfg.IdleTimeout != nil {
		p.idle = cfg.IdleTimeout.D()
	}
	var errs []error
	for i, al := range cfg.AccessLog {
		f, ok := filter.LookupAccessLog(al.Type)
		if !ok {
			errs = append(errs, fmt.Errorf("access_log[%d].type: unknown access log type %q", i, al.Type))
			continue
		}
		h, err := f.NewHandler(filter.AccessLogEntry{Name: al.Name, Filter: al.Filter, Config: al.Config}, opts.Env)
		if err != nil {
			errs = append(errs, fmt.Errorf("access_log[%d].config: %w", i, err))
			continue
		}
		p.logs = append(p.logs, h)
	}
	if cfg.Mixer != nil {
		m, err := mixer.NewTCP(cfg.Mixer, opts.Env)
		if err != nil {
			errs = append(errs, err) // already "mixer: <field>: ..."
		}
		p.mixer = m
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("tcpproxy: %w", err)
	}
	p.period = p.idle
	if p.mixer != nil && (p.period == 0 || p.mixer.ReportInterval() < p.period) {
		p.period = p.mixer.ReportInterval()
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.pool.New = func() any { return new(session) }
	return p, nil
}

// Serve proxies one downstream connection until it ends, then closes it.
// It blocks; the listener calls it on the connection's own goroutine.
func (p *Proxy) Serve(d Downstream) {
	if d.Close == nil {
		d.Close = d.Conn.Close
	}
	s := p.pool.Get().(*session)
	s.init(p, d)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		d.Close()
		p.pool.Put(s)
		return
	}
	p.open[s] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	p.stats.cxTotal.Inc()
	p.stats.cxActive.Inc()
	s.run()
	p.stats.cxActive.Dec()
	p.mu.Lock()
	delete(p.open, s)
	p.mu.Unlock()
	s.reset()
	p.pool.Put(s)
	p.wg.Done()
}

// Active is the number of connections being proxied.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.open)
}

// Close aborts connects in progress, closes every open connection (each
// is still logged) and waits until their Serve calls have returned.
// Serve called afterwards closes its connection at once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cancel()
	for s := range p.open {
		s.abort()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
