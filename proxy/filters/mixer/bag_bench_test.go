package mixer

import (
	"net/netip"
	"testing"
	"time"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/proxy/filter"
)

// BenchmarkBuildCheckBag is the per-request cost of turning a typical
// inbound request into its check attributes.
func BenchmarkBuildCheckBag(b *testing.B) {
	h := filter.NewHeaderMap(
		filter.HeaderField{Name: ":method", Value: "GET"}, filter.HeaderField{Name: ":path", Value: "/reviews/0?page=2"},
		filter.HeaderField{Name: ":authority", Value: "reviews:9080"}, filter.HeaderField{Name: ":scheme", Value: "http"},
		filter.HeaderField{Name: "user-agent", Value: "python-requests/2.18.4"}, filter.HeaderField{Name: "accept", Value: "*/*"},
		filter.HeaderField{Name: "x-request-id", Value: "8f3c0a1e-2b4d-4c6e-9f70-1a2b3c4d5e6f"},
		filter.HeaderField{Name: "x-b3-traceid", Value: "463ac35c9f6413ad"}, filter.HeaderField{Name: "x-forwarded-proto", Value: "http"},
	)
	info := &filter.StreamInfo{StartTime: time.Now(), Protocol: filter.ProtocolHTTP11,
		DownstreamRemoteAddress: netip.MustParseAddrPort("10.44.0.7:53412"), DownstreamLocalAddress: netip.MustParseAddrPort("10.44.0.12:9080")}
	cfg := Config{Identity: Identity{UID: "kubernetes://reviews-v2.default", Namespace: "default", Workload: "reviews-v2",
		Labels: map[string]string{"app": "reviews", "version": "v2"}, ServiceHost: "reviews.default.svc.cluster.local"}}
	identity := identityBag(cfg, attributes.ReporterInbound)
	var bd attributes.Builder // reused from request to request, as a pooled Filter's
	b.ReportAllocs()
	for b.Loop() {
		bd.Reset(identity)
		requestAttributes(&bd, h, info, filter.ConnectionInfo{}, attributes.ReporterInbound)
		if bd.Build().Len() < 20 {
			b.Fatal("short bag")
		}
	}
}
