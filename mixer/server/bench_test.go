package server

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/attributes"
	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

func benchServer(b *testing.B) *Server { return benchServerCache(b, true) }

// benchServerCache is benchServer with the policy's decision cache on or off.
func benchServerCache(b *testing.B, cache bool) *Server {
	cfg := policyConfig(rbacPolicy)
	cfg.Policy.DecisionCache.Disabled = !cache
	s, err := New(context.Background(), cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkCheck is one Check in process as the gRPC server runs it: the
// codec decodes the request bytes, the handler evaluates the RBAC policy
// (the decision cache off), the codec marshals the response.
func BenchmarkCheck(b *testing.B) { benchmarkCheck(b, false) }

// BenchmarkCheckCached is BenchmarkCheck with the decision cache on (the
// default): the same request is answered from it.
func BenchmarkCheckCached(b *testing.B) { benchmarkCheck(b, true) }

func benchmarkCheck(b *testing.B, cache bool) {
	m := &mixerService{s: benchServerCache(b, cache)}
	data, err := proto.Marshal(checkRequest("POST", "/private/x", headers("x-role", "admin", "user-agent", "bench", "accept", "*/*")))
	if err != nil {
		b.Fatal(err)
	}
	codec := newServerCodec()
	in := mem.BufferSlice{mem.SliceBuffer(data)}
	dec := func(v any) error { return codec.Unmarshal(in, v) }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := checkHandler(m, ctx, dec, nil)
		if err != nil {
			b.Fatal(err)
		}
		out, err := codec.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		out.Free()
	}
}

// BenchmarkExtAuthzCheck is one ext_authz Check in process as the gRPC
// server runs it (codec, handler, codec), the decision cache off.
func BenchmarkExtAuthzCheck(b *testing.B) { benchmarkExtAuthz(b, false, "admin") }

// BenchmarkExtAuthzCheckCached is BenchmarkExtAuthzCheck with the decision
// cache on: the same request is answered from it.
func BenchmarkExtAuthzCheckCached(b *testing.B) { benchmarkExtAuthz(b, true, "admin") }

// BenchmarkExtAuthzCheckCachedDenied is BenchmarkExtAuthzCheckCached for a
// request the policy denies.
func BenchmarkExtAuthzCheckCachedDenied(b *testing.B) { benchmarkExtAuthz(b, true, "guest") }

func benchmarkExtAuthz(b *testing.B, cache bool, role string) {
	a := &authzService{s: benchServerCache(b, cache)}
	req := authzRequest("POST", "/private/x", map[string]string{"x-role": role, "user-agent": "bench", "accept": "*/*"})
	req.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}}}}}
	data, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	codec := newServerCodec()
	in := mem.BufferSlice{mem.SliceBuffer(data)}
	dec := func(v any) error { return codec.Unmarshal(in, v) }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := authzCheckHandler(a, ctx, dec, nil)
		if err != nil {
			b.Fatal(err)
		}
		out, err := codec.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		out.Free()
	}
}

// BenchmarkCheckGenerated is BenchmarkCheckCached through the generated
// types (proto.Unmarshal, MixerServer.Check, proto.Marshal), as an
// in-process caller of Check runs it.
func BenchmarkCheckGenerated(b *testing.B) {
	m := &mixerService{s: benchServerCache(b, true)}
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

// BenchmarkReportStages splits the DELTA_ENCODING Report path into its
// stages, per 100-record batch, to show where the time goes: unmarshal and
// decode are the generated-types path (DecodeReport), decode_wire the
// protowire decoder the server uses, telemetry the metrics.
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
	b.Run("decode_wire", func(b *testing.B) {
		var d attributes.ReportDecoder
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.DecodeAll(data); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(bags))/b.Elapsed().Seconds(), "records/s")
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
// end to end as the gRPC handler does, from the request's wire bytes:
// decode, telemetry.
func BenchmarkReport(b *testing.B) {
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{mixerv1.ReportRequest_DELTA_ENCODING, mixerv1.ReportRequest_INDEPENDENT_ENCODING} {
		b.Run(sem.String(), func(b *testing.B) {
			m := &mixerService{s: benchServer(b)}
			bags, data := reportBatch(b, sem)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.reportWire(ctx, data); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(bags))/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkReportGRPC is BenchmarkReport through a real loopback gRPC
// connection: the server's codec hands the handler the bytes, the handler
// decodes them and feeds telemetry. The client sends pre-marshalled bytes
// (bytesCodec) so that its own cost is transport only; client and server
// still share the machine's cores.
func BenchmarkReportGRPC(b *testing.B) {
	ts := start(b, policyConfig(rbacPolicy), Options{}, nil)
	bags, data := reportBatch(b, mixerv1.ReportRequest_DELTA_ENCODING)
	ctx := context.Background()
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		if err := ts.conn.Invoke(ctx, mixerv1.Mixer_Report_FullMethodName, &data, &out, grpc.ForceCodecV2(bytesCodec{})); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(bags))/b.Elapsed().Seconds(), "records/s")
}

// istioRecord is record i of the bench harness's Report batches (bench/):
// Istio's standard telemetry attributes, 21 per record, with a few
// services, codes and sizes.
func istioRecord(i int) attributes.Bag {
	svc := []string{"reviews", "ratings", "details", "productpage"}[i%4]
	code := []int64{200, 200, 200, 200, 200, 200, 404, 503}[i%8]
	now := time.Unix(1_700_000_000, int64(i)*1000)
	return attributes.BagOf(map[string]attributes.Value{
		attributes.SourceWorkloadName:           attributes.String("productpage-v1"),
		attributes.SourceWorkloadNamespace:      attributes.String("default"),
		attributes.SourcePrincipal:              attributes.String("spiffe://cluster.local/ns/default/sa/productpage"),
		attributes.SourceUID:                    attributes.String("kubernetes://productpage-v1-abc.default"),
		attributes.DestinationWorkloadName:      attributes.String(svc + "-v1"),
		attributes.DestinationWorkloadNamespace: attributes.String("default"),
		attributes.DestinationPrincipal:         attributes.String("spiffe://cluster.local/ns/default/sa/" + svc),
		attributes.DestinationServiceHost:       attributes.String(svc + ".default.svc.cluster.local"),
		attributes.DestinationServiceName:       attributes.String(svc),
		attributes.DestinationServiceNamespace:  attributes.String("default"),
		attributes.RequestMethod:                attributes.String("GET"),
		attributes.RequestPath:                  attributes.String(fmt.Sprintf("/api/%s/%d", svc, i%50)),
		attributes.RequestSize:                  attributes.Int64(int64(100 + i%200)),
		attributes.ResponseSize:                 attributes.Int64(int64(1024 + i%4096)),
		attributes.ResponseCode:                 attributes.Int64(code),
		attributes.ResponseDuration:             attributes.Duration(time.Duration(1+i%40) * time.Millisecond),
		attributes.RequestTime:                  attributes.Timestamp(now),
		attributes.ResponseTime:                 attributes.Timestamp(now.Add(time.Millisecond)),
		attributes.ContextProtocol:              attributes.String(attributes.ProtocolHTTP),
		attributes.ContextReporterKind:          attributes.String(attributes.ReporterInbound),
		attributes.ConnectionMTLS:               attributes.Bool(true),
	})
}

// BenchmarkReportIstio is BenchmarkReport with the bench harness's batches
// (100 records of 21 Istio attributes, delta-encoded), split into the
// handler's two stages and whole.
func BenchmarkReportIstio(b *testing.B) {
	bags := make([]attributes.Bag, 100)
	for i := range bags {
		bags[i] = istioRecord(i)
	}
	data, err := proto.Marshal(attributes.EncodeReport(bags, mixerv1.ReportRequest_DELTA_ENCODING, attributes.GlobalWordCount()))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode_wire", func(b *testing.B) {
		var d attributes.ReportDecoder
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.DecodeAll(data); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(bags))/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("telemetry", func(b *testing.B) {
		s := benchServer(b)
		b.ReportAllocs()
		for b.Loop() {
			s.tel.RecordBatch(bags)
		}
		b.ReportMetric(float64(b.N*len(bags))/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("handler", func(b *testing.B) {
		m := &mixerService{s: benchServer(b)}
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.reportWire(ctx, data); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(bags))/b.Elapsed().Seconds(), "records/s")
	})
}

// sidecarRecord is record i as remora proxy's mixer filter reports it:
// istioRecord's attributes and two dozen more, among them request and
// response header maps that no standard metric reads (about 45 in all).
func sidecarRecord(i int) attributes.Bag {
	bd := attributes.NewBuilderFrom(istioRecord(i), 32)
	id := fmt.Sprintf("%08x-aaaa-bbbb-cccc-%012x", i, i*7)
	bd.Set(attributes.RequestHeaders, attributes.StringMapValue(attributes.StringMapOf(map[string]string{
		":authority": "reviews:9080", ":method": "GET", ":path": fmt.Sprintf("/api/reviews/%d", i%50), ":scheme": "http",
		"user-agent": "Mozilla/5.0", "accept": "*/*", "x-request-id": id, "x-forwarded-proto": "http"})))
	bd.Set(attributes.ResponseHeaders, attributes.StringMapValue(attributes.StringMapOf(map[string]string{
		":status": "200", "content-type": "application/json", "content-length": strconv.Itoa(1024 + i%4096),
		"date": "Sun, 22 Nov 2026 09:00:00 GMT", "server": "istio-envoy", "x-envoy-upstream-service-time": strconv.Itoa(1 + i%40)})))
	bd.Set(attributes.SourceIP, attributes.IPAddress(netip.MustParseAddr("10.0.0.1")))
	bd.Set(attributes.DestinationIP, attributes.IPAddress(netip.MustParseAddr("10.0.0.7")))
	bd.Set(attributes.SourceLabels, attributes.StringMapValue(attributes.StringMapOf(map[string]string{"app": "productpage", "version": "v1"})))
	bd.Set(attributes.DestinationLabels, attributes.StringMapValue(attributes.StringMapOf(map[string]string{"app": "reviews", "version": "v1"})))
	bd.Set(attributes.RequestHost, attributes.String("reviews:9080"))
	bd.Set(attributes.RequestScheme, attributes.String("http"))
	bd.Set(attributes.RequestUserAgent, attributes.String("Mozilla/5.0"))
	bd.Set(attributes.RequestID, attributes.String(id))
	bd.Set(attributes.RequestTotalSize, attributes.Int64(int64(400+i%200)))
	bd.Set(attributes.ResponseTotalSize, attributes.Int64(int64(1300+i%4096)))
	bd.Set(attributes.DestinationUID, attributes.String("kubernetes://reviews-v1-xyz.default"))
	bd.Set(attributes.DestinationPort, attributes.Int64(9080))
	bd.Set(attributes.ContextTime, attributes.Timestamp(time.Unix(1_700_000_000, int64(i)*1000)))
	bd.Set(attributes.ConnectionID, attributes.String(fmt.Sprint("conn-", i%16)))
	bd.Set(attributes.ContextProxyErrorCode, attributes.String("-"))
	return bd.Build()
}

// BenchmarkReportSidecar is BenchmarkReportIstio's handler with
// sidecarRecord's batches: most of each record is read by no metric.
func BenchmarkReportSidecar(b *testing.B) {
	bags := make([]attributes.Bag, 100)
	for i := range bags {
		bags[i] = sidecarRecord(i)
	}
	data, err := proto.Marshal(attributes.EncodeReport(bags, mixerv1.ReportRequest_DELTA_ENCODING, attributes.GlobalWordCount()))
	if err != nil {
		b.Fatal(err)
	}
	m := &mixerService{s: benchServer(b)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.reportWire(ctx, data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(bags))/b.Elapsed().Seconds(), "records/s")
}
