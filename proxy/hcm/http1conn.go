package hcm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
	"go.uber.org/zap"
)

// HTTP1Server serves downstream HTTP/1.x connections for one Manager with
// Remora's own codec: one goroutine per connection reads a request head
// straight from a pooled bufio.Reader into the stream's filter.HeaderMap,
// runs the stream (the filter chain and the router), writes the response
// into a pooled bufio.Writer and flushes it once the response is complete
// (or when a streamed response needs it), then reads the next request.
// Requests on a connection are served in order (pipelining); a malformed
// request is answered 400 (431 for an oversized head, 505 for another
// HTTP version) with "Connection: close" and the connection closed.
//
// An HTTP1Server is safe for concurrent use; its fields must be set
// before the first ServeConn.
type HTTP1Server struct {
	// M runs the streams.
	M *Manager
	// H2C, when set, serves a plaintext connection as HTTP/2: after the
	// codec saw the prior-knowledge preface (upgrade nil; conn replays
	// the preface) or answered 101 to an "Upgrade: h2c" request (upgrade
	// is that request, settings its decoded HTTP2-Settings). It returns
	// when the connection is done.
	H2C func(ctx context.Context, conn net.Conn, upgrade *http.Request, settings []byte)
	// HeaderTimeout bounds reading a request head once its first byte
	// arrived; 0 means none.
	HeaderTimeout time.Duration

	mu       sync.Mutex
	conns    map[*http1Conn]struct{}
	draining atomic.Bool
	zero     chan struct{} // closed when draining and no connection is left
}

// Connection states, for a drain.
const (
	connIdle int32 = iota
	connActive
	connClosed
)

// ServeConn serves conn until it closes; it closes conn. ci identifies
// the connection (nil: ids and addresses are taken from conn); ts is its
// TLS state (nil for plaintext). ServeConn blocks.
func (srv *HTTP1Server) ServeConn(ctx context.Context, conn net.Conn, ci *ConnInfo, ts *tls.ConnectionState) {
	c := newHTTP1Conn(srv, conn, ci, ts)
	if !srv.track(c) {
		conn.Close()
		return
	}
	defer srv.untrack(c)
	c.baseCtx = WithConnInfo(ctx, &c.ci)
	c.serve()
}

func (srv *HTTP1Server) track(c *http1Conn) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.draining.Load() {
		return false
	}
	if srv.conns == nil {
		srv.conns = map[*http1Conn]struct{}{}
	}
	srv.conns[c] = struct{}{}
	return true
}

func (srv *HTTP1Server) untrack(c *http1Conn) {
	srv.mu.Lock()
	delete(srv.conns, c)
	if len(srv.conns) == 0 && srv.zero != nil {
		select {
		case <-srv.zero:
		default:
			close(srv.zero)
		}
	}
	srv.mu.Unlock()
}

// Drain stops serving new requests: idle keep-alive connections are closed
// at once, connections with a request in flight close after its response
// (which says "Connection: close"). Drain waits until every connection is
// closed or ctx ends (then it returns ctx's error; Close cuts the rest).
func (srv *HTTP1Server) Drain(ctx context.Context) error {
	srv.mu.Lock()
	srv.draining.Store(true)
	if srv.zero == nil {
		srv.zero = make(chan struct{})
		if len(srv.conns) == 0 {
			close(srv.zero)
		}
	}
	zero := srv.zero
	for c := range srv.conns {
		if c.state.CompareAndSwap(connIdle, connClosed) {
			c.conn.Close()
		}
	}
	srv.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes every connection.
func (srv *HTTP1Server) Close() {
	srv.mu.Lock()
	srv.draining.Store(true)
	for c := range srv.conns {
		c.state.Store(connClosed)
		c.conn.Close()
	}
	srv.mu.Unlock()
}

// Buffer pools: a connection holds a reader and a writer while it lives.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 8<<10) }}
)

// http1Conn is one downstream HTTP/1 connection.
type http1Conn struct {
	srv     *HTTP1Server
	m       *Manager
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	tls     *tls.ConnectionState
	ci      ConnInfo
	baseCtx context.Context
	state   atomic.Int32
	// detached: the connection went to HTTP/2 with br.
	detached bool

	head    []byte // scratch for request heads
	spans   []span
	req     http1Request
	st      http1Stream
	hdrBuf  []byte
	discard []byte

	// The background read watches for the client going away while a
	// request waits on the upstream (its body fully read).
	bgActive bool
	bgDone   chan struct{}
	bgRead   func()
	bgCancel context.CancelFunc // the watched stream's; set before the read starts
	bgErr    error              // the read's result, valid after bgDone
}

func newHTTP1Conn(srv *HTTP1Server, conn net.Conn, ci *ConnInfo, ts *tls.ConnectionState) *http1Conn {
	c := &http1Conn{srv: srv, m: srv.M, conn: conn, tls: ts, bgDone: make(chan struct{}, 1)}
	if ci == nil {
		ci = NewConnInfo(conn)
	}
	c.ci = *ci
	c.st.c = c
	c.bgRead = c.backgroundRead
	c.req.contentLength = -1
	return c
}

// aLongTimeAgo is a read deadline that makes a pending read return.
var aLongTimeAgo = time.Unix(1, 0)

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxDiscard is how much of an unread request body the codec reads past
// to keep a connection; a longer remainder closes it.
const maxDiscard = 256 << 10

func (c *http1Conn) serve() {
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(c.conn)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(c.conn)
	defer func() {
		c.abortBackgroundRead()
		c.conn.Close()
		if c.detached {
			// HTTP/2 may still read through br on a goroutine of its
			// own; the buffers are left to the garbage collector.
			return
		}
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.br, c.bw = nil, nil
	}()
	limit := c.m.MaxRequestHeaderBytes
	if limit <= 0 {
		limit = 60 << 10
	}
	first := true
	for {
		if c.bgActive || c.br.Buffered() == 0 {
			c.state.Store(connIdle)
			if c.srv.draining.Load() {
				return
			}
			if t := c.m.IdleTimeout; t > 0 {
				_ = c.conn.SetReadDeadline(time.Now().Add(t))
			} else {
				_ = c.conn.SetReadDeadline(time.Time{})
			}
			if c.bgActive {
				// The read that watched the last request goes on as
				// the wait for the next one.
				<-c.bgDone
				c.bgActive = false
				if c.bgErr != nil {
					return // idle timeout, the client left, or a drain closed it
				}
			} else if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		if !c.state.CompareAndSwap(connIdle, connActive) && !c.state.CompareAndSwap(connActive, connActive) {
			return
		}
		if t := c.srv.HeaderTimeout; t > 0 {
			_ = c.conn.SetReadDeadline(time.Now().Add(t))
		}
		if first && c.srv.H2C != nil && c.tls == nil {
			if h2, err := c.peekPreface(); err != nil {
				return
			} else if h2 {
				c.serveH2C(nil, nil)
				return
			}
		}
		first = false
		head, err := readHead(c.br, c.head, limit, true)
		c.head = head[:0]
		if err != nil {
			var he *http1Error
			if errors.As(err, &he) {
				c.reject(he)
			}
			return
		}
		spans, err := parseRequest(head, &c.req, c.spans)
		c.spans = spans[:0]
		if err != nil {
			var he *http1Error
			if errors.As(err, &he) {
				c.reject(he)
			}
			return
		}
		_ = c.conn.SetReadDeadline(time.Time{})
		if c.req.h2c && c.srv.H2C != nil && c.tls == nil {
			c.upgradeH2C()
			return
		}
		if !c.serveRequest() {
			return
		}
	}
}

// peekPreface reports whether the connection starts with the HTTP/2
// preface; it reads no more than needed to tell.
func (c *http1Conn) peekPreface() (bool, error) {
	for n := 1; ; n++ {
		b, err := c.br.Peek(min(n, len(h2Preface)))
		if err != nil {
			return false, err
		}
		if !bytes.HasPrefix([]byte(h2Preface), b) {
			return false, nil
		}
		if len(b) == len(h2Preface) {
			return true, nil
		}
		if bn := c.br.Buffered(); bn > n {
			n = min(bn, len(h2Preface)) - 1
		}
	}
}

// serveRequest runs the parsed request as a stream; false: close the
// connection.
func (c *http1Conn) serveRequest() bool {
	st := &c.st
	st.reset()
	req := &c.req
	st.closeAfter = !req.keepAlive
	switch {
	case req.upgrade:
		st.body = bodyNone
	case req.chunked:
		st.body = bodyChunked
	case req.contentLength > 0:
		st.body, st.remaining = bodyLength, req.contentLength
	default:
		st.body = bodyNone
	}
	st.bodyDone = st.body == bodyNone
	st.ctx, st.cancel = context.WithCancel(c.baseCtx)
	if st.body == bodyNone && !req.upgrade {
		c.startBackgroundRead()
	}
	abort := c.m.serve(st)
	st.cancel()
	st.ctx, st.cancel = nil, nil
	// A background read still pending becomes the wait for the next
	// request; every path that reads the connection otherwise stops it.
	if abort || st.hijacked || !st.respDone {
		return false
	}
	if err := c.bw.Flush(); err != nil {
		return false
	}
	if !st.bodyDone && !st.closeAfter {
		// Read past the rest of the body, unless the client waits for
		// a 100 Continue that never came.
		if req.expectContinue && !st.sent100 {
			st.closeAfter = true
		} else if !c.discardBody() {
			st.closeAfter = true
		}
	}
	if st.closeAfter {
		if !st.bodyDone {
			c.lingeringClose()
		}
		return false
	}
	return true
}

// discardBody reads the rest of the request body, at most maxDiscard bytes.
func (c *http1Conn) discardBody() bool {
	if c.discard == nil {
		c.discard = make([]byte, 4<<10)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	total := 0
	for total <= maxDiscard {
		n, err := c.st.readBody(c.discard)
		total += n
		if err == io.EOF {
			c.abortBackgroundRead() // readBody started one
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// reject answers a malformed request and closes the connection.
func (c *http1Conn) reject(he *http1Error) {
	if ce := c.m.log.Check(zap.DebugLevel, "malformed request"); ce != nil {
		ce.Write(zap.Int("status", he.Status), zap.String("reason", he.Reason), zap.Uint64("connection_id", c.ci.ID))
	}
	c.m.metrics.codecErrors.Inc()
	text := http.StatusText(he.Status)
	body := strconv.Itoa(he.Status) + " " + text
	b := c.hdrBuf[:0]
	b = append(b, "HTTP/1.1 "...)
	b = append(b, body...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.hdrBuf = b[:0]
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.bw.Write(b)
	if c.bw.Flush() == nil {
		c.lingeringClose()
	}
}

// lingeringClose half-closes the connection and reads (and drops) what
// the client still sends for a moment, so that unread request bytes do
// not turn the close into a reset that destroys the response in flight.
func (c *http1Conn) lingeringClose() {
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if c.discard == nil {
		c.discard = make([]byte, 4<<10)
	}
	for total := 0; total < maxDiscard; {
		n, err := c.br.Read(c.discard)
		total += n
		if err != nil {
			return
		}
	}
}

// startBackgroundRead watches the connection while the stream waits on the
// upstream: a read error (the client closed or reset the connection)
// cancels the stream's context. Bytes that arrive (a pipelined request)
// stay buffered for the next round.
func (c *http1Conn) startBackgroundRead() {
	if c.bgActive || c.br.Buffered() > 0 {
		return
	}
	c.bgActive = true
	c.bgCancel = c.st.cancel
	go c.bgRead() // a func value made once: no allocation per request
}

func (c *http1Conn) backgroundRead() {
	_, err := c.br.Peek(1)
	if err != nil {
		// bufio returns the connection's error as is: a timeout is our
		// own abort (or the idle timeout), anything else the client
		// going away.
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			c.bgCancel()
		}
	}
	c.bgErr = err
	c.bgDone <- struct{}{}
}

// abortBackgroundRead stops the background read and waits for it.
func (c *http1Conn) abortBackgroundRead() {
	if !c.bgActive {
		return
	}
	_ = c.conn.SetReadDeadline(aLongTimeAgo)
	<-c.bgDone
	c.bgActive = false
	_ = c.conn.SetReadDeadline(time.Time{})
}

// serveH2C hands the connection to HTTP/2 (prior knowledge when upgrade
// is nil).
func (c *http1Conn) serveH2C(upgrade *http.Request, settings []byte) {
	c.state.Store(connClosed) // HTTP/2 drains by GOAWAY, not by us
	c.detached = true
	c.srv.untrack(c)
	ctx, cancel := context.WithCancel(c.baseCtx)
	defer cancel()
	if upgrade != nil {
		upgrade = upgrade.WithContext(ctx)
	}
	c.srv.H2C(ctx, &bufferedConn{Conn: c.conn, r: c.br}, upgrade, settings)
}

// upgradeH2C answers an "Upgrade: h2c" request with 101 and serves the
// connection as HTTP/2, the request becoming stream 1 (RFC 7540 section
// 3.2).
func (c *http1Conn) upgradeH2C() {
	req := &c.req
	var settings []byte
	for _, f := range req.fields {
		if f.Name == "http2-settings" {
			var err error
			if settings, err = base64.RawURLEncoding.DecodeString(f.Value); err != nil {
				c.reject(&http1Error{Status: 400, Reason: "invalid HTTP2-Settings"})
				return
			}
		}
	}
	// The body must be read before the connection changes protocol.
	st := &c.st
	st.reset()
	switch {
	case req.chunked:
		st.body = bodyChunked
	case req.contentLength > 0:
		st.body, st.remaining = bodyLength, req.contentLength
	}
	var body []byte
	if st.body != bodyNone {
		limit := c.m.bufferLimit
		if limit <= 0 {
			limit = 1 << 20
		}
		buf := make([]byte, 4<<10)
		for {
			n, err := st.readBody(buf)
			body = append(body, buf[:n]...)
			if len(body) > limit {
				c.reject(&http1Error{Status: 413, Reason: "h2c upgrade request body too large"})
				return
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				var he *http1Error
				if errors.As(err, &he) {
					c.reject(he)
				}
				return
			}
		}
		c.abortBackgroundRead()
	}
	u, err := url.ParseRequestURI(req.path)
	if err != nil {
		c.reject(&http1Error{Status: 400, Reason: "invalid request target"})
		return
	}
	hdr := http.Header{}
	for _, f := range req.fields {
		switch f.Name {
		case "host", "connection", "upgrade", "http2-settings", "keep-alive", "proxy-connection", "transfer-encoding", "content-length":
			continue
		}
		if headerListHas(req.connection, f.Name) {
			continue
		}
		k := canonicalHeader(f.Name)
		hdr[k] = append(hdr[k], f.Value)
	}
	r := &http.Request{Method: req.method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: hdr,
		Host: req.authority, RequestURI: req.path, RemoteAddr: c.conn.RemoteAddr().String(),
		ContentLength: int64(len(body)), Body: http.NoBody}
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	c.bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
	if c.bw.Flush() != nil {
		return
	}
	c.serveH2C(r, settings)
}

// bufferedConn reads what the codec buffered before the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// Request body framings.
const (
	bodyNone = iota
	bodyLength
	bodyChunked
)

// Chunked body states.
const (
	chunkSize = iota
	chunkData
	chunkEnd
)

// http1Stream is the downstream of one request on an http1Conn; it is
// reused for every request of the connection.
type http1Stream struct {
	c      *http1Conn
	ctx    context.Context
	cancel context.CancelFunc

	// Request body.
	body      int
	remaining int64 // bytes left in the body (length) or chunk (chunked)
	cstate    int
	bodyDone  bool
	trailer   *filter.HeaderMap
	sent100   bool
	trailBuf  []byte
	trailSpan []span

	// Response.
	closeAfter  bool
	respStarted bool
	respDone    bool
	respChunked bool
	respNoBody  bool
	respRemain  int64 // -1: not framed by a length
	hijacked    bool
}

var _ downstream = (*http1Stream)(nil)

func (st *http1Stream) reset() {
	st.body, st.remaining, st.cstate, st.bodyDone, st.trailer, st.sent100 = bodyNone, 0, chunkSize, false, nil, false
	st.closeAfter, st.respStarted, st.respDone, st.respChunked, st.respNoBody, st.respRemain, st.hijacked =
		false, false, false, false, false, -1, false
}

func (st *http1Stream) context() context.Context { return st.ctx }
func (st *http1Stream) protoMajor() int          { return 1 }
func (st *http1Stream) protocol() string {
	if st.c.req.minor == 0 {
		return filter.ProtocolHTTP10
	}
	return filter.ProtocolHTTP11
}
func (st *http1Stream) tlsState() *tls.ConnectionState { return st.c.tls }
func (st *http1Stream) connInfo() *ConnInfo            { return &st.c.ci }
func (st *http1Stream) remoteAddr() string             { return st.c.conn.RemoteAddr().String() }
func (st *http1Stream) bodyless() bool                 { return st.body == bodyNone }

// requestHeaders fills h from the parsed request: pseudo-headers first,
// then the fields without host (it is :authority), the hop-by-hop ones
// and those the Connection header lists.
func (st *http1Stream) requestHeaders(h *filter.HeaderMap, scheme string) bool {
	r := &st.c.req
	h.Add(filter.HeaderMethod, r.method)
	h.Add(filter.HeaderScheme, scheme)
	h.Add(filter.HeaderAuthority, r.authority)
	if r.method != "CONNECT" {
		h.Add(filter.HeaderPath, r.path)
	}
	for _, f := range r.fields {
		switch {
		case f.Name == "host":
			continue
		case f.Name == "te":
			if headerListHas([]string{f.Value}, "trailers") {
				h.Add("te", "trailers")
			}
			continue
		case isHopByHop(f.Name):
			if r.upgrade && f.Name == "upgrade" {
				h.Add(f.Name, f.Value)
			}
			continue
		case len(r.connection) > 0 && headerListHas(r.connection, f.Name):
			continue
		}
		h.Add(f.Name, f.Value)
	}
	return r.upgrade
}

func (st *http1Stream) sendContinue() {
	c := st.c
	if !c.req.expectContinue || st.sent100 || c.req.minor == 0 || st.body == bodyNone {
		return
	}
	st.sent100 = true
	c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	_ = c.bw.Flush()
}

// readBody reads the request body: Content-Length bytes or the chunked
// coding, whose trailers it parses.
func (st *http1Stream) readBody(p []byte) (int, error) {
	c := st.c
	if st.bodyDone || st.body == bodyNone {
		return 0, io.EOF
	}
	if st.body == bodyLength {
		if int64(len(p)) > st.remaining {
			p = p[:st.remaining]
		}
		n, err := c.br.Read(p)
		st.remaining -= int64(n)
		if st.remaining == 0 {
			return n, st.finishBody()
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	}
	for {
		switch st.cstate {
		case chunkSize:
			line, err := c.br.ReadSlice('\n')
			if err != nil {
				if err == bufio.ErrBufferFull {
					return 0, errBadChunk
				}
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return 0, err
			}
			if len(line) > maxChunkLine {
				return 0, errBadChunk
			}
			if len(line) < 2 || line[len(line)-2] != '\r' {
				return 0, errBareLF
			}
			n, err := parseChunkSize(line[:len(line)-2])
			if err != nil {
				return 0, err
			}
			if n == 0 {
				if err := st.readTrailers(); err != nil {
					return 0, err
				}
				return 0, st.finishBody()
			}
			st.remaining, st.cstate = n, chunkData
		case chunkData:
			if int64(len(p)) > st.remaining {
				p = p[:st.remaining]
			}
			n, err := c.br.Read(p)
			st.remaining -= int64(n)
			if st.remaining == 0 {
				st.cstate = chunkEnd
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if n > 0 || err != nil {
				return n, err
			}
		case chunkEnd:
			b, err := c.br.Peek(2)
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return 0, err
			}
			if b[0] != '\r' || b[1] != '\n' {
				return 0, errBadChunkEnd
			}
			c.br.Discard(2)
			st.cstate = chunkSize
		}
	}
}

// readTrailers reads the trailer section after the last chunk.
func (st *http1Stream) readTrailers() error {
	c := st.c
	limit := c.m.MaxRequestHeaderBytes
	if limit <= 0 {
		limit = 60 << 10
	}
	block, err := readHead(c.br, st.trailBuf, limit, false)
	st.trailBuf = block[:0]
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if len(block) == 0 {
		return nil
	}
	st.trailSpan, err = parseFieldLines(block, 0, st.trailSpan[:0])
	if err != nil {
		return err
	}
	s := string(block)
	t := filter.NewHeaderMap()
	for _, sp := range st.trailSpan {
		name := s[sp.n0:sp.n1]
		switch name {
		case "content-length", "transfer-encoding", "host", "connection", "te", "trailer":
			continue // framing and routing fields are not trailers
		}
		t.Add(intern(block, s, sp.n0, sp.n1), s[sp.v0:sp.v1])
	}
	if t.Len() > 0 {
		st.trailer = t
	}
	return nil
}

func (st *http1Stream) finishBody() error {
	st.bodyDone = true
	if !st.c.req.upgrade && st.c.bgRead != nil { // nil: a parser test's bare connection
		st.c.startBackgroundRead()
	}
	return io.EOF
}

func (st *http1Stream) trailers() *filter.HeaderMap { return st.trailer }

func (st *http1Stream) setClose()     { st.closeAfter = true }
func (st *http1Stream) closing() bool { return st.closeAfter }

// writeHeaders writes the status line and header block into the
// connection's buffer; nothing is sent before a flush.
func (st *http1Stream) writeHeaders(code int, h *filter.HeaderMap, end bool) error {
	c := st.c
	req := &c.req
	st.respStarted = true
	st.respNoBody = req.method == "HEAD" || code < 200 || code == 204 || code == 304
	if c.srv.draining.Load() {
		st.closeAfter = true
	}
	b := appendStatusLine(c.hdrBuf[:0], code)
	b, hasCL, hasDate := appendFields(b, h, c.m.serverName != "", false)
	if c.m.serverName != "" {
		b = append(b, "Server: "...)
		b = append(b, c.m.serverName...)
		b = append(b, "\r\n"...)
	}
	if !hasDate {
		b = appendDate(b)
	}
	switch {
	case hasCL:
		if n, err := strconv.ParseInt(h.Value("content-length"), 10, 64); err == nil && n >= 0 {
			st.respRemain = n
		} else {
			st.closeAfter = true
		}
	case end:
		if !st.respNoBody {
			b = append(b, "Content-Length: 0\r\n"...)
		}
	case st.respNoBody:
	case req.minor == 1:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
		st.respChunked = true
	default:
		st.closeAfter = true // delimited by the close
	}
	if st.respNoBody && hasCL {
		st.respRemain = -1
	}
	if st.closeAfter || !req.keepAlive {
		st.closeAfter = true
		b = append(b, "Connection: close\r\n"...)
	} else if req.minor == 0 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = append(b, "\r\n"...)
	c.hdrBuf = b[:0]
	_, err := c.bw.Write(b)
	if end {
		st.respDone = true
	}
	return err
}

func (st *http1Stream) writeData(p []byte, end bool) error {
	c := st.c
	var err error
	switch {
	case st.respNoBody:
	case st.respChunked:
		if len(p) > 0 {
			var sz [20]byte
			b := strconv.AppendInt(sz[:0], int64(len(p)), 16)
			b = append(b, '\r', '\n')
			c.bw.Write(b)
			c.bw.Write(p)
			_, err = c.bw.WriteString("\r\n")
		}
		if end && err == nil {
			_, err = c.bw.WriteString("0\r\n\r\n")
		}
	case st.respRemain >= 0:
		if int64(len(p)) > st.respRemain {
			// More than the declared length: the rest would be read as
			// the next response.
			p = p[:st.respRemain]
			st.closeAfter = true
		}
		st.respRemain -= int64(len(p))
		_, err = c.bw.Write(p)
		if end && st.respRemain > 0 {
			st.closeAfter = true
			return errors.New("hcm: response body shorter than its content-length")
		}
	default:
		_, err = c.bw.Write(p)
	}
	if end {
		st.respDone = true
	}
	return err
}

func (st *http1Stream) writeTrailers(t *filter.HeaderMap) error {
	c := st.c
	var err error
	if st.respChunked {
		b := append(c.hdrBuf[:0], "0\r\n"...)
		b, _, _ = appendFields(b, t, false, false)
		b = append(b, "\r\n"...)
		c.hdrBuf = b[:0]
		_, err = c.bw.Write(b)
	} else if st.respRemain > 0 {
		st.closeAfter = true
		return errors.New("hcm: response body shorter than its content-length")
	}
	st.respDone = true
	return err
}

func (st *http1Stream) flush() error { return st.c.bw.Flush() }

func (st *http1Stream) unblockRead() { _ = st.c.conn.SetReadDeadline(aLongTimeAgo) }

func (st *http1Stream) switchProtocols(h *filter.HeaderMap) (net.Conn, io.Reader, error) {
	c := st.c
	b := append(c.hdrBuf[:0], "HTTP/1.1 101 Switching Protocols\r\n"...)
	b, _, _ = appendFields(b, h, false, true)
	b = append(b, "\r\n"...)
	c.hdrBuf = b[:0]
	st.hijacked = true
	c.bw.Write(b)
	if err := c.bw.Flush(); err != nil {
		return nil, nil, err
	}
	return c.conn, &tunnelReader{r: c.br, cancel: st.cancel}, nil
}

// tunnelReader reads an upgraded connection; its end (the client closed
// its side) cancels the stream, which closes the tunnel: upstream raw
// connections do not carry a half-close.
type tunnelReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (t *tunnelReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil {
		t.cancel()
	}
	return n, err
}

// appendFields writes h's fields as HTTP/1 header lines, canonically
// capitalised, without pseudo-headers, hop-by-hop fields and those the
// connection header lists (keepUpgrade keeps upgrade and connection for a
// 101). Values have CR, LF and NUL replaced by spaces.
func appendFields(b []byte, h *filter.HeaderMap, skipServer, keepUpgrade bool) ([]byte, bool, bool) {
	fields := h.Fields()
	hasConn := false
	for i := range fields {
		if fields[i].Name == "connection" {
			hasConn = true
			break
		}
	}
	hasCL, hasDate := false, false
	for i := range fields {
		f := &fields[i]
		if f.Name == "" || f.Name[0] == ':' {
			continue
		}
		if isHopByHop(f.Name) || f.Name == "te" {
			if !(keepUpgrade && (f.Name == "upgrade" || f.Name == "connection")) {
				continue
			}
		}
		if hasConn && !keepUpgrade && connectionLists(fields, f.Name) {
			continue
		}
		switch f.Name {
		case "server":
			if skipServer {
				continue
			}
		case "content-length":
			if hasCL {
				continue
			}
			hasCL = true
		case "date":
			hasDate = true
		}
		if !validName(f.Name) {
			continue
		}
		b = appendCanonical(b, f.Name)
		b = append(b, ':', ' ')
		for j := 0; j < len(f.Value); j++ {
			c := f.Value[j]
			if c == '\r' || c == '\n' || c == 0 {
				c = ' '
			}
			b = append(b, c)
		}
		b = append(b, '\r', '\n')
	}
	return b, hasCL, hasDate
}

func connectionLists(fields []filter.HeaderField, name string) bool {
	for i := range fields {
		if fields[i].Name == "connection" && headerListHas([]string{fields[i].Value}, name) {
			return true
		}
	}
	return false
}

func validName(n string) bool {
	for i := 0; i < len(n); i++ {
		if !tokenTable[n[i]] {
			return false
		}
	}
	return true
}

// appendCanonical writes a lower-case name as net/http would
// ("content-type" → "Content-Type").
func appendCanonical(b []byte, name string) []byte {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
		upper = c == '-'
	}
	return b
}

// statusLines are the precomputed "HTTP/1.1 NNN Reason\r\n" lines.
var statusLines = func() (t [600]string) {
	for code := 100; code < 600; code++ {
		t[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n"
	}
	return t
}()

func appendStatusLine(b []byte, code int) []byte {
	if code >= 100 && code < 600 {
		return append(b, statusLines[code]...)
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	return append(b, " \r\n"...)
}

// dateLine caches the "Date: ..." line for the current second.
type dateLine struct {
	sec  int64
	line []byte
}

var dateCache atomic.Pointer[dateLine]

func appendDate(b []byte) []byte {
	now := time.Now()
	sec := now.Unix()
	d := dateCache.Load()
	if d == nil || d.sec != sec {
		l := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
		d = &dateLine{sec: sec, line: append(l, '\r', '\n')}
		dateCache.Store(d)
	}
	return append(b, d.line...)
}
