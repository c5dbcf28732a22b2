package hcm

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

// downstream is one request/response exchange as a stream sees it: the
// request already in filter terms, the response written from filter
// terms. Two codecs implement it: http1Stream (our HTTP/1 codec) and
// nethttpStream (net/http's handler interface, which golang.org/x/net/http2
// serves for HTTP/2).
//
// The request-side methods run on the goroutine that serves the stream;
// the response-side methods (marked "mu held") run under the stream's mu,
// which serialises them.
type downstream interface {
	// context is cancelled when the client goes away and when the stream
	// ends.
	context() context.Context
	protoMajor() int
	// protocol is filter.ProtocolHTTP10, ProtocolHTTP11 or ProtocolHTTP2.
	protocol() string
	// tlsState is nil on a plaintext connection.
	tlsState() *tls.ConnectionState
	// connInfo is nil when the connection was not accepted by a listener
	// (then remoteAddr is parsed).
	connInfo() *ConnInfo
	remoteAddr() string
	// requestHeaders fills h with the pseudo-headers and the forwarded
	// fields (no hop-by-hop ones); upgrade reports an HTTP/1.1 Upgrade.
	requestHeaders(h *filter.HeaderMap, scheme string) (upgrade bool)
	// bodyless reports a request without a body.
	bodyless() bool
	// inMemory reports a request that is complete in memory: no body,
	// or a body already buffered whole, so that delivering it never waits
	// on the downstream, nor, while the response streams, does anything
	// else on the request side (not an upgrade, no 100-continue).
	inMemory() bool
	// readBody reads the request body; io.EOF at its end. A malformed
	// body is an error that is neither a net.Error nor io.ErrUnexpectedEOF.
	readBody(p []byte) (int, error)
	// sendContinue answers "100 Continue" if the request expects it and
	// it was not sent yet (mu held, before the response began).
	sendContinue()
	// trailers are the request's trailers once readBody returned io.EOF,
	// nil if none.
	trailers() *filter.HeaderMap

	// setClose makes the connection close after this response (mu held).
	setClose()
	// closing reports setClose (mu held).
	closing() bool
	// writeHeaders starts the response (mu held); end: no body follows.
	writeHeaders(code int, h *filter.HeaderMap, end bool) error
	// writeData writes body bytes (mu held); end: the body is complete.
	writeData(p []byte, end bool) error
	// writeTrailers ends the response with trailers (mu held).
	writeTrailers(t *filter.HeaderMap) error
	// flush sends what is buffered (mu held).
	flush() error
	// unblockRead makes a pending readBody return (mu held).
	unblockRead()
	// switchProtocols answers 101 with h and hands over the connection
	// and a reader of what the client sends next (mu held).
	switchProtocols(h *filter.HeaderMap) (net.Conn, io.Reader, error)
}

// nethttpStream adapts net/http's handler interface; the listener uses it
// for HTTP/2 (golang.org/x/net/http2 serves the connection).
type nethttpStream struct {
	w  http.ResponseWriter
	r  *http.Request
	rc *http.ResponseController
	m  *Manager
}

var _ downstream = (*nethttpStream)(nil)

func (d *nethttpStream) context() context.Context { return d.r.Context() }
func (d *nethttpStream) protoMajor() int          { return d.r.ProtoMajor }
func (d *nethttpStream) protocol() string {
	switch {
	case d.r.ProtoMajor == 2:
		return filter.ProtocolHTTP2
	case d.r.ProtoMinor == 0:
		return filter.ProtocolHTTP10
	}
	return filter.ProtocolHTTP11
}
func (d *nethttpStream) tlsState() *tls.ConnectionState { return d.r.TLS }
func (d *nethttpStream) connInfo() *ConnInfo            { return connInfoFrom(d.r.Context()) }
func (d *nethttpStream) remoteAddr() string             { return d.r.RemoteAddr }
func (d *nethttpStream) requestHeaders(h *filter.HeaderMap, scheme string) bool {
	return requestHeaders(h, d.r, scheme)
}
func (d *nethttpStream) bodyless() bool                 { return d.r.Body == nil || d.r.Body == http.NoBody }
func (d *nethttpStream) inMemory() bool                 { return false } // HTTP/2 keeps its pump goroutine
func (d *nethttpStream) readBody(p []byte) (int, error) { return d.r.Body.Read(p) }
func (d *nethttpStream) sendContinue()                  {} // net/http does it on the first read

func (d *nethttpStream) trailers() *filter.HeaderMap {
	var t *filter.HeaderMap
	for k, vs := range d.r.Trailer {
		for _, v := range vs {
			if t == nil {
				t = filter.NewHeaderMap()
			}
			t.Add(lowerHeader(k), v)
		}
	}
	return t
}

func (d *nethttpStream) setClose() {
	if d.r.ProtoMajor == 1 {
		d.w.Header().Set("Connection", "close")
	}
}

func (d *nethttpStream) closing() bool { return d.w.Header().Get("Connection") == "close" }

func (d *nethttpStream) writeHeaders(code int, h *filter.HeaderMap, end bool) error {
	hdr := d.w.Header()
	writeResponseHeaders(hdr, h, false)
	if d.m.serverHeader != nil {
		hdr["Server"] = d.m.serverHeader
	}
	d.w.WriteHeader(code)
	return nil
}

func (d *nethttpStream) writeData(p []byte, _ bool) error {
	if len(p) == 0 {
		return nil
	}
	_, err := d.w.Write(p)
	return err
}

func (d *nethttpStream) writeTrailers(t *filter.HeaderMap) error {
	hdr := d.w.Header()
	for _, f := range t.Fields() {
		k := http.TrailerPrefix + canonicalHeader(f.Name)
		hdr[k] = append(hdr[k], f.Value)
	}
	return nil
}

func (d *nethttpStream) flush() error { return d.rc.Flush() }
func (d *nethttpStream) unblockRead() { _ = d.rc.SetReadDeadline(time.Now()) }

func (d *nethttpStream) switchProtocols(*filter.HeaderMap) (net.Conn, io.Reader, error) {
	return nil, nil, errors.New("hcm: 101 Switching Protocols on HTTP/2")
}

// ServeHTTP runs one stream from net/http (HTTP/2 by
// golang.org/x/net/http2; HTTP/1 is served by the codec, ServeHTTP1).
func (m *Manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d := &nethttpStream{w: w, r: r, rc: http.NewResponseController(w), m: m}
	if r.ProtoMajor == 1 {
		_ = d.rc.EnableFullDuplex()
	}
	if m.serve(d) {
		// Reset the stream after a response had started; net/http
		// does not log this.
		panic(http.ErrAbortHandler)
	}
}

// serve runs one stream on d; it returns true when the downstream must be
// aborted (a reset after the response began).
func (m *Manager) serve(d downstream) bool {
	m.active.Add(1)
	s := m.pool.Get().(*stream)
	abort := s.serve(d)
	m.pool.Put(s)
	m.active.Add(-1)
	return abort
}
