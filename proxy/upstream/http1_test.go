package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
)

func TestHTTP1RequestAndResponseFraming(t *testing.T) {
	srv := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("X-Host", r.Host)
			w.Header().Set("X-TE", strings.Join(r.TransferEncoding, ","))
			w.Header().Set("X-Query", r.URL.RawQuery)
			w.Header().Set("X-Req-Trailer", r.Trailer.Get("X-Sum"))
			w.Write(body)
		case "/trailers":
			w.Header().Set("Trailer", "X-Checksum")
			io.WriteString(w, "part1,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("X-Checksum", "abc")
		case "/continue":
			w.Write(body) // reading the body sent 100 Continue first
		case "/head":
			w.Header().Set("Content-Length", "100")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	m := newTestManager(t, Options{}, staticCluster("web", srv.addr()))
	c := m.Cluster("web")

	t.Run("chunked request body with trailers", func(t *testing.T) {
		s, err := c.NewStream(testCtx(t), reqHeaders("POST", "/echo?q=1", "example.com"), false, StreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range []string{"hello ", "chunked ", "world"} {
			if err := s.WriteData([]byte(part), false); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.WriteTrailers(filter.NewHeaderMap(filter.HeaderField{Name: "x-sum", Value: "42"})); err != nil {
			t.Fatal(err)
		}
		rh, _, err := s.ReadHeaders(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, s)
		s.Close()
		if string(body) != "hello chunked world" || rh.Value("x-host") != "example.com" ||
			rh.Value("x-te") != "chunked" || rh.Value("x-query") != "q=1" || rh.Value("x-req-trailer") != "42" {
			t.Fatalf("headers %v body %q", rh.Fields(), body)
		}
	})
	t.Run("content-length request body", func(t *testing.T) {
		rh, body, _ := roundTrip(t, c, reqHeaders("PUT", "/echo", "web", "content-length", "5"), []byte("12345"), StreamOptions{})
		if string(body) != "12345" || rh.Value("x-te") != "" {
			t.Fatalf("headers %v body %q", rh.Fields(), body)
		}
	})
	t.Run("response trailers", func(t *testing.T) {
		rh, body, tr := roundTrip(t, c, reqHeaders("GET", "/trailers", "web"), nil, StreamOptions{})
		if string(body) != "part1,part2" || tr.Value("x-checksum") != "abc" {
			t.Fatalf("body %q trailers %v", body, tr.Fields())
		}
		if rh.Has("transfer-encoding") {
			t.Fatal("transfer-encoding passed on")
		}
	})
	t.Run("100 continue", func(t *testing.T) {
		s, err := c.NewStream(testCtx(t), reqHeaders("POST", "/continue", "web", "expect", "100-continue", "content-length", "4"), false, StreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteData([]byte("data"), true); err != nil {
			t.Fatal(err)
		}
		rh, _, err := s.ReadHeaders(testCtx(t))
		if err != nil || rh.Status() != "200" {
			t.Fatalf("status %v err %v", rh.Fields(), err)
		}
		if b := readAll(t, s); string(b) != "data" {
			t.Fatalf("body %q", b)
		}
		s.Close()
	})
	t.Run("HEAD and 204 have no body", func(t *testing.T) {
		for _, tc := range []struct{ method, path string }{{"HEAD", "/head"}, {"GET", "/empty"}} {
			s, err := c.NewStream(testCtx(t), reqHeaders(tc.method, tc.path, "web"), true, StreamOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, end, err := s.ReadHeaders(testCtx(t))
			if err != nil || !end {
				t.Fatalf("%s %s: end %v err %v", tc.method, tc.path, end, err)
			}
			s.Close()
		}
	})
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1 (every exchange was reusable)", n)
	}
}

func readAll(t testing.TB, s Stream) []byte {
	t.Helper()
	var out bytes.Buffer
	buf := make([]byte, 1024)
	for {
		n, err := s.ReadData(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes()
		}
		if err != nil {
			t.Fatalf("ReadData: %v", err)
		}
	}
}

// rawServer accepts connections and runs handle on each; it is the
// misbehaving upstream the httptest server cannot be.
func rawServer(t *testing.T, handle func(net.Conn, *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				// Read the request head.
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				handle(c, br)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestHTTP1Upgrade(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		io.Copy(c, br) // echo until the client closes
	})
	m := newTestManager(t, Options{}, staticCluster("ws", addr))
	s, err := m.Cluster("ws").NewStream(testCtx(t), reqHeaders("GET", "/chat", "ws", "upgrade", "echo"), false, StreamOptions{Upgrade: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rh, end, err := s.ReadHeaders(testCtx(t))
	if err != nil || rh.Status() != "101" || end || rh.Value("upgrade") != "echo" {
		t.Fatalf("headers %v end %v err %v", rh.Fields(), end, err)
	}
	for _, msg := range []string{"ping", "pong"} {
		if err := s.WriteData([]byte(msg), false); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		n, err := io.ReadAtLeast(readerFunc(s.ReadData), buf, len(msg))
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("echo %q err %v", buf[:n], err)
		}
	}
}

func TestHTTP1Connect(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "HTTP/1.1 200 Connection Established\r\n\r\n")
		io.Copy(c, br)
	})
	m := newTestManager(t, Options{}, staticCluster("tunnel", addr))
	h := filter.NewHeaderMap(
		filter.HeaderField{Name: ":method", Value: "CONNECT"},
		filter.HeaderField{Name: ":authority", Value: "db.internal:5432"},
	)
	s, err := m.Cluster("tunnel").NewStream(testCtx(t), h, false, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rh, end, err := s.ReadHeaders(testCtx(t))
	if err != nil || rh.Status() != "200" || end {
		t.Fatalf("headers %v end %v err %v", rh, end, err)
	}
	if err := s.WriteData([]byte("raw bytes"), false); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 9)
	if _, err := io.ReadFull(readerFunc(s.ReadData), buf); err != nil || string(buf) != "raw bytes" {
		t.Fatalf("tunnel echo %q err %v", buf, err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestHTTP1MisbehavingUpstream(t *testing.T) {
	tests := []struct {
		name     string
		response string
		headErr  filter.ResponseFlags // flag from ReadHeaders, 0 if it succeeds
		bodyErr  filter.ResponseFlags // flag from reading the body
		reusable bool
	}{
		{"garbage status line", "HTTP/9 OK\r\n\r\n", filter.UpstreamProtocolError, 0, false},
		{"closed before headers", "", filter.UpstreamConnectionTermination, 0, false},
		{"truncated headers", "HTTP/1.1 200 OK\r\nContent-Le", filter.UpstreamConnectionTermination, 0, false},
		{"bad content-length", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", filter.UpstreamProtocolError, 0, false},
		{"conflicting content-length", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", filter.UpstreamProtocolError, 0, false},
		{"folded header", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", filter.UpstreamProtocolError, 0, false},
		{"closed mid body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, filter.UpstreamConnectionTermination, false},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, filter.UpstreamProtocolError, false},
		{"te and cl", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0, 0, false},
		{"read to close", "HTTP/1.1 200 OK\r\n\r\nuntil close", 0, 0, false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, 0, false},
		{"keep-alive", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, 0, true},
		{"unexpected 101", "HTTP/1.1 101 Switching Protocols\r\n\r\n", filter.UpstreamProtocolError, 0, false},
		{"endless 1xx", strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", 20), filter.UpstreamProtocolError, 0, false},
		{"interim then final", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, 0, true},
		{"header block too large", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", filter.UpstreamProtocolError, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			served := make(chan struct{}, 4)
			addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
				io.WriteString(c, tt.response)
				served <- struct{}{}
				if tt.reusable {
					io.Copy(io.Discard, br) // keep the connection open
				}
			})
			m := newTestManager(t, Options{}, staticCluster("raw", addr))
			c := m.Cluster("raw")
			s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "raw"), true, StreamOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, end, err := s.ReadHeaders(testCtx(t))
			if got := flagOf(err); got != tt.headErr {
				s.Reset()
				t.Fatalf("ReadHeaders err %v, want flag %v", err, tt.headErr)
			}
			if err != nil {
				s.Reset()
				return
			}
			var bodyErr error
			for buf := make([]byte, 64); !end; {
				_, err := s.ReadData(buf)
				if err == io.EOF {
					break
				}
				if err != nil {
					bodyErr = err
					break
				}
			}
			if got := flagOf(bodyErr); got != tt.bodyErr {
				t.Fatalf("body err %v, want flag %v", bodyErr, tt.bodyErr)
			}
			s.Close()
			<-served
			p := c.Hosts()[0].h1
			ready, _, _, _ := p.counts()
			if (ready == 1) != tt.reusable {
				t.Fatalf("connection pooled = %v, want %v", ready == 1, tt.reusable)
			}
		})
	}
}

func TestHTTP1RejectsInvalidRequest(t *testing.T) {
	srv := newCountingServer(t, okHandler("ok"))
	m := newTestManager(t, Options{}, staticCluster("web", srv.addr()))
	c := m.Cluster("web")
	for _, h := range []*filter.HeaderMap{
		reqHeaders("GET", "/a b", "web"),
		reqHeaders("GET", "/", "web", "x-bad", "a\r\nx-injected: 1"),
		reqHeaders("G T", "/", "web"),
		reqHeaders("POST", "/", "web", "content-length", "-1"),
	} {
		if _, err := c.NewStream(testCtx(t), h, true, StreamOptions{}); err == nil {
			t.Errorf("%v accepted", h.Fields())
		}
	}
	if statOf(c, statRqActive) != 0 || c.rqRB.cur.Load() != 0 {
		t.Fatal("resources leaked")
	}
	// The pool still works.
	roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
}

// FuzzParseResponse feeds arbitrary bytes to the HTTP/1 response parser
// and body reader: they must return a response or an error, never panic
// or loop.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: v\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: close\r\n\r\nbody",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\nX:  spaced \t\n\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 999\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		s := &h1stream{br: bufio.NewReaderSize(bytes.NewReader(data), 64)}
		method := "GET"
		if head {
			method = "HEAD"
		}
		for range 3 { // interim responses
			rh, scratch, spans, err := parseResponseHead(s.br, s.scratch, s.spans)
			s.scratch, s.spans = scratch, spans
			if err != nil {
				return
			}
			if rh.status < 100 || rh.status > 999 || rh.headers.Status() == "" {
				t.Fatalf("status %d / %q", rh.status, rh.headers.Status())
			}
			for _, f := range rh.headers.Fields() {
				if f.Name != strings.ToLower(f.Name) || strings.ContainsAny(f.Value, "\r\n") {
					t.Fatalf("bad field %q: %q", f.Name, f.Value)
				}
			}
			if rh.status/100 == 1 {
				continue
			}
			mode, n, _, err := framing(method, &rh, false)
			if err != nil {
				return
			}
			s.gotHead, s.mode, s.remaining, s.respDone = true, mode, n, mode == bodyNone
			buf := make([]byte, 7)
			total := 0
			for {
				k, err := s.ReadData(buf)
				total += k
				if err != nil {
					if err != io.EOF && !errors.As(err, new(*Error)) {
						t.Fatalf("unexpected error type %T: %v", err, err)
					}
					return
				}
				if k == 0 {
					t.Fatal("ReadData returned 0, nil")
				}
				if total > len(data) {
					t.Fatalf("read %d body bytes from %d input bytes", total, len(data))
				}
			}
		}
	})
}

// FuzzWriteRequestHead checks the request writer against header
// injection: for any header map it either refuses the request or writes
// one that net/http parses back to exactly one request with the same
// method, target and fields.
func FuzzWriteRequestHead(f *testing.F) {
	f.Add("GET", "/a?b=c", "example.com", "x-a", "1", false)
	f.Add("POST", "/", "h", "content-length", "3", false)
	f.Add("GET", "/", "h", "x-bad", "a\r\nx-injected: 1", true)
	f.Add("GET", "/ HTTP/1.1\r\nx: y", "h", "x", "y", true)
	f.Fuzz(func(t *testing.T, method, path, authority, name, value string, endStream bool) {
		h := reqHeaders(method, path, authority, name, value)
		var buf bytes.Buffer
		s := &h1stream{bw: bufio.NewWriter(&buf)}
		s.reqRemaining = -1
		if err := s.writeHead(h, true, false); err != nil {
			return
		}
		s.bw.Flush()
		wire := buf.String()
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(wire)))
		if err != nil {
			// net/http is stricter in places (e.g. about the Host value);
			// what matters is that no second request or field appears.
			return
		}
		if req.Method != method {
			t.Fatalf("method %q became %q in %q", method, req.Method, wire)
		}
		if req.RequestURI != path && !(path == "" && req.RequestURI == "/") {
			t.Fatalf("target %q became %q in %q", path, req.RequestURI, wire)
		}
		lines := strings.Count(wire, "\r\n")
		want := 2 // request line and the final empty line
		if authority != "" {
			want++
		}
		if name != "" && name[0] != ':' && name != "host" && name != "transfer-encoding" && name != "connection" ||
			name == "host" && authority == "" {
			want++
		}
		if methodHasBody(method) && name != "content-length" {
			want++ // content-length: 0 was added
		}
		if lines != want {
			t.Fatalf("%d lines, want %d: %q", lines, want, wire)
		}
	})
}
