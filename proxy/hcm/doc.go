// Package hcm is the HTTP connection manager: it turns downstream HTTP
// requests into streams of filter.HeaderMap headers, body bytes and
// trailers, runs them through the decoder filters and the router (the
// terminal filter), runs the response back through the encoder filters in
// reverse order, and calls every access-log handler exactly once when the
// stream ends.
//
// Requests enter through one of two codecs behind the internal
// downstream interface. HTTP1Server is Remora's own HTTP/1.x codec: one
// goroutine per connection parses request heads strictly (RFC 9112; the
// request smuggling vectors are answered 400 and the connection closed, an
// oversized head 431) from a pooled bufio.Reader straight into the
// stream's HeaderMap, and writes responses into a pooled bufio.Writer,
// flushed once per response unless the response streams. Manager.ServeHTTP
// is the net/http handler used for HTTP/2 (golang.org/x/net/http2 serves
// the connection; the listener hands it TLS connections that negotiated
// h2, and HTTP1Server hands it h2c connections).
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
