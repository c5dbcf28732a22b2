// Package hcm is the HTTP connection manager: it turns downstream HTTP
// requests (HTTP/1.1, HTTP/2 over TLS and h2c, served by net/http; the
// listener adds golang.org/x/net/http2/h2c for "Upgrade: h2c") into streams of filter.HeaderMap headers, body
// bytes and trailers, runs them through the decoder filters and the router
// (the terminal filter), runs the response back through the encoder filters
// in reverse order, and calls every access-log handler exactly once when
// the stream ends.
//
// Iteration follows filter.Status: a filter returning StopIteration has
// seen the frame and holds it; later frames wait in front of it and the
// manager reads nothing more from the downstream until the filter calls
// ContinueDecoding (or ContinueEncoding). A filter returning StopAndBuffer
// keeps receiving the body, which the manager buffers behind it, up to the
// listener's buffer limit (413 on the request side, 500 or a reset on the
// response side), and passes on when it continues. ContinueDecoding,
// ContinueEncoding and SendLocalReply may be called from any goroutine;
// hooks of one stream never run concurrently.
//
// The manager adds x-request-id when absent, appends the peer to
// x-forwarded-for, sets x-forwarded-proto, strips hop-by-hop headers,
// answers local replies (gRPC requests get a trailers-only gRPC status) and
// enforces the stream idle and request timeouts.
package hcm
