package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/upstream"
	"go.uber.org/zap"
)

// Traffic capture: the original_dst listener filter, virtual listeners
// (use_original_dst) that hand redirected connections to the listener of
// their original destination, and listeners that do not bind
// (bind_to_port: false) and exist only for that hand-off.

// capture is a listener's traffic-capture state, set by wireCapture.
type capture struct {
	// origDst runs the original_dst listener filter (configured, or implied
	// by use_original_dst) before any other.
	origDst bool
	// index finds the listener of an original destination; nil unless the
	// listener has use_original_dst.
	index *listenerIndex
	// passthrough marks tcp_proxy chains whose cluster is ORIGINAL_DST: a
	// connection without a recovered destination would be proxied back
	// to this very listener, so it is refused instead.
	passthrough map[*chain]bool
	metrics     *captureMetrics
}

// captureMetrics count what original_dst and the hand-off did.
type captureMetrics struct {
	origDst  *prometheus.CounterVec // listener, result
	handoff  *prometheus.CounterVec // listener, target
	loopStop *prometheus.CounterVec // listener
}

// Results of the original_dst filter (label values).
const (
	origDstRecovered     = "recovered"      // rewritten by a nat rule: the destination differs
	origDstNotRedirected = "not_redirected" // conntrack knows the connection, no rewrite
	origDstUnknown       = "unknown"        // getsockopt failed (no nat entry)
)

func newCaptureMetrics(reg prometheus.Registerer) (*captureMetrics, error) {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "remora", Subsystem: "listener", Name: name, Help: help}
	}
	m := &captureMetrics{
		origDst: prometheus.NewCounterVec(opts("original_dst_total",
			"Connections the original_dst listener filter examined, by result (recovered, not_redirected, unknown)."), []string{"listener", "result"}),
		handoff: prometheus.NewCounterVec(opts("handoff_total",
			"Connections a use_original_dst listener handed to the listener of their original destination."), []string{"listener", "target"}),
		loopStop: prometheus.NewCounterVec(opts("passthrough_refused_total",
			"Connections without an original destination refused by a tcp_proxy to an ORIGINAL_DST cluster (they would loop back to the proxy)."), []string{"listener"}),
	}
	for _, c := range []**prometheus.CounterVec{&m.origDst, &m.handoff, &m.loopStop} {
		if err := reg.Register(*c); err != nil {
			// A configuration reloaded on the same registry keeps counting
			// on the metrics the previous one registered.
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if old, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					*c = old
					continue
				}
			}
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
	}
	return m, nil
}

// wireCapture sets up original_dst, use_original_dst and passthrough
// protection on built listeners (each l.chains[j] built from
// l.cfg.FilterChains[j]). It fails when a listener needs original_dst on a
// platform without it.
func wireCapture(ls []*listener, set *upstream.Set, reg prometheus.Registerer) error {
	var m *captureMetrics
	var idx *listenerIndex
	for i, l := range ls {
		if !l.cfg.UseOriginalDst && !l.cfg.HasListenerFilter(config.ListenerFilterOriginalDst) {
			continue
		}
		if err := originalDstSupported(); err != nil {
			return fmt.Errorf("server: listeners[%d]: %w", i, err)
		}
		if m == nil {
			var err error
			if m, err = newCaptureMetrics(reg); err != nil {
				return err
			}
		}
		l.capture.origDst = true
		l.capture.metrics = m
		if l.cfg.UseOriginalDst {
			if idx == nil {
				idx = newListenerIndex(ls)
			}
			l.capture.index = idx
		}
	}
	for _, l := range ls {
		for j, c := range l.chains {
			if c.tcp == nil || j >= len(l.cfg.FilterChains) {
				continue
			}
			cl := set.Cluster(l.cfg.FilterChains[j].TCPProxy.Cluster)
			if cl != nil && cl.Config().Type == upstream.TypeOriginalDst {
				if l.capture.passthrough == nil {
					l.capture.passthrough = map[*chain]bool{}
				}
				l.capture.passthrough[c] = true
			}
		}
	}
	return nil
}

// dispatchCaptured runs original_dst on cc, then either hands cc to the
// listener of its original destination (use_original_dst) or serves it on
// this listener with the original destination as its local address.
func (l *listener) dispatchCaptured(cc *countedConn) {
	m := l.capture.metrics
	dst, err := originalDst(cc.Conn)
	if err != nil {
		// Not redirected (no nat entry): served as it came, as Envoy does.
		m.origDst.WithLabelValues(l.cfg.Name, origDstUnknown).Inc()
		l.log.Debug("original_dst: no original destination", zap.String("listener", l.cfg.Name), zap.Error(err))
		l.serve(cc, netip.AddrPort{})
		return
	}
	if a, ok := cc.Conn.LocalAddr().(*net.TCPAddr); ok && a.AddrPort() == dst {
		m.origDst.WithLabelValues(l.cfg.Name, origDstNotRedirected).Inc()
		l.serve(cc, netip.AddrPort{})
		return
	}
	m.origDst.WithLabelValues(l.cfg.Name, origDstRecovered).Inc()
	if l.capture.index != nil {
		if t := l.capture.index.lookup(dst, l); t != nil {
			m.handoff.WithLabelValues(l.cfg.Name, t.cfg.Name).Inc()
			// The connection now belongs to t: its limits, stats and drain.
			cc.once.Do(cc.release)
			if tc := t.admit(cc.Conn); tc != nil {
				t.serve(tc, dst)
			}
			return
		}
	}
	l.serve(cc, dst)
}

// loops reports (and counts) a connection without an original destination
// picked by a tcp_proxy chain to an ORIGINAL_DST cluster: proxying it would
// connect to this listener again, and again.
func (l *listener) loops(c *chain, dst netip.AddrPort) bool {
	if dst.IsValid() || !l.capture.passthrough[c] {
		return false
	}
	if l.capture.metrics != nil {
		l.capture.metrics.loopStop.WithLabelValues(l.cfg.Name).Inc()
	}
	l.log.Debug("passthrough without an original destination refused", zap.String("listener", l.cfg.Name))
	return true
}

// origDstConn is a connection whose local address is its original
// destination (for HTTP chains: the connection manager reads
// LocalAddr for StreamInfo and the ORIGINAL_DST cluster).
type origDstConn struct {
	net.Conn
	local netip.AddrPort
}

func (c *origDstConn) LocalAddr() net.Addr { return net.TCPAddrFromAddrPort(c.local) }

// listenerIndex finds the listener of an original destination: exact
// ip:port first, then a wildcard address (0.0.0.0 or ::) with that port.
// It is built once and read concurrently.
type listenerIndex struct {
	exact map[netip.AddrPort]*listener
	any4  map[uint16]*listener
	any6  map[uint16]*listener
}

func newListenerIndex(ls []*listener) *listenerIndex {
	x := &listenerIndex{exact: map[netip.AddrPort]*listener{}, any4: map[uint16]*listener{}, any6: map[uint16]*listener{}}
	for _, l := range ls {
		ap, err := netip.ParseAddrPort(l.cfg.Address)
		if err != nil || ap.Port() == 0 {
			continue // a host name or an ephemeral port cannot be an original destination
		}
		a := ap.Addr().Unmap()
		switch {
		case a.IsUnspecified() && a.Is4():
			x.any4[ap.Port()] = l
		case a.IsUnspecified():
			x.any6[ap.Port()] = l
		default:
			x.exact[netip.AddrPortFrom(a, ap.Port())] = l
		}
	}
	return x
}

// lookup returns the listener for dst other than self, nil if none. An
// IPv4 destination also matches [::]:port (a dual-stack socket accepts it).
func (x *listenerIndex) lookup(dst netip.AddrPort, self *listener) *listener {
	a, p := dst.Addr().Unmap(), dst.Port()
	pick := func(l *listener) *listener {
		if l == self {
			return nil
		}
		return l
	}
	if l := pick(x.exact[netip.AddrPortFrom(a, p)]); l != nil {
		return l
	}
	if a.Is4() {
		if l := pick(x.any4[p]); l != nil {
			return l
		}
	}
	return pick(x.any6[p])
}
