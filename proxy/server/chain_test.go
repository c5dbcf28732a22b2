package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
	_ "github.com/remora-mesh/remora/proxy/filters/headermutation"
	"gopkg.in/yaml.v3"
)

// Test filters, registered for the chain tests.

// testFactory builds filters from a constructor; per-route configs are
// plain strings.
type testFactory struct {
	name string
	new  func(cb filter.Callbacks) filter.StreamFilter
}

func (f testFactory) Name() string                                    { return f.name }
func (f testFactory) ParseConfig(*yaml.Node, filter.Env) (any, error) { return nil, nil }
func (f testFactory) ParsePerRouteConfig(n *yaml.Node) (any, error) {
	var s string
	if err := n.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: per-route config must be a string", f.name)
	}
	return s, nil
}
func (f testFactory) NewFilter(_ any, cb filter.Callbacks) filter.StreamFilter { return f.new(cb) }

// asyncFilter stops both directions and resumes from another goroutine,
// as a policy check would.
type asyncFilter struct {
	filter.PassThrough
	cb filter.Callbacks
}

func (f *asyncFilter) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.Status {
	go func() {
		h.Set("x-async", "checked")
		f.cb.ContinueDecoding()
	}()
	return filter.StopIteration
}

func (f *asyncFilter) EncodeHeaders(h *filter.HeaderMap, _ bool) filter.Status {
	go func() {
		h.Set("x-async-response", "checked")
		f.cb.ContinueEncoding()
	}()
	return filter.StopIteration
}

// bufferFilter buffers the whole request body, then records its size in a
// request header before letting the request go.
type bufferFilter struct {
	filter.PassThrough
	cb filter.Callbacks
	h  *filter.HeaderMap
}

func (f *bufferFilter) DecodeHeaders(h *filter.HeaderMap, end bool) filter.Status {
	if end {
		return filter.Continue
	}
	f.h = h
	return filter.StopAndBuffer
}

func (f *bufferFilter) DecodeData(data []byte, end bool) filter.Status {
	if !end {
		return filter.StopAndBuffer
	}
	f.h.Set("x-body-len", strconv.Itoa(len(f.cb.DecodingBuffer())+len(data)))
	return filter.Continue
}

// denyFilter answers 403 (flag UAEX) when the request has x-deny; the
// body is the route's per-filter config.
type denyFilter struct {
	filter.PassThrough
	cb filter.Callbacks
}

func (f *denyFilter) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.Status {
	if !h.Has("x-deny") {
		return filter.Continue
	}
	body := "denied"
	if r := f.cb.Route(); r != nil {
		if s, ok := r.PerFilterConfig("test_deny").(string); ok {
			body = s
		}
	}
	f.cb.SendLocalReply(filter.LocalReply{Code: 403, Body: body, Flag: filter.UnauthorizedExternalService, Details: "denied"})
	return filter.StopIteration
}

func init() {
	filter.Register(testFactory{"test_async", func(cb filter.Callbacks) filter.StreamFilter { return &asyncFilter{cb: cb} }})
	filter.Register(testFactory{"test_buffer", func(cb filter.Callbacks) filter.StreamFilter { return &bufferFilter{cb: cb} }})
	filter.Register(testFactory{"test_deny", func(cb filter.Callbacks) filter.StreamFilter { return &denyFilter{cb: cb} }})
}

const chainConfig = `
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  per_connection_buffer_limit_bytes: 65536
  filter_chains:
  - http_connection_manager:
      stream_idle_timeout: 300ms
      access_log: [{type: test}]
      http_filters:
      - name: header_mutation
        config: {response_headers_to_add: [{name: x-chain, value: seen}]}
      - name: test_deny
      - name: test_async
      - name: test_buffer
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          typed_per_filter_config: {test_deny: vhost says no}
          routes:
          - match: {prefix: /route-deny}
            typed_per_filter_config:
              test_deny: route says no
              header_mutation: {response_headers_to_add: [{name: x-route, value: r1}]}
            route: {cluster: backend}
          - match: {prefix: /hang}
            route: {cluster: gate, timeout: 0s}
          - match: {prefix: /}
            route: {cluster: backend}
clusters:
- name: backend
  endpoints: [{address: %s}]
- name: gate
  endpoints: [{address: %s}]
`

func TestFilterChain(t *testing.T) {
	be := backend(t)
	g, gateAddr := newGate(t)
	s := startProxy(t, fmt.Sprintf(chainConfig, be.Listener.Addr(), gateAddr))
	base := "http://" + s.ListenerAddr("main").String()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	do := func(t *testing.T, ctx context.Context, method, path, body string, hdr ...string) (*http.Response, string, error) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+path, rd)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return nil, "", err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b), nil
	}
	bg := context.Background()

	t.Run("async continue both ways", func(t *testing.T) {
		drainLogs()
		resp, body, err := do(t, bg, "GET", "/a", "")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || body != "GET /a 0" || resp.Header.Get("X-Async-Response") != "checked" || resp.Header.Get("X-Chain") != "seen" {
			t.Fatalf("got %d %q %v", resp.StatusCode, body, resp.Header)
		}
		lastLog(t)
	})
	t.Run("buffered body", func(t *testing.T) {
		drainLogs()
		payload := strings.Repeat("b", 50000)
		resp, body, err := do(t, bg, "POST", "/buf", payload)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || body != "POST /buf 50000" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if info := lastLog(t); info.BytesReceived != 50000 {
			t.Fatalf("bytes received %d", info.BytesReceived)
		}
	})
	t.Run("buffer overflow is 413", func(t *testing.T) {
		drainLogs()
		resp, _, err := do(t, bg, "POST", "/big", strings.Repeat("b", 200000))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 413 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if info := lastLog(t); info.ResponseCode != 413 || info.ResponseCodeDetails != "request_payload_too_large" {
			t.Fatalf("log %d %s", info.ResponseCode, info.ResponseCodeDetails)
		}
	})
	t.Run("local reply uses per-route config and runs encoders", func(t *testing.T) {
		for _, tt := range []struct{ path, body, route string }{{"/route-deny", "route says no", "r1"}, {"/x", "vhost says no", ""}} {
			drainLogs()
			resp, body, err := do(t, bg, "GET", tt.path, "", "x-deny", "1")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 403 || body != tt.body || resp.Header.Get("X-Chain") != "seen" || resp.Header.Get("X-Route") != tt.route {
				t.Fatalf("%s: got %d %q %v", tt.path, resp.StatusCode, body, resp.Header)
			}
			if info := lastLog(t); info.ResponseFlags.String() != "UAEX" {
				t.Fatalf("flags %s", info.ResponseFlags)
			}
		}
	})
	t.Run("downstream disconnect is logged once with DC", func(t *testing.T) {
		drainLogs()
		ctx, cancel := context.WithCancel(bg)
		errc := make(chan error, 1)
		go func() { _, _, err := do(t, ctx, "GET", "/hang/dc", ""); errc <- err }()
		g.wait(t)
		cancel()
		<-errc
		if info := lastLog(t); !info.ResponseFlags.Has(filter.DownstreamConnectionTermination) {
			t.Fatalf("flags %s", info.ResponseFlags)
		}
		select {
		case <-sink.ch:
			t.Fatal("stream logged twice")
		case <-time.After(50 * time.Millisecond):
		}
	})
	t.Run("stream idle timeout", func(t *testing.T) {
		// A quick stream first: the idle timer it armed stays pending
		// with its pooled stream, due before the hanging stream's idle
		// timeout, and must re-arm rather than end that stream early.
		if _, _, err := do(t, bg, "GET", "/a", ""); err != nil {
			t.Fatal(err)
		}
		drainLogs()
		start := time.Now()
		resp, _, err := do(t, bg, "GET", "/hang/idle", "")
		if el := time.Since(start); el < 300*time.Millisecond {
			t.Fatalf("stream ended after %v, before its 300ms idle timeout", el)
		}
		if err != nil {
			info := lastLog(t)
			t.Fatalf("%v (log: %d %s %s)", err, info.ResponseCode, info.ResponseFlags, info.ResponseCodeDetails)
		}
		if resp.StatusCode != 408 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		<-g.arrived
		if info := lastLog(t); info.ResponseFlags.String() != "SI" {
			t.Fatalf("flags %s", info.ResponseFlags)
		}
	})
}
