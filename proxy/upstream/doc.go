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
// optional consecutive-5xx outlier detection takes failing hosts out of
// load balancing for a while. Each cluster holds an immutable host set
// (hosts plus the load balancer built over the healthy ones), swapped
// atomically when DNS answers change or a host is ejected or returns.
// HTTP/1.1 is spoken by this package's own codec on net.Conn (one request
// per connection at a time, keep-alive, chunked bodies and trailers, 1xx,
// upgrades); HTTP/2 (h2c, prior knowledge) by golang.org/x/net/http2's
// ClientConn, several streams per connection.
//
// Stats are atomics read at scrape time by a prometheus.Collector
// registered on the injected registry (envoy_cluster_* metrics); the admin
// views are (*Manager).WriteClusters and (*Manager).WriteStats.
package upstream
