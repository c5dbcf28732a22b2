package hcm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/router"
	"go.uber.org/zap"
)

// Options carry what a Manager needs beyond its configuration.
type Options struct {
	ListenerName string
	Direction    string
	// BufferLimit bounds a stream's buffered body (per direction).
	BufferLimit int
	// Routes is the compiled route table; Router sends to upstreams.
	Routes  *router.Table
	Router  *router.Router
	Env     filter.Env
	Metrics *Metrics
}

// filterEntry is one compiled http_filters entry.
type filterEntry struct {
	name    string
	factory filter.Factory
	config  any
	logger  filter.AccessLogHandler // from filter.LogHandlerFactory, or nil
}

// Manager runs the stream filter chain for one filter chain of one
// listener: HTTP1Server feeds it HTTP/1 requests, and it is the
// http.Handler that golang.org/x/net/http2 serves HTTP/2 with. It is safe
// for concurrent use.
type Manager struct {
	name              string
	listener          string
	direction         string
	filters           []filterEntry
	accessLogs        []filter.AccessLogHandler
	routes            *router.Table
	router            *router.Router
	bufferLimit       int
	streamIdleTimeout time.Duration
	requestTimeout    time.Duration
	generateID        bool
	useRemoteAddress  bool
	serverName        string
	serverHeader      []string // shared, len == cap so an append copies
	log               *zap.Logger
	metrics           *managerMetrics
	pool              sync.Pool
	active            atomic.Int64
	// MaxRequestHeaderBytes is the configured request header limit (431):
	// HTTP1Server bounds the request head with it, exactly; on HTTP/2 the
	// stream checks the header names and values.
	MaxRequestHeaderBytes int
	IdleTimeout           time.Duration
	CodecType             string
}

// New compiles a connection manager from cfg. Filter configs are parsed
// once here by their registered factories; access-log handlers are built
// by the factories registered for their type.
func New(cfg *config.HCM, opts Options) (*Manager, error) {
	if opts.Routes == nil || opts.Router == nil || opts.Metrics == nil {
		return nil, errors.New("hcm: routes, router and metrics are required")
	}
	log := opts.Env.Logger
	if log == nil {
		log = zap.NewNop()
	}
	m := &Manager{
		name: cfg.StatPrefix, listener: opts.ListenerName, direction: opts.Direction,
		routes: opts.Routes, router: opts.Router, bufferLimit: opts.BufferLimit,
		requestTimeout: cfg.RequestTimeout.D(), serverName: cfg.ServerName,
		log: log.Named("hcm"), metrics: opts.Metrics.forPrefix(cfg.StatPrefix),
		MaxRequestHeaderBytes: cfg.MaxRequestHeadersKB << 10, IdleTimeout: cfg.IdleTimeout.D(), CodecType: cfg.CodecType,
		generateID: true, useRemoteAddress: true,
	}
	if m.serverName != "" {
		m.serverHeader = []string{m.serverName}
	}
	if cfg.StreamIdleTimeout != nil {
		m.streamIdleTimeout = cfg.StreamIdleTimeout.D()
	}
	if cfg.GenerateRequestID != nil {
		m.generateID = *cfg.GenerateRequestID
	}
	if cfg.UseRemoteAddress != nil {
		m.useRemoteAddress = *cfg.UseRemoteAddress
	}
	var errs []error
	for i, hf := range cfg.HTTPFilters {
		if hf.Name == "router" {
			continue // the router is always last and implicit
		}
		f, ok := filter.Lookup(hf.Name)
		if !ok {
			errs = append(errs, fmt.Errorf("http_filters[%d].name: unknown filter %q", i, hf.Name))
			continue
		}
		c, err := f.ParseConfig(hf.Config, opts.Env)
		if err != nil {
			errs = append(errs, fmt.Errorf("http_filters[%d].config: %w", i, err))
			continue
		}
		e := filterEntry{name: hf.Name, factory: f, config: c}
		if lf, ok := f.(filter.LogHandlerFactory); ok {
			e.logger = lf.NewLogHandler(c)
		}
		m.filters = append(m.filters, e)
	}
	if len(m.filters) > 63 {
		errs = append(errs, errors.New("http_filters: at most 63 filters"))
	}
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
		m.accessLogs = append(m.accessLogs, h)
	}
	for _, e := range m.filters {
		if e.logger != nil {
			m.accessLogs = append(m.accessLogs, e.logger)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("hcm: %w", err)
	}
	m.pool.New = func() any { return newStream(m) }
	return m, nil
}

// ConnOpened and ConnClosed count the manager's downstream connections
// (downstream_cx_total, downstream_cx_active); the listener calls them
// when it starts and ends serving a connection, whatever its protocol.
func (m *Manager) ConnOpened() {
	m.metrics.cxTotal.Inc()
	m.metrics.cxActive.Inc()
}

// ConnClosed: see ConnOpened.
func (m *Manager) ConnClosed() { m.metrics.cxActive.Dec() }

// ActiveStreams is the number of streams in flight; a drain waits for it
// to reach zero.
func (m *Manager) ActiveStreams() int64 { return m.active.Load() }

// AddAccessLog appends a handler called for every stream of m. It must be
// called before m serves requests.
func (m *Manager) AddAccessLog(h filter.AccessLogHandler) { m.accessLogs = append(m.accessLogs, h) }

// ConnInfo is what the listener knows about a downstream connection; it
// rides on the request context (WithConnInfo).
// TLS details come from the request itself (http.Request.TLS).
type ConnInfo struct {
	ID     uint64
	Local  netip.AddrPort
	Remote netip.AddrPort
	// remoteIP caches Remote's address as text (x-forwarded-for).
	remoteIP string
}

type connInfoKey struct{}

// WithConnInfo returns ctx carrying ci.
func WithConnInfo(ctx context.Context, ci *ConnInfo) context.Context {
	return context.WithValue(ctx, connInfoKey{}, ci)
}

func connInfoFrom(ctx context.Context) *ConnInfo {
	ci, _ := ctx.Value(connInfoKey{}).(*ConnInfo)
	return ci
}

// NewConnInfo describes c with a new connection id.
func NewConnInfo(c net.Conn) *ConnInfo {
	ci := &ConnInfo{ID: NextConnID()}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ci.Local = a.AddrPort()
	}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ci.Remote = a.AddrPort()
		ci.remoteIP = ci.Remote.Addr().Unmap().String()
	}
	return ci
}

var connIDs atomic.Uint64

// NextConnID returns a process-unique downstream connection id.
func NextConnID() uint64 { return connIDs.Add(1) }
