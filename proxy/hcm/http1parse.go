package hcm

import (
	"bufio"
	"bytes"
	"io"
	"strconv"

	"github.com/remora-mesh/remora/proxy/filter"
)

// The HTTP/1 request parser (RFC 9112). It is strict where leniency lets
// two parsers disagree about where a request ends (request smuggling):
// every line ends in CRLF, header names are tokens with no whitespace
// before the colon, obs-fold is refused, a request may not carry both
// Content-Length and Transfer-Encoding, Transfer-Encoding must be exactly
// "chunked", and every Content-Length value must agree. Everything it
// refuses is an *http1Error carrying the status to answer (400, 431, 505)
// before the connection is closed.

// http1Error is a malformed request: the codec answers Status and closes
// the connection.
type http1Error struct {
	Status int
	Reason string
}

func (e *http1Error) Error() string { return "hcm: http1: " + e.Reason }

func badRequest(reason string) error { return &http1Error{Status: 400, Reason: reason} }

var (
	errHeadTooLarge  = &http1Error{Status: 431, Reason: "request header block larger than max_request_headers_kb"}
	errBareLF        = badRequest("line not terminated by CRLF")
	errBadChunk      = badRequest("invalid chunk size line")
	errBadChunkEnd   = badRequest("chunk data not followed by CRLF")
	errChunkTooLarge = badRequest("chunk size too large")
)

// maxChunkLine bounds a chunk-size line (with its extensions).
const maxChunkLine = 4 << 10

// readHead reads one head (a request line and field lines, or a trailer
// section) from br into scratch, up to the empty line that ends it. It
// returns the lines, each ending in CRLF, without the empty line. Empty
// lines before a request line are skipped (RFC 9112 section 2.2) when
// skipEmpty is set. The returned bytes (not counting the final empty
// line) must fit limit, else errHeadTooLarge. A clean EOF before any byte
// is io.EOF; an EOF inside the head is io.ErrUnexpectedEOF.
func readHead(br *bufio.Reader, scratch []byte, limit int, skipEmpty bool) ([]byte, error) {
	buf := scratch[:0]
	lineStart := 0
	skipped := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(frag) > 0 {
			atStart := len(buf) == lineStart
			if atStart && (len(frag) == 2 && frag[0] == '\r' && frag[1] == '\n') {
				if len(buf) == 0 && skipEmpty && skipped < 4 {
					skipped++
					continue
				}
				return buf, nil
			}
			// The terminating empty line (handled above) is not counted.
			if len(buf)+len(frag) > limit {
				return buf, errHeadTooLarge
			}
			buf = append(buf, frag...)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue // the line goes on
		case err == io.EOF && len(buf) == 0 && skipped == 0:
			return buf, io.EOF
		case err == io.EOF:
			return buf, io.ErrUnexpectedEOF
		case err != nil:
			return buf, err
		}
		// A complete line: it must end in CRLF and hold no other CR.
		line := buf[lineStart:]
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return buf, errBareLF
		}
		if bytes.IndexByte(line[:len(line)-2], '\r') >= 0 {
			return buf, badRequest("bare CR in header line")
		}
		lineStart = len(buf)
	}
}

// http1Request is a parsed request head. Its strings share one
// allocation (the head's bytes) or are interned constants.
type http1Request struct {
	method string
	target string // as sent
	minor  int    // HTTP/1.minor: 0 or 1
	// authority and path become :authority and :path: the Host header
	// and the target, or the parts of an absolute-form target.
	authority string
	path      string
	// fields are every header field, names lower-case, in order.
	fields []filter.HeaderField
	// Framing: contentLength is -1 without a Content-Length.
	contentLength int64
	chunked       bool
	// keepAlive: the connection may carry another request after this one
	// (RFC 9112 section 9.3), before the response has its say.
	keepAlive      bool
	expectContinue bool
	upgrade        bool // Connection: upgrade with an Upgrade header
	h2c            bool // Upgrade: h2c with HTTP2-Settings
	te             string
	connection     []string // Connection header values
}

func (r *http1Request) reset() {
	clear(r.fields)
	fields, conn := r.fields[:0], r.connection[:0]
	clear(r.connection)
	*r = http1Request{fields: fields, connection: conn, contentLength: -1}
}

// commonNames interns header names and methods so that the parsed
// request's names do not keep a whole head alive and compare fast.
var commonNames = map[string]string{}

func init() {
	for n := range toCanonical {
		commonNames[n] = n
	}
	for _, n := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
		"http2-settings", "x-b3-parentspanid", "x-ot-span-context", "x-client-trace-id", "grpc-timeout", "content-md5"} {
		commonNames[n] = n
	}
}

func intern(b []byte, s string, i, j int) string {
	if v, ok := commonNames[string(b[i:j])]; ok {
		return v
	}
	return s[i:j]
}

// tokenTable marks RFC 9110 tchar bytes.
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validFieldValue reports whether v holds only VCHAR, obs-text, SP and
// HTAB (no CR, LF, NUL or other control bytes).
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validTarget reports whether a request target is free of whitespace and
// control bytes.
func validTarget(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost reports whether h can be a Host value: a reg-name, IPv4 or
// bracketed IP literal, with an optional port (the characters of RFC 3986
// authority without userinfo).
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		default:
			switch c {
			case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '[', ']', '%':
			default:
				return false
			}
		}
	}
	return true
}

// span locates a header field in a head.
type span struct{ n0, n1, v0, v1 int }

// parseFieldLines validates field lines (each ending in CRLF), lower-cases
// the names in place and appends their spans.
func parseFieldLines(b []byte, base int, spans []span) ([]span, error) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		line := b[:i-1] // without CRLF (readHead checked it)
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return spans, badRequest("obs-fold (folded header line)")
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return spans, badRequest("header line without a colon")
		}
		if colon == 0 {
			return spans, badRequest("empty header name")
		}
		for j := 0; j < colon; j++ {
			c := line[j]
			if !tokenTable[c] {
				if c == ' ' || c == '\t' {
					return spans, badRequest("whitespace in or after header name")
				}
				return spans, badRequest("invalid byte in header name")
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
		if !validFieldValue(line[v0:v1]) {
			return spans, badRequest("invalid byte in header value")
		}
		spans = append(spans, span{base, base + colon, base + v0, base + v1})
		base += i + 1
		b = b[i+1:]
	}
	return spans, nil
}

// parseRequest parses head (from readHead) into r, which it resets first.
// It lower-cases header names in head. spans is scratch space, returned
// grown. The strings of r share one allocation.
func parseRequest(head []byte, r *http1Request, spans []span) ([]span, error) {
	r.reset()
	nl := bytes.IndexByte(head, '\n')
	if nl < 0 {
		return spans, badRequest("empty request line")
	}
	rl := head[:nl-1]
	sp1 := bytes.IndexByte(rl, ' ')
	if sp1 <= 0 {
		return spans, badRequest("malformed request line")
	}
	rest := rl[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return spans, badRequest("malformed request line")
	}
	method, target, version := rl[:sp1], rest[:sp2], rest[sp2+1:]
	for _, c := range method {
		if !tokenTable[c] {
			return spans, badRequest("invalid method")
		}
	}
	if !validTarget(target) {
		return spans, badRequest("invalid request target")
	}
	if len(version) != 8 || string(version[:5]) != "HTTP/" || version[6] != '.' ||
		version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9' {
		return spans, badRequest("malformed HTTP version")
	}
	if version[5] != '1' {
		return spans, &http1Error{Status: 505, Reason: "HTTP version not supported"}
	}
	r.minor = 1
	if version[7] == '0' {
		r.minor = 0
	}
	spans, err := parseFieldLines(head[nl+1:], nl+1, spans[:0])
	if err != nil {
		return spans, err
	}
	s := string(head) // the one allocation for every string of r
	r.method = intern(head, s, 0, sp1)
	r.target = s[sp1+1 : sp1+1+sp2]

	var host string
	hosts := 0
	var cl string
	hasCL := false
	r.keepAlive = r.minor == 1
	hasUpgrade, settings := false, 0
	for _, sp := range spans {
		name := intern(head, s, sp.n0, sp.n1)
		val := s[sp.v0:sp.v1]
		r.fields = append(r.fields, filter.HeaderField{Name: name, Value: val})
		switch name {
		case "host":
			host = val
			hosts++
		case "content-length":
			// Every value, and every element of a list, must agree.
			for v := val; ; {
				item, more, found := cutComma(v)
				if !validContentLength(item) {
					return spans, badRequest("invalid content-length")
				}
				if hasCL && item != cl {
					return spans, badRequest("conflicting content-length values")
				}
				cl, hasCL = item, true
				if !found {
					break
				}
				v = more
			}
		case "transfer-encoding":
			if r.te != "" {
				r.te += ","
			}
			r.te += val
		case "connection":
			r.connection = append(r.connection, val)
		case "expect":
			if equalFoldASCII(val, "100-continue") {
				r.expectContinue = true
			}
		case "upgrade":
			hasUpgrade = true
			if headerListHas([]string{val}, "h2c") {
				r.h2c = true
			}
		case "http2-settings":
			settings++
		}
	}
	switch {
	case hosts > 1:
		return spans, badRequest("more than one host header")
	case hosts == 0 && r.minor == 1:
		return spans, badRequest("missing host header")
	case hosts == 1 && !validHost(host):
		return spans, badRequest("invalid host header")
	}
	if r.te != "" {
		if hasCL {
			return spans, badRequest("both content-length and transfer-encoding")
		}
		if r.minor == 0 {
			return spans, badRequest("transfer-encoding in an HTTP/1.0 request")
		}
		if !equalFoldASCII(trimOWS(r.te), "chunked") {
			return spans, &http1Error{Status: 400, Reason: "transfer-encoding other than chunked"}
		}
		r.chunked = true
	} else if hasCL {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil {
			return spans, badRequest("content-length out of range")
		}
		r.contentLength = n
	}
	if len(r.connection) > 0 {
		if headerListHas(r.connection, "close") {
			r.keepAlive = false
		} else if r.minor == 0 && headerListHas(r.connection, "keep-alive") {
			r.keepAlive = true
		}
		r.upgrade = hasUpgrade && headerListHas(r.connection, "upgrade")
	}
	r.h2c = r.h2c && r.upgrade && settings == 1 && headerListHas(r.connection, "http2-settings")

	// The target: origin-form, absolute-form, authority-form (CONNECT)
	// or asterisk-form (OPTIONS).
	r.authority = host
	switch {
	case r.method == "CONNECT":
		if !validHost(r.target) || r.target[0] == '/' {
			return spans, badRequest("invalid CONNECT target")
		}
		r.authority = r.target
	case r.target[0] == '/':
		r.path = r.target
	case r.target == "*" && r.method == "OPTIONS":
		r.path = r.target
	default:
		scheme, rest, ok := cutString(r.target, "://")
		if !ok || !(equalFoldASCII(scheme, "http") || equalFoldASCII(scheme, "https")) {
			return spans, badRequest("invalid request target")
		}
		auth := rest
		r.path = "/"
		if i := indexAny(rest, "/?"); i >= 0 {
			auth = rest[:i]
			if rest[i] == '/' {
				r.path = rest[i:]
			} else {
				r.path = "/" + rest[i:]
			}
		}
		if auth == "" || !validHost(auth) {
			return spans, badRequest("invalid authority in request target")
		}
		r.authority = auth // RFC 9112 section 3.2.2: it overrides Host
	}
	return spans, nil
}

// validContentLength: 1*DIGIT, at most 18 digits.
func validContentLength(v string) bool {
	if v == "" || len(v) > 18 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// cutComma splits a list at its first comma, trimming optional whitespace.
func cutComma(v string) (item, rest string, found bool) {
	for i := 0; i < len(v); i++ {
		if v[i] == ',' {
			return trimOWS(v[:i]), v[i+1:], true
		}
	}
	return trimOWS(v), "", false
}

func trimOWS(v string) string {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func cutString(s, sep string) (string, string, bool) {
	for i := 0; i+len(sep) <= len(s); i++ {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

func indexAny(s, chars string) int {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return i
			}
		}
	}
	return -1
}

// appendHead serialises r as a request head (request line, fields, the
// empty line). A head parsed from the result equals r.
func (r *http1Request) appendHead(dst []byte) []byte {
	dst = append(dst, r.method...)
	dst = append(dst, ' ')
	dst = append(dst, r.target...)
	dst = append(dst, " HTTP/1."...)
	dst = append(dst, byte('0'+r.minor))
	dst = append(dst, "\r\n"...)
	for _, f := range r.fields {
		dst = append(dst, f.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, f.Value...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// parseChunkSize parses a chunk-size line without its CRLF: 1*HEXDIG,
// then chunk extensions *( BWS ";" BWS token [ BWS "=" BWS ( token /
// quoted-string ) ] ), which are validated and ignored.
func parseChunkSize(line []byte) (int64, error) {
	i := 0
	var n int64
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 {
			return 0, errChunkTooLarge
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, errBadChunk
	}
	if !validChunkExt(line[i:]) {
		return 0, badRequest("invalid chunk extension")
	}
	return n, nil
}

func validChunkExt(b []byte) bool {
	ws := func() {
		for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
			b = b[1:]
		}
	}
	token := func() bool {
		j := 0
		for j < len(b) && tokenTable[b[j]] {
			j++
		}
		b = b[j:]
		return j > 0
	}
	for len(b) > 0 {
		ws()
		if len(b) == 0 || b[0] != ';' {
			return false
		}
		b = b[1:]
		ws()
		if !token() {
			return false
		}
		ws()
		if len(b) == 0 || b[0] == ';' {
			continue
		}
		if b[0] != '=' {
			return false
		}
		b = b[1:]
		ws()
		if len(b) > 0 && b[0] == '"' {
			j := 1
			for ; j < len(b) && b[j] != '"'; j++ {
				c := b[j]
				if c == '\\' {
					j++
					if j == len(b) {
						return false
					}
					c = b[j]
				}
				if c < 0x20 && c != '\t' || c == 0x7f {
					return false
				}
			}
			if j == len(b) {
				return false
			}
			b = b[j+1:]
		} else if !token() {
			return false
		}
	}
	return true
}
