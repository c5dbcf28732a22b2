// Package upstream is the sidecar's cluster manager: the clusters a router
// sends requests to, their hosts (static or re-resolved by DNS), load
// balancers, circuit breakers, connection pools and stats.
//
// Data enters through (*Cluster).NewStream with a request's headers (HTTP/2
// style, with pseudo-headers) and leaves as a Stream: the router writes the
// request body and trailers into it and reads the response headers, body
// and trailers from it. Failures to reach a host are *Error values that
// carry the Envoy response flag the stream ends with (UH, UO, UF, UC ...).
//
// The request path follows Envoy's: the cluster's load balancer picks a
// host; the host's connection pool (one per protocol) hands out a ready
// connection or queues the request in its pending queue, served first in
// first out as connections connect or free up; circuit breakers bound
// connections, pending requests, requests and retries per cluster;
// optional outlier detection (consecutive 5xx and gateway failures,
// outlier.go) takes failing hosts out of load balancing for a while, and
// optional active health checks (HTTP or TCP, one goroutine per host,
// healthcheck.go) mark hosts failed_active_hc. Each cluster holds an
// immutable host set (hosts plus the load balancer built over the healthy
// ones, or over all of them in panic mode when fewer than half are
// healthy), swapped atomically when DNS answers change or a host's health
// changes. A cluster with a tls block originates TLS on every connection
// (tls.go): SNI, CA verification, client certificates, ALPN per protocol,
// files reloaded when they change.
// HTTP/1.1 is spoken by this package's own codec on net.Conn (one request
// per connection at a time, keep-alive, chunked bodies and trailers, 1xx,
// upgrades); HTTP/2 (h2c with prior knowledge, or h2 over TLS) by golang.org/x/net/http2's
// ClientConn, several streams per connection.
//
// Stats are atomics read at scrape time by a prometheus.Collector
// registered on the injected registry (envoy_cluster_* metrics); the admin
// views are (*Manager).WriteClusters, WriteClustersJSON and WriteStats.
package upstream
