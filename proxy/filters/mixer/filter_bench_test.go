package mixer

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
	"github.com/remora-mesh/remora/proxy/filter"
)

// cacheableServer is a real Mixer gRPC server on loopback that allows
// every request with a decision cacheable for an hour, keyed on
// request.url_path and request.headers[x-user], and drops reports.
type cacheableServer struct {
	mixerv1.UnimplementedMixerServer
	tb testing.TB
}

func (s cacheableServer) Check(_ context.Context, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
	if _, err := attributes.Decompress(req.Attributes, req.GlobalWordCount); err != nil {
		s.tb.Errorf("server: %v", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	enc := attributes.NewWordEncoder(req.GlobalWordCount)
	ra := &mixerv1.ReferencedAttributes{AttributeMatches: []*mixerv1.ReferencedAttributes_AttributeMatch{
		{Name: enc.Index(attributes.RequestURLPath), Condition: mixerv1.ReferencedAttributes_EXACT},
		{Name: enc.Index(attributes.RequestHeaders), MapKey: enc.Index("x-user"), Condition: mixerv1.ReferencedAttributes_EXACT},
	}}
	ra.Words = enc.Words()
	return &mixerv1.CheckResponse{Precondition: &mixerv1.CheckResponse_PreconditionResult{
		Status:               &rpcstatus.Status{},
		ValidDuration:        durationpb.New(time.Hour),
		ValidUseCount:        1 << 30,
		ReferencedAttributes: ra,
	}}, nil
}

func (cacheableServer) Report(context.Context, *mixerv1.ReportRequest) (*mixerv1.ReportResponse, error) {
	return &mixerv1.ReportResponse{}, nil
}

func startCacheableServer(tb testing.TB) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	// The server skips decoding report batches: the benchmark measures the
	// sidecar, and the in-process server shares its CPU and allocation counts.
	srv := grpc.NewServer(grpc.ForceServerCodecV2(skipReports{encoding.GetCodecV2(grpcproto.Name)}))
	mixerv1.RegisterMixerServer(srv, cacheableServer{tb: tb})
	go srv.Serve(lis)
	tb.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// skipReports is grpc's proto codec, except that report batches are not
// decoded.
type skipReports struct{ encoding.CodecV2 }

func (c skipReports) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(*mixerv1.ReportRequest); ok {
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

// streamCallbacks is the stream as the connection manager would show it to
// the filter: an inbound connection, no route, a context that never ends.
type streamCallbacks struct {
	info  *filter.StreamInfo
	reply *filter.LocalReply
}

func (c *streamCallbacks) Context() context.Context           { return context.Background() }
func (c *streamCallbacks) StreamInfo() *filter.StreamInfo     { return c.info }
func (c *streamCallbacks) Route() filter.Route                { return nil }
func (c *streamCallbacks) ClearRouteCache()                   {}
func (c *streamCallbacks) SendLocalReply(r filter.LocalReply) { c.reply = &r }
func (c *streamCallbacks) ContinueDecoding()                  {}
func (c *streamCallbacks) ContinueEncoding()                  {}
func (c *streamCallbacks) DecodingBuffer() []byte             { return nil }
func (c *streamCallbacks) Connection() filter.ConnectionInfo {
	return filter.ConnectionInfo{Direction: attributes.ReporterInbound}
}

// benchStream is one proxied request as the mixer filter and its
// access-log handler see it.
type benchStream struct {
	info     filter.StreamInfo
	req      filter.HeaderMap
	resp     filter.HeaderMap
	cb       streamCallbacks
	template []filter.HeaderField
}

func newBenchStream() *benchStream {
	s := &benchStream{template: []filter.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":path", Value: "/reviews/0?page=2"},
		{Name: ":authority", Value: "reviews:9080"}, {Name: ":scheme", Value: "http"},
		{Name: "user-agent", Value: "wrk"}, {Name: "accept", Value: "*/*"}, {Name: "x-user", Value: "alice"},
		{Name: "x-request-id", Value: "8f3c0a1e-2b4d-4c6e-9f70-1a2b3c4d5e6f"},
	}}
	s.cb.info = &s.info
	return s
}

// start resets the stream for the next request, as the manager does.
func (s *benchStream) start() {
	s.info.Reset()
	s.info.StartTime = time.Now()
	s.info.Protocol = filter.ProtocolHTTP11
	s.info.DownstreamRemoteAddress = netip.MustParseAddrPort("10.44.0.7:53412")
	s.info.DownstreamLocalAddress = netip.MustParseAddrPort("10.44.0.12:9080")
	s.req.Reset()
	for _, f := range s.template {
		s.req.Add(f.Name, f.Value)
	}
	s.resp.Reset()
	s.resp.Add(":status", "200")
	s.resp.Add("content-type", "text/html")
	s.resp.Add("content-length", "1024")
	s.info.RequestHeaders = &s.req
}

// finish ends the stream: response sent, access-log handler run.
func (s *benchStream) finish(log filter.AccessLogHandler) {
	s.info.ResponseHeaders = &s.resp
	s.info.ResponseCode = 200
	s.info.BytesSent = 1024
	s.info.LastDownstreamTxByteSent = 300 * time.Microsecond
	log.Log(&s.info)
}

func benchConfig(tb testing.TB, addr string) any {
	var node yaml.Node
	err := yaml.Unmarshal([]byte(`
server:
  address: `+addr+`
  check: {fail_policy: close}
  report: {max_batch_entries: 100, max_batch_time: 1s}
identity:
  uid: kubernetes://upstream-v1.default
  namespace: default
  workload: upstream-v1
  labels: {app: upstream, version: v1}
  service_host: upstream.default.svc.cluster.local
  service_name: upstream
`), &node)
	if err != nil {
		tb.Fatal(err)
	}
	var closers []func() error
	cfg, err := factory{}.ParseConfig(node.Content[0], filter.Env{Registry: prometheus.NewRegistry(), AddCloser: func(f func() error) { closers = append(closers, f) }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		for _, f := range closers {
			f()
		}
	})
	return cfg
}

// BenchmarkFilterStream is what the mixer filter costs one request with
// its check answered from the cache: DecodeHeaders (bag building, cache
// lookup), EncodeHeaders and the access-log handler (report bag, queueing).
func BenchmarkFilterStream(b *testing.B) {
	cfg := benchConfig(b, startCacheableServer(b))
	log := factory{}.NewLogHandler(cfg)
	s := newBenchStream()
	run := func() {
		s.start()
		f := factory{}.NewFilter(cfg, &s.cb)
		if st := f.DecodeHeaders(&s.req, true); st != filter.Continue {
			b.Fatalf("DecodeHeaders: %v (reply %+v)", st, s.cb.reply)
		}
		f.EncodeHeaders(&s.resp, false)
		s.finish(log)
	}
	run() // the first check reaches the server and fills the cache
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
}
