// Package router holds route matching and the router, the terminal HTTP
// filter.
//
// A route configuration (config.RouteConfiguration) is compiled once at
// load into a Table: virtual hosts indexed for Envoy's domain precedence
// (exact, then the longest "*suffix", then the longest "prefix*", then the
// single "*"), each with routes tried in order. Table.Route matches request
// headers to an *Entry, which implements filter.Route and carries the
// route's action: forward to a cluster (or one of weighted clusters, chosen
// per request), redirect, or answer directly.
//
// The router filter (NewFilter) takes the stream's route, rewrites the
// request, opens an upstream stream through Upstreams and pumps the
// response back through filter.TerminalCallbacks. No route is a local 404
// with flag NR; a route timeout is 504 with flag UT; an upstream failure
// (*upstream.Error) is 503 with the error's flag.
package router
