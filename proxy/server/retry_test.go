package server

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
)

// flaky answers its first `failures` requests with status (and hdr), then
// echoes the request body's length.
type flaky struct {
	n        atomic.Int32
	failures int32
	status   int
	hdr      [2]string
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if f.n.Add(1) <= f.failures {
		if f.hdr[0] != "" {
			w.Header().Set(f.hdr[0], f.hdr[1])
		}
		w.WriteHeader(f.status)
		io.WriteString(w, "failed")
		return
	}
	fmt.Fprintf(w, "ok %d", len(b))
}

const retryConfig = `
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
          - match: {prefix: /default}
            route:
              cluster: up
              retry_policy: {retry_back_off: {base_interval: 1ms}}
          - match: {prefix: /twice}
            route:
              cluster: up
              retry_policy: {num_retries: 2, retry_on: "5xx", retry_back_off: {base_interval: 1ms}}
          - match: {prefix: /codes}
            route:
              cluster: up
              retry_policy: {retry_on: retriable-status-codes, retriable_status_codes: [429], retry_back_off: {base_interval: 1ms},
                rate_limited_retry_back_off: {reset_headers: [{name: retry-after, format: SECONDS}], max_interval: 1s}}
          - match: {prefix: /dead}
            route:
              cluster: half-dead
              retry_policy: {retry_on: connect-failure, retry_back_off: {base_interval: 1ms}}
          - match: {prefix: /none}
            route: {cluster: up}
clusters:
- name: up
  endpoints: [{address: %s}]
- name: half-dead
  endpoints: [{address: %s}, {address: %s}]
`

func TestRetries(t *testing.T) {
	fl := &flaky{}
	srv := &http.Server{Handler: fl}
	ln := listenLoopback(t)
	go srv.Serve(ln)
	defer srv.Close()
	s := startProxy(t, fmt.Sprintf(retryConfig, ln.Addr(), deadAddr(t), ln.Addr()))
	base := "http://" + s.ListenerAddr("main").String()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	tests := []struct {
		name      string
		path      string
		failures  int32
		status    int
		hdr       [2]string
		body      string
		wantCode  int
		wantBody  string
		wantCalls int32
		wantFlags string
	}{
		{"503 then ok, body replayed", "/default", 1, 503, [2]string{}, strings.Repeat("p", 3000), 200, "ok 3000", 2, "-"},
		{"one retry by default", "/default", 2, 503, [2]string{}, "", 503, "failed", 2, "URX"},
		{"two retries", "/twice", 2, 500, [2]string{}, "", 200, "ok 0", 3, "-"},
		{"4xx is not 5xx", "/twice", 1, 404, [2]string{}, "", 404, "failed", 1, "-"},
		{"retriable status code with retry-after 0", "/codes", 1, 429, [2]string{"Retry-After", "0"}, "", 200, "ok 0", 2, "-"},
		{"retry-after beyond max_interval", "/codes", 1, 429, [2]string{"Retry-After", "60"}, "", 429, "failed", 1, "-"},
		{"no policy, no retry", "/none", 1, 503, [2]string{}, "", 503, "failed", 1, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fl.n.Store(0)
			fl.failures, fl.status, fl.hdr = tt.failures, tt.status, tt.hdr
			drainLogs()
			req, _ := http.NewRequest("POST", base+tt.path, strings.NewReader(tt.body))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode || string(b) != tt.wantBody {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, b, tt.wantCode, tt.wantBody)
			}
			if n := fl.n.Load(); n != tt.wantCalls {
				t.Fatalf("upstream saw %d attempts, want %d", n, tt.wantCalls)
			}
			if info := lastLog(t); info.ResponseFlags.String() != tt.wantFlags {
				t.Fatalf("flags %s, want %s", info.ResponseFlags, tt.wantFlags)
			}
		})
	}
	t.Run("connect failure goes to the other host", func(t *testing.T) {
		fl.n.Store(0)
		fl.failures = 0
		for i := 0; i < 4; i++ {
			drainLogs()
			resp, err := tr.RoundTrip(mustReq(base + "/dead"))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: status %d", i, resp.StatusCode)
			}
			if f := lastLog(t).ResponseFlags; f.Has(filter.UpstreamConnectionFailure) {
				t.Fatalf("flags %s", f)
			}
		}
	})
}
