package hcm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
)

// parseAll reads and parses one request head from raw.
func parseAll(raw []byte, limit int) (*http1Request, error) {
	br := bufio.NewReaderSize(bytes.NewReader(raw), 64)
	head, err := readHead(br, nil, limit, true)
	if err != nil {
		return nil, err
	}
	r := &http1Request{}
	if _, err := parseRequest(head, r, nil); err != nil {
		return nil, err
	}
	return r, nil
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name, raw string
		method    string
		authority string
		path      string
		minor     int
		cl        int64
		chunked   bool
		keepAlive bool
		upgrade   bool
		fields    []filter.HeaderField
	}{
		{name: "simple", raw: "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Mixed-Case:  v1 \r\n\r\n",
			method: "GET", authority: "example.com", path: "/a?b=c", minor: 1, cl: -1, keepAlive: true,
			fields: []filter.HeaderField{{Name: "host", Value: "example.com"}, {Name: "x-mixed-case", Value: "v1"}}},
		{name: "leading crlf skipped", raw: "\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nContent-Length: 10\r\n\r\n",
			method: "POST", authority: "a", path: "/", minor: 1, cl: 10, keepAlive: true,
			fields: []filter.HeaderField{{Name: "host", Value: "a"}, {Name: "content-length", Value: "10"}, {Name: "content-length", Value: "10"}}},
		{name: "chunked", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n",
			method: "POST", authority: "a", path: "/", minor: 1, cl: -1, chunked: true,
			fields: []filter.HeaderField{{Name: "host", Value: "a"}, {Name: "transfer-encoding", Value: "Chunked"}, {Name: "connection", Value: "close"}}},
		{name: "http/1.0 keep-alive", raw: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
			method: "GET", path: "/", minor: 0, cl: -1, keepAlive: true,
			fields: []filter.HeaderField{{Name: "connection", Value: "Keep-Alive"}}},
		{name: "absolute form overrides host", raw: "GET http://b.example:8080/p?q HTTP/1.1\r\nHost: a\r\n\r\n",
			method: "GET", authority: "b.example:8080", path: "/p?q", minor: 1, cl: -1, keepAlive: true,
			fields: []filter.HeaderField{{Name: "host", Value: "a"}}},
		{name: "absolute form without path", raw: "GET http://b?x HTTP/1.1\r\nHost: a\r\n\r\n",
			method: "GET", authority: "b", path: "/?x", minor: 1, cl: -1, keepAlive: true,
			fields: []filter.HeaderField{{Name: "host", Value: "a"}}},
		{name: "connect", raw: "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n",
			method: "CONNECT", authority: "db:5432", minor: 1, cl: -1, keepAlive: true,
			fields: []filter.HeaderField{{Name: "host", Value: "db:5432"}}},
		{name: "upgrade", raw: "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
			method: "GET", authority: "a", path: "/ws", minor: 1, cl: -1, keepAlive: true, upgrade: true,
			fields: []filter.HeaderField{{Name: "host", Value: "a"}, {Name: "connection", Value: "keep-alive, Upgrade"}, {Name: "upgrade", Value: "websocket"}}},
		{name: "asterisk form and empty value", raw: "OPTIONS * HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n",
			method: "OPTIONS", authority: "a", path: "*", minor: 1, cl: -1, keepAlive: true,
			fields: []filter.HeaderField{{Name: "host", Value: "a"}, {Name: "x-empty", Value: ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseAll([]byte(tt.raw), 1<<16)
			if err != nil {
				t.Fatal(err)
			}
			if r.method != tt.method || r.authority != tt.authority || r.path != tt.path || r.minor != tt.minor ||
				r.contentLength != tt.cl || r.chunked != tt.chunked || r.keepAlive != tt.keepAlive || r.upgrade != tt.upgrade {
				t.Fatalf("got %+v", r)
			}
			if !reflect.DeepEqual(r.fields, tt.fields) {
				t.Fatalf("fields\n got %v\nwant %v", r.fields, tt.fields)
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	tests := []struct {
		name, raw string
		status    int
		reason    string
	}{
		{"cl and te", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "both content-length and transfer-encoding"},
		{"conflicting cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "conflicting content-length"},
		{"cl list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,2\r\n\r\n", 400, "conflicting content-length"},
		{"cl empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400, "invalid content-length"},
		{"te identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400, "transfer-encoding other than chunked"},
		{"te gzip chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400, "transfer-encoding other than chunked"},
		{"te http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "HTTP/1.0"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\n\tcontinued\r\n\r\n", 400, "obs-fold"},
		{"space in name", "GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n", 400, "whitespace"},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace"},
		{"del in value", "GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n", 400, "header value"},
		{"bare lf", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "CRLF"},
		{"bare cr", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400, "bare CR"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400, "missing host"},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400, "more than one host"},
		{"host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid host"},
		{"target with control", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "request target"},
		{"no target", "GET HTTP/1.1\r\nHost: a\r\n\r\n", 400, "request line"},
		{"version", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400, "version"},
		{"http/3", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505, "version"},
		{"connect path", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "CONNECT"},
		{"asterisk form GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "request target"},
		{"absolute no host", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseAll([]byte(tt.raw), 1<<16)
			var he *http1Error
			if !errors.As(err, &he) {
				t.Fatalf("error %v, want an http1Error", err)
			}
			if he.Status != tt.status || !strings.Contains(err.Error(), tt.reason) || !strings.HasPrefix(err.Error(), "hcm: http1: ") {
				t.Fatalf("got %d %q, want %d containing %q", he.Status, err, tt.status, tt.reason)
			}
		})
	}
}

// TestReadHeadLimit: the limit counts the request line and the field
// lines with their CRLFs, not the empty line that ends the head.
func TestReadHeadLimit(t *testing.T) {
	const line = "GET / HTTP/1.1\r\nHost: a\r\n" // 25 bytes
	for _, tt := range []struct {
		limit int
		err   error
	}{{len(line) + 1, nil}, {len(line), nil}, {len(line) - 1, errHeadTooLarge}} {
		br := bufio.NewReaderSize(strings.NewReader(line+"\r\n"), 16)
		head, err := readHead(br, nil, tt.limit, true)
		if err != tt.err {
			t.Fatalf("limit %d: %v, want %v", tt.limit, err, tt.err)
		}
		if err == nil && string(head) != line {
			t.Fatalf("head %q", head)
		}
	}
	for _, tt := range []struct {
		raw string
		err error
	}{{"", io.EOF}, {"GET / HT", io.ErrUnexpectedEOF}, {"\r\n", io.ErrUnexpectedEOF}} {
		if _, err := readHead(bufio.NewReader(strings.NewReader(tt.raw)), nil, 100, true); err != tt.err {
			t.Fatalf("%q: %v, want %v", tt.raw, err, tt.err)
		}
	}
}

func TestParseChunkSize(t *testing.T) {
	for _, tt := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"0", 0, true}, {"1a", 26, true}, {"FFF", 4095, true}, {"5;a", 5, true}, {"5 ; a = b", 5, true},
		{`5;a="q \" x";b`, 5, true}, {"fffffffffffffff", 1<<60 - 1, true},
		{"", 0, false}, {"x", 0, false}, {"5 ", 0, false}, {"5;", 0, false}, {"5;a=", 0, false}, {`5;a="x`, 0, false},
		{"-1", 0, false}, {"0x5", 0, false}, {"ffffffffffffffff", 0, false}, {"5;a=\x01", 0, false},
	} {
		n, err := parseChunkSize([]byte(tt.line))
		if (err == nil) != tt.ok || (tt.ok && n != tt.n) {
			t.Errorf("%q: %d %v, want %d ok=%v", tt.line, n, err, tt.n, tt.ok)
		}
	}
}

// FuzzParseRequest: the parser never panics, and a request it accepts
// serialises to a head that parses to the same request.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x?y HTTP/1.1\r\nHost: a:80\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET http://h/p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := parseAll(raw, 8<<10)
		if err != nil {
			var he *http1Error
			if !errors.As(err, &he) && err != io.EOF && err != io.ErrUnexpectedEOF {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		again, err := parseAll(r.appendHead(nil), 1<<20)
		if err != nil {
			t.Fatalf("re-serialised head fails: %v\n%q", err, r.appendHead(nil))
		}
		if !reflect.DeepEqual(normalise(r), normalise(again)) {
			t.Fatalf("round trip differs:\n%+v\n%+v", r, again)
		}
	})
}

func normalise(r *http1Request) http1Request {
	c := *r
	if len(c.fields) == 0 {
		c.fields = nil
	}
	if len(c.connection) == 0 {
		c.connection = nil
	}
	return c
}

var typicalRequest = []byte("GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: service.default.svc.cluster.local:8080\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\nAccept: application/json\r\n" +
	"Accept-Encoding: gzip, deflate\r\nAccept-Language: en-US,en;q=0.9\r\nX-Request-Id: 2f1c0c7e-8a4e-4b8e-9d0e-1f2a3b4c5d6e\r\n" +
	"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc\r\nCookie: session=abcdef0123456789\r\n\r\n")

// BenchmarkParseRequest reads and parses a typical request head from a
// bufio.Reader, as the codec does: one allocation (the head's string).
func BenchmarkParseRequest(b *testing.B) {
	rd := bytes.NewReader(typicalRequest)
	br := bufio.NewReaderSize(rd, 4<<10)
	var r http1Request
	var scratch []byte
	var spans []span
	var h filter.HeaderMap
	st := &http1Stream{c: &http1Conn{}}
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalRequest)))
	for b.Loop() {
		rd.Reset(typicalRequest)
		br.Reset(rd)
		head, err := readHead(br, scratch, 60<<10, true)
		if err != nil {
			b.Fatal(err)
		}
		scratch = head[:0]
		spans, err = parseRequest(head, &r, spans)
		if err != nil {
			b.Fatal(err)
		}
		st.c.req = r
		h.Reset()
		st.requestHeaders(&h, "http")
	}
}

// chunkedStream is a bare HTTP/1 stream reading a chunked body from raw.
func chunkedStream(raw []byte) *http1Stream {
	c := &http1Conn{m: &Manager{MaxRequestHeaderBytes: 4 << 10}, br: bufio.NewReaderSize(bytes.NewReader(raw), 64)}
	c.st.c = c
	c.st.reset()
	c.st.body = bodyChunked
	return &c.st
}

// decodeChunked reads the whole chunked body of raw.
func decodeChunked(raw []byte) ([]byte, *filter.HeaderMap, error) {
	st := chunkedStream(raw)
	var out []byte
	buf := make([]byte, 7) // small reads cross chunk boundaries
	for {
		n, err := st.readBody(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, st.trailers(), nil
		}
		if err != nil {
			return out, nil, err
		}
	}
}

func TestChunkedBody(t *testing.T) {
	tests := []struct {
		name, raw, body, trailer string
		bad                      bool
	}{
		{name: "two chunks", raw: "3\r\nabc\r\n5;x=y\r\ndefgh\r\n0\r\n\r\n", body: "abcdefgh"},
		{name: "trailers", raw: "2\r\nab\r\n0\r\nX-Sum: 1\r\nContent-Length: 5\r\n\r\n", body: "ab", trailer: "x-sum=1"},
		{name: "upper hex", raw: "A\r\n0123456789\r\n0\r\n\r\n", body: "0123456789"},
		{name: "missing crlf after data", raw: "2\r\nabc\r\n0\r\n\r\n", bad: true},
		{name: "bare lf size", raw: "2\nab\r\n0\r\n\r\n", bad: true},
		{name: "truncated", raw: "5\r\nab", bad: true},
		{name: "no last chunk", raw: "2\r\nab\r\n", bad: true},
		{name: "bad trailer", raw: "0\r\nX Y: 1\r\n\r\n", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, tr, err := decodeChunked([]byte(tt.raw))
			if tt.bad {
				if err == nil {
					t.Fatalf("accepted: %q", body)
				}
				return
			}
			if err != nil || string(body) != tt.body {
				t.Fatalf("got %q %v, want %q", body, err, tt.body)
			}
			var got []string
			for _, f := range tr.Fields() {
				got = append(got, f.Name+"="+f.Value)
			}
			if strings.Join(got, ",") != tt.trailer {
				t.Fatalf("trailers %v, want %q", got, tt.trailer)
			}
		})
	}
}

// FuzzChunkedBody: the chunked decoder never panics, and a body it
// accepts, chunked again, decodes to the same bytes and trailers.
func FuzzChunkedBody(f *testing.F) {
	for _, s := range []string{"3\r\nabc\r\n0\r\n\r\n", "1;a=\"b\"\r\nx\r\n0\r\nT: v\r\n\r\n", "zz\r\n", "0\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		body, tr, err := decodeChunked(raw)
		if err != nil {
			return
		}
		var re []byte
		if len(body) > 0 {
			re = fmt.Appendf(re, "%x\r\n%s\r\n", len(body), body)
		}
		re = append(re, "0\r\n"...)
		for _, f := range tr.Fields() {
			re = fmt.Appendf(re, "%s: %s\r\n", f.Name, f.Value)
		}
		re = append(re, "\r\n"...)
		body2, tr2, err := decodeChunked(re)
		if err != nil || !bytes.Equal(body, body2) || !reflect.DeepEqual(tr.Fields(), tr2.Fields()) {
			t.Fatalf("round trip: %q %v %v", body2, tr2.Fields(), err)
		}
	})
}
