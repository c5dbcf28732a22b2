package attributes

import (
	"fmt"
	"testing"
	"time"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
	"google.golang.org/protobuf/proto"
)

// variedBags are n request records as a sidecar produces them: the same
// shape, with the per-request attributes (id, times, sizes, path, headers)
// different in every record.
func variedBags(n int) []Bag {
	base := requestBag()
	bags := make([]Bag, n)
	t0 := time.Date(2026, 11, 22, 4, 5, 6, 0, time.UTC)
	for i := range bags {
		bd := NewBuilderFrom(base, 8)
		id := fmt.Sprintf("8f3c0a1e-2b4d-4c6e-9f70-%012d", i)
		path := fmt.Sprintf("/reviews/%d", i%50)
		bd.Set(RequestID, String(id))
		bd.Set(RequestPath, String(path))
		bd.Set(RequestURLPath, String(path))
		bd.Set(RequestHeaders, StringMapValue(StringMapOf(map[string]string{
			":authority": "reviews:9080", ":path": path, ":method": "GET", "user-agent": "python-requests/2.18.4",
			"accept": "*/*", "x-request-id": id, "x-forwarded-proto": "http",
		})))
		bd.Set(RequestTime, Timestamp(t0.Add(time.Duration(i)*time.Millisecond)))
		bd.Set(ResponseTime, Timestamp(t0.Add(time.Duration(i)*time.Millisecond+3*time.Millisecond)))
		bd.Set(ResponseDuration, Duration(time.Duration(3000+i)*time.Microsecond))
		bd.Set(ResponseSize, Int64(int64(1024+i%7)))
		bd.Set(ResponseCode, Int64(int64(200+i%3)))
		bags[i] = bd.Build()
	}
	return bags
}

// BenchmarkEncodeReportWire is what a sidecar spends per 100-record batch
// of distinct requests: compression plus protobuf marshalling.
func BenchmarkEncodeReportWire(b *testing.B) {
	bags := variedBags(100)
	b.ReportAllocs()
	for b.Loop() {
		req := EncodeReport(bags, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount())
		if _, err := proto.Marshal(req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReportEncoder is the same batch through ReportEncoder.
func BenchmarkReportEncoder(b *testing.B) {
	bags := variedBags(100)
	var enc ReportEncoder
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.Append(buf[:0], bags, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount())
	}
}
