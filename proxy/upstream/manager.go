package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Options are the Manager's injected dependencies. The zero value works:
// a nop logger, no metrics registration, the system resolver and dialer.
type Options struct {
	// Logger receives the package's logs, Named("upstream"); nil means
	// zap.NewNop().
	Logger *zap.Logger
	// Registry, when not nil, receives the clusters' Prometheus metrics.
	// Two live Managers cannot share one registry (their metrics would
	// collide): close the old one first on a reload, or give each a
	// prometheus.WrapRegistererWith view.
	Registry prometheus.Registerer
	// Resolver resolves STRICT_DNS endpoints; nil means net.DefaultResolver.
	Resolver Resolver
	// DialContext opens upstream TCP connections; nil means a net.Dialer.
	// The context carries the connect timeout.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// now is the clock of outlier ejections; nil means time.Now (tests
	// set it).
	now func() time.Time
}

// Manager owns every cluster of a configuration: their host sets, load
// balancers, connection pools, DNS refreshers and stats. It is safe for
// concurrent use.
type Manager struct {
	clusters  map[string]*Cluster
	ordered   []*Cluster // configuration order
	collector *collector
	registry  prometheus.Registerer
	closeOnce sync.Once
}

// NewManager builds the clusters (defaults applied to a copy of each
// config, then validated), resolves STRICT_DNS clusters once (in parallel,
// each bounded by 5s; a cluster whose names do not resolve starts with no
// hosts and keeps retrying every dns_refresh_rate) and registers the stats
// on opts.Registry.
func NewManager(clusters []ClusterConfig, opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	m := &Manager{clusters: make(map[string]*Cluster, len(clusters)), registry: opts.Registry}
	var errs []error
	for i := range clusters {
		cfg := clusters[i]
		cfg.Endpoints = append([]EndpointConfig(nil), cfg.Endpoints...)
		if cfg.OutlierDetection != nil {
			od := *cfg.OutlierDetection
			cfg.OutlierDetection = &od
		}
		cfg.ApplyDefaults()
		path := "clusters[" + strconv.Itoa(i) + "]"
		if err := cfg.Validate(path); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := m.clusters[cfg.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: duplicate cluster name %q", path, cfg.Name))
			continue
		}
		c := newCluster(cfg, &opts)
		if c.initErr != nil {
			errs = append(errs, fmt.Errorf("%s.tls: %w", path, c.initErr))
			continue
		}
		m.clusters[cfg.Name] = c
		m.ordered = append(m.ordered, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("upstream: invalid clusters: %w", err)
	}

	var wg sync.WaitGroup
	for _, c := range m.ordered {
		if c.cfg.Type == TypeStrictDNS || c.outlier != nil {
			c.stop, c.done = make(chan struct{}), make(chan struct{})
		}
		if c.cfg.Type == TypeStatic {
			hosts := make([]*Host, 0, len(c.cfg.Endpoints))
			for _, ep := range c.cfg.Endpoints {
				hosts = append(hosts, newHost(c, ep.Address, "", ep.Weight))
			}
			c.mu.Lock()
			c.setHostsLocked(hosts)
			c.mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.resolve(context.Background()); err != nil {
				c.log.Warn("initial dns resolution failed; the cluster has no hosts until a refresh succeeds", zap.Error(err))
			}
		}()
	}
	wg.Wait()
	for _, c := range m.ordered {
		if c.stop != nil {
			go c.loop()
		}
	}
	for _, c := range m.ordered { // first health checks, in parallel
		wg.Add(1)
		go func() { defer wg.Done(); c.warm() }()
	}
	wg.Wait()
	if opts.Registry != nil {
		m.collector = newCollector(m)
		if err := opts.Registry.Register(m.collector); err != nil {
			m.Close()
			return nil, fmt.Errorf("upstream: registering metrics: %w", err)
		}
	}
	return m, nil
}

// Cluster returns the named cluster, or nil when there is none.
func (m *Manager) Cluster(name string) *Cluster { return m.clusters[name] }

// Clusters returns every cluster in configuration order.
func (m *Manager) Clusters() []*Cluster { return m.ordered }

// Close stops DNS refreshing, closes every connection (streams in flight
// fail), fails pending requests, and unregisters the metrics. When it
// returns no goroutine of the Manager is left. Calling it again is a no-op.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		if m.collector != nil {
			m.registry.Unregister(m.collector)
		}
		for _, c := range m.ordered {
			c.close()
		}
	})
	return nil
}

// WriteClusters writes the admin /clusters view in Envoy's text format;
// see writeClusters (admin.go).
func (m *Manager) WriteClusters(w io.Writer) error { return m.writeClusters(w) }

// errWriter keeps the first write error so that a long listing can be
// written without checking every line.
type errWriter struct {
	w   io.Writer
	err error
}

func newErrWriter(w io.Writer) *errWriter { return &errWriter{w: w} }

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
