package mixer_test

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxiedRequest compares a request through the proxy with the
// mixer filter answering from its cache (plus a report) against a route
// with check and report disabled.
func BenchmarkProxiedRequest(b *testing.B) {
	mixer := newPolicyServer(b)
	mixer.mu.Lock()
	mixer.discard = true
	mixer.mu.Unlock()
	var be seen
	base := startProxy(b, "inbound", mixer.addr, "close", startBackend(b, &be))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for _, bc := range []struct{ name, path string }{{"check-cached+report", "/reviews/1"}, {"filter-disabled", "/public/1"}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(base + bc.path)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
