package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestFullDuplexLargeStream pushes 8 MiB through an h2c echo upstream that
// answers while it reads: the proxy must stream both ways at once, with
// flow control on both sides, without deadlocking.
func TestFullDuplexLargeStream(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	})
	ln := listenLoopback(t)
	up := h2cServer(echo)
	go up.Serve(ln)
	defer up.Close()
	s := startProxy(t, fmt.Sprintf(`
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: echo, timeout: 0s}}]}]}
clusters:
- name: echo
  protocol: http2
  endpoints: [{address: %s}]
`, ln.Addr()))
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	const total = 8 << 20
	pr, pw := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+s.ListenerAddr("main").String()+"/echo", pr)
	go func() {
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != total {
		t.Fatalf("echoed %d bytes (%v), want %d", n, err, total)
	}
}
