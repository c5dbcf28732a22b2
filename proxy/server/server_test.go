package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filter"
)

// logSink is an access-log type ("test") recording every stream end.
type logSink struct {
	mu      sync.Mutex
	entries []filter.StreamInfo
	ch      chan struct{}
}

var sink = &logSink{ch: make(chan struct{}, 1000)}

type sinkFactory struct{}

func (sinkFactory) Type() string { return "test" }
func (sinkFactory) NewHandler(filter.AccessLogEntry, filter.Env) (filter.AccessLogHandler, error) {
	return filter.AccessLogFunc(func(info *filter.StreamInfo) {
		sink.mu.Lock()
		c := *info
		c.RequestHeaders, c.ResponseHeaders, c.ResponseTrailers = nil, nil, nil
		sink.entries = append(sink.entries, c)
		sink.mu.Unlock()
		sink.ch <- struct{}{}
	}), nil
}

func init() { filter.RegisterAccessLog(sinkFactory{}) }

// lastLog waits for the next access-log entry.
func lastLog(t *testing.T) filter.StreamInfo {
	t.Helper()
	select {
	case <-sink.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no access log entry")
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	return sink.entries[len(sink.entries)-1]
}

func drainLogs() {
	for {
		select {
		case <-sink.ch:
		default:
			return
		}
	}
}

const testConfig = `
node: {id: test-node, cluster: test}
admin: {address: "127.0.0.1:0"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      stat_prefix: ingress
      access_log: [{type: test}]
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes:
          - match: {prefix: /direct}
            direct_response: {status: 200, body: hello}
          - match: {prefix: /slow}
            route: {cluster: backend, timeout: 100ms}
          - match: {prefix: /dead}
            route: {cluster: dead}
          - match: {prefix: /}
            route: {cluster: backend}
        - name: none
          domains: [nothing.example]
          routes: []
- name: second
  address: 127.0.0.1:0
  direction: inbound
  filter_chains:
  - http_connection_manager:
      stat_prefix: second
      route_config:
        virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: second listener}}]}]
clusters:
- name: backend
  protocol: use_downstream
  endpoints: [{address: %s}]
- name: dead
  connect_timeout: 1s
  endpoints: [{address: %s}]
`

func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func listenLoopback(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func mustParse(t testing.TB, yml string) *config.Bootstrap {
	t.Helper()
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startProxy(t testing.TB, yml string) *Server {
	t.Helper()
	cfg := mustParse(t, yml)
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// startRouteAll starts a proxy whose one listener "main" routes every
// request to the upstream at addr (cluster "up").
func startRouteAll(t testing.TB, addr net.Addr) *Server {
	t.Helper()
	return startProxy(t, fmt.Sprintf(`
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: up}}]}]}
clusters:
- name: up
  endpoints: [{address: %s}]
`, addr))
}

func backend(t *testing.T) *httptest.Server {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow") {
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("X-Got-Xff", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Got-Xfp", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("X-Got-Request-Id", r.Header.Get("X-Request-Id"))
		w.Header().Set("X-Got-Connection", r.Header.Get("Connection")+r.Header.Get("X-Hop"))
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(body))
	})
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestProxyHTTP1AndH2C(t *testing.T) {
	be := backend(t)
	s := startProxy(t, fmt.Sprintf(testConfig, be.Listener.Addr(), deadAddr(t)))
	base := "http://" + s.ListenerAddr("main").String()

	h1 := &http.Client{Transport: &http.Transport{}}
	defer h1.CloseIdleConnections()
	h2c := &http.Client{Transport: h2cTransport()}
	defer h2c.CloseIdleConnections()

	tests := []struct {
		name      string
		client    *http.Client
		method    string
		path      string
		host      string
		body      string
		wantCode  int
		wantBody  string
		wantProto string
		wantFlags string
	}{
		{"h1 get", h1, "GET", "/a", "", "", 200, "GET /a 0", "HTTP/1.1", "-"},
		{"h1 post", h1, "POST", "/b", "", strings.Repeat("x", 1024), 200, "POST /b 1024", "HTTP/1.1", "-"},
		{"h2c get", h2c, "GET", "/c", "", "", 200, "GET /c 0", "HTTP/2.0", "-"},
		{"h2c post", h2c, "POST", "/d", "", "abc", 200, "POST /d 3", "HTTP/2.0", "-"},
		{"direct", h1, "GET", "/direct", "", "", 200, "hello", "", "-"},
		{"no route", h1, "GET", "/", "nothing.example", "", 404, "", "", "NR"},
		{"route timeout", h1, "GET", "/slow", "", "", 504, "upstream request timeout", "", "UT"},
		{"connect failure", h1, "GET", "/dead", "", "", 503, "upstream connect error or disconnect/reset before headers", "", "UF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drainLogs()
			req, _ := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
			if tt.body == "" {
				req.Body = nil
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.client == h1 {
				req.Header.Set("X-Hop", "1")
				req.Header.Set("Connection", "X-Hop")
			}
			resp, err := tt.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode || string(b) != tt.wantBody {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, b, tt.wantCode, tt.wantBody)
			}
			if tt.wantProto != "" {
				if got := resp.Header.Get("X-Proto"); got != tt.wantProto {
					t.Errorf("upstream saw %q, want %q", got, tt.wantProto)
				}
				if resp.Header.Get("X-Got-Xfp") != "http" {
					t.Errorf("x-forwarded-proto = %q", resp.Header.Get("X-Got-Xfp"))
				}
				if resp.Header.Get("X-Got-Xff") != "127.0.0.1" {
					t.Errorf("x-forwarded-for = %q", resp.Header.Get("X-Got-Xff"))
				}
				if len(resp.Header.Get("X-Got-Request-Id")) != 36 {
					t.Errorf("x-request-id = %q", resp.Header.Get("X-Got-Request-Id"))
				}
				if resp.Header.Get("X-Got-Connection") != "" {
					t.Errorf("hop-by-hop headers forwarded: %q", resp.Header.Get("X-Got-Connection"))
				}
			}
			info := lastLog(t)
			if info.ResponseCode != tt.wantCode || info.ResponseFlags.String() != tt.wantFlags {
				t.Errorf("access log: code %d flags %s, want %d %s", info.ResponseCode, info.ResponseFlags, tt.wantCode, tt.wantFlags)
			}
			if tt.wantProto != "" {
				if info.ResponseCodeDetails != "via_upstream" || info.UpstreamCluster != "backend" || info.UpstreamHost == "" {
					t.Errorf("access log: details %q cluster %q host %q", info.ResponseCodeDetails, info.UpstreamCluster, info.UpstreamHost)
				}
				// (The last request byte and the first response byte are
				// stamped by different goroutines: their order is not fixed.)
				if info.FirstUpstreamTxByteSent <= 0 || info.LastUpstreamTxByteSent < info.FirstUpstreamTxByteSent ||
					info.FirstUpstreamRxByteReceived < info.FirstUpstreamTxByteSent || info.LastUpstreamRxByteReceived < info.FirstUpstreamRxByteReceived ||
					info.LastDownstreamTxByteSent < info.LastUpstreamRxByteReceived {
					t.Errorf("timings out of order: %+v", info)
				}
			}
		})
	}
}

func TestForwardedForAppends(t *testing.T) {
	be := backend(t)
	s := startProxy(t, fmt.Sprintf(testConfig, be.Listener.Addr(), deadAddr(t)))
	req, _ := http.NewRequest("GET", "http://"+s.ListenerAddr("main").String()+"/xff", nil)
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("X-Request-Id", "keep-me")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Got-Xff"); got != "10.0.0.1, 127.0.0.1" {
		t.Fatalf("x-forwarded-for = %q", got)
	}
	if got := resp.Header.Get("X-Got-Request-Id"); got != "keep-me" {
		t.Fatalf("x-request-id = %q, want the client's", got)
	}
}

func TestCodecTypeHTTP2Only(t *testing.T) {
	s := startProxy(t, `
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      codec_type: HTTP2
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: h2}}]}]}
`)
	url := "http://" + s.ListenerAddr("main").String() + "/"
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(mustReq(url))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("h2c: %s %d", resp.Proto, resp.StatusCode)
	}
	h1 := &http.Transport{}
	defer h1.CloseIdleConnections()
	if resp, err := h1.RoundTrip(mustReq(url)); err == nil {
		resp.Body.Close()
		t.Fatalf("HTTP/1.1 served on an HTTP2-only chain: %d", resp.StatusCode)
	}
}

func TestSeveralListeners(t *testing.T) {
	be := backend(t)
	s := startProxy(t, fmt.Sprintf(testConfig, be.Listener.Addr(), deadAddr(t)))
	for name, want := range map[string]string{"main": "GET /x 0", "second": "second listener"} {
		resp, err := http.Get("http://" + s.ListenerAddr(name).String() + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("listener %s: got %q, want %q", name, b, want)
		}
	}
}

// TestSmuggling sends malformed HTTP/1 requests over raw TCP: each must be
// rejected with 400 and the connection closed, never forwarded.
func TestSmuggling(t *testing.T) {
	be := backend(t)
	s := startProxy(t, fmt.Sprintf(testConfig, be.Listener.Addr(), deadAddr(t)))
	addr := s.ListenerAddr("main").String()
	tests := []struct{ name, req string }{
		{"conflicting cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"},
		{"te not chunked last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			io.WriteString(c, tt.req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != 400 && resp.StatusCode != 501 {
				t.Fatalf("status %d, want 400 (or 501 for an unsupported transfer coding)", resp.StatusCode)
			}
			// The connection must be closed afterwards.
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Fatal("connection left open")
			}
		})
	}
}

// TestContentLengthWithTransferEncoding: a request carrying both
// Content-Length and Transfer-Encoding is a smuggling vector (RFC 9112
// section 6.1); it is refused with 400 and the connection closed, never
// forwarded.
func TestContentLengthWithTransferEncoding(t *testing.T) {
	be := backend(t)
	s := startProxy(t, fmt.Sprintf(testConfig, be.Listener.Addr(), deadAddr(t)))
	c, err := net.Dial("tcp", s.ListenerAddr("main").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 400 || !resp.Close {
		t.Fatalf("got %d (close %v), want 400 and Connection: close", resp.StatusCode, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the 400: %v, want EOF", err)
	}
}

func TestHeaderTooLarge(t *testing.T) {
	be := backend(t)
	s := startProxy(t, fmt.Sprintf(testConfig, be.Listener.Addr(), deadAddr(t)))
	tests := []struct {
		name string
		size int
		h2   bool
		want int
	}{
		{"59 KiB", 59 << 10, false, 200},
		{"62 KiB (inside net/http's slack)", 62 << 10, false, 431},
		{"70 KiB", 70 << 10, false, 431},
		{"h2c 62 KiB", 62 << 10, true, 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+s.ListenerAddr("main").String()+"/", nil)
			// Many 2 KiB headers: HTTP/2 bounds single strings on its own.
			for i := 0; i*2048 < tt.size; i++ {
				req.Header.Set(fmt.Sprintf("X-Big-%d", i), strings.Repeat("a", min(2048, tt.size-i*2048)))
			}
			var tr *http.Transport
			if tt.h2 {
				tr = h2cTransport()
			} else {
				tr = &http.Transport{}
			}
			defer tr.CloseIdleConnections()
			resp, err := tr.RoundTrip(req)
			if err != nil && tt.h2 && strings.Contains(err.Error(), "larger than peer's advertised limit") {
				return // the client already knew the proxy's SETTINGS_MAX_HEADER_LIST_SIZE
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

// TestExpectContinue: the proxy answers 100 Continue itself when it starts
// reading the body, and does not forward the expectation.
func TestExpectContinue(t *testing.T) {
	be := backend(t)
	s := startProxy(t, fmt.Sprintf(testConfig, be.Listener.Addr(), deadAddr(t)))
	c, err := net.Dial("tcp", s.ListenerAddr("main").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("first line %q %v, want 100 Continue", line, err)
	}
	if l, _ := br.ReadString('\n'); l != "\r\n" {
		t.Fatalf("after 100: %q", l)
	}
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "POST /upload 5" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}
