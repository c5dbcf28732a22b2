// Package tcpproxy is the tcp_proxy network filter: it relays every
// downstream connection of a filter chain, byte for byte, to a host of one
// upstream cluster (Envoy's envoy.filters.network.tcp_proxy).
//
// Data enters as an accepted downstream connection handed over by the
// listener (Serve). The proxy opens an upstream connection with
// upstream.(*Cluster).DialTCP (load balancer, connect_timeout,
// max_connections; failures end the connection with flag UF, UO or UH),
// optionally asks the Mixer server whether the connection may proceed
// (flag UAEX when denied), then copies both directions until both have
// ended. When the connection ends its StreamInfo (Protocol "" for TCP)
// goes to the configured access-log handlers and, with mixer, to a close
// report.
//
// Zero copy: when both ends are plain *net.TCPConn, each direction is
// (*net.TCPConn).ReadFrom on the other, which Go implements with splice(2)
// on Linux: the bytes never enter user space. The listener therefore
// hands over the concrete connection (not a wrapper), and the upstream
// side uses upstream.TCPConn.NetConn. A TLS-terminated downstream is
// copied through a pooled 32 KiB buffer instead.
//
// Half-close: when one side ends its stream (FIN), the proxy half-closes
// (CloseWrite) the other side and keeps copying the opposite direction;
// the connection ends when both directions are done, or at once on an
// error.
//
// Idle timeout: reads carry a deadline of one "period" (the idle timeout,
// or the mixer report interval when shorter). A direction that finished a
// period without a byte has been quiet since the period began; when both
// directions are quiet for idle_timeout the connection is closed
// (remora_tcp_idle_timeout_total, %RESPONSE_CODE_DETAILS% "idle_timeout",
// no response flag, as Envoy sets none). Since splice reports progress only
// when it returns, a direction's quiet time is checked by interrupting its
// read (a "poke": its deadline is moved to now) rather than trusted from
// its last period; the close therefore happens between idle_timeout and
// idle_timeout plus one period after the last byte.
package tcpproxy
