package server

import (
	"context"
	"errors"
	"sort"

	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/policy"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// mixerService implements istio.mixer.v1.Mixer.
type mixerService struct {
	mixerv1.UnimplementedMixerServer
	s *Server
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
func (m *mixerService) Check(ctx context.Context, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
	s := m.s
	gwc := req.GetGlobalWordCount()
	bag, err := attributes.Decompress(req.GetAttributes(), gwc)
	if err != nil {
		s.metrics.decodeErrors.WithLabelValues("check").Inc()
		return nil, status.Error(codes.InvalidArgument, "mixer: check: "+err.Error())
	}
	bag = s.withPeerPrincipal(ctx, bag)
	d, err := s.evaluate(ctx, "mixer", bag)
	if err != nil {
		return nil, err
	}
	resp := &mixerv1.CheckResponse{Precondition: precondition(d, gwc)}
	if d.Allowed && len(req.GetQuotas()) > 0 {
		resp.Quotas = make(map[string]*mixerv1.CheckResponse_QuotaResult, len(req.GetQuotas()))
		names := make([]string, 0, len(req.GetQuotas()))
		for name := range req.GetQuotas() {
			names = append(names, name)
		}
		sort.Strings(names) // a stable charging order
		for _, name := range names {
			qp := req.GetQuotas()[name]
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

// Report decodes every record of the batch and feeds them to telemetry. A
// batch with a malformed record is rejected whole with INVALID_ARGUMENT
// naming the record, so that nothing is counted twice when the client
// fixes and resends it.
func (m *mixerService) Report(_ context.Context, req *mixerv1.ReportRequest) (*mixerv1.ReportResponse, error) {
	s := m.s
	bags, err := attributes.DecodeReport(req)
	if err != nil {
		s.metrics.decodeErrors.WithLabelValues("report").Inc()
		return nil, status.Error(codes.InvalidArgument, "mixer: report: "+err.Error())
	}
	s.tel.RecordBatch(bags)
	s.metrics.records.Add(float64(len(bags)))
	return &mixerv1.ReportResponse{}, nil
}

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
