package hcm

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"

	"github.com/remora-mesh/remora/proxy/filter"
)

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
	c *http1Conn
	// ctx is the current stream's context (a *streamCtx, reused while
	// nothing outside the manager saw it), nil between streams; sctx
	// holds it for cancel, which the background read may call at any
	// time; cancel is made once per connection.
	ctx    context.Context
	sctx   atomic.Pointer[streamCtx]
	cancel func()

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
	respDone    bool
	respChunked bool
	respNoBody  bool
	respRemain  int64 // -1: not framed by a length
	hijacked    bool

	// lazyWatch: the request is complete in memory (inMemory), the
	// client is watched only if the response takes a while.
	lazyWatch bool
}

var _ downstream = (*http1Stream)(nil)

func (st *http1Stream) reset() {
	st.body, st.remaining, st.cstate, st.bodyDone, st.trailer, st.sent100 = bodyNone, 0, chunkSize, false, nil, false
	st.closeAfter, st.respDone, st.respChunked, st.respNoBody, st.respRemain, st.hijacked =
		false, false, false, false, -1, false
	st.lazyWatch = false
}

func (st *http1Stream) context() context.Context { return st.ctx }

// cancelCurrent ends the current stream's context: the client went away
// (or the connection's context ended).
func (st *http1Stream) cancelCurrent() {
	if sc := st.sctx.Load(); sc != nil {
		sc.cancel()
	}
}
func (st *http1Stream) protoMajor() int { return 1 }
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

func (st *http1Stream) inMemory() bool {
	r := &st.c.req
	if r.upgrade || r.method == "CONNECT" {
		return false
	}
	switch st.body {
	case bodyNone:
		return true
	case bodyLength:
		return !r.expectContinue && st.remaining <= int64(st.c.br.Buffered())
	}
	return false
}

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
		st.c.watchClient()
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
			if end && n > 0 && !st.respNoBody {
				// A length with no body to follow: the client would
				// take the next response for it.
				st.closeAfter = true
			}
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
