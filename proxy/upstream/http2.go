//lint:file-ignore SA1019 x/net/http2's ClientConn is the HTTP/2 client this package is specified to use; Go 1.26's net/http ClientConn dials for itself, which the pool must control.

package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/net/http2"

	"github.com/remora-mesh/remora/proxy/filter"
)

// h2stream is one HTTP/2 stream on a pooled ClientConn. The request runs
// in its own goroutine (ClientConn.RoundTrip returns only with the
// response headers, while the router may still be writing the body);
// the body flows through a pipe and trailers through req.Trailer.
type h2stream struct {
	pc     *pconn
	cancel context.CancelFunc
	pw     *io.PipeWriter // nil when the request had no body
	trl    http.Header    // request trailers, sent after the body
	done   chan struct{}  // closed when RoundTrip returned
	resp   *http.Response
	err    error

	finished atomic.Bool
	reqDone  atomic.Bool
	respDone bool
	gotHead  bool
	trailers *filter.HeaderMap
}

var _ Stream = (*h2stream)(nil)

func startH2(pc *pconn, headers *filter.HeaderMap, endStream bool, opts StreamOptions) (*h2stream, error) {
	s := &h2stream{pc: pc, done: make(chan struct{})}
	req, err := buildH2Request(headers)
	if err != nil {
		return nil, err // nothing was sent; the caller releases pc
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	req = req.WithContext(ctx)
	if endStream {
		s.reqDone.Store(true)
		req.ContentLength = 0
	} else {
		pr, pw := io.Pipe()
		s.pw = pw
		req.Body = pr
		s.trl = make(http.Header)
		req.Trailer = s.trl
	}
	go func() {
		s.resp, s.err = pc.cc.RoundTrip(req)
		close(s.done)
	}()
	return s, nil
}

// buildH2Request turns the header map into an *http.Request for
// ClientConn.RoundTrip. Header names stay lower-case: the transport
// lower-cases them anyway and matches its special names case-insensitively.
func buildH2Request(h *filter.HeaderMap) (*http.Request, error) {
	method, path, authority, scheme := h.Method(), h.Path(), h.Authority(), h.Scheme()
	if method == "" || !validToken(method) {
		return nil, fmt.Errorf("upstream: invalid request method %q", method)
	}
	if scheme == "" {
		scheme = "http"
	}
	if authority == "" {
		authority = h.Value("host")
	}
	if path == "" {
		path = "/"
	}
	u := &url.URL{Scheme: scheme, Host: authority, Opaque: path}
	if strings.HasPrefix(path, "//") || method == "OPTIONS" && path == "*" {
		pu, err := url.ParseRequestURI(path)
		if err != nil {
			return nil, fmt.Errorf("upstream: invalid request path %q: %w", path, err)
		}
		pu.Scheme, pu.Host = scheme, authority
		u = pu
	}
	req := &http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        make(http.Header, h.Len()),
		Host:          authority,
		ContentLength: -1,
	}
	for _, f := range h.Fields() {
		if len(f.Name) == 0 || f.Name[0] == ':' {
			continue
		}
		switch f.Name {
		case "host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			continue
		case "te": // HTTP/2 allows only "te: trailers" (RFC 9113 8.2.2)
			if !strings.EqualFold(strings.TrimSpace(f.Value), "trailers") {
				continue
			}
		case "content-length":
			n, err := strconv.ParseInt(f.Value, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("upstream: invalid request content-length %q", f.Value)
			}
			req.ContentLength = n
			continue
		}
		req.Header[f.Name] = append(req.Header[f.Name], f.Value)
	}
	return req, nil
}

// WriteData implements Stream. It blocks until the transport has taken
// the bytes (flow control applies).
func (s *h2stream) WriteData(data []byte, endStream bool) error {
	if s.finished.Load() || s.reqDone.Load() || s.pw == nil {
		return ErrStreamClosed
	}
	if len(data) > 0 {
		if _, err := s.pw.Write(data); err != nil {
			return h2Error(err)
		}
	}
	if endStream {
		s.reqDone.Store(true)
		s.pw.Close()
	}
	return nil
}

// WriteTrailers implements Stream.
func (s *h2stream) WriteTrailers(trailers *filter.HeaderMap) error {
	if s.finished.Load() || s.reqDone.Load() || s.pw == nil {
		return ErrStreamClosed
	}
	// The transport reads req.Trailer's keys while it encodes the request
	// headers. A zero-length write returns only once the transport reads
	// the body, which it does after the headers, so the map is ours again.
	if _, err := s.pw.Write(nil); err != nil {
		return h2Error(err)
	}
	for _, f := range trailers.Fields() {
		if len(f.Name) == 0 || f.Name[0] == ':' {
			continue
		}
		s.trl[f.Name] = append(s.trl[f.Name], f.Value)
	}
	s.reqDone.Store(true)
	return s.pw.Close() // the transport reads s.trl after the body's EOF
}

// ReadHeaders implements Stream.
func (s *h2stream) ReadHeaders(ctx context.Context) (*filter.HeaderMap, bool, error) {
	if s.finished.Load() || s.gotHead {
		return nil, false, ErrStreamClosed
	}
	host := s.pc.pool.host
	select {
	case <-s.done:
	case <-ctx.Done():
		return nil, false, host.headersCancelled(ctx)
	}
	if s.err != nil {
		if ctx.Err() != nil { // a Reset from ctx (the router's timeout) ended it
			return nil, false, host.headersCancelled(ctx)
		}
		host.recordLocalFailure()
		return nil, false, h2Error(s.err)
	}
	s.gotHead = true
	resp := s.resp
	host.recordResponse(resp.StatusCode)
	fields := make([]filter.HeaderField, 0, len(resp.Header)+1)
	fields = append(fields, filter.HeaderField{Name: filter.HeaderStatus, Value: strconv.Itoa(resp.StatusCode)})
	fields = appendHeader(fields, resp.Header)
	end := false
	if resp.ContentLength == 0 {
		// No body: either the HEADERS frame ended the stream (a gRPC
		// trailers-only response, a 204 ...) or only trailers follow.
		// Reading the empty body tells which, without blocking past the
		// stream's end.
		stop := context.AfterFunc(ctx, s.cancel)
		var b [1]byte
		n, err := resp.Body.Read(b[:])
		stop()
		switch {
		case n > 0:
			return nil, false, &Error{Flag: filter.UpstreamProtocolError, Reason: "body exceeds content-length",
				Err: fmt.Errorf("upstream: data after content-length 0")}
		case err == io.EOF:
			s.finishBody()
			end = s.trailers == nil
		case err != nil:
			return nil, false, h2Error(err)
		}
	}
	return filter.NewHeaderMap(fields...), end, nil
}

// finishBody records the end of the response body and its trailers.
func (s *h2stream) finishBody() {
	s.respDone = true
	if tr := s.resp.Trailer; len(tr) > 0 {
		fields := make([]filter.HeaderField, 0, len(tr))
		for k, vv := range tr {
			name := filter.LowerName(k)
			for _, v := range vv {
				fields = append(fields, filter.HeaderField{Name: name, Value: v})
			}
		}
		if len(fields) > 0 {
			s.trailers = filter.NewHeaderMap(fields...)
		}
	}
}

func appendHeader(fields []filter.HeaderField, h http.Header) []filter.HeaderField {
	for k, vv := range h {
		name := filter.LowerName(k)
		for _, v := range vv {
			fields = append(fields, filter.HeaderField{Name: name, Value: v})
		}
	}
	return fields
}

// ReadData implements Stream.
func (s *h2stream) ReadData(p []byte) (int, error) {
	if s.finished.Load() || !s.gotHead {
		return 0, ErrStreamClosed
	}
	if s.respDone {
		return 0, io.EOF
	}
	n, err := s.resp.Body.Read(p)
	if err == io.EOF {
		s.finishBody()
		if n > 0 {
			return n, nil
		}
		return 0, io.EOF
	}
	if err != nil {
		return n, h2Error(err)
	}
	return n, nil
}

// Trailers implements Stream.
func (s *h2stream) Trailers() *filter.HeaderMap {
	if !s.respDone {
		return nil
	}
	return s.trailers
}

// Close implements Stream. An unfinished exchange is cancelled (the
// stream is reset with CANCEL); the connection stays in the pool either
// way.
func (s *h2stream) Close() { s.end(true) }

// Reset implements Stream: the HTTP/2 stream is reset (RST_STREAM CANCEL)
// and any blocked WriteData or ReadData returns.
func (s *h2stream) Reset() { s.end(false) }

func (s *h2stream) end(completed bool) {
	if s.finished.Swap(true) {
		return
	}
	clean := completed && s.respDone && s.reqDone.Load()
	if !clean {
		s.cancel()
		if s.pw != nil {
			s.pw.CloseWithError(errStreamReset)
		}
	}
	<-s.done // RoundTrip returns promptly: the response came or ctx is cancelled
	if s.resp != nil {
		s.resp.Body.Close()
	}
	s.cancel()
	pc := s.pc
	pc.pool.host.cluster.endRequest(pc.pool.host, completed)
	pc.pool.release(pc, true)
}

var errStreamReset = errors.New("upstream: stream reset")

// h2Error maps an HTTP/2 transport error to *Error with its flag.
func h2Error(err error) error {
	var se http2.StreamError
	if errors.As(err, &se) {
		return &Error{Flag: filter.UpstreamRemoteReset, Reason: "remote reset: " + se.Code.String(), Err: err}
	}
	var ga http2.GoAwayError
	if errors.As(err, &ga) {
		return &Error{Flag: filter.UpstreamConnectionTermination, Reason: "goaway", Err: err}
	}
	return &Error{Flag: filter.UpstreamConnectionTermination, Reason: "connection termination", Err: err}
}
