package upstream

import (
	"net/netip"
	"slices"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

// OriginalDstCleanupInterval is how long a host of an ORIGINAL_DST
// cluster stays after its last use once it carries no connection (Envoy's
// cleanup_interval default).
const OriginalDstCleanupInterval = 5 * time.Second

// originalDst is the state of an ORIGINAL_DST cluster: its hosts are made
// on demand, one per destination, and removed when idle. Guarded by the
// cluster's mu; the host list itself is published through Cluster.hosts
// (with no load balancer) so that stats and /clusters show it.
type originalDst struct {
	lastUsed map[*Host]time.Time
	swept    time.Time
	now      func() time.Time // time.Now; tests may replace it
}

func newOriginalDst() *originalDst {
	return &originalDst{lastUsed: map[*Host]time.Time{}, now: time.Now}
}

// originalDstHost returns the host for the connection's original
// destination (info.DownstreamLocalAddress, which the original_dst
// listener filter sets), creating it on first use; nil when there is no
// destination or the cluster is closed. It is called once per TCP
// connection and per HTTP request on an ORIGINAL_DST cluster.
func (c *Cluster) originalDstHost(info *filter.StreamInfo) *Host {
	if info == nil || !info.DownstreamLocalAddress.IsValid() {
		return nil
	}
	dst := info.DownstreamLocalAddress
	if dst.Port() == 0 || dst.Addr().IsUnspecified() {
		return nil
	}
	key := netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()).String()
	o := c.origDst
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	now := o.now()
	if h := c.byAddr[key]; h != nil {
		o.lastUsed[h] = now
		return h
	}
	hosts := slices.Clone(c.Hosts())
	if now.Sub(o.swept) >= OriginalDstCleanupInterval {
		hosts = c.sweepOriginalDstLocked(hosts, now)
		o.swept = now
	}
	h := newHost(c, key, "", 1)
	o.lastUsed[h] = now
	hosts = append(hosts, h)
	c.publishOriginalDstLocked(hosts)
	c.stats.inc(statMembershipChange)
	return h
}

// sweepOriginalDstLocked closes and drops the hosts that carry nothing and
// were last used a cleanup interval ago; it returns the hosts kept.
func (c *Cluster) sweepOriginalDstLocked(hosts []*Host, now time.Time) []*Host {
	o := c.origDst
	kept := hosts[:0]
	for _, h := range hosts {
		if now.Sub(o.lastUsed[h]) < OriginalDstCleanupInterval || hostBusy(h) {
			kept = append(kept, h)
			continue
		}
		delete(o.lastUsed, h)
		h.close()
	}
	if len(kept) != len(hosts) {
		clear(hosts[len(kept):])
		c.stats.inc(statMembershipChange)
	}
	return kept
}

// publishOriginalDstLocked installs hosts (which have no load balancer: the
// destination picks the host).
func (c *Cluster) publishOriginalDstLocked(hosts []*Host) {
	c.hosts.Store(&hostSet{hosts: hosts})
	c.stats.set(statMembershipTotal, int64(len(hosts)))
	clear(c.byAddr)
	for _, h := range hosts {
		c.byAddr[h.addr] = h
	}
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
