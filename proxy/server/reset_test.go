package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

// TestUpstreamResetAndRequestTimeout: an upstream that dies after the
// response began resets the downstream (logged once with the upstream's
// flag); a request body that never arrives ends with 408 after
// request_timeout.
func TestUpstreamResetAndRequestTimeout(t *testing.T) {
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection drops mid-body
	}), ErrorLog: nil}
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
      request_timeout: 200ms
      access_log: [{type: test}]
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: up}}]}]}
clusters:
- name: up
  endpoints: [{address: %s}]
`, ln.Addr()))
	addr := s.ListenerAddr("main").String()

	t.Run("upstream reset after headers", func(t *testing.T) {
		drainLogs()
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := tr.RoundTrip(mustReq("http://" + addr + "/reset"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatal("truncated body read without error")
		}
		info := lastLog(t)
		if info.ResponseCode != 200 || info.ResponseFlags != filter.UpstreamConnectionTermination || info.ResponseCodeDetails != "upstream_reset_after_response_started" {
			t.Fatalf("log: code %d flags %s details %s, want 200 UC", info.ResponseCode, info.ResponseFlags, info.ResponseCodeDetails)
		}
	})
	t.Run("request timeout", func(t *testing.T) {
		drainLogs()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 408 || !resp.Close {
			t.Fatalf("got %d (close %v), want 408 and the connection closed", resp.StatusCode, resp.Close)
		}
		if info := lastLog(t); info.ResponseCodeDetails != "request_overall_timeout" {
			t.Fatalf("details %q", info.ResponseCodeDetails)
		}
	})
}

// TestConnectTimeout: an upstream connect that never completes fails after
// the cluster's connect_timeout with 503 and flag UF.
func TestConnectTimeout(t *testing.T) {
	cfg := mustParse(t, `
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      access_log: [{type: test}]
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: slow}}]}]}
clusters:
- name: slow
  connect_timeout: 100ms
  endpoints: [{address: 127.0.0.1:9}]
`)
	hang := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done() // a SYN nobody answers
		return nil, ctx.Err()
	}
	s, err := New(cfg, Options{UpstreamDial: hang})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	drainLogs()
	resp, err := http.Get("http://" + s.ListenerAddr("main").String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if info := lastLog(t); info.ResponseFlags != filter.UpstreamConnectionFailure {
		t.Fatalf("flags %s, want UF", info.ResponseFlags)
	}
}

// TestRouteTimeoutDuringBody: a response that stalls after its headers is
// cut at the route timeout: the downstream is reset and the stream logged
// once with UT.
func TestRouteTimeoutDuringBody(t *testing.T) {
	// (admin on: the cluster's stats are checked at the end)
	stall := make(chan struct{})
	defer close(stall)
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		io.WriteString(w, "some")
		w.(http.Flusher).Flush()
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	})}
	ln := listenLoopback(t)
	go up.Serve(ln)
	defer up.Close()
	s := startProxy(t, fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      access_log: [{type: test}]
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: up, timeout: 150ms}}]}]}
clusters:
- name: up
  endpoints: [{address: %s}]
`, ln.Addr()))
	drainLogs()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(mustReq("http://" + s.ListenerAddr("main").String() + "/"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || string(b) != "some" {
		t.Fatalf("body %q err %v, want the first bytes then a reset", b, err)
	}
	if info := lastLog(t); info.ResponseFlags != filter.UpstreamRequestTimeout {
		t.Fatalf("flags %s, want UT", info.ResponseFlags)
	}
	if _, body := get(t, "GET", "http://"+s.AdminAddr().String()+"/stats?filter=upstream_rq_timeout"); !strings.Contains(body, "cluster.up.upstream_rq_timeout: 1") {
		t.Fatalf("timeout not reported to the cluster: %q", body)
	}
}
