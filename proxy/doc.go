// Package proxy is the root of Remora's sidecar data plane (`remora proxy`).
//
// Data enters through listeners (downstream TCP connections), passes
// listener filters and a network filter chain, and for HTTP traffic the
// connection manager decodes requests into streams that run a chain of
// decoder filters ending in the router. The router picks a cluster, whose
// load balancer and connection pool carry the request upstream; responses
// run the encoder filters in reverse, and when a stream ends its access-log
// handlers (file, gRPC, mixer report) receive the stream's information.
// Subpackages hold one concern each.
package proxy
