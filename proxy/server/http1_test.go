package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

// The HTTP/1 codec over real loopback sockets: raw requests written to a
// net.Conn, responses parsed by net/http's client-side reader.

// h1Backend is an upstream that echoes what it received: method, path,
// body length and request trailers; /trailers answers a chunked body with
// a trailer, /head-len answers 5 bytes (HEAD gets the length only).
func h1Backend(t *testing.T) (addr string, hits *atomic.Int64) {
	hits = new(atomic.Int64)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/trailers":
			w.Header().Set("Trailer", "X-Resp-Trailer")
			w.WriteHeader(200)
			io.WriteString(w, "part1,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("X-Resp-Trailer", "done")
			return
		case "/head-len":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "12345")
			return
		case "/no-content":
			w.WriteHeader(204)
			return
		}
		w.Header().Set("X-Got-Trailer", r.Trailer.Get("X-Req-Trailer"))
		w.Header().Set("X-Got-Te", r.Header.Get("Transfer-Encoding")+r.Header.Get("Content-Length"))
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(body))
	})}
	ln := listenLoopback(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), hits
}

const h1Config = `
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      max_request_headers_kb: 1
      idle_timeout: %s
      access_log: [{type: test}]
      route_config:
        virtual_hosts:
        - name: v
          domains: ["*"]
          routes:
          - match: {prefix: /direct}
            direct_response: {status: 200, body: hello}
          - match: {prefix: /}
            route: {cluster: up}
clusters:
- name: up
  endpoints: [{address: %s}]
`

func dialProxy(t *testing.T, s *Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", s.ListenerAddr("main").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, bufio.NewReader(c)
}

// readResponse reads one response and its body.
func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// expectEOF reads until the proxy closes the connection.
func expectEOF(t *testing.T, br *bufio.Reader) {
	t.Helper()
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("connection not closed: %v", err)
	}
	if len(rest) > 0 {
		t.Fatalf("bytes after the response: %q", rest)
	}
}

// TestHTTP1Smuggling: every framing ambiguity and malformed head is
// answered 400 (505 for another HTTP version) with Connection: close, the
// connection is closed, and nothing of a malformed head reaches the
// upstream.
func TestHTTP1Smuggling(t *testing.T) {
	addr, hits := h1Backend(t)
	s := startProxy(t, fmt.Sprintf(h1Config, "1h", addr))
	tests := []struct {
		name string
		req  string
		want int
		body bool // the head is valid: the upstream may see it before the body fails
	}{
		{"cl and te", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, false},
		{"te and cl", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, false},
		{"cl conflicting", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400, false},
		{"cl conflicting list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 5\r\n\r\nabcde", 400, false},
		{"cl signed", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd", 400, false},
		{"cl not a number", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4x\r\n\r\nabcd", 400, false},
		{"cl overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, false},
		{"te gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400, false},
		{"te chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400, false},
		{"te chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, false},
		{"te xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400, false},
		{"te in http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, false},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", 400, false},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, false},
		{"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400, false},
		{"bad name byte", "GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", 400, false},
		{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", 400, false},
		{"control byte in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x01\r\n\r\n", 400, false},
		{"nul in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x00\r\n\r\n", 400, false},
		{"bare cr in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n", 400, false},
		{"bare lf", "GET / HTTP/1.1\nHost: a\n\n", 400, false},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", 400, false},
		{"request line double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, false},
		{"request line extra", "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", 400, false},
		{"request line lower version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400, false},
		{"request line no version", "GET /\r\nHost: a\r\n\r\n", 400, false},
		{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, false},
		{"http/2.0 line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, false},
		{"missing host", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400, false},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, false},
		{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, false},
		{"bad absolute target", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, false},
		{"chunk size not hex", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, true},
		{"chunk size space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", 400, true},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400, true},
		{"chunk ext empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;\r\nabc\r\n0\r\n\r\n", 400, true},
		{"chunk ext bad byte", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a=\x01\r\nabc\r\n0\r\n\r\n", 400, true},
		{"chunk size bare lf", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400, true},
		{"chunk data without crlf", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400, true},
		{"chunk trailer obs-fold", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n 2\r\n\r\n", 400, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := hits.Load()
			c, br := dialProxy(t, s)
			io.WriteString(c, tt.req)
			resp, _ := readResponse(t, br, "GET")
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if !resp.Close {
				t.Fatal("no Connection: close")
			}
			expectEOF(t, br)
			if !tt.body && hits.Load() != before {
				t.Fatal("the malformed request reached the upstream")
			}
		})
	}
}

// TestHTTP1HeaderLimit: the request head (request line and header lines
// with their CRLFs, not the final empty line) may be exactly
// max_request_headers_kb KiB; one byte more is 431.
func TestHTTP1HeaderLimit(t *testing.T) {
	addr, _ := h1Backend(t)
	s := startProxy(t, fmt.Sprintf(h1Config, "1h", addr))
	const limit = 1 << 10
	head := func(size int) string {
		h := "GET /x HTTP/1.1\r\nHost: a\r\nX-Pad: "
		return h + strings.Repeat("p", size-len(h)-2) + "\r\n"
	}
	for _, tt := range []struct {
		size, want int
	}{{limit - 1, 200}, {limit, 200}, {limit + 1, 431}, {4 * limit, 431}} {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			h := head(tt.size)
			if len(h) != tt.size {
				t.Fatalf("head is %d bytes", len(h))
			}
			c, br := dialProxy(t, s)
			io.WriteString(c, h+"\r\n")
			resp, _ := readResponse(t, br, "GET")
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == 431 {
				expectEOF(t, br)
			}
		})
	}
}

// TestHTTP1Pipelining: requests sent back to back are answered in order
// on the same connection.
func TestHTTP1Pipelining(t *testing.T) {
	addr, _ := h1Backend(t)
	s := startProxy(t, fmt.Sprintf(h1Config, "1h", addr))
	c, br := dialProxy(t, s)
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"+
		"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz"+
		"GET /direct HTTP/1.1\r\nHost: a\r\n\r\n"+
		"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n")
	for _, want := range []string{"GET /a 0", "POST /b 3", "hello", "POST /c 2"} {
		resp, body := readResponse(t, br, "GET")
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("got %d %q, want %q", resp.StatusCode, body, want)
		}
	}
}

// TestHTTP1KeepAliveAndHTTP10: HTTP/1.1 connections are reused; HTTP/1.0
// ones close unless the client asks for keep-alive.
func TestHTTP1KeepAliveAndHTTP10(t *testing.T) {
	addr, _ := h1Backend(t)
	s := startProxy(t, fmt.Sprintf(h1Config, "1h", addr))
	t.Run("http/1.1 reuse", func(t *testing.T) {
		c, br := dialProxy(t, s)
		for i := 0; i < 3; i++ {
			io.WriteString(c, "GET /k HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, body := readResponse(t, br, "GET")
			if resp.StatusCode != 200 || resp.Close || body != "GET /k 0" {
				t.Fatalf("request %d: %d close=%v %q", i, resp.StatusCode, resp.Close, body)
			}
		}
		io.WriteString(c, "GET /k HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if resp, _ := readResponse(t, br, "GET"); !resp.Close {
			t.Fatal("Connection: close not echoed")
		}
		expectEOF(t, br)
	})
	t.Run("http/1.0", func(t *testing.T) {
		c, br := dialProxy(t, s)
		io.WriteString(c, "GET /old HTTP/1.0\r\nHost: a\r\n\r\n")
		resp, body := readResponse(t, br, "GET")
		if resp.StatusCode != 200 || body != "GET /old 0" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		expectEOF(t, br)
		if info := lastLog(t); info.Protocol != filter.ProtocolHTTP10 {
			t.Fatalf("protocol %q", info.Protocol)
		}
	})
	t.Run("http/1.0 keep-alive", func(t *testing.T) {
		drainLogs()
		c, br := dialProxy(t, s)
		for i := 0; i < 2; i++ {
			io.WriteString(c, "GET /old HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
			resp, body := readResponse(t, br, "GET")
			if resp.StatusCode != 200 || body != "GET /old 0" || resp.Header.Get("Connection") != "keep-alive" {
				t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, body, resp.Header)
			}
		}
	})
	t.Run("head and 204 carry no body", func(t *testing.T) {
		c, br := dialProxy(t, s)
		io.WriteString(c, "HEAD /head-len HTTP/1.1\r\nHost: a\r\n\r\nGET /no-content HTTP/1.1\r\nHost: a\r\n\r\nGET /z HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, body := readResponse(t, br, "HEAD"); resp.StatusCode != 200 || resp.ContentLength != 5 || body != "" {
			t.Fatalf("HEAD: %d %d %q", resp.StatusCode, resp.ContentLength, body)
		}
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 204 || body != "" {
			t.Fatalf("204: %d %q", resp.StatusCode, body)
		}
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != "GET /z 0" {
			t.Fatalf("after HEAD and 204: %d %q", resp.StatusCode, body)
		}
	})
}

// TestHTTP1ChunkedTrailers: a chunked request with trailers reaches the
// upstream whole; a chunked response keeps its trailers.
func TestHTTP1ChunkedTrailers(t *testing.T) {
	addr, _ := h1Backend(t)
	s := startProxy(t, fmt.Sprintf(h1Config, "1h", addr))
	c, br := dialProxy(t, s)
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Req-Trailer\r\n\r\n"+
		"5;ext=1;q=\"a b\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Req-Trailer: t1\r\n\r\n")
	resp, body := readResponse(t, br, "POST")
	if resp.StatusCode != 200 || body != "POST /up 11" || resp.Header.Get("X-Got-Trailer") != "t1" {
		t.Fatalf("request: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	io.WriteString(c, "GET /trailers HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, body = readResponse(t, br, "GET")
	if resp.StatusCode != 200 || body != "part1,part2" || len(resp.TransferEncoding) != 1 || resp.Trailer.Get("X-Resp-Trailer") != "done" {
		t.Fatalf("response: %d %q te=%v trailer=%v", resp.StatusCode, body, resp.TransferEncoding, resp.Trailer)
	}
}

// TestHTTP1ExpectContinueEarlyAnswer: an answer that needs no body never
// sends 100 Continue, and the connection closes after it (the client was
// told nothing about its body).
func TestHTTP1ExpectContinueEarlyAnswer(t *testing.T) {
	addr, _ := h1Backend(t)
	s := startProxy(t, fmt.Sprintf(h1Config, "1h", addr))
	c, br := dialProxy(t, s)
	io.WriteString(c, "POST /direct HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
	resp, body := readResponse(t, br, "POST")
	if resp.StatusCode != 200 || body != "hello" || !resp.Close {
		t.Fatalf("got %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	expectEOF(t, br)
}

// TestHTTP1IdleTimeout: an idle keep-alive connection is closed after
// idle_timeout.
func TestHTTP1IdleTimeout(t *testing.T) {
	addr, _ := h1Backend(t)
	s := startProxy(t, fmt.Sprintf(h1Config, "100ms", addr))
	c, br := dialProxy(t, s)
	io.WriteString(c, "GET /i HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := readResponse(t, br, "GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	start := time.Now()
	expectEOF(t, br)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

// TestHTTP1ClientDisconnect: a client that goes away while its request
// waits on the upstream ends the stream with flag DC and cancels the
// upstream request, whether the response is pumped on the serving
// goroutine (a request complete in memory) or on a goroutine of its own
// (a streamed body).
func TestHTTP1ClientDisconnect(t *testing.T) {
	tests := []struct{ name, request string }{
		{"body in memory", "POST /wait HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok"},
		{"no body", "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"chunked body", "POST /wait HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, addr := newGate(t)
			// The gate does not read the body, so net/http would not notice the
			// proxy closing the upstream connection: release it at the end.
			t.Cleanup(func() { close(g.release) })
			s := startProxy(t, fmt.Sprintf(gateConfig, 0, addr))
			drainLogs()
			c, err := net.Dial("tcp", s.ListenerAddr("main").String())
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, tc.request)
			g.wait(t)
			c.Close()
			info := lastLog(t)
			if !info.ResponseFlags.Has(filter.DownstreamConnectionTermination) {
				t.Fatalf("flags %s, want DC", info.ResponseFlags)
			}
		})
	}
}

// TestHTTP1Drain: a drain closes idle keep-alive connections at once and
// lets the in-flight request finish with Connection: close.
func TestHTTP1Drain(t *testing.T) {
	g, addr := newGate(t)
	s := startProxy(t, fmt.Sprintf(gateConfig, 0, addr))
	idle, idleBR := dialProxy(t, s)
	io.WriteString(idle, "GET /idle HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := readResponse(t, idleBR, "GET"); resp.StatusCode != 200 || body != "idle" {
		t.Fatalf("warm-up: %d %q", resp.StatusCode, body)
	}
	busy, busyBR := dialProxy(t, s)
	io.WriteString(busy, "GET /busy HTTP/1.1\r\nHost: a\r\n\r\n")
	g.wait(t)
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		drained <- s.Drain(ctx)
	}()
	expectEOF(t, idleBR) // the idle connection closes while the request is in flight
	close(g.release)
	resp, body := readResponse(t, busyBR, "GET")
	if resp.StatusCode != 200 || body != "released" || !resp.Close {
		t.Fatalf("in-flight: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	expectEOF(t, busyBR)
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
}

// TestHTTP1StreamingFlush: a response streamed without a length reaches
// the client piece by piece, while the upstream is still producing (SSE,
// gRPC-web): the codec flushes whenever the upstream has nothing more yet.
func TestHTTP1StreamingFlush(t *testing.T) {
	next := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})}
	ln := listenLoopback(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s := startProxy(t, fmt.Sprintf(h1Config, "1h", ln.Addr()))
	c, br := dialProxy(t, s)
	io.WriteString(c, "GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("transfer-encoding %v", resp.TransferEncoding)
	}
	events := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		line, err := events.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		events.ReadString('\n')
		next <- struct{}{} // the upstream writes the next event only now
	}
}

// TestHTTP1HeaderTimeout: a request head that does not complete in time
// (slowloris) closes the connection without reaching the upstream.
func TestHTTP1HeaderTimeout(t *testing.T) {
	old := headerTimeout
	headerTimeout = 200 * time.Millisecond
	t.Cleanup(func() { headerTimeout = old })
	addr, hits := h1Backend(t)
	s := startProxy(t, fmt.Sprintf(h1Config, "1h", addr))
	c, br := dialProxy(t, s)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n")
	start := time.Now()
	expectEOF(t, br)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
	if hits.Load() != 0 {
		t.Fatal("the incomplete request reached the upstream")
	}
}

// TestHTTP1H2CUpgradeWithBody: an "Upgrade: h2c" request with a body is
// read whole before the 101; it becomes HTTP/2 stream 1 with its body.
func TestHTTP1H2CUpgradeWithBody(t *testing.T) {
	addr, _ := h1Backend(t)
	s := startProxy(t, fmt.Sprintf(h1Config, "1h", addr))
	c, br := dialProxy(t, s)
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"+
		"HTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: 5\r\n\r\nhello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "h2c" {
		t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
	}
	if status, body := upgradedStream1(t, c, br); status != "200" || body != "POST /up 5" {
		t.Fatalf("got %q %q", status, body)
	}
}
