package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
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
	// Registry, when not nil, receives the clusters' Prometheus metrics
	// (one collector, registered once: it reports the current set, so an
	// Update never registers anything again). Two live Managers cannot
	// share one registry (their metrics would collide): reload with
	// Update, or give each a prometheus.WrapRegistererWith view.
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
// balancers, connection pools, DNS refreshers and stats. Its cluster set can
// be replaced while requests run (Update, or PrepareUpdate then Commit).
// It is safe for concurrent use.
type Manager struct {
	set       atomic.Pointer[Set]
	opts      Options
	collector *collector
	registry  prometheus.Registerer

	mu       sync.Mutex            // serialises updates, retirement and Close
	retiring map[*Cluster]struct{} // taken out by an update, not closed yet
	stop     chan struct{}         // closed by Close: stops the reaper
	reaped   sync.WaitGroup
	closed   bool
}

// Set is an immutable snapshot of a Manager's clusters: what routes of one
// configuration resolve cluster names against. It is safe for concurrent
// use.
type Set struct {
	byName  map[string]*Cluster
	ordered []*Cluster // configuration order
}

// Cluster returns the named cluster, or nil when there is none (or s is
// nil).
func (s *Set) Cluster(name string) *Cluster {
	if s == nil {
		return nil
	}
	return s.byName[name]
}

// Clusters returns every cluster in configuration order. The slice must
// not be modified.
func (s *Set) Clusters() []*Cluster {
	if s == nil {
		return nil
	}
	return s.ordered
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
	m := &Manager{opts: opts, registry: opts.Registry, retiring: map[*Cluster]struct{}{}, stop: make(chan struct{})}
	set, _, err := m.build(clusters, nil)
	if err != nil {
		return nil, err
	}
	m.set.Store(set)
	if opts.Registry != nil {
		m.collector = newCollector(m)
		if err := opts.Registry.Register(m.collector); err != nil {
			m.Close()
			return nil, fmt.Errorf("upstream: registering metrics: %w", err)
		}
	}
	return m, nil
}

// build validates clusters and builds a Set: a cluster of cur whose
// configuration (defaults applied) is unchanged is reused as it is (same
// pools, hosts, stats and outlier state); the others are created, resolved
// and started. fresh lists the created ones. On error nothing is left
// running.
func (m *Manager) build(clusters []ClusterConfig, cur *Set) (set *Set, fresh []*Cluster, err error) {
	set = &Set{byName: make(map[string]*Cluster, len(clusters))}
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
		if _, dup := set.byName[cfg.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: duplicate cluster name %q", path, cfg.Name))
			continue
		}
		// Configurations hold only plain values, slices and pointers to
		// plain structs; reflect.DeepEqual runs once per cluster and
		// reload, never per request.
		c := cur.Cluster(cfg.Name)
		if c == nil || !reflect.DeepEqual(c.cfg, cfg) {
			c = newCluster(cfg, &m.opts)
			if c.initErr != nil {
				errs = append(errs, fmt.Errorf("%s.tls: %w", path, c.initErr))
				continue
			}
			fresh = append(fresh, c)
		}
		set.byName[cfg.Name] = c
		set.ordered = append(set.ordered, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("upstream: invalid clusters: %w", err)
	}

	var wg sync.WaitGroup
	for _, c := range fresh {
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
	for _, c := range fresh {
		if c.stop != nil {
			go c.loop()
		}
	}
	for _, c := range fresh { // first health checks, in parallel
		wg.Add(1)
		go func() { defer wg.Done(); c.warm() }()
	}
	wg.Wait()
	return set, fresh, nil
}

// Cluster returns the named cluster of the current set, or nil when there
// is none.
func (m *Manager) Cluster(name string) *Cluster { return m.set.Load().Cluster(name) }

// Clusters returns every cluster of the current set in configuration
// order.
func (m *Manager) Clusters() []*Cluster { return m.set.Load().Clusters() }

// Current returns the current cluster set.
func (m *Manager) Current() *Set { return m.set.Load() }

// ClusterUpdate is a validated, built cluster set not installed yet (see
// PrepareUpdate). Exactly one of Commit or Abort must be called.
type ClusterUpdate struct {
	m     *Manager
	base  *Set
	next  *Set
	fresh []*Cluster
	done  bool
}

// ErrConcurrentUpdate is returned by Commit when the Manager's set changed
// since PrepareUpdate (another update was committed in between).
var ErrConcurrentUpdate = errors.New("upstream: the cluster set changed since the update was prepared")

// PrepareUpdate validates clusters and builds the set that would replace
// the current one, without installing it: clusters whose configuration
// (defaults applied) is unchanged are shared with the current set; new and
// changed ones are created, resolved and started. On error nothing
// changed. It may block while STRICT_DNS names are resolved (at most 5s).
func (m *Manager) PrepareUpdate(clusters []ClusterConfig) (*ClusterUpdate, error) {
	base := m.set.Load()
	next, fresh, err := m.build(clusters, base)
	if err != nil {
		return nil, err
	}
	return &ClusterUpdate{m: m, base: base, next: next, fresh: fresh}, nil
}

// Set is the cluster set the update installs; a caller builds what refers
// to clusters (routes, TCP proxies) against it before committing.
func (u *ClusterUpdate) Set() *Set { return u.next }

// Changes names the clusters the update adds (new or with a changed
// configuration) and removes (gone or replaced by a changed one).
func (u *ClusterUpdate) Changes() (added, removed []string) {
	for _, c := range u.fresh {
		added = append(added, c.name)
	}
	for _, c := range u.base.Clusters() {
		if u.next.byName[c.name] != c {
			removed = append(removed, c.name)
		}
	}
	return added, removed
}

// Commit installs the new set atomically: Cluster and Clusters answer
// from it at once. The clusters it took out (removed, or replaced by a
// changed configuration) keep serving the requests already on them; they
// are returned so that the caller closes them (Retired.Close) once nothing
// uses them any more, and Manager.Close closes any still open.
func (u *ClusterUpdate) Commit() (*Retired, error) {
	m := u.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if u.done {
		return nil, errors.New("upstream: cluster update already committed or aborted")
	}
	u.done = true
	if m.closed {
		closeAll(u.fresh)
		return nil, ErrClosed
	}
	if !m.set.CompareAndSwap(u.base, u.next) {
		closeAll(u.fresh)
		return nil, ErrConcurrentUpdate
	}
	r := &Retired{m: m}
	for _, c := range u.base.Clusters() {
		if u.next.byName[c.name] != c {
			r.clusters = append(r.clusters, c)
			m.retiring[c] = struct{}{}
		}
	}
	return r, nil
}

// Abort closes the clusters the update created. The current set is
// untouched.
func (u *ClusterUpdate) Abort() {
	u.m.mu.Lock()
	done := u.done
	u.done = true
	u.m.mu.Unlock()
	if !done {
		closeAll(u.fresh)
	}
}

func closeAll(cs []*Cluster) {
	for _, c := range cs {
		c.close()
	}
}

// Retired are clusters an update took out of the Manager's set.
type Retired struct {
	m        *Manager
	clusters []*Cluster
}

// Names lists the retired clusters.
func (r *Retired) Names() []string {
	var ns []string
	for _, c := range r.clusters {
		ns = append(ns, c.name)
	}
	return ns
}

// InFlight counts the requests still active or pending on the retired
// clusters.
func (r *Retired) InFlight() int64 {
	var n int64
	for _, c := range r.clusters {
		n += c.inFlight()
	}
	return n
}

// Close closes the retired clusters (streams still on them fail) unless
// the Manager already did. It may be called more than once.
func (r *Retired) Close() {
	for _, c := range r.clusters {
		r.m.closeRetired(c)
	}
}

// closeRetired closes c once, if it is still waiting for retirement.
func (m *Manager) closeRetired(c *Cluster) {
	m.mu.Lock()
	_, ok := m.retiring[c]
	delete(m.retiring, c)
	m.mu.Unlock()
	if ok {
		c.close()
	}
}

// inFlight counts the requests active or waiting for a connection.
func (c *Cluster) inFlight() int64 {
	return c.stats.get(statRqActive) + c.stats.get(statRqPendingActive)
}

// reapInterval is how often Update's background retirement looks whether
// a retired cluster's last requests have finished.
const reapInterval = 100 * time.Millisecond

// Update replaces the cluster set with clusters (see PrepareUpdate): on
// error nothing changed. Unchanged clusters keep their pools, hosts,
// stats and outlier state; new ones are started; removed ones stop taking
// requests at once and are closed in the background when their in-flight
// requests have finished (at the latest by Close).
func (m *Manager) Update(clusters []ClusterConfig) error {
	u, err := m.PrepareUpdate(clusters)
	if err != nil {
		return err
	}
	r, err := u.Commit()
	if err != nil {
		return err
	}
	m.reapWhenIdle(r)
	return nil
}

// reapWhenIdle closes r's clusters once they have no request in flight.
func (m *Manager) reapWhenIdle(r *Retired) {
	if len(r.clusters) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.reaped.Add(1)
	go func() {
		defer m.reaped.Done()
		t := time.NewTicker(reapInterval)
		defer t.Stop()
		for r.InFlight() > 0 {
			select {
			case <-m.stop:
				return // Close closes them
			case <-t.C:
			}
		}
		r.Close()
	}()
}

// Close stops DNS refreshing, closes every connection (streams in flight
// fail), fails pending requests, and unregisters the metrics. Retired
// clusters not closed yet are closed too. When it returns no goroutine of
// the Manager is left. Calling it again is a no-op.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.stop)
	retiring := make([]*Cluster, 0, len(m.retiring))
	for c := range m.retiring {
		retiring = append(retiring, c)
	}
	clear(m.retiring)
	m.mu.Unlock()
	m.reaped.Wait()
	if m.collector != nil {
		m.registry.Unregister(m.collector)
	}
	closeAll(m.Clusters())
	closeAll(retiring)
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
