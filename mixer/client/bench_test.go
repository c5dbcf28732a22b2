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

// BenchmarkReportEnqueue is the request path's cost of reporting: a
// report builder over the stream's bag, then the queue. Unpaced, the loop
// outruns the sender, so builders are not back from their batches in time
// and new ones are made; paced waits for each batch of 100 to be delivered
// before queueing the next, as a sidecar's sender keeps up with its
// traffic, and shows the steady state: builders come back from the pool,
// and what allocations remain are the gRPC call's and the in-process test
// server's decoding, per batch.
func BenchmarkReportEnqueue(b *testing.B) {
	for _, paced := range []bool{false, true} {
		name := "unpaced"
		if paced {
			name = "paced"
		}
		b.Run(name, func(b *testing.B) {
			srv := newTestServer(b)
			srv.discard = true
			cfg := Config{Address: srv.addr, Report: ReportConfig{MaxQueueEntries: 1 << 20, MaxQueueBytes: 1 << 30}}
			cfg.ApplyDefaults()
			c, err := New(cfg, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close(context.Background())
			acked := make(chan int, 1)
			if paced {
				c.batcher.mu.Lock()
				c.batcher.delivered = func(n int) { acked <- n }
				c.batcher.mu.Unlock()
			}
			bag := reportBag(1)
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				c.Report(c.ReportBuilder(bag))
				if n++; paced && n%cfg.Report.MaxBatchEntries == 0 {
					<-acked
				}
			}
		})
	}
}
