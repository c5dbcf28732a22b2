package telemetry

import (
	"testing"
	"time"

	"github.com/remora-mesh/remora/attributes"
)

// BenchmarkRecord measures one report record into the standard metrics
// (a counter and three histograms sharing one label set).
func BenchmarkRecord(b *testing.B) {
	tel := newTelemetry(b, Config{}, nil)
	recs := make([]attributes.Bag, 64)
	for i := range recs {
		recs[i] = httpRecord(int64(200+i%4), time.Duration(i)*time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(recs) {
		tel.RecordBatch(recs)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkRecordParallel(b *testing.B) {
	tel := newTelemetry(b, Config{}, nil)
	rec := httpRecord(200, 5*time.Millisecond)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tel.Record(rec)
		}
	})
}
