package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

// TestRouteTimeoutWhileQueued: the router's reused request context ends a
// request waiting in the pool's pending queue at the route timeout (504,
// UT), and the same downstream connection's next request, served by the
// same pooled stream and router filter, goes through.
func TestRouteTimeoutWhileQueued(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	})}
	ln := listenLoopback(t)
	go up.Serve(ln)
	defer up.Close()
	s := startProxy(t, fmt.Sprintf(`
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      access_log: [{type: test}]
      route_config:
        virtual_hosts:
        - name: v
          domains: ["*"]
          routes:
          - {match: {prefix: /slow}, route: {cluster: up, timeout: 0s}}
          - {match: {prefix: /}, route: {cluster: up, timeout: 300ms}}
clusters:
- name: up
  circuit_breakers: {max_connections: 1}
  endpoints: [{address: %s}]
`, ln.Addr()))
	addr := s.ListenerAddr("main").String()
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c, bufio.NewReader(c)
	}
	get := func(c net.Conn, br *bufio.Reader, path string) (int, string) {
		t.Helper()
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}

	drainLogs()
	slow, slowR := dial()
	defer slow.Close()
	slowDone := make(chan int, 1)
	go func() {
		io.WriteString(slow, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(slowR, nil)
		if err != nil {
			slowDone <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slowDone <- resp.StatusCode
	}()
	select {
	case <-entered: // the one upstream connection is busy
	case <-time.After(5 * time.Second):
		t.Fatal("slow request did not reach the upstream")
	}

	c, br := dial()
	defer c.Close()
	if code, _ := get(c, br, "/queued"); code != 504 {
		t.Fatalf("queued request: %d, want 504", code)
	}
	if info := lastLog(t); info.ResponseFlags != filter.UpstreamRequestTimeout || info.ResponseCodeDetails != "upstream_response_timeout" {
		t.Fatalf("queued request log: flags %s details %q, want UT upstream_response_timeout", info.ResponseFlags, info.ResponseCodeDetails)
	}
	close(release)
	if code := <-slowDone; code != 200 {
		t.Fatalf("slow request: %d, want 200", code)
	}
	lastLog(t)
	for i := range 3 {
		if code, body := get(c, br, "/again"); code != 200 || body != "ok" {
			t.Fatalf("request %d after the timeout: %d %q, want 200 ok", i, code, body)
		}
		if info := lastLog(t); info.ResponseFlags != 0 {
			t.Fatalf("request %d after the timeout: flags %s", i, info.ResponseFlags)
		}
	}
}

// ctxFilter hands each request's context to the test, which checks that
// it ends with its stream although the connection's contexts are reused.
type ctxFilter struct {
	filter.PassThrough
	cb filter.Callbacks
}

var streamContexts = make(chan context.Context, 16)

func (f *ctxFilter) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.Status {
	if h.Has("x-watch") {
		ctx := f.cb.Context()
		_ = ctx.Done() // seen: it must end with the stream
		streamContexts <- ctx
	}
	return filter.Continue
}

func init() {
	filter.Register(testFactory{"test_ctx", func(cb filter.Callbacks) filter.StreamFilter { return &ctxFilter{cb: cb} }})
}

// TestStreamContextEndsWithStream: a stream context a filter looked at
// ends when its stream ends, and the connection's next stream gets a live
// one; one nobody looked at is reused without ending.
func TestStreamContextEndsWithStream(t *testing.T) {
	ln := listenLoopback(t)
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go up.Serve(ln)
	defer up.Close()
	s := startProxy(t, fmt.Sprintf(`
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      http_filters: [{name: test_ctx}, {name: router}]
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: up}}]}]}
clusters:
- name: up
  endpoints: [{address: %s}]
`, ln.Addr()))
	c, err := net.Dial("tcp", s.ListenerAddr("main").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	get := func(watch bool) {
		t.Helper()
		req := "GET / HTTP/1.1\r\nHost: a\r\n"
		if watch {
			req += "x-watch: 1\r\n"
		}
		io.WriteString(c, req+"\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	get(false)
	get(false) // a reused context
	get(true)
	first := <-streamContexts
	select {
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the context a filter saw did not end with its stream")
	}
	get(true)
	second := <-streamContexts
	if second == first {
		t.Fatal("an ended context was handed to the next stream")
	}
	select {
	case <-second.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the second stream's context did not end with it")
	}
	if !errors.Is(first.Err(), context.Canceled) {
		t.Fatalf("ended context: Err = %v", first.Err())
	}
}

// TestRouteTimeoutReusedTimer: the route timer stays pending from request
// to request on a pooled stream. A request on the same connection times
// out at its own route timeout: not earlier, when an earlier request's
// timer is due first, and not later, when an earlier request armed it for
// a longer route timeout.
func TestRouteTimeoutReusedTimer(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/hang") {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	})}
	ln := listenLoopback(t)
	go up.Serve(ln)
	defer up.Close()
	s := startProxy(t, fmt.Sprintf(`
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      route_config:
        virtual_hosts:
        - name: v
          domains: ["*"]
          routes:
          - {match: {prefix: /long}, route: {cluster: up, timeout: 30s}}
          - {match: {prefix: /}, route: {cluster: up, timeout: 300ms}}
clusters:
- name: up
  endpoints: [{address: %s}]
`, ln.Addr()))
	c, err := net.Dial("tcp", s.ListenerAddr("main").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	get := func(path string) int {
		t.Helper()
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct{ name, before string }{
		{"after a request with the same timeout", "/fast"},
		{"after a request with a longer timeout", "/long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code := get(tc.before); code != 200 {
				t.Fatalf("%s: %d, want 200", tc.before, code)
			}
			start := time.Now()
			code := get("/hang")
			el := time.Since(start)
			if code != 504 {
				t.Fatalf("/hang: %d after %v, want 504", code, el)
			}
			if el < 300*time.Millisecond || el > 5*time.Second {
				t.Fatalf("/hang timed out after %v, want its own 300ms route timeout", el)
			}
		})
	}
}
