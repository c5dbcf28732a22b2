// Package server assembles a running sidecar from a config.Bootstrap: the
// upstream cluster manager, compiled route tables, one HTTP connection
// manager per filter chain, the listeners (filter-chain selection by
// destination port, SNI and ALPN, the tls_inspector listener filter, TLS
// termination, connection limits), the admin server and graceful drain.
//
// New builds everything without opening sockets (remora validate uses it
// to check a configuration completely); Start listens; Drain stops
// accepting, lets in-flight streams finish within the drain timeout and
// closes idle keep-alive connections; Close releases the rest.
package server
