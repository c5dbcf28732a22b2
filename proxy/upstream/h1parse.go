package upstream

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/remora-mesh/remora/proxy/filter"
)

// Limits of the HTTP/1 response parser.
const (
	maxResponseHeaderBytes = 64 << 10 // status line and header block
	maxChunkLineBytes      = 4 << 10
)

// readHeaderBlock reads lines up to and including the empty line that ends
// an HTTP/1 header block, appending them to buf (the caller's scratch
// space). It returns the block without the final empty line. A block
// larger than maxResponseHeaderBytes is an error.
func readHeaderBlock(br *bufio.Reader, buf []byte) ([]byte, error) {
	buf = buf[:0]
	lineStart := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > maxResponseHeaderBytes {
			return buf, fmt.Errorf("%w: header block larger than %d bytes", ErrMalformedResponse, maxResponseHeaderBytes)
		}
		buf = append(buf, frag...)
		switch {
		case err == bufio.ErrBufferFull:
			continue // the line goes on
		case err == io.EOF && len(buf) == 0:
			return buf, io.EOF
		case err == io.EOF:
			return buf, io.ErrUnexpectedEOF
		case err != nil:
			return buf, err
		}
		line := buf[lineStart:]
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			return buf[:lineStart], nil
		}
		lineStart = len(buf)
	}
}

// trimEOL removes the line's "\n" or "\r\n".
func trimEOL(line []byte) []byte {
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

// isTokenChar reports whether c may appear in a header name (RFC 9110 tchar).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// fieldSpan locates one header field inside a header block.
type fieldSpan struct{ name0, name1, val0, val1 int }

// parseFieldLines validates the header lines of block (every line ending
// in "\n"), lower-cases the names in place and returns their spans. The
// lines are RFC 9112 field lines: a token name, a colon with no space
// before it, optional whitespace, a value free of CR, LF and NUL. Folded
// (obs-fold) lines are rejected.
func parseFieldLines(block []byte, base int, spans []fieldSpan) ([]fieldSpan, error) {
	for len(block) > 0 {
		i := bytes.IndexByte(block, '\n')
		line := trimEOL(block[:i+1])
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return spans, fmt.Errorf("%w: folded header line", ErrMalformedResponse)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return spans, fmt.Errorf("%w: header line without a name and colon", ErrMalformedResponse)
		}
		for j := 0; j < colon; j++ {
			c := line[j]
			if !isTokenChar(c) {
				return spans, fmt.Errorf("%w: invalid character %q in header name", ErrMalformedResponse, c)
			}
			if 'A' <= c && c <= 'Z' {
				line[j] = c + ('a' - 'A')
			}
		}
		v0, v1 := colon+1, len(line)
		for v0 < v1 && (line[v0] == ' ' || line[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (line[v1-1] == ' ' || line[v1-1] == '\t') {
			v1--
		}
		for _, c := range line[v0:v1] {
			if c == '\r' || c == '\n' || c == 0 {
				return spans, fmt.Errorf("%w: invalid character %q in header value", ErrMalformedResponse, c)
			}
		}
		spans = append(spans, fieldSpan{base, base + colon, base + v0, base + v1})
		base += i + 1
		block = block[i+1:]
	}
	return spans, nil
}

// responseHead is a parsed status line and header block.
type responseHead struct {
	minor   int // HTTP/1.minor
	status  int
	headers *filter.HeaderMap // ":status" first, then the fields in order
}

// parseResponseHead reads one response head from br. scratch is reusable
// space (returned grown); the HeaderMap's strings share one allocation.
func parseResponseHead(br *bufio.Reader, scratch []byte, spans []fieldSpan) (responseHead, []byte, []fieldSpan, error) {
	var rh responseHead
	block, err := readHeaderBlock(br, scratch)
	if err != nil {
		return rh, block, spans, err
	}
	nl := bytes.IndexByte(block, '\n')
	if nl < 0 {
		return rh, block, spans, fmt.Errorf("%w: empty status line", ErrMalformedResponse)
	}
	sl := trimEOL(block[:nl+1])
	// "HTTP/1.1 200 OK", the reason optional.
	if len(sl) < 12 || string(sl[:7]) != "HTTP/1." || (sl[7] != '0' && sl[7] != '1') || sl[8] != ' ' ||
		(len(sl) > 12 && sl[12] != ' ') {
		return rh, block, spans, fmt.Errorf("%w: bad status line %q", ErrMalformedResponse, truncate(sl))
	}
	rh.minor = int(sl[7] - '0')
	for _, c := range sl[9:12] {
		if c < '0' || c > '9' {
			return rh, block, spans, fmt.Errorf("%w: bad status code in %q", ErrMalformedResponse, truncate(sl))
		}
		rh.status = rh.status*10 + int(c-'0')
	}
	if rh.status < 100 {
		return rh, block, spans, fmt.Errorf("%w: status code %d out of range", ErrMalformedResponse, rh.status)
	}
	spans, err = parseFieldLines(block[nl+1:], nl+1, spans[:0])
	if err != nil {
		return rh, block, spans, err
	}
	s := string(block) // one allocation for every name and value
	h := newResponseHeaders(len(spans) + 1)
	h.Add(filter.HeaderStatus, s[9:12])
	for _, sp := range spans {
		h.Add(s[sp.name0:sp.name1], s[sp.val0:sp.val1])
	}
	rh.headers = h
	return rh, block, spans, nil
}

// smallHead is a response's header map with room for its fields in the
// same allocation: a typical response head costs two allocations (this
// and its text) instead of three.
type smallHead struct {
	m filter.HeaderMap
	f [smallHeadFields]filter.HeaderField
}

const smallHeadFields = 8

// newResponseHeaders returns an empty header map with room for n fields.
func newResponseHeaders(n int) *filter.HeaderMap {
	if n > smallHeadFields {
		return filter.NewHeaderMap(make([]filter.HeaderField, 0, n)...)
	}
	sh := new(smallHead)
	sh.m = *filter.NewHeaderMap(sh.f[:0]...)
	return &sh.m
}

// parseTrailers reads the trailer section after a last chunk.
func parseTrailers(br *bufio.Reader, scratch []byte, spans []fieldSpan) (*filter.HeaderMap, []byte, []fieldSpan, error) {
	block, err := readHeaderBlock(br, scratch)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, block, spans, err
	}
	if len(block) == 0 {
		return nil, block, spans, nil
	}
	spans, err = parseFieldLines(block, 0, spans[:0])
	if err != nil {
		return nil, block, spans, err
	}
	s := string(block)
	fields := make([]filter.HeaderField, 0, len(spans))
	for _, sp := range spans {
		fields = append(fields, filter.HeaderField{Name: s[sp.name0:sp.name1], Value: s[sp.val0:sp.val1]})
	}
	return filter.NewHeaderMap(fields...), block, spans, nil
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// Body framing modes of an HTTP/1 response.
type bodyMode uint8

const (
	bodyNone    bodyMode = iota // no body (HEAD, 1xx, 204, 304)
	bodyLength                  // Content-Length bytes
	bodyChunked                 // chunked transfer coding
	bodyToEOF                   // until the upstream closes
	bodyRaw                     // an upgraded connection: raw bytes
)

// framing decides how the response body is delimited (RFC 9112 section 6.3)
// and whether the connection can carry another request. It strips the
// connection-level fields from h. A response with both Transfer-Encoding
// and Content-Length is read as chunked and its connection not reused
// (a request smuggling vector).
func framing(method string, rh *responseHead, upgrade bool) (mode bodyMode, length int64, reusable bool, err error) {
	reusable = rh.minor == 1
	var te, cl string
	var hasTE, hasCL, closeConn bool
	fields := rh.headers.Fields()
	for i := range fields {
		f := &fields[i]
		switch f.Name {
		case "transfer-encoding":
			if hasTE {
				te += "," + f.Value
			} else {
				te = f.Value
			}
			hasTE = true
		case "content-length":
			if hasCL && f.Value != cl {
				return 0, 0, false, fmt.Errorf("%w: conflicting content-length values %q and %q", ErrMalformedResponse, cl, f.Value)
			}
			cl, hasCL = f.Value, true
		case "connection":
			if hasToken(f.Value, "close") {
				closeConn = true
			}
		}
	}
	if closeConn {
		reusable = false
	}
	raw := upgrade && rh.status == 101 || method == "CONNECT" && rh.status/100 == 2
	stripConnectionFields(rh.headers, raw)
	switch {
	case raw:
		return bodyRaw, 0, false, nil
	case rh.status == 101:
		return 0, 0, false, fmt.Errorf("%w: 101 Switching Protocols to a request that did not ask to upgrade", ErrMalformedResponse)
	case method == "HEAD" || rh.status/100 == 1 || rh.status == 204 || rh.status == 304:
		return bodyNone, 0, reusable, nil
	case hasTE:
		if hasCL {
			reusable = false
			rh.headers.Del("content-length")
		}
		if lastToken(te) == "chunked" {
			return bodyChunked, 0, reusable, nil
		}
		return bodyToEOF, 0, false, nil
	case hasCL:
		n, perr := strconv.ParseInt(cl, 10, 64)
		if perr != nil || n < 0 || cl[0] == '+' {
			return 0, 0, false, fmt.Errorf("%w: invalid content-length %q", ErrMalformedResponse, cl)
		}
		if n == 0 {
			return bodyNone, 0, reusable, nil
		}
		return bodyLength, n, reusable, nil
	default:
		return bodyToEOF, 0, false, nil
	}
}

// stripConnectionFields removes HTTP/1 connection-level fields, which do
// not travel past this hop: connection, keep-alive, proxy-connection and
// transfer-encoding. An upgraded response keeps connection and upgrade.
func stripConnectionFields(h *filter.HeaderMap, upgraded bool) {
	for _, name := range [...]string{"connection", "keep-alive", "proxy-connection", "transfer-encoding"} {
		if upgraded && name == "connection" {
			continue
		}
		if h.Has(name) {
			h.Del(name)
		}
	}
}

// hasToken reports whether the comma-separated list v holds token
// (case-insensitively).
func hasToken(v, token string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// lastToken returns the last element of a comma-separated list, trimmed
// and lower-cased.
func lastToken(v string) string {
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// chunkSize parses a chunk-size line (hex digits, then optional ";ext").
func chunkSize(line []byte) (int64, error) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, fmt.Errorf("%w: bad chunk size %q", ErrMalformedResponse, truncate(line))
	}
	var n int64
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: bad chunk size %q", ErrMalformedResponse, truncate(line))
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}

// readLine reads one short line (chunk sizes, chunk ends), without its
// end-of-line.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull || (err == nil && len(line) > maxChunkLineBytes):
		return nil, fmt.Errorf("%w: chunk line too long", ErrMalformedResponse)
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	return trimEOL(line), nil
}
