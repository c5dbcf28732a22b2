package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

func benchServer(b *testing.B) *Server {
	s, err := New(context.Background(), policyConfig(rbacPolicy), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkCheck is one Check in process: unmarshal the request, decode
// its attributes, evaluate the RBAC policy, build and marshal the response.
func BenchmarkCheck(b *testing.B) {
	m := &mixerService{s: benchServer(b)}
	data, err := proto.Marshal(checkRequest("POST", "/private/x", headers("x-role", "admin", "user-agent", "bench", "accept", "*/*")))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		var req mixerv1.CheckRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			b.Fatal(err)
		}
		resp, err := m.Check(ctx, &req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := proto.Marshal(resp); err != nil {
			b.Fatal(err)
		}
	}
}

// reportBatch is a 100-record batch as a sidecar sends it.
func reportBatch(b *testing.B, sem mixerv1.ReportRequest_RepeatedAttributesSemantics) ([]attributes.Bag, []byte) {
	bags := make([]attributes.Bag, 100)
	for i := range bags {
		bags[i] = attributes.BagOf(map[string]attributes.Value{
			attributes.ContextProtocol:         attributes.String("http"),
			attributes.ContextReporterKind:     attributes.String("inbound"),
			attributes.SourceWorkloadName:      attributes.String("productpage-v1"),
			attributes.SourceWorkloadNamespace: attributes.String("default"),
			attributes.DestinationWorkloadName: attributes.String("reviews-v1"),
			attributes.DestinationServiceHost:  attributes.String("reviews.default.svc.cluster.local"),
			attributes.RequestPath:             attributes.String(fmt.Sprintf("/reviews/%d", i)),
			attributes.ResponseCode:            attributes.Int64(int64(200 + i%3)),
			attributes.ResponseDuration:        attributes.Duration(time.Duration(i) * time.Millisecond),
			attributes.RequestSize:             attributes.Int64(100),
			attributes.ResponseSize:            attributes.Int64(int64(1000 + i)),
		})
	}
	data, err := proto.Marshal(attributes.EncodeReport(bags, sem, attributes.GlobalWordCount()))
	if err != nil {
		b.Fatal(err)
	}
	return bags, data
}

// BenchmarkReportStages splits BenchmarkReport's DELTA_ENCODING path into
// its stages, per 100-record batch, to show where the time goes.
func BenchmarkReportStages(b *testing.B) {
	bags, data := reportBatch(b, mixerv1.ReportRequest_DELTA_ENCODING)
	var req mixerv1.ReportRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		b.Fatal(err)
	}
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r mixerv1.ReportRequest
			if err := proto.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := attributes.DecodeReport(&req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("telemetry", func(b *testing.B) {
		s := benchServer(b)
		b.ReportAllocs()
		for b.Loop() {
			s.tel.RecordBatch(bags)
		}
		b.ReportMetric(float64(b.N*len(bags))/b.Elapsed().Seconds(), "records/s")
	})
}

// BenchmarkReport ingests 100-record batches (as a sidecar sends them)
// end to end: unmarshal, decode, telemetry.
func BenchmarkReport(b *testing.B) {
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{mixerv1.ReportRequest_DELTA_ENCODING, mixerv1.ReportRequest_INDEPENDENT_ENCODING} {
		b.Run(sem.String(), func(b *testing.B) {
			m := &mixerService{s: benchServer(b)}
			bags, data := reportBatch(b, sem)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				var req mixerv1.ReportRequest
				if err := proto.Unmarshal(data, &req); err != nil {
					b.Fatal(err)
				}
				if _, err := m.Report(ctx, &req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(bags))/b.Elapsed().Seconds(), "records/s")
		})
	}
}
