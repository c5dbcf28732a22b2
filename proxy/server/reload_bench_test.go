package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// BenchmarkProxyNewConnection measures a request on a fresh connection
// each time: the accept path, through the socket kept across reloads and
// its per-generation view, is included. Connection: close, direct
// response.
func BenchmarkProxyNewConnection(b *testing.B) {
	s := startProxy(b, `
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: ok}}]}]}
clusters: []
`)
	addr := s.ListenerAddr("main").String()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.Close()
	}
}
