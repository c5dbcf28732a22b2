package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

// h1stream is the HTTP/1.1 codec of one pooled connection and the state of
// the one exchange it carries. It lives inside its pconn, so a request
// allocates no stream state; the router gets an h1handle.
//
// The writer side (WriteData, WriteTrailers) and the reader side
// (ReadHeaders, ReadData, Trailers) may run in two goroutines; wmu guards
// the writer, the reader's fields are touched by the reader only.
type h1stream struct {
	pc *pconn
	br *bufio.Reader
	bw *bufio.Writer
	// out is bw's writer: the connection, or, for the flush of a request
	// that ends with its head, the connection's WriteOnRead.
	out h1out
	// wake interrupts a blocked read (made once per connection).
	wake func()

	// state is gen<<1 | 1 once Close or Reset ended exchange number gen.
	state   atomic.Uint64
	gen     uint64
	failed  atomic.Bool // an I/O or protocol error: never reuse
	reqDone atomic.Bool // request fully written
	reused  bool        // an earlier exchange ran on the connection

	// Writer side, guarded by wmu.
	wmu          sync.Mutex
	headFlushed  bool
	reqChunked   bool
	reqRemaining int64 // Content-Length bytes still to send; -1 without one
	raw          bool  // upgraded: bytes pass through unframed

	sendWithRead bool // StreamOptions.SendWithRead

	// Reader side.
	watchCtx  bool // ReadHeaders wakes itself when its context ends
	method    string
	upgrade   bool
	gotHead   bool
	mode      bodyMode
	remaining int64 // bodyLength: bytes left; bodyChunked: bytes left in chunk
	inChunk   bool
	respDone  bool
	reusable  bool
	trailers  *filter.HeaderMap
	scratch   []byte
	spans     []fieldSpan
}

func (s *h1stream) init(pc *pconn) {
	s.pc = pc
	nc := pc.nc
	s.wake = func() { nc.SetReadDeadline(aLongTimeAgo) }
	if pc.cc == nil {
		s.out.nc = nc
		s.out.wor, _ = nc.(interface{ WriteOnRead([]byte) })
		s.br = bufio.NewReaderSize(pc.nc, 4096)
		s.bw = bufio.NewWriterSize(&s.out, 4096)
	}
}

// h1out writes to the connection, except that the flush made with
// deferred set hands the bytes to wor: the ReadHeaders that follows sends
// them and waits for the response without a read that could only find
// nothing yet.
type h1out struct {
	nc       net.Conn
	wor      interface{ WriteOnRead([]byte) }
	deferred bool
}

func (o *h1out) Write(p []byte) (int, error) {
	if o.deferred {
		o.deferred = false
		o.wor.WriteOnRead(p)
		return len(p), nil
	}
	return o.nc.Write(p)
}

// start begins an exchange: it resets the per-request state and writes the
// request head (flushed now when the request ends with it or expects a
// 100-continue or an upgrade; otherwise with the first body bytes, so a
// small request goes out in one write).
func (s *h1stream) start(headers *filter.HeaderMap, endStream, upgrade bool) error {
	s.gen++
	s.reused = s.gen > 1
	s.state.Store(s.gen << 1)
	s.failed.Store(false)
	s.reqDone.Store(false)
	s.headFlushed, s.reqChunked, s.reqRemaining, s.raw = false, false, -1, false
	s.method = headers.Method()
	s.upgrade = upgrade
	s.gotHead, s.mode, s.remaining, s.inChunk, s.respDone, s.reusable = false, bodyNone, 0, false, false, false
	s.trailers = nil

	if err := s.writeHead(headers, endStream, upgrade); err != nil {
		s.failed.Store(true)
		return err
	}
	tunnel := upgrade || s.method == "CONNECT"
	if endStream || tunnel || headers.Value("expect") != "" {
		// A request that is all head goes out with ReadHeaders' wait.
		s.out.deferred = s.sendWithRead && endStream && !tunnel && s.out.wor != nil && headers.Value("expect") == ""
		err := s.bw.Flush()
		s.out.deferred = false
		if err != nil {
			return s.writeFailed(err)
		}
		s.headFlushed = true
	}
	if endStream && !tunnel {
		s.reqDone.Store(true)
	}
	return nil
}

// writeHead writes the request line and header fields into bw.
func (s *h1stream) writeHead(h *filter.HeaderMap, endStream, upgrade bool) error {
	method, path, authority := h.Method(), h.Path(), h.Authority()
	if method == "" || !validToken(method) {
		return fmt.Errorf("upstream: invalid request method %q", method)
	}
	if path == "" {
		if method == "CONNECT" {
			path = authority
		} else {
			path = "/"
		}
	}
	if !validFieldValue(path) || !validFieldValue(authority) || containsSpace(path) {
		return fmt.Errorf("upstream: invalid request target %q", path)
	}
	bw := s.bw
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(path)
	bw.WriteString(" HTTP/1.1\r\n")
	if authority != "" {
		bw.WriteString("host: ")
		bw.WriteString(authority)
		bw.WriteString("\r\n")
	}
	hasCL, hasUpgrade := false, false
	for _, f := range h.Fields() {
		if len(f.Name) == 0 || f.Name[0] == ':' {
			continue
		}
		switch f.Name {
		case "host":
			if authority != "" {
				continue
			}
		case "content-length":
			n, err := strconv.ParseInt(f.Value, 10, 64)
			if err != nil || n < 0 || (hasCL && n != s.reqRemaining) {
				return fmt.Errorf("upstream: invalid request content-length %q", f.Value)
			}
			if hasCL {
				continue
			}
			hasCL, s.reqRemaining = true, n
		case "transfer-encoding", "connection":
			continue // framing is ours to choose
		case "upgrade":
			hasUpgrade = true
		}
		if !validToken(f.Name) || !validFieldValue(f.Value) {
			return fmt.Errorf("upstream: invalid request header %q", f.Name)
		}
		bw.WriteString(f.Name)
		bw.WriteString(": ")
		bw.WriteString(f.Value)
		bw.WriteString("\r\n")
	}
	switch {
	case upgrade:
		if hasUpgrade {
			bw.WriteString("connection: upgrade\r\n")
		}
		s.raw = true
	case method == "CONNECT":
		s.raw = true // a tunnel: bytes after a 2xx are unframed
	case endStream:
		if !hasCL && methodHasBody(method) {
			bw.WriteString("content-length: 0\r\n")
		}
		if hasCL && s.reqRemaining != 0 {
			return fmt.Errorf("upstream: request ends with its headers but content-length is %d", s.reqRemaining)
		}
	case !hasCL:
		bw.WriteString("transfer-encoding: chunked\r\n")
		s.reqChunked = true
	}
	_, err := bw.WriteString("\r\n")
	return err
}

func methodHasBody(m string) bool { return m == "POST" || m == "PUT" || m == "PATCH" }

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

func containsSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			return true
		}
	}
	return false
}

func (s *h1stream) writeErr(err error) error {
	s.failed.Store(true)
	return &Error{Flag: filter.UpstreamConnectionTermination, Reason: "write failed", Err: err}
}

// WriteData implements Stream.
func (s *h1stream) WriteData(data []byte, endStream bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.state.Load()&1 != 0 || s.reqDone.Load() {
		return ErrStreamClosed
	}
	bw := s.bw
	switch {
	case s.raw:
		if _, err := bw.Write(data); err != nil {
			return s.writeErr(err)
		}
	case s.reqChunked:
		if len(data) > 0 {
			var hex [16]byte
			bw.Write(strconv.AppendInt(hex[:0], int64(len(data)), 16))
			bw.WriteString("\r\n")
			bw.Write(data)
			bw.WriteString("\r\n")
		}
		if endStream {
			bw.WriteString("0\r\n\r\n")
		}
	default:
		if int64(len(data)) > s.reqRemaining {
			s.failed.Store(true)
			return fmt.Errorf("upstream: request body longer than its content-length")
		}
		bw.Write(data)
		s.reqRemaining -= int64(len(data))
		if endStream && s.reqRemaining != 0 {
			s.failed.Store(true)
			return fmt.Errorf("upstream: request body %d bytes shorter than its content-length", s.reqRemaining)
		}
	}
	if err := bw.Flush(); err != nil {
		return s.writeErr(err)
	}
	s.headFlushed = true
	if endStream && !s.raw {
		s.reqDone.Store(true)
	}
	return nil
}

// WriteTrailers implements Stream. Trailers travel only in a chunked
// request; with a Content-Length they are dropped and the request ends.
func (s *h1stream) WriteTrailers(trailers *filter.HeaderMap) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.state.Load()&1 != 0 || s.reqDone.Load() || s.raw {
		return ErrStreamClosed
	}
	bw := s.bw
	if s.reqChunked {
		bw.WriteString("0\r\n")
		for _, f := range trailers.Fields() {
			if len(f.Name) == 0 || f.Name[0] == ':' {
				continue
			}
			if !validToken(f.Name) || !validFieldValue(f.Value) {
				s.failed.Store(true)
				return fmt.Errorf("upstream: invalid request trailer %q", f.Name)
			}
			bw.WriteString(f.Name)
			bw.WriteString(": ")
			bw.WriteString(f.Value)
			bw.WriteString("\r\n")
		}
		bw.WriteString("\r\n")
	} else if s.reqRemaining != 0 {
		s.failed.Store(true)
		return fmt.Errorf("upstream: request body %d bytes shorter than its content-length", s.reqRemaining)
	}
	if err := bw.Flush(); err != nil {
		return s.writeErr(err)
	}
	s.headFlushed = true
	s.reqDone.Store(true)
	return nil
}

// maxInterimResponses bounds the 1xx responses skipped before the final
// one, so that an upstream cannot keep a stream in ReadHeaders forever.
const maxInterimResponses = 16

// aLongTimeAgo is a deadline in the past, to wake a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// ReadHeaders implements Stream. 1xx interim responses (100 Continue,
// 102, 103) are consumed here and not reported. The returned headers lack
// HTTP/1 connection-level fields (connection, keep-alive,
// proxy-connection, transfer-encoding); a 101 keeps connection and
// upgrade.
func (s *h1stream) ReadHeaders(ctx context.Context) (*filter.HeaderMap, bool, error) {
	if s.state.Load()&1 != 0 || s.gotHead {
		return nil, false, ErrStreamClosed
	}
	s.wmu.Lock()
	if !s.headFlushed {
		err := s.bw.Flush()
		s.headFlushed = err == nil
		if err != nil {
			s.wmu.Unlock()
			return nil, false, s.writeErr(err)
		}
	}
	s.wmu.Unlock()
	if s.watchCtx && ctx.Done() != nil {
		stop := context.AfterFunc(ctx, s.wake)
		defer func() {
			if !stop() { // the deadline was set: the connection is spent
				s.failed.Store(true)
			}
		}()
	}
	if _, err := s.br.Peek(1); err != nil {
		// Not one byte of a response: on a reused connection that the
		// upstream closed (or reset) this is a stale connection, which
		// never delivered the request to the application.
		s.failed.Store(true)
		if ctx.Err() != nil {
			return nil, false, s.pc.pool.host.headersCancelled(ctx)
		}
		if isWriteError(err) { // the head went out with this read (h1out)
			return nil, false, s.writeFailed(err)
		}
		if s.reused && connGone(err) {
			s.pc.pool.sawStale()
			return nil, false, &Error{Flag: filter.UpstreamConnectionTermination, Reason: "connection termination",
				Err: fmt.Errorf("%w: %w", ErrStaleConnection, ErrConnectionClosed)}
		}
		s.pc.pool.host.recordLocalFailure()
		return nil, false, readHeadError(err)
	}
	for interim := 0; ; interim++ {
		if interim > maxInterimResponses {
			s.failed.Store(true)
			return nil, false, &Error{Flag: filter.UpstreamProtocolError, Reason: "malformed response",
				Err: fmt.Errorf("%w: more than %d interim (1xx) responses", ErrMalformedResponse, maxInterimResponses)}
		}
		var rh responseHead
		var err error
		rh, s.scratch, s.spans, err = parseResponseHead(s.br, s.scratch, s.spans)
		if err != nil {
			s.failed.Store(true)
			if ctx.Err() != nil {
				return nil, false, s.pc.pool.host.headersCancelled(ctx)
			}
			s.pc.pool.host.recordLocalFailure()
			return nil, false, readHeadError(err)
		}
		if rh.status/100 == 1 && rh.status != 101 {
			continue // interim response
		}
		mode, n, reusable, err := framing(s.method, &rh, s.upgrade)
		if err != nil {
			s.failed.Store(true)
			s.pc.pool.host.recordLocalFailure()
			return nil, false, &Error{Flag: filter.UpstreamProtocolError, Reason: "malformed response", Err: err}
		}
		s.pc.pool.host.recordResponse(rh.status)
		s.gotHead, s.mode, s.remaining, s.reusable = true, mode, n, reusable
		if mode == bodyRaw {
			s.wmu.Lock()
			s.raw = true
			s.wmu.Unlock()
		}
		if mode == bodyNone {
			s.respDone = true
		}
		return rh.headers, mode == bodyNone, nil
	}
}

// connGone reports whether err is the peer's close or reset of the
// connection (as opposed to a timeout or a local close).
// writeFailed is the error of a request head that could not be written:
// on a reused connection the upstream closed, a stale connection.
func (s *h1stream) writeFailed(err error) error {
	s.failed.Store(true)
	if s.reused && connGone(err) {
		s.pc.pool.sawStale()
		err = fmt.Errorf("%w: %w", ErrStaleConnection, err)
	}
	return &Error{Flag: filter.UpstreamConnectionTermination, Reason: "write failed", Err: err}
}

// isWriteError reports an error of a write system call.
func isWriteError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "write"
}

func connGone(err error) bool {
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func readHeadError(err error) error {
	if errors.Is(err, ErrMalformedResponse) {
		return &Error{Flag: filter.UpstreamProtocolError, Reason: "malformed response", Err: err}
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = ErrConnectionClosed
	}
	return &Error{Flag: filter.UpstreamConnectionTermination, Reason: "connection termination", Err: err}
}

func bodyReadError(err error) error {
	if errors.Is(err, ErrMalformedResponse) {
		return &Error{Flag: filter.UpstreamProtocolError, Reason: "malformed response body", Err: err}
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = ErrConnectionClosed
	}
	return &Error{Flag: filter.UpstreamConnectionTermination, Reason: "connection termination", Err: err}
}

// ReadData implements Stream. For an upgraded stream it returns the
// upstream's raw bytes and io.EOF when the upstream closes.
func (s *h1stream) ReadData(p []byte) (int, error) {
	if s.state.Load()&1 != 0 || !s.gotHead {
		return 0, ErrStreamClosed
	}
	if s.respDone {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	switch s.mode {
	case bodyLength:
		if int64(len(p)) > s.remaining {
			p = p[:s.remaining]
		}
		n, err := s.br.Read(p)
		s.remaining -= int64(n)
		if s.remaining == 0 {
			s.respDone = true
			return n, nil
		}
		if err != nil && n == 0 {
			s.failed.Store(true)
			return 0, bodyReadError(err)
		}
		return n, nil
	case bodyChunked:
		return s.readChunked(p)
	case bodyToEOF, bodyRaw:
		n, err := s.br.Read(p)
		if err == io.EOF {
			s.respDone = true
			if n > 0 {
				return n, nil
			}
			return 0, io.EOF
		}
		if err != nil && n == 0 {
			s.failed.Store(true)
			return 0, bodyReadError(err)
		}
		return n, nil
	}
	return 0, io.EOF
}

func (s *h1stream) readChunked(p []byte) (int, error) {
	for s.remaining == 0 {
		if s.inChunk { // CRLF after the chunk's data
			line, err := readLine(s.br)
			if err == nil && len(line) != 0 {
				err = fmt.Errorf("%w: missing CRLF after chunk data", ErrMalformedResponse)
			}
			if err != nil {
				s.failed.Store(true)
				return 0, bodyReadError(err)
			}
			s.inChunk = false
		}
		line, err := readLine(s.br)
		var n int64
		if err == nil {
			n, err = chunkSize(line)
		}
		if err != nil {
			s.failed.Store(true)
			return 0, bodyReadError(err)
		}
		if n == 0 {
			s.trailers, s.scratch, s.spans, err = parseTrailers(s.br, s.scratch, s.spans)
			if err != nil {
				s.failed.Store(true)
				return 0, bodyReadError(err)
			}
			s.respDone = true
			return 0, io.EOF
		}
		s.remaining, s.inChunk = n, true
	}
	if int64(len(p)) > s.remaining {
		p = p[:s.remaining]
	}
	n, err := s.br.Read(p)
	s.remaining -= int64(n)
	if err != nil && n == 0 {
		s.failed.Store(true)
		return 0, bodyReadError(err)
	}
	return n, nil
}

// Trailers implements Stream.
func (s *h1stream) Trailers() *filter.HeaderMap {
	if !s.respDone {
		return nil
	}
	return s.trailers
}

// h1handle is the Stream of one exchange on an HTTP/1.1 connection. The
// connection's h1stream is reused by its next exchange; the handle's
// generation makes a Stream used after its Close or Reset fail with
// ErrStreamClosed instead of touching the next request.
type h1handle struct {
	s   *h1stream
	gen uint64
}

var _ Stream = h1handle{}

func (h h1handle) live() bool { return h.s.state.Load() == h.gen<<1 }

// WriteData implements Stream.
func (h h1handle) WriteData(data []byte, endStream bool) error {
	if !h.live() {
		return ErrStreamClosed
	}
	return h.s.WriteData(data, endStream)
}

// WriteTrailers implements Stream.
func (h h1handle) WriteTrailers(t *filter.HeaderMap) error {
	if !h.live() {
		return ErrStreamClosed
	}
	return h.s.WriteTrailers(t)
}

// ReadHeaders implements Stream.
func (h h1handle) ReadHeaders(ctx context.Context) (*filter.HeaderMap, bool, error) {
	if !h.live() {
		return nil, false, ErrStreamClosed
	}
	return h.s.ReadHeaders(ctx)
}

// ReadData implements Stream.
func (h h1handle) ReadData(p []byte) (int, error) {
	if !h.live() {
		return 0, ErrStreamClosed
	}
	return h.s.ReadData(p)
}

// Trailers implements Stream.
func (h h1handle) Trailers() *filter.HeaderMap {
	if !h.live() {
		return nil
	}
	return h.s.Trailers()
}

// Close implements Stream: the connection returns to the pool when the
// request was fully written, the response fully read, nothing failed, and
// the response allowed keep-alive; otherwise it is closed.
func (h h1handle) Close() {
	s := h.s
	if !s.state.CompareAndSwap(h.gen<<1, h.gen<<1|1) {
		return
	}
	reusable := s.reusable && s.respDone && s.reqDone.Load() && !s.failed.Load()
	pc := s.pc
	pc.pool.host.cluster.endRequest(pc.pool.host, true)
	pc.pool.release(pc, reusable)
}

// Reset implements Stream: the connection is closed at once, which also
// wakes a ReadData or WriteData blocked in another goroutine.
func (h h1handle) Reset() {
	s := h.s
	if !s.state.CompareAndSwap(h.gen<<1, h.gen<<1|1) {
		return
	}
	pc := s.pc
	pc.nc.Close()
	pc.pool.host.cluster.endRequest(pc.pool.host, false)
	pc.pool.release(pc, false)
}
