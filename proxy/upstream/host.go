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

	// Outlier detection: consecutive5xx and ejected are read on the hot
	// path; ejections and ejectedUntil are guarded by cluster.mu.
	consecutive5xx atomic.Int32
	ejected        atomic.Bool
	ejections      int
	ejectedUntil   time.Time

	h1 *pool // nil unless the cluster can speak HTTP/1.1
	h2 *pool // nil unless the cluster can speak HTTP/2
}

func newHost(c *Cluster, addr, hostname string, weight uint32) *Host {
	h := &Host{cluster: c, addr: addr, hostname: hostname, weight: weight}
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
