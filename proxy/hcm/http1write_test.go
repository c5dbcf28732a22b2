package hcm

import (
	"bufio"
	"bytes"
	"regexp"
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
)

// TestHTTP1ResponseFraming drives an HTTP/1 stream's response side into a
// buffer and checks the bytes: framing chosen from the request and the
// response, hop-by-hop fields dropped, values sanitised, and when the
// connection must close.
func TestHTTP1ResponseFraming(t *testing.T) {
	type write struct {
		data     string
		end      bool
		trailers *filter.HeaderMap
	}
	hdr := func(kv ...string) *filter.HeaderMap {
		h := filter.NewHeaderMap()
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name      string
		method    string
		minor     int
		keepAlive bool
		draining  bool
		code      int
		h         *filter.HeaderMap
		end       bool
		writes    []write
		want      string // after the Date line is removed
		close     bool
	}{
		{name: "length", method: "GET", minor: 1, keepAlive: true, code: 200, h: hdr(":status", "200", "content-length", "3", "x-a", "b"),
			writes: []write{{data: "abc", end: true}},
			want:   "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\nServer: remora\r\n\r\nabc"},
		{name: "chunked with trailers", method: "GET", minor: 1, keepAlive: true, code: 200, h: hdr(":status", "200"),
			writes: []write{{data: "ab"}, {data: "cde"}, {trailers: hdr("grpc-status", "0")}},
			want:   "HTTP/1.1 200 OK\r\nServer: remora\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\nGrpc-Status: 0\r\n\r\n"},
		{name: "no body gets length 0", method: "GET", minor: 1, keepAlive: true, code: 200, h: hdr(":status", "200"), end: true,
			want: "HTTP/1.1 200 OK\r\nServer: remora\r\nContent-Length: 0\r\n\r\n"},
		{name: "204 has no length", method: "GET", minor: 1, keepAlive: true, code: 204, h: hdr(":status", "204"), end: true,
			want: "HTTP/1.1 204 No Content\r\nServer: remora\r\n\r\n"},
		{name: "head keeps the length, drops the body", method: "HEAD", minor: 1, keepAlive: true, code: 200,
			h: hdr(":status", "200", "content-length", "5"), writes: []write{{data: "hello", end: true}},
			want: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: remora\r\n\r\n"},
		{name: "http/1.0 stream is delimited by the close", method: "GET", minor: 0, keepAlive: true, code: 200, h: hdr(":status", "200"),
			writes: []write{{data: "ab", end: true}}, close: true,
			want: "HTTP/1.1 200 OK\r\nServer: remora\r\nConnection: close\r\n\r\nab"},
		{name: "http/1.0 keep-alive", method: "GET", minor: 0, keepAlive: true, code: 200, h: hdr(":status", "200", "content-length", "1"),
			writes: []write{{data: "a", end: true}},
			want:   "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nServer: remora\r\nConnection: keep-alive\r\n\r\na"},
		{name: "client asked to close", method: "GET", minor: 1, keepAlive: false, code: 200, h: hdr(":status", "200"), end: true, close: true,
			want: "HTTP/1.1 200 OK\r\nServer: remora\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{name: "draining closes", method: "GET", minor: 1, keepAlive: true, draining: true, code: 200, h: hdr(":status", "200"), end: true, close: true,
			want: "HTTP/1.1 200 OK\r\nServer: remora\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{name: "length without body closes", method: "GET", minor: 1, keepAlive: true, code: 200, h: hdr(":status", "200", "content-length", "4"), end: true, close: true,
			want: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nServer: remora\r\nConnection: close\r\n\r\n"},
		{name: "hop-by-hop and injection", method: "GET", minor: 1, keepAlive: true, code: 200,
			h: hdr(":status", "200", "connection", "x-secret", "x-secret", "1", "keep-alive", "t", "transfer-encoding", "chunked",
				"server", "upstream", "x-split", "a\r\nSet-Cookie: evil", "bad name", "v", "content-length", "0"), end: true,
			want: "HTTP/1.1 200 OK\r\nX-Split: a  Set-Cookie: evil\r\nContent-Length: 0\r\nServer: remora\r\n\r\n"},
	}
	date := regexp.MustCompile(`Date: [^\r]*\r\n`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			srv := &HTTP1Server{}
			srv.draining.Store(tt.draining)
			c := &http1Conn{srv: srv, m: &Manager{serverName: "remora"}, bw: bufio.NewWriter(&out)}
			c.req = http1Request{method: tt.method, minor: tt.minor, keepAlive: tt.keepAlive, contentLength: -1}
			st := &c.st
			st.c = c
			st.reset()
			if err := st.writeHeaders(tt.code, tt.h, tt.end); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.writes {
				var err error
				if w.trailers != nil {
					err = st.writeTrailers(w.trailers)
				} else {
					err = st.writeData([]byte(w.data), w.end)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			c.bw.Flush()
			got := out.String()
			if !date.MatchString(got) {
				t.Fatalf("no Date line in %q", got)
			}
			if got = date.ReplaceAllString(got, ""); got != tt.want {
				t.Fatalf("response\n got %q\nwant %q", got, tt.want)
			}
			if st.closeAfter != tt.close || !st.respDone {
				t.Fatalf("close %v (want %v), done %v", st.closeAfter, tt.close, st.respDone)
			}
		})
	}
}
