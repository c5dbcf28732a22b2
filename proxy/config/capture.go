package config

import (
	"fmt"
	"net/netip"
)

// listenerFilters checks listener_filters: known names, each at most once.
func (v *validator) listenerFilters(p string, fs []ListenerFilter) {
	seen := map[string]int{}
	for j, lf := range fs {
		fp := fmt.Sprintf("%s.listener_filters[%d].name", p, j)
		switch lf.Name {
		case ListenerFilterTLSInspector, ListenerFilterOriginalDst:
		default:
			v.errf(fp, "unknown listener filter %q (known: %s, %s)", lf.Name, ListenerFilterOriginalDst, ListenerFilterTLSInspector)
			continue
		}
		if k, dup := seen[lf.Name]; dup {
			v.errf(fp, "duplicate of listener_filters[%d]", k)
		}
		seen[lf.Name] = j
	}
}

// capture checks use_original_dst and bind_to_port. A listener that does
// not bind is reachable only through a use_original_dst listener, so one
// must exist (virtual), and its address must be an IP literal and port
// that an original destination can equal.
func (v *validator) capture(p string, l *Listener, virtual bool) {
	// A passthrough needs an original destination: without original_dst a
	// connection would be proxied to the listener's own address.
	if l.Binds() && !l.UseOriginalDst && !l.HasListenerFilter(ListenerFilterOriginalDst) {
		for j, fc := range l.FilterChains {
			if t := fc.TCPProxy; t != nil && v.origDstClusters[t.Cluster] {
				v.errf(fmt.Sprintf("%s.filter_chains[%d].tcp_proxy.cluster", p, j),
					"ORIGINAL_DST cluster %q needs the connection's original destination: add the original_dst listener filter or use_original_dst", t.Cluster)
			}
		}
	}
	if l.Binds() {
		return
	}
	if l.UseOriginalDst {
		v.errf(p+".use_original_dst", "a listener with bind_to_port: false receives no connection of its own to hand off")
	}
	if !virtual {
		v.errf(p+".bind_to_port", "false, but no listener has use_original_dst: true, so no connection can reach this listener")
	}
	if l.Address == "" {
		return // reported by addr
	}
	ap, err := netip.ParseAddrPort(l.Address)
	switch {
	case err != nil:
		v.errf(p+".address", "%q: a listener with bind_to_port: false needs an IP address and port (it is matched against original destinations)", l.Address)
	case ap.Port() == 0:
		v.errf(p+".address", "%q: a listener with bind_to_port: false needs a port other than 0", l.Address)
	}
}
