// Package proxy is the root of Remora's sidecar data plane (`remora proxy`).
//
// Data enters through listeners (downstream TCP connections), passes
// listener filters and a network filter chain, and for HTTP traffic the
// connection manager decodes requests into streams that run a chain of
// decoder filters ending in the router. The router picks a cluster, whose
// load balancer and connection pool carry the request upstream; responses
// run the encoder filters in reverse, and when a stream ends its access-log
// handlers (file, gRPC, mixer report) receive the stream's information.
//
// Subpackages hold one concern each:
//
//	filter    the codec-independent filter contract and registries
//	config    the bootstrap configuration (strict YAML, defaults, Validate)
//	router    route tables and the router, the terminal filter
//	hcm       the HTTP connection manager (streams, filter iteration)
//	upstream  clusters, load balancers, connection pools, circuit breakers
//	server    listeners, TLS, tls_inspector, admin server, drain
//	filters   built-in HTTP filters; filters/all wires the standard set
package proxy
