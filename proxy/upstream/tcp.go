package upstream

import (
	"context"
	"net"
	"sync"

	"github.com/remora-mesh/remora/proxy/filter"
)

// TCPConn is a raw upstream connection opened by DialTCP for a TCP proxy.
// It holds one unit of the cluster's max_connections circuit breaker until
// Close. It is safe for concurrent use as its net.Conn is.
type TCPConn struct {
	net.Conn
	cluster *Cluster
	host    *Host
	once    sync.Once
}

// NetConn returns the dialed connection (a *net.TCPConn with the default
// dialer, a *tls.Conn when the cluster originates TLS) so that a proxy can
// copy with it directly and keep the kernel's zero-copy path (splice). Read, Write, CloseWrite and deadlines may be
// used on it; it must be closed only through the TCPConn.
func (t *TCPConn) NetConn() net.Conn { return t.Conn }

// Host is the upstream host the connection goes to.
func (t *TCPConn) Host() *Host { return t.host }

// Close closes the connection and releases its circuit-breaker unit. It
// may be called more than once.
func (t *TCPConn) Close() error {
	err := t.Conn.Close()
	t.once.Do(func() {
		c := t.cluster
		c.cxRB.release()
		c.stats.dec(statCxActive)
		c.stats.inc(statCxDestroy)
		t.host.stats[hostCxActive].Add(-1)
	})
	return err
}

// DialTCP opens a raw TCP connection to a host of the cluster picked by
// its load balancer, for a TCP proxy. The connection is not pooled: it
// belongs to the caller, who must Close it. It honours connect_timeout
// and the max_connections circuit breaker, and counts the cluster's and
// host's connection stats as pooled connections do; a failed connect
// counts for outlier detection.
//
// Failures are *Error values: NoHealthyUpstream (UH) when the cluster has
// no host, UpstreamOverflow (UO) when max_connections is reached,
// UpstreamConnectionFailure (UF) when connecting fails or times out. info,
// when not nil, receives UpstreamCluster, UpstreamHost,
// UpstreamLocalAddress and UpstreamTransportFailureReason. DialTCP blocks
// until the connection is made, the connect timeout passes or ctx ends.
func (c *Cluster) DialTCP(ctx context.Context, lb LBContext, info *filter.StreamInfo) (*TCPConn, error) {
	if info != nil {
		info.UpstreamCluster = c.name
	}
	var h *Host
	panicking := false
	if c.origDst != nil {
		h = c.originalDstHost(info)
	} else if hs := c.hosts.Load(); hs != nil && hs.lb != nil {
		h, panicking = hs.lb.Pick(lb), hs.panic
	}
	if h == nil {
		return nil, c.fail(info, &Error{Flag: filter.NoHealthyUpstream, Reason: "no healthy upstream", Err: ErrNoHealthyUpstream})
	}
	if panicking {
		c.stats.inc(statLBHealthyPanic)
	}
	if info != nil {
		info.UpstreamHost = h.addr
	}
	if !c.cxRB.tryAcquire() {
		c.stats.inc(statCxOverflow)
		return nil, c.fail(info, &Error{Flag: filter.UpstreamOverflow, Reason: "max connections overflow", Err: ErrOverflow})
	}
	dctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	nc, err := c.dialHost(dctx, h, nil)
	cancel()
	if err != nil {
		c.cxRB.release()
		reason := connectFailureReason(err)
		c.stats.inc(statCxConnectFail)
		h.stats[hostCxConnectFail].Add(1)
		if reason == "connect timeout" {
			c.stats.inc(statCxConnectTimeout)
		}
		if ctx.Err() == nil {
			h.recordLocalFailure()
		}
		return nil, c.fail(info, &Error{Flag: filter.UpstreamConnectionFailure, Reason: reason, Err: err})
	}
	c.stats.inc(statCxTotal)
	c.stats.inc(statCxActive)
	h.stats[hostCxTotal].Add(1)
	h.stats[hostCxActive].Add(1)
	if info != nil {
		info.UpstreamLocalAddress = nc.LocalAddr().String()
	}
	return &TCPConn{Conn: nc, cluster: c, host: h}, nil
}
