//lint:file-ignore SA1019 x/net/http2's ClientConn is the HTTP/2 client this package is specified to use; Go 1.26's net/http ClientConn dials for itself, which the pool must control.

package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http2"

	"github.com/remora-mesh/remora/proxy/filter"
)

// StreamOptions are a request's parameters beyond its headers.
type StreamOptions struct {
	// Protocol is the downstream request's protocol (filter.ProtocolHTTP11,
	// ProtocolHTTP10 or ProtocolHTTP2). A use_downstream cluster sends an
	// HTTP/2 request as h2c and any other as HTTP/1.1.
	Protocol string
	// Info, when not nil, receives UpstreamCluster, UpstreamHost,
	// UpstreamLocalAddress and UpstreamTransportFailureReason.
	Info *filter.StreamInfo
	// Upgrade marks an HTTP/1.1 upgrade request (WebSocket ...): the
	// caller kept its upgrade header, the request goes out over HTTP/1.1
	// with "connection: upgrade", and a 101 response turns the stream
	// into raw bytes both ways. Not supported by http2-only clusters.
	// A CONNECT request needs no flag: over HTTP/1.1 a 2xx answer turns
	// it into a raw tunnel the same way.
	Upgrade bool
	// LB is what the load balancer may use from the request (hash key).
	LB LBContext
	// ResetOnCancel is the caller's promise to Reset the stream as soon
	// as the context given to NewStream ends (the router does, from its
	// route timer). ReadHeaders then need not watch that context itself,
	// which saves a registration per request; it still reads the
	// context's error to tell a timeout from an upstream failure.
	ResetOnCancel bool
	// ProbeConnection makes the pool check a ready HTTP/1.1 connection
	// for liveness however recently it was used: the request retries one
	// that failed with ErrStaleConnection.
	ProbeConnection bool
	// SendWithRead lets a request that is all head (no body, no upgrade,
	// no Expect) on a plaintext HTTP/1.1 connection go out with the
	// stream's ReadHeaders instead of in NewStream: the head is written
	// from inside the wait for its answer, which saves a read(2) that
	// could only find nothing yet (sockio.Conn.WriteOnRead). Only a caller
	// that reads the response headers right after NewStream may set it:
	// the upstream sees nothing before that read.
	SendWithRead bool
}

// hostSet is an immutable snapshot of a cluster's hosts with the load
// balancer built for them; it is replaced as a whole on a DNS change.
type hostSet struct {
	hosts []*Host
	lb    LoadBalancer
	panic bool // fewer than half the hosts are healthy: lb covers all
}

// Cluster is one upstream cluster. It is safe for concurrent use.
type Cluster struct {
	name     string
	cfg      ClusterConfig
	protocol string
	log      *zap.Logger
	stats    clusterStats
	rqClass  [5]atomic.Int64 // responses by status class 1xx..5xx

	cxRB, pendingRB, rqRB, retryRB resource

	hosts     atomic.Pointer[hostSet]
	lbFactory LBFactory

	dialContext        func(ctx context.Context, network, addr string) (net.Conn, error)
	connectTimeout     time.Duration
	idleTimeout        time.Duration
	reuseProbeAfter    time.Duration // see the constant; tests lower it
	maxRequestsPerConn int64
	maxStreams         uint32
	h2t                *http2.Transport

	outlier  *outlierDetector // nil: no outlier detection
	origDst  *originalDst     // nil unless ORIGINAL_DST (originaldst.go)
	odSweeps atomic.Int64     // outlier-detection interval sweeps done (tests)
	now      func() time.Time // the clock of ejections; time.Now but in tests

	hc   *healthChecker // nil: no active health checking
	hcWG sync.WaitGroup // health-check sessions

	tls *tlsOrigin // nil: plaintext
	// initErr is a failure to build the cluster (unreadable TLS files);
	// NewManager reports it.
	initErr error

	// STRICT_DNS.
	resolver Resolver
	mu       sync.Mutex       // serialises host-set updates and close
	byAddr   map[string]*Host // hosts in the current set
	retired  []*Host          // removed hosts still draining
	closed   bool
	stop     chan struct{}
	done     chan struct{}
}

func newCluster(cfg ClusterConfig, opts *Options) *Cluster {
	c := &Cluster{
		name:               cfg.Name,
		cfg:                cfg,
		protocol:           cfg.Protocol,
		log:                opts.Logger.Named("upstream").With(zap.String("cluster", cfg.Name)),
		lbFactory:          lbFactories[cfg.LBPolicy],
		dialContext:        opts.DialContext,
		connectTimeout:     cfg.ConnectTimeout.D(),
		idleTimeout:        cfg.IdleTimeout.D(),
		reuseProbeAfter:    reuseProbeAfter,
		maxRequestsPerConn: int64(cfg.MaxRequestsPerConnection),
		maxStreams:         cfg.HTTP2.MaxConcurrentStreams,
		resolver:           opts.Resolver,
		outlier:            newOutlierDetector(cfg.OutlierDetection),
		now:                opts.now,
		byAddr:             make(map[string]*Host),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if len(cfg.HealthChecks) > 0 {
		c.hc = newHealthChecker(c, cfg.HealthChecks[0])
	}
	if cfg.TLS != nil {
		c.tls, c.initErr = newTLSOrigin(cfg.TLS, c.log)
	}
	cb := cfg.CircuitBreakers
	c.cxRB = resource{name: "max_connections", limit: int64(cb.MaxConnections)}
	c.pendingRB = resource{name: "max_pending_requests", limit: int64(cb.MaxPendingRequests)}
	c.rqRB = resource{name: "max_requests", limit: int64(cb.MaxRequests)}
	c.retryRB = resource{name: "max_retries", limit: int64(cb.MaxRetries)}
	if c.dialContext == nil {
		var d net.Dialer
		if cfg.SourceAddress != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(cfg.SourceAddress)}
		}
		c.dialContext = d.DialContext
	}
	if cfg.Type == TypeOriginalDst {
		c.origDst = newOriginalDst()
	}
	if c.protocol != ProtocolHTTP1 {
		c.h2t = &http2.Transport{
			AllowHTTP:                  true,
			DisableCompression:         true, // a proxy passes content codings through
			StrictMaxConcurrentStreams: true,
		}
	}
	return c
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Config returns the cluster's configuration (defaults applied).
func (c *Cluster) Config() ClusterConfig { return c.cfg }

// Hosts returns the cluster's current hosts. The slice must not be
// modified.
func (c *Cluster) Hosts() []*Host {
	if hs := c.hosts.Load(); hs != nil {
		return hs.hosts
	}
	return nil
}

// setHosts installs a new host set (c.mu held or during construction).
func (c *Cluster) setHostsLocked(hosts []*Host) {
	c.rebuildLocked(hosts)
	c.stats.set(statMembershipTotal, int64(len(hosts)))
	active := int64(0)
	for _, h := range hosts {
		if h.ejected.Load() {
			active++
		}
	}
	c.stats.set(statOutlierEjectionsActive, active)
	for _, h := range c.byAddr {
		if !slices.Contains(hosts, h) {
			c.stopHealthCheckLocked(h)
		}
	}
	clear(c.byAddr)
	for _, h := range hosts {
		c.byAddr[h.addr] = h
		c.startHealthCheckLocked(h)
	}
}

// NewStream sends a request's headers to a host of the cluster: it picks
// the host with the load balancer, takes a connection from the host's pool
// (waiting in the pending queue when none is ready), and writes the
// headers, which carry the pseudo-headers :method, :path, :authority and
// :scheme; hop-by-hop headers must already be removed. endStream means
// the request has no body.
//
// Failures are *Error values: NoHealthyUpstream (UH) when the cluster has
// no host, UpstreamOverflow (UO) when a circuit breaker is full,
// UpstreamConnectionFailure (UF) when connecting fails (Reason
// "connection refused", "connect timeout" ...). When ctx ends while the
// request waits for a connection, ctx's error is returned wrapped. NewStream
// may block until a connection is available or ctx ends.
//
// The Stream must be ended with exactly one Close or Reset; after that,
// its methods fail with ErrStreamClosed (the connection may already carry
// another request).
func (c *Cluster) NewStream(ctx context.Context, headers *filter.HeaderMap, endStream bool, opts StreamOptions) (Stream, error) {
	info := opts.Info
	if info != nil {
		info.UpstreamCluster = c.name
	}
	var h *Host
	panicking := false
	if c.origDst != nil {
		h = c.originalDstHTTPHost(headers, info)
	} else if hs := c.hosts.Load(); hs != nil && hs.lb != nil {
		h, panicking = hs.lb.Pick(opts.LB), hs.panic
	}
	if h == nil {
		return nil, &Error{Flag: filter.NoHealthyUpstream, Reason: "no healthy upstream", Err: ErrNoHealthyUpstream}
	}
	if panicking {
		c.stats.inc(statLBHealthyPanic)
	}
	if info != nil {
		info.UpstreamHost = h.addr
	}
	useH2 := c.protocol == ProtocolHTTP2 || (c.protocol == ProtocolUseDownstream && opts.Protocol == filter.ProtocolHTTP2)
	if opts.Upgrade {
		if h.h1 == nil {
			return nil, &Error{Flag: filter.UpstreamProtocolError, Reason: "upgrade over http2",
				Err: fmt.Errorf("upstream: cluster %q speaks only http2, which cannot carry an HTTP/1.1 upgrade", c.name)}
		}
		useH2 = false
	}
	if !c.rqRB.tryAcquire() {
		c.stats.inc(statRqPendingOverflow)
		return nil, c.fail(info, &Error{Flag: filter.UpstreamOverflow, Reason: "max requests overflow", Err: ErrOverflow})
	}
	p := h.h1
	if useH2 {
		p = h.h2
	}
	pc, err := p.acquire(ctx, opts.ProbeConnection)
	if err != nil {
		c.rqRB.release()
		return nil, c.fail(info, err)
	}
	c.stats.inc(statRqTotal)
	c.stats.inc(statRqActive)
	h.stats[hostRqTotal].Add(1)
	h.stats[hostRqActive].Add(1)
	h.rqActive.Add(1)
	if info != nil {
		info.UpstreamLocalAddress = pc.localAddr
	}
	if useH2 {
		s, err := startH2(pc, headers, endStream, opts)
		if err != nil {
			c.endRequest(h, false)
			pc.pool.release(pc, true)
			return nil, c.fail(info, err)
		}
		return s, nil
	}
	pc.h1.watchCtx = !opts.ResetOnCancel
	pc.h1.sendWithRead = opts.SendWithRead
	err = pc.h1.start(headers, endStream, opts.Upgrade)
	s := h1handle{&pc.h1, pc.h1.gen}
	if err != nil {
		s.Reset()
		return nil, c.fail(info, err)
	}
	return s, nil
}

func (c *Cluster) fail(info *filter.StreamInfo, err error) error {
	if e, ok := err.(*Error); ok && info != nil && e.Reason != "" {
		info.UpstreamTransportFailureReason = e.Reason
	}
	return err
}

// endRequest accounts for the end of a request started by NewStream.
func (c *Cluster) endRequest(h *Host, completed bool) {
	c.rqRB.release()
	c.stats.dec(statRqActive)
	h.stats[hostRqActive].Add(-1)
	h.rqActive.Add(-1)
	if completed {
		c.stats.inc(statRqCompleted)
		h.stats[hostRqSuccess].Add(1)
	} else {
		c.stats.inc(statRqReset)
		h.stats[hostRqError].Add(1)
	}
}

// headersCancelled accounts for ReadHeaders ending because its ctx did: a
// deadline is a response timeout (upstream_rq_timeout, the host's
// rq_timeout, and a failure for outlier detection, as Envoy counts a
// timeout as a 504); a cancellation (the downstream went away) is neither.
func (h *Host) headersCancelled(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		h.cluster.stats.inc(statRqTimeout)
		h.stats[hostRqTimeout].Add(1)
		h.recordLocalFailure()
	}
	return fmt.Errorf("upstream: waiting for response headers: %w", err)
}

// RecordTimeout counts a request to host (an address as in
// StreamInfo.UpstreamHost) that the router timed out after its response
// headers arrived (upstream_rq_timeout and the host's rq_timeout). A
// timeout while waiting for the headers, with ReadHeaders' ctx deadline,
// is counted by ReadHeaders itself.
func (c *Cluster) RecordTimeout(host string) {
	c.stats.inc(statRqTimeout)
	if hs := c.hosts.Load(); hs != nil {
		for _, h := range hs.hosts {
			if h.addr == host {
				h.stats[hostRqTimeout].Add(1)
				return
			}
		}
	}
}

// Resolver looks host names up; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// dnsTimeout bounds one STRICT_DNS resolution of a cluster.
const dnsTimeout = 5 * time.Second

// resolve resolves every endpoint of a STRICT_DNS cluster and installs the
// resulting host set when it changed. On any failure the current set is
// kept and the failure counted.
func (c *Cluster) resolve(ctx context.Context) error {
	c.stats.inc(statUpdateAttempt)
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	type want struct {
		addr, hostname string
		weight         uint32
	}
	var wants []want
	seen := make(map[string]bool)
	for _, ep := range c.cfg.Endpoints {
		name, portStr, err := net.SplitHostPort(ep.Address)
		if err != nil {
			c.stats.inc(statUpdateFailure)
			return fmt.Errorf("upstream: cluster %q: %w", c.name, err)
		}
		port, _ := strconv.ParseUint(portStr, 10, 16)
		ips, err := c.resolver.LookupNetIP(ctx, lookupNetwork(c.cfg.DNSLookupFamily), name)
		ips = filterFamily(ips, c.cfg.DNSLookupFamily)
		if err == nil && len(ips) == 0 {
			err = fmt.Errorf("no addresses for %q", name)
		}
		if err != nil {
			c.stats.inc(statUpdateFailure)
			return fmt.Errorf("upstream: cluster %q: resolving %q: %w", c.name, name, err)
		}
		addrs := make([]string, 0, len(ips))
		for _, ip := range ips {
			addrs = append(addrs, netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
		}
		slices.Sort(addrs)
		for _, a := range addrs {
			if !seen[a] {
				seen[a] = true
				wants = append(wants, want{a, name, ep.Weight})
			}
		}
	}
	c.stats.inc(statUpdateSuccess)

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	cur := c.Hosts()
	same := len(cur) == len(wants)
	for i := 0; same && i < len(cur); i++ {
		same = cur[i].addr == wants[i].addr && cur[i].weight == wants[i].weight
	}
	c.pruneRetiredLocked()
	if same {
		return nil
	}
	hosts := make([]*Host, 0, len(wants))
	keep := make(map[*Host]bool, len(wants))
	for _, w := range wants {
		h := c.byAddr[w.addr]
		if h == nil || h.weight != w.weight {
			h = newHost(c, w.addr, w.hostname, w.weight)
		}
		keep[h] = true
		hosts = append(hosts, h)
	}
	for _, h := range cur {
		if !keep[h] {
			h.drain()
			c.retired = append(c.retired, h)
		}
	}
	c.setHostsLocked(hosts)
	c.stats.inc(statMembershipChange)
	c.log.Debug("host set changed", zap.Int("hosts", len(hosts)))
	return nil
}

// lookupNetwork is the LookupNetIP network for a lookup family.
func lookupNetwork(family string) string {
	switch family {
	case DNSV4Only:
		return "ip4"
	case DNSV6Only:
		return "ip6"
	}
	return "ip"
}

// filterFamily returns the addresses a lookup family selects, in a new
// slice (the resolver's may be shared).
func filterFamily(ips []netip.Addr, family string) []netip.Addr {
	var keep4 bool
	switch family {
	case DNSAll:
		return ips
	case DNSV4Only:
		keep4 = true
	case DNSV6Only:
		keep4 = false
	case DNSAuto:
		keep4 = !slices.ContainsFunc(ips, func(a netip.Addr) bool { return !a.Unmap().Is4() })
	default: // V4_PREFERRED
		keep4 = slices.ContainsFunc(ips, func(a netip.Addr) bool { return a.Unmap().Is4() })
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, a := range ips {
		if a.Unmap().Is4() == keep4 {
			out = append(out, a)
		}
	}
	return out
}

// pruneRetiredLocked closes removed hosts whose connections are all gone.
func (c *Cluster) pruneRetiredLocked() {
	kept := c.retired[:0]
	for _, h := range c.retired {
		busy := false
		for _, p := range h.pools() {
			ready, b, pending, connecting := p.counts()
			if ready+b+pending+connecting > 0 {
				busy = true
			}
		}
		if busy {
			kept = append(kept, h)
		} else {
			h.close()
		}
	}
	clear(c.retired[len(kept):])
	c.retired = kept
}

// loop runs a cluster's periodic work until stop is closed: STRICT_DNS
// re-resolution every dns_refresh_rate (the first one is already done) and
// the outlier-detection interval.
func (c *Cluster) loop() {
	defer close(c.done)
	var dnsC, odC <-chan time.Time
	if c.cfg.Type == TypeStrictDNS {
		t := time.NewTicker(c.cfg.DNSRefreshRate.D())
		defer t.Stop()
		dnsC = t.C
	}
	if c.outlier != nil {
		t := time.NewTicker(c.outlier.interval)
		defer t.Stop()
		odC = t.C
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-c.stop:
			return
		case <-dnsC:
			if err := c.resolve(ctx); err != nil {
				c.log.Debug("dns refresh failed", zap.Error(err))
			}
		case <-odC:
			c.unejectExpired(c.now())
		}
	}
}

// close stops the cluster's loop and health checks and closes every pool.
func (c *Cluster) close() {
	if c.stop != nil {
		close(c.stop)
		<-c.done
	}
	c.mu.Lock()
	c.closed = true
	hosts := append(slices.Clone(c.Hosts()), c.retired...)
	c.retired = nil
	for _, h := range hosts {
		c.stopHealthCheckLocked(h)
	}
	c.mu.Unlock()
	c.hcWG.Wait()
	if c.hc != nil && c.hc.closeIdle != nil {
		c.hc.closeIdle()
	}
	for _, h := range hosts {
		h.close()
	}
}
