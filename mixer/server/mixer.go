package server

import (
	"context"
	"errors"
	"sort"
	"sync"

	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/policy"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// mixerService implements istio.mixer.v1.Mixer.
type mixerService struct {
	mixerv1.UnimplementedMixerServer
	s *Server

	infoOnce sync.Once
	info     *grpc.UnaryServerInfo // Check's, for the interceptors
}

// Check decodes the request's attributes, evaluates the policy and, when
// the request is allowed, allocates its quotas.
//
// A malformed request is INVALID_ARGUMENT. A policy that cannot be
// evaluated (not loaded: UNAVAILABLE; evaluation error: INTERNAL) is an
// RPC error rather than a precondition status, so that the client applies
// its network fail policy (fail-open or fail-close) exactly as when the
// server is unreachable, and caches nothing. A denial is a successful RPC
// whose precondition status is PERMISSION_DENIED.
//
// The response may be shared with other answers of the same cached
// decision: the caller must not modify it.
func (m *mixerService) Check(ctx context.Context, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
	s := m.s
	gwc := req.GetGlobalWordCount()
	bag, err := attributes.Decompress(req.GetAttributes(), gwc)
	if err != nil {
		s.metrics.decodeErrors.WithLabelValues("check").Inc()
		return nil, status.Error(codes.InvalidArgument, "mixer: check: "+err.Error())
	}
	resp, err := m.check(ctx, bag, gwc, req.GetQuotas())
	if err != nil {
		return nil, err
	}
	if r, ok := resp.(*rawResponse); ok {
		return r.msg.(*mixerv1.CheckResponse), nil
	}
	return resp.(*mixerv1.CheckResponse), nil
}

// check answers a decoded Check request: a *mixerv1.CheckResponse, or the
// *rawResponse rendered once for a cached decision and reused.
func (m *mixerService) check(ctx context.Context, bag attributes.Bag, gwc uint32, quotas map[string]*mixerv1.CheckRequest_QuotaParams) (any, error) {
	s := m.s
	bag = s.withPeerPrincipal(ctx, bag)
	d, err := s.evaluate(ctx, "mixer", bag)
	if err != nil {
		return nil, err
	}
	// An allowed answer without quotas depends on the decision and the
	// peer's word count only (a denial names the per-answer decision ID):
	// rendered once per cached decision.
	reuse := d.Allowed && len(quotas) == 0
	if reuse {
		if r, ok := d.Rendered(policy.RenderMixer, uint64(gwc)).(*rawResponse); ok {
			return r, nil
		}
	}
	resp := &mixerv1.CheckResponse{Precondition: precondition(d, gwc)}
	if reuse {
		if data, err := proto.Marshal(resp); err == nil {
			d.SetRendered(policy.RenderMixer, uint64(gwc), newRawResponse(data, resp))
		}
		return resp, nil
	}
	if d.Allowed && len(quotas) > 0 {
		resp.Quotas = make(map[string]*mixerv1.CheckResponse_QuotaResult, len(quotas))
		names := make([]string, 0, len(quotas))
		for name := range quotas {
			names = append(names, name)
		}
		sort.Strings(names) // a stable charging order
		for _, name := range names {
			qp := quotas[name]
			r := s.quotas.Alloc(name, bag, qp.GetAmount(), qp.GetBestEffort())
			label := name
			if !s.quotas.Has(name) {
				label = "" // unconfigured names do not create label values
			}
			s.metrics.quotas.WithLabelValues(label, r.Outcome.String()).Inc()
			resp.Quotas[name] = r.Proto(gwc)
		}
	}
	return resp, nil
}

// precondition renders a decision for a peer knowing gwc global words.
// A cacheable decision carries the policy's validity; another one is valid
// for the asking call only: valid_use_count 1 and a zero valid_duration,
// which Istio's check cache treats as already expired.
func precondition(d *policy.Decision, gwc uint32) *mixerv1.CheckResponse_PreconditionResult {
	pr := &mixerv1.CheckResponse_PreconditionResult{
		Status:               &rpcstatus.Status{Code: int32(code.Code_OK)},
		ValidDuration:        durationpb.New(0),
		ValidUseCount:        1,
		ReferencedAttributes: d.ReferencedAttributes(gwc),
		RouteDirective:       d.RouteDirective(),
	}
	if d.Cacheable {
		pr.ValidDuration = durationpb.New(d.ValidDuration)
		pr.ValidUseCount = d.ValidUseCount
	}
	if !d.Allowed {
		pr.Status = &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED), Message: denyMessage(d)}
	}
	return pr
}

func denyMessage(d *policy.Decision) string {
	msg := "mixer: denied by policy"
	if d.ID != "" {
		msg += " (decision " + d.ID + ")"
	}
	if d.Body != "" {
		msg += ": " + d.Body
	}
	return msg
}

// Report decoding.
//
// A Report batch is decoded straight from its wire bytes by
// attributes.ReportDecoder (protowire, no generated maps, no allocation per
// record), not through the generated ReportRequest. To get the bytes, the
// Mixer service is registered with mixerServiceDesc instead of the
// generated descriptor: its Report handler asks the codec for a *rawReport,
// and the server's codec, serverCodec, is grpc's proto codec except that it
// fills a *rawReport with the message bytes as they came. Every other
// message (Check, ext_authz, health, reflection) goes through the proto
// codec unchanged; only the Report method's handler asks for raw bytes, so
// a codec that is per server rather than per method changes nothing else.
// The interceptors see a *rawReport as the request.

// rawReport is an istio.mixer.v1.ReportRequest left in its wire form.
// data is valid until free: it is usually grpc's own receive buffer, not a
// copy.
type rawReport struct {
	data []byte
	buf  mem.Buffer
}

// free gives the request's buffer back to grpc's pool; data must no longer
// be used.
func (r *rawReport) free() {
	if r.buf != nil {
		r.buf.Free()
		r.buf, r.data = nil, nil
	}
}

// serverCodec is the server's codec: grpc's proto codec, which hands a
// *rawReport the request bytes undecoded.
type serverCodec struct {
	encoding.CodecV2
}

func newServerCodec() serverCodec {
	return serverCodec{encoding.GetCodecV2(grpcproto.Name)}
}

// Unmarshal implements encoding.CodecV2. A *rawReport takes a reference to
// the received buffer when the message arrived in one (the usual case),
// and a pooled copy otherwise; its handler frees it. A *checkCall decodes
// the request (see Check decoding), as does an *authzCall (see ext_authz
// Check decoding).
func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch r := v.(type) {
	case *rawReport:
		r.buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
		r.data = r.buf.ReadOnlyData()
		return nil
	case *checkCall:
		return r.unmarshal(data, c.CodecV2)
	case *authzCall:
		return r.unmarshal(data, c.CodecV2)
	}
	return c.CodecV2.Unmarshal(data, v)
}

// Marshal implements encoding.CodecV2: a *rawResponse is its bytes,
// shared and never modified; a *deniedAnswer is written from its
// rendering (see Denied ext_authz answers); anything else goes through
// the proto codec.
func (c serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch r := v.(type) {
	case *rawResponse:
		return r.out, nil
	case *deniedAnswer:
		return r.marshal(), nil
	}
	return c.CodecV2.Marshal(v)
}

// mixerServiceDesc is istio.mixer.v1.Mixer as mixerv1.Mixer_ServiceDesc
// describes it, with a Report handler that takes the request undecoded.
var mixerServiceDesc = grpc.ServiceDesc{
	ServiceName: "istio.mixer.v1.Mixer",
	HandlerType: (*mixerv1.MixerServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Check", Handler: checkHandler},
		{MethodName: "Report", Handler: reportHandler},
	},
	Streams:  []grpc.StreamDesc{},
	Metadata: "mixer/v1/mixer.proto",
}

// registerMixer registers m on s for both Mixer methods.
func registerMixer(s *grpc.Server, m *mixerService) { s.RegisterService(&mixerServiceDesc, m) }

// checkHandler is the generated Check handler's equivalent, for requests
// decoded by the codec into a pooled *checkCall (see Check decoding).
func checkHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	c := checkCalls.Get().(*checkCall)
	defer c.release() // the answer refers to nothing in c
	if err := dec(c); err != nil {
		return nil, err
	}
	m := srv.(*mixerService)
	if interceptor == nil {
		return m.checkCall(ctx, c)
	}
	return interceptor(ctx, c, m.checkInfo(), m.checkUnary)
}

// checkInfo is the interceptors' description of Check, built once.
func (m *mixerService) checkInfo() *grpc.UnaryServerInfo {
	m.infoOnce.Do(func() {
		m.info = &grpc.UnaryServerInfo{Server: m, FullMethod: mixerv1.Mixer_Check_FullMethodName}
	})
	return m.info
}

// checkUnary is the interceptors' handler of Check; req is a *checkCall.
func (m *mixerService) checkUnary(ctx context.Context, req any) (any, error) {
	return m.checkCall(ctx, req.(*checkCall))
}

// checkCall answers a request as the codec decoded it.
func (m *mixerService) checkCall(ctx context.Context, c *checkCall) (any, error) {
	if c.req != nil {
		return m.Check(ctx, c.req)
	}
	return m.check(ctx, c.bag, c.gwc, nil)
}

// reportHandler receives the request as a *rawReport.
func reportHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(rawReport)
	defer in.free() // the handler has returned: telemetry copied what it keeps
	if err := dec(in); err != nil {
		return nil, err
	}
	m := srv.(*mixerService)
	if interceptor == nil {
		return m.reportWire(ctx, in.data)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: mixerv1.Mixer_Report_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return m.reportWire(ctx, req.(*rawReport).data)
	})
}

// reportDecoders pools the decoders of Report batches; a decoder's buffers
// grow to the largest batch it has seen.
var reportDecoders = sync.Pool{New: func() any { return new(attributes.ProjectionDecoder) }}

// Report is the MixerServer method for callers holding a decoded request
// (the gRPC server itself uses reportWire): it re-encodes the request and
// takes the same path.
func (m *mixerService) Report(ctx context.Context, req *mixerv1.ReportRequest) (*mixerv1.ReportResponse, error) {
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "mixer: report: "+err.Error())
	}
	return m.reportWire(ctx, data)
}

// reportWire decodes every record of the batch in data (a ReportRequest's
// wire bytes) and feeds them to telemetry. Only the attributes the metrics
// read are decoded (attributes.ProjectionDecoder), but every record is
// checked whole: a batch with a malformed record is rejected whole with
// INVALID_ARGUMENT naming the record, so that nothing is counted twice when
// the client fixes and resends it. The values live in the pooled decoder's
// storage and refer to data; telemetry copies what it keeps.
func (m *mixerService) reportWire(_ context.Context, data []byte) (*mixerv1.ReportResponse, error) {
	s := m.s
	d := reportDecoders.Get().(*attributes.ProjectionDecoder)
	defer func() {
		d.Reset()
		reportDecoders.Put(d)
	}()
	// Only the attributes the metrics read are decoded (every record is
	// checked whole). The values refer to data, which stays unmodified
	// until this returns (reportHandler frees it afterwards); telemetry
	// copies what it keeps.
	rows, n, err := d.Decode(data, s.tel.Projection())
	if err != nil {
		s.metrics.decodeErrors.WithLabelValues("report").Inc()
		return nil, status.Error(codes.InvalidArgument, "mixer: report: "+err.Error())
	}
	s.tel.RecordRows(rows, n)
	s.metrics.records.Add(float64(n))
	return emptyReportResponse, nil
}

// emptyReportResponse is every Report's answer; it is only ever read.
var emptyReportResponse = &mixerv1.ReportResponse{}

// withPeerPrincipal sets the configured principal attribute to the
// caller's verified certificate identity, or removes it when there is none:
// the attribute is the server's to set, so a caller can never claim an
// identity through its attributes.
func (s *Server) withPeerPrincipal(ctx context.Context, bag attributes.Bag) attributes.Bag {
	p := peerPrincipal(ctx)
	v, sent := bag.Get(s.principalAttr)
	switch {
	case p == "" && !sent:
		return bag
	case p != "" && sent && v.Kind() == attributes.KindString && v.StringValue() == p:
		return bag
	}
	bd := attributes.NewBuilderFrom(bag, 1)
	if p == "" {
		bd.Delete(s.principalAttr)
	} else {
		bd.Set(s.principalAttr, attributes.String(p))
	}
	return bd.Build()
}

// evaluate runs the policy and maps its failure to an RPC status.
func (s *Server) evaluate(ctx context.Context, api string, bag attributes.Bag) (*policy.Decision, error) {
	if s.hook != nil {
		s.hook(ctx)
	}
	d, err := s.eval.Eval(ctx, bag)
	if err != nil {
		s.metrics.decision(api, "error")
		switch {
		case errors.Is(err, policy.ErrNotReady), errors.Is(err, policy.ErrClosed):
			return nil, status.Error(codes.Unavailable, "mixer: "+err.Error())
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			if ctx.Err() != nil {
				return nil, status.FromContextError(ctx.Err()).Err()
			}
		}
		s.log.Debug("policy evaluation failed", zap.String("api", api), zap.Error(err))
		return nil, status.Error(codes.Internal, "mixer: "+err.Error())
	}
	result := "deny"
	if d.Allowed {
		result = "allow"
	}
	s.metrics.decision(api, result)
	return d, nil
}
