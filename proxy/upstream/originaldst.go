package upstream

import (
	"maps"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

// OriginalDstCleanupInterval is how long a host of an ORIGINAL_DST
// cluster stays after its last use once it carries no connection (Envoy's
// cleanup_interval default).
const OriginalDstCleanupInterval = 5 * time.Second

// originalDst is the state of an ORIGINAL_DST cluster: its hosts are made
// on demand, one per destination, and removed when idle. byDst is a
// copy-on-write map read without a lock; it is replaced under the
// cluster's mu, which also guards swept. The host list is published
// through Cluster.hosts too (with no load balancer) so that stats and
// /clusters show it.
type originalDst struct {
	byDst atomic.Pointer[map[netip.AddrPort]*dstHost]
	swept time.Time
	now   func() time.Time // time.Now; tests may replace it
}

// dstHost is a host with the time of its last use (UnixNano).
type dstHost struct {
	h    *Host
	last atomic.Int64
}

func newOriginalDst() *originalDst {
	o := &originalDst{now: time.Now}
	o.byDst.Store(&map[netip.AddrPort]*dstHost{})
	return o
}

// originalDstHost returns the host for the connection's original
// destination (info.DownstreamLocalAddress, which the original_dst
// listener filter sets), creating it on first use; nil when there is no
// destination or the cluster is closed. It is called once per TCP
// connection and per HTTP request on an ORIGINAL_DST cluster; a known
// destination costs a map read and no lock or allocation.
//
// A host removed as idle by a concurrent call (unused for a cleanup
// interval, at that very moment) may still be returned; its pools are
// closed, so an HTTP request on it fails as a connection failure.
func (c *Cluster) originalDstHost(info *filter.StreamInfo) *Host {
	if info == nil {
		return nil
	}
	return c.originalDstHostFor(info.DownstreamLocalAddress)
}

// OriginalDstHeader is the request header that names an HTTP request's
// destination on an ORIGINAL_DST cluster with use_http_header.
const OriginalDstHeader = "x-envoy-original-dst-host"

// originalDstHTTPHost is originalDstHost for an HTTP request: with
// use_http_header, a request carrying x-envoy-original-dst-host goes to
// the ip:port it names (nil, so UH, when it names none).
func (c *Cluster) originalDstHTTPHost(headers *filter.HeaderMap, info *filter.StreamInfo) *Host {
	if lc := c.cfg.OriginalDstLBConfig; lc != nil && lc.UseHTTPHeader {
		if v, ok := headers.Get(OriginalDstHeader); ok {
			dst, err := netip.ParseAddrPort(v)
			if err != nil {
				return nil
			}
			return c.originalDstHostFor(dst)
		}
	}
	return c.originalDstHost(info)
}

// originalDstHostFor returns the host for dst, creating it on first use;
// nil when dst is not a usable address or the cluster is closed.
func (c *Cluster) originalDstHostFor(dst netip.AddrPort) *Host {
	if !dst.IsValid() || dst.Port() == 0 || dst.Addr().IsUnspecified() {
		return nil
	}
	key := netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	o := c.origDst
	now := o.now()
	if e := (*o.byDst.Load())[key]; e != nil {
		e.last.Store(now.UnixNano())
		return e.h
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	cur := *o.byDst.Load()
	if e := cur[key]; e != nil { // made while this call waited for the lock
		e.last.Store(now.UnixNano())
		return e.h
	}
	next := maps.Clone(cur)
	if now.Sub(o.swept) >= OriginalDstCleanupInterval {
		o.swept = now
		for k, e := range next {
			if now.Sub(time.Unix(0, e.last.Load())) >= OriginalDstCleanupInterval && !hostBusy(e.h) {
				delete(next, k)
				e.h.close()
			}
		}
	}
	e := &dstHost{h: newHost(c, key.String(), "", 1)}
	e.last.Store(now.UnixNano())
	next[key] = e
	o.byDst.Store(&next)
	hosts := make([]*Host, 0, len(next))
	for _, e := range next {
		hosts = append(hosts, e.h)
	}
	slices.SortFunc(hosts, func(a, b *Host) int { return compareHostAddr(a, b) })
	c.hosts.Store(&hostSet{hosts: hosts})
	c.stats.set(statMembershipTotal, int64(len(hosts)))
	c.stats.inc(statMembershipChange)
	return e.h
}

// compareHostAddr orders hosts by address (ip, then port) for a stable
// /clusters listing.
func compareHostAddr(a, b *Host) int {
	x, errX := netip.ParseAddrPort(a.addr)
	y, errY := netip.ParseAddrPort(b.addr)
	if errX != nil || errY != nil {
		if a.addr < b.addr {
			return -1
		}
		if a.addr > b.addr {
			return 1
		}
		return 0
	}
	return x.Compare(y)
}

// hostBusy reports whether h has a connection or request in flight.
func hostBusy(h *Host) bool {
	if h.stats[hostCxActive].Load() > 0 || h.rqActive.Load() > 0 {
		return true
	}
	for _, p := range h.pools() {
		ready, busy, pending, connecting := p.counts()
		if ready+busy+pending+connecting > 0 {
			return true
		}
	}
	return false
}
