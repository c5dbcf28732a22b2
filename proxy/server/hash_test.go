package server

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// TestRingHashAffinity: with a header hash policy on the route, a RING_HASH
// cluster sends every request of one user to the same host, and the users
// spread over more than one host.
func TestRingHashAffinity(t *testing.T) {
	addrs := make([]string, 3)
	for i := range addrs {
		id := fmt.Sprint(i)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, id) })}
		ln := listenLoopback(t)
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		addrs[i] = ln.Addr().String()
	}
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
          routes: [{match: {prefix: /}, route: {cluster: ring, hash_policy: [{header: {header_name: x-user}}]}}]
clusters:
- name: ring
  lb_policy: RING_HASH
  endpoints: [{address: %s}, {address: %s}, {address: %s}]
`, addrs[0], addrs[1], addrs[2]))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hosts := map[string]bool{}
	for u := 0; u < 20; u++ {
		user := fmt.Sprintf("user-%d", u)
		first := ""
		for i := 0; i < 5; i++ {
			req, _ := http.NewRequest("GET", "http://"+s.ListenerAddr("main").String()+"/", nil)
			req.Header.Set("X-User", user)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if i == 0 {
				first = string(b)
			} else if string(b) != first {
				t.Fatalf("%s went to host %s, then %s", user, first, b)
			}
		}
		hosts[first] = true
	}
	if len(hosts) < 2 {
		t.Fatalf("20 users all hashed to %v", hosts)
	}
}
