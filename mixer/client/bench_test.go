package client

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/remora-mesh/remora/attributes"
)

// BenchmarkCheckCacheHit is the per-request cost of a cached decision (the
// BRIEF's target: at most 1µs and no allocation).
func BenchmarkCheckCacheHit(b *testing.B) {
	srv := newTestServer(b)
	srv.check = policy(b, []ref{{name: attributes.RequestPath}, {name: attributes.RequestMethod}, {name: attributes.RequestHeaders, key: "x-user"}, {name: attributes.SourcePrincipal}},
		time.Hour, 1<<30, func(attributes.Bag) codes.Code { return codes.OK })
	cfg := Config{Address: srv.addr}
	cfg.ApplyDefaults()
	c, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	bag := request("/productpage", "admin", "id")
	ctx := context.Background()
	if r := c.Check(ctx, bag, nil); r.CacheHit {
		b.Fatal("first check hit")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if r := c.Check(ctx, bag, nil); !r.CacheHit {
			b.Fatal("miss")
		}
	}
}

// BenchmarkReportEnqueue is the request path's cost of reporting.
func BenchmarkReportEnqueue(b *testing.B) {
	srv := newTestServer(b)
	srv.discard = true
	cfg := Config{Address: srv.addr, Report: ReportConfig{MaxQueueEntries: 1 << 20, MaxQueueBytes: 1 << 30}}
	cfg.ApplyDefaults()
	c, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	bag := reportBag(1)
	b.ReportAllocs()
	for b.Loop() {
		c.Report(c.ReportBuilder(bag))
	}
}
