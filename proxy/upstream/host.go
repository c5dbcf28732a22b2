package upstream

import (
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Host is one upstream endpoint of a cluster: an address with a weight,
// its connection pools and its stats. Hosts are created by the cluster
// and safe for concurrent use.
type Host struct {
	cluster  *Cluster
	addr     string // "ip:port"
	hostname string // the STRICT_DNS name it was resolved from, "" for STATIC
	weight   uint32

	rqActive atomic.Int64 // requests in flight, for LEAST_REQUEST
	stats    [numHostStats]atomic.Int64

	// Outlier detection: the counters and ejected are read on the hot
	// path; ejections and ejectedUntil are guarded by cluster.mu.
	consecutive5xx     atomic.Int32
	consecutiveGateway atomic.Int32
	ejected            atomic.Bool
	ejections          int
	ejectedUntil       time.Time

	// Active health checking: the flags are written under cluster.mu and
	// read anywhere; the counts belong to cluster.mu; hc is the host's
	// checking goroutine (nil without health checks).
	hcFailed  atomic.Bool // failed_active_hc
	hcPending atomic.Bool // pending_active_hc: not checked yet
	hcOK      uint32      // successes in a row while failed
	hcFail    uint32      // failures in a row while healthy
	hc        *hcSession

	h1 *pool // nil unless the cluster can speak HTTP/1.1
	h2 *pool // nil unless the cluster can speak HTTP/2
}

func newHost(c *Cluster, addr, hostname string, weight uint32) *Host {
	h := &Host{cluster: c, addr: addr, hostname: hostname, weight: weight}
	if c.hc != nil { // Envoy: a new host is unhealthy until its first check
		h.hcFailed.Store(true)
		h.hcPending.Store(true)
	}
	if c.protocol != ProtocolHTTP2 {
		h.h1 = newPool(h, false)
	}
	if c.protocol != ProtocolHTTP1 {
		h.h2 = newPool(h, true)
	}
	return h
}

// Address is the host's "ip:port".
func (h *Host) Address() string { return h.addr }

// Hostname is the DNS name a STRICT_DNS host was resolved from, "" for a
// STATIC one.
func (h *Host) Hostname() string { return h.hostname }

// Weight is the host's load-balancing weight.
func (h *Host) Weight() uint32 { return h.weight }

// Ejected reports whether outlier detection has taken the host out of
// load balancing.
func (h *Host) Ejected() bool { return h.ejected.Load() }

// FailedActiveHealthCheck reports whether active health checking marks
// the host unhealthy (also before its first check, see HealthFlags).
func (h *Host) FailedActiveHealthCheck() bool { return h.hcFailed.Load() }

// Healthy reports whether the load balancer may pick the host outside
// panic mode: neither ejected nor failing active health checks.
func (h *Host) Healthy() bool { return !h.ejected.Load() && !h.hcFailed.Load() }

// HealthFlags renders the host's health as Envoy's admin /clusters does:
// "healthy", or the failing flags concatenated in Envoy's order
// ("/failed_active_hc", "/failed_outlier_check", "/pending_active_hc").
func (h *Host) HealthFlags() string {
	failedHC, ejected, pending := h.hcFailed.Load(), h.ejected.Load(), h.hcPending.Load()
	if !failedHC && !ejected && !pending {
		return "healthy"
	}
	s := ""
	if failedHC {
		s += "/failed_active_hc"
	}
	if ejected {
		s += "/failed_outlier_check"
	}
	if pending {
		s += "/pending_active_hc"
	}
	return s
}

// ActiveRequests is the number of requests in flight to the host.
func (h *Host) ActiveRequests() int64 { return h.rqActive.Load() }

func (h *Host) pools() []*pool {
	ps := make([]*pool, 0, 2)
	if h.h1 != nil {
		ps = append(ps, h.h1)
	}
	if h.h2 != nil {
		ps = append(ps, h.h2)
	}
	return ps
}

func (h *Host) close() {
	for _, p := range h.pools() {
		p.close()
	}
}

func (h *Host) drain() {
	for _, p := range h.pools() {
		p.drain()
	}
}

func zapHost(h *Host) zap.Field  { return zap.String("host", h.addr) }
func zapErr(err error) zap.Field { return zap.Error(err) }
