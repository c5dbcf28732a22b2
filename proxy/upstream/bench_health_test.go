package upstream

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/internal/testpki"
)

// benchRequests runs 1 KiB POST / 1 KiB response exchanges through c.
func benchRequests(b *testing.B, c *Cluster) {
	body := bytes.Repeat([]byte("b"), 1024)
	h := reqHeaders("POST", "/upload", "web", "content-length", "1024", "content-type", "application/octet-stream")
	buf := make([]byte, 4096)
	ctx := testCtx(b)
	b.ReportAllocs()
	b.SetBytes(2048)
	b.ResetTimer()
	for b.Loop() {
		s, err := c.NewStream(ctx, h, false, StreamOptions{Protocol: "HTTP/1.1"})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.WriteData(body, true); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.ReadHeaders(ctx); err != nil {
			b.Fatal(err)
		}
		for {
			_, err := s.ReadData(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		s.Close()
	}
}

func kibHandler() http.Handler {
	resp := bytes.Repeat([]byte("r"), 1024)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", "1024")
		w.Write(resp)
	})
}

// BenchmarkHTTP1RequestHealthChecked is BenchmarkHTTP1Request on a cluster
// with outlier detection and an active health check (every 100ms): the
// per-request cost of outlier bookkeeping and health-aware balancing.
func BenchmarkHTTP1RequestHealthChecked(b *testing.B) {
	srv := newCountingServer(b, kibHandler())
	cfg := staticCluster("web", srv.addr())
	cfg.OutlierDetection = &OutlierDetectionConfig{}
	cfg.HealthChecks = []HealthCheckConfig{{Interval: config.Duration(100 * time.Millisecond), HTTP: &HTTPHealthCheck{Path: "/healthz"}}}
	m := newTestManager(b, Options{}, cfg)
	benchRequests(b, m.Cluster("web"))
}

// BenchmarkHTTP1RequestTLS is BenchmarkHTTP1Request over a pooled TLS
// connection (the handshake happens once).
func BenchmarkHTTP1RequestTLS(b *testing.B) {
	pki := testpki.New(b, "spiffe://bench")
	srv := httptest.NewUnstartedServer(kibHandler())
	cert, err := tls.LoadX509KeyPair(pki.ServerCertFile, pki.ServerKeyFile)
	if err != nil {
		b.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	b.Cleanup(srv.Close)
	cfg := staticCluster("web", srv.Listener.Addr().String())
	cfg.TLS = &UpstreamTLSConfig{CAFile: pki.CAFile}
	m := newTestManager(b, Options{}, cfg)
	benchRequests(b, m.Cluster("web"))
	if n := m.Cluster("web").stats.get(statSSLHandshake); n != 1 {
		b.Fatalf("%d handshakes, want 1", n)
	}
}

// BenchmarkRecordResponse is outlier detection's per-response cost.
func BenchmarkRecordResponse(b *testing.B) {
	cfg := staticCluster("web", "127.0.0.1:1")
	cfg.OutlierDetection = &OutlierDetectionConfig{}
	m := newTestManager(b, Options{}, cfg)
	h := m.Cluster("web").Hosts()[0]
	b.ReportAllocs()
	for b.Loop() {
		h.recordResponse(200)
	}
}
