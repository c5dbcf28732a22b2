package server

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// benchUpstream is a 1 KiB-answering HTTP/1.1 server.
func benchUpstream(b *testing.B) (net.Listener, []byte) {
	payload := bytes.Repeat([]byte("x"), 1024)
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", "1024")
		w.Write(payload)
	})}
	ln := listenLoopback(b)
	go up.Serve(ln)
	b.Cleanup(func() { up.Close() })
	return ln, payload
}

// runClient posts 1 KiB to url b.N times on one keep-alive connection.
func runClient(b *testing.B, url string, payload []byte) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	body := bytes.NewReader(payload)
	req, _ := http.NewRequest("POST", url, body)
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(2048)
	for b.Loop() {
		body.Reset(payload)
		req.Body = io.NopCloser(body)
		req.ContentLength = int64(len(payload))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkDirectHTTP1KeepAlive is the baseline for the proxied benchmark:
// the same client and upstream, no proxy. The difference is the proxy's
// cost.
func BenchmarkDirectHTTP1KeepAlive(b *testing.B) {
	ln, payload := benchUpstream(b)
	runClient(b, "http://"+ln.Addr().String()+"/bench", payload)
}

// BenchmarkProxyHTTP1KeepAlive is a full proxied request in-process:
// HTTP/1.1 keep-alive client → listener → connection manager → router →
// upstream pool → HTTP/1.1 upstream, 1 KiB request and response bodies.
func BenchmarkProxyHTTP1KeepAlive(b *testing.B) {
	ln, payload := benchUpstream(b)
	cfg := fmt.Sprintf(`
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
`, ln.Addr())
	s := startProxy(b, cfg)
	runClient(b, "http://"+s.ListenerAddr("main").String()+"/bench", payload)
}
