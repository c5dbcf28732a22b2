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

	"go.uber.org/zap"
)

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
	bgCancel func() // the watched stream's; set before the read starts
	bgErr    error  // the read's result, valid after bgDone
	// A request complete in memory (its response pumped on the serving
	// goroutine) starts the background read only if it is still waiting
	// watchAfter later: watchTimer runs it, watchState hands it over.
	watchTimer *time.Timer
	watchState atomic.Int32
}

// watchState values.
const (
	watchOff int32 = iota
	watchArmed
	watchStarted
)

// watchAfter is how long a request complete in memory may wait on its
// upstream before the background read starts watching the client: most
// responses come sooner, and then the read is the serving goroutine's
// own wait for the next request, with no goroutine started and woken per
// request. A client that goes away is noticed this much later.
const watchAfter = 5 * time.Millisecond

func newHTTP1Conn(srv *HTTP1Server, conn net.Conn, ci *ConnInfo, ts *tls.ConnectionState) *http1Conn {
	c := &http1Conn{srv: srv, m: srv.M, conn: conn, tls: ts, bgDone: make(chan struct{}, 1)}
	if ci == nil {
		ci = NewConnInfo(conn)
	}
	c.ci = *ci
	c.st.c = c
	c.st.cancel = c.st.cancelCurrent
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
	if c.baseCtx.Done() != nil {
		// The connection's context ends the stream in progress.
		stop := context.AfterFunc(c.baseCtx, c.st.cancel)
		defer stop()
	}
	defer func() {
		c.abortBackgroundRead()
		c.conn.Close()
		c.releaseWriter()
		if c.detached {
			// HTTP/2 may still read through br on a goroutine of its
			// own; the reader is left to the garbage collector.
			return
		}
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}()
	limit := c.m.MaxRequestHeaderBytes
	if limit <= 0 {
		limit = 60 << 10
	}
	first := true
	for {
		if c.bgActive || c.br.Buffered() == 0 {
			// An idle connection keeps its reader (a read is pending on
			// it) but gives its writer back.
			c.releaseWriter()
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
		if c.bw == nil {
			c.bw = writerPool.Get().(*bufio.Writer)
			c.bw.Reset(c.conn)
		}
		if t := c.srv.HeaderTimeout; t > 0 && !c.headBuffered() {
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

// headBuffered reports whether a whole request head is in the reader's
// buffer already, so that reading it cannot block and needs no deadline.
func (c *http1Conn) headBuffered() bool {
	b, _ := c.br.Peek(c.br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}

// releaseWriter returns the (flushed or abandoned) writer to its pool.
func (c *http1Conn) releaseWriter() {
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
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
	sc := st.sctx.Load()
	if sc == nil {
		sc = newStreamCtx(c.baseCtx)
		st.sctx.Store(sc)
		if c.baseCtx.Err() != nil { // ended while sc was made
			sc.cancel()
		}
	}
	st.ctx = sc
	st.lazyWatch = st.inMemory()
	if st.body == bodyNone && !req.upgrade {
		c.watchClient()
	}
	abort := c.m.serve(st)
	// The rest of an unread body is read below without a delayed watch
	// (discardBody stops the read that reading the body's end starts).
	st.lazyWatch = false
	c.disarmWatch()
	if !sc.release() {
		st.sctx.CompareAndSwap(sc, nil) // ended: the next stream gets a new one
	}
	st.ctx = nil
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

// watchClient starts watching the client once the request is read: at
// once, or for a request complete in memory after watchAfter.
func (c *http1Conn) watchClient() {
	if !c.st.lazyWatch {
		c.startBackgroundRead()
		return
	}
	if c.bgActive || c.br.Buffered() > 0 {
		return
	}
	c.bgCancel = c.st.cancel
	c.watchState.Store(watchArmed)
	if c.watchTimer == nil {
		c.watchTimer = time.AfterFunc(watchAfter, c.watchFired)
	} else {
		c.watchTimer.Reset(watchAfter)
	}
}

// watchFired runs on the timer's goroutine: the background read, unless
// the stream ended first.
func (c *http1Conn) watchFired() {
	if c.watchState.CompareAndSwap(watchArmed, watchStarted) {
		c.backgroundRead()
	}
}

// disarmWatch ends the delayed watch when the stream ends; a read the
// timer started goes on as the background read.
func (c *http1Conn) disarmWatch() {
	if c.watchState.CompareAndSwap(watchArmed, watchOff) {
		c.watchTimer.Stop()
	} else if c.watchState.CompareAndSwap(watchStarted, watchOff) {
		c.bgActive = true
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
