package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
	typev3 "github.com/remora-mesh/remora/proto/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/policy"
)

// authzService implements envoy.service.auth.v3.Authorization, so that
// Envoy's ext_authz filter (and Remora's) can ask this server.
type authzService struct {
	authv3.UnimplementedAuthorizationServer
	s *Server

	infoOnce sync.Once
	info     *grpc.UnaryServerInfo // Check's, for the interceptors
}

// authzServiceDesc is envoy.service.auth.v3.Authorization as the generated
// descriptor describes it, with a Check handler that may answer with a
// *rawResponse (an allowed answer of a cached decision, marshalled once).
var authzServiceDesc = grpc.ServiceDesc{
	ServiceName: "envoy.service.auth.v3.Authorization",
	HandlerType: (*authv3.AuthorizationServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Check", Handler: authzCheckHandler}},
	Streams:     []grpc.StreamDesc{},
	Metadata:    "envoy/service/auth/v3/external_auth.proto",
}

// registerAuthz registers a on s.
func registerAuthz(s *grpc.Server, a *authzService) { s.RegisterService(&authzServiceDesc, a) }

// authzCheckHandler is the generated Check handler's equivalent, for
// requests decoded by the codec into a pooled *authzCall (see ext_authz
// Check decoding).
func authzCheckHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	c := authzCalls.Get().(*authzCall)
	defer c.release() // the answer refers to nothing in c
	if err := dec(c); err != nil {
		return nil, err
	}
	a := srv.(*authzService)
	if interceptor == nil {
		return a.check(ctx, c.attributes())
	}
	return interceptor(ctx, c, a.checkInfo(), a.checkUnary)
}

// checkInfo is the interceptors' description of Check, built once.
func (a *authzService) checkInfo() *grpc.UnaryServerInfo {
	a.infoOnce.Do(func() {
		a.info = &grpc.UnaryServerInfo{Server: a, FullMethod: authv3.Authorization_Check_FullMethodName}
	})
	return a.info
}

// checkUnary is the interceptors' handler of Check; req is an *authzCall.
func (a *authzService) checkUnary(ctx context.Context, req any) (any, error) {
	return a.check(ctx, req.(*authzCall).attributes())
}

// Check evaluates the policy on the request's attribute context. An
// evaluation failure is an RPC error, which Envoy handles by its
// failure_mode_allow setting; a denial is an OK RPC with a DeniedHttpResponse.
//
// The response may be shared with other answers of the same cached
// decision: the caller must not modify it.
func (a *authzService) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	resp, err := a.check(ctx, policy.BagFromCheckRequest(req))
	if err != nil {
		return nil, err
	}
	switch r := resp.(type) {
	case *rawResponse:
		return r.msg.(*authv3.CheckResponse), nil
	case *deniedAnswer:
		return authzResponse(r.d)
	}
	return resp.(*authv3.CheckResponse), nil
}

// check answers the request whose attributes are bag: a
// *authv3.CheckResponse, the *rawResponse rendered once for an allowed
// cached decision (an allowed answer does not name the decision ID) and
// reused, or a *deniedAnswer for a denial of a cached decision whose
// deniedRendering is ready. The answer refers to nothing in bag.
func (a *authzService) check(ctx context.Context, bag attributes.Bag) (any, error) {
	s := a.s
	bag = s.withPeerPrincipal(ctx, bag)
	d, err := s.evaluate(ctx, "ext_authz", bag)
	if err != nil {
		return nil, err
	}
	switch r := d.Rendered(policy.RenderExtAuthz, 0).(type) {
	case *rawResponse:
		if d.Allowed {
			return r, nil
		}
	case *deniedRendering:
		if !d.Allowed {
			return &deniedAnswer{r: r, d: d}, nil
		}
	}
	resp, err := authzResponse(d)
	if err != nil {
		s.metrics.decision("ext_authz", "error")
		return nil, status.Error(codes.Internal, "mixer: ext_authz: "+err.Error())
	}
	if d.Allowed {
		if data, err := proto.Marshal(resp); err == nil {
			d.SetRendered(policy.RenderExtAuthz, 0, newRawResponse(data, resp))
		}
	} else if r, err := newDeniedRendering(resp); err == nil {
		d.SetRendered(policy.RenderExtAuthz, 0, r)
	}
	return resp, nil
}

// authzResponse renders a decision as Envoy expects it: allowed requests
// get OkHttpResponse header mutations, denied ones a DeniedHttpResponse
// with http_status (403 by default), headers and body. Dynamic metadata
// goes to CheckResponse.dynamic_metadata.
func authzResponse(d *policy.Decision) (*authv3.CheckResponse, error) {
	resp := &authv3.CheckResponse{}
	if len(d.DynamicMetadata) > 0 {
		md, err := toStruct(d.DynamicMetadata)
		if err != nil {
			return nil, fmt.Errorf("dynamic_metadata: %w", err)
		}
		resp.DynamicMetadata = md
	}
	if d.Allowed {
		ok := &authv3.OkHttpResponse{HeadersToRemove: d.RequestHeadersToRemove}
		seen := map[string]bool{}
		for _, h := range d.Headers {
			// The first value of a name replaces the request's header,
			// later values of the same name are appended to it.
			action := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			if seen[http.CanonicalHeaderKey(h.Key)] {
				action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
			}
			seen[http.CanonicalHeaderKey(h.Key)] = true
			ok.Headers = append(ok.Headers, headerOption(h, action))
		}
		for _, h := range d.ResponseHeadersToAdd {
			ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, headerOption(h, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD))
		}
		resp.Status = &rpcstatus.Status{Code: int32(code.Code_OK)}
		resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: ok}
		return resp, nil
	}
	httpStatus := d.HTTPStatus
	if httpStatus == 0 {
		httpStatus = http.StatusForbidden
	}
	denied := &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
		Body:   d.Body,
	}
	for _, h := range d.Headers {
		denied.Headers = append(denied.Headers, headerOption(h, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD))
	}
	resp.Status = &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED), Message: denyMessage(d)}
	resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied}
	return resp, nil
}

func headerOption(h policy.HeaderValue, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: h.Key, Value: h.Value}, AppendAction: action}
}

// toStruct converts decoded JSON (json.Number for numbers) to a Struct.
func toStruct(m map[string]any) (*structpb.Struct, error) {
	return structpb.NewStruct(normalizeJSON(m).(map[string]any))
}

func normalizeJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return x.String()
		}
		return f
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalizeJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeJSON(e)
		}
		return out
	}
	return v
}
