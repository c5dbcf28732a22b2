package server

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
)

// echoPolicy allows every request but DELETE and returns its whole input
// as dynamic metadata, so that any difference in the attribute bag the
// server built shows in the answer.
const echoPolicy = `package envoy.authz

import rego.v1

default allow := false

allow := {"allowed": true, "dynamic_metadata": {"input": input}} if input.attributes.request.http.method != "DELETE"
`

func authzPeer(ip string, port uint32, principal string, labels map[string]string) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
		Principal: principal, Labels: labels,
	}
}

// envoyAuthzRequest is a CheckRequest shaped as Envoy's ext_authz filter
// sends it.
func envoyAuthzRequest(method string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      authzPeer("10.0.0.1", 51000, "spiffe://cluster.local/ns/a/sa/b", map[string]string{"app": "a"}),
		Destination: authzPeer("10.0.0.2", 8080, "", nil),
		Request: &authv3.AttributeContext_Request{
			Time: &timestamppb.Timestamp{Seconds: 1700000000, Nanos: 5},
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "7", Method: method, Path: "/private/x?y=1", Host: "example.com", Scheme: "http",
				Protocol: "HTTP/1.1", Size: 5, Body: "hello",
				Headers: map[string]string{":authority": "example.com", "user-agent": "curl", "x-role": "admin"},
			},
		},
		ContextExtensions: map[string]string{"route": "r1"},
		MetadataContext:   &corev3.Metadata{},
		TlsSession:        &authv3.AttributeContext_TLSSession{Sni: "example.com"},
	}}
}

// TestAuthzWireMatchesGenerated: over gRPC, the server decodes ext_authz
// Check requests from the wire (or, for the shapes its decoder declines,
// with the generated types) and answers repeated ones from the decision
// cache; every answer must equal the one the generated path
// (authzService.Check on the unmarshalled request, no decision cache)
// gives. The echo policy puts the whole input in the answer.
func TestAuthzWireMatchesGenerated(t *testing.T) {
	ts := start(t, policyConfig(echoPolicy), Options{}, nil)
	refCfg := policyConfig(echoPolicy)
	refCfg.Policy.DecisionCache.Disabled = true
	ref, err := New(context.Background(), refCfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	refAuthz := &authzService{s: ref}
	normalize := func(r *authv3.CheckResponse) *authv3.CheckResponse {
		r = proto.Clone(r).(*authv3.CheckResponse)
		if st := r.GetStatus(); st != nil {
			st.Message = decisionID.ReplaceAllString(st.Message, "(decision)")
		}
		return r
	}

	grpcReq := envoyAuthzRequest("POST")
	grpcReq.Attributes.Request.Http.Headers["content-type"] = "application/grpc"
	headerMap := envoyAuthzRequest("GET")
	headerMap.Attributes.Request.Http.Headers = nil
	headerMap.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "User-Agent", Value: "curl"}, {Key: "x-a", Value: "1"}, {Key: "X-A", RawValue: []byte("2")}}}
	md, err := structpb.NewStruct(map[string]any{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	metadata := envoyAuthzRequest("GET")
	metadata.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"f": md}}
	ipv6 := envoyAuthzRequest("GET")
	ipv6.Attributes.Source = authzPeer("::ffff:10.1.2.3", 1, "", map[string]string{"x": ""})
	tests := []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{"envoy", envoyAuthzRequest("GET")},
		{"denied", envoyAuthzRequest("DELETE")},
		{"grpc", grpcReq},
		{"ipv6", ipv6},
		{"header_map", headerMap},
		{"metadata (generated path)", metadata},
		{"minimal", authzRequest("GET", "/", nil)},
		{"empty", &authv3.CheckRequest{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := refAuthz.Check(ctxT(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if allowed := want.GetOkResponse() != nil; allowed && want.GetDynamicMetadata().GetFields()["input"] == nil {
				t.Fatalf("the echo policy did not echo: %v", want)
			}
			for i := range 3 { // a miss, then answers from the cache
				got, err := ts.authz.Check(ctxT(t), tt.req)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if !proto.Equal(normalize(got), normalize(want)) {
					t.Fatalf("call %d:\n got %v\nwant %v", i, got, want)
				}
			}
		})
	}
}

// TestAuthzWireMalformed: bytes that are not a CheckRequest fail as they
// did with the generated handler, with grpc's unmarshalling error.
func TestAuthzWireMalformed(t *testing.T) {
	ts := start(t, policyConfig(echoPolicy), Options{}, nil)
	valid, err := proto.Marshal(envoyAuthzRequest("GET"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"truncated", valid[:len(valid)-2]},
		{"bad tag", []byte{0x00, 0x01}},
		// attributes { request { http { method: "\xff" } } }
		{"method not UTF-8", []byte{0x0a, 0x07, 0x22, 0x05, 0x12, 0x03, 0x12, 0x01, 0xff}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			uerr := proto.Unmarshal(tt.data, new(authv3.CheckRequest))
			if uerr == nil {
				t.Fatal("the generated code accepts the request")
			}
			want := status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", uerr)
			var out authv3.CheckResponse
			err := ts.conn.Invoke(ctxT(t), authv3.Authorization_Check_FullMethodName, &tt.data, &out, grpc.ForceCodecV2(rawCheckCodec{}))
			if status.Code(err) != codes.Internal || err.Error() != want.Error() {
				t.Fatalf("error %v, want %v", err, want)
			}
		})
	}
}

// FuzzExtAuthzWire runs arbitrary bytes through the server's ext_authz
// handler and codec, as grpc does, twice (the second answer may come from
// the decision cache), and checks them against the generated path: the
// same unmarshalling error when proto.Unmarshal rejects the bytes, else
// the answer (or the error) authzService.Check gives for the unmarshalled
// request (but for the decision ID). The echo policy puts the whole input in the
// answer, so any difference in the bag shows.
func FuzzExtAuthzWire(f *testing.F) {
	cfg := policyConfig(echoPolicy)
	s, err := New(context.Background(), cfg, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	a := &authzService{s: s}
	for _, req := range []*authv3.CheckRequest{envoyAuthzRequest("GET"), envoyAuthzRequest("DELETE"), authzRequest("GET", "/", nil), {}} {
		data, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	codec := newServerCodec()
	normalize := func(r *authv3.CheckResponse) *authv3.CheckResponse {
		if st := r.GetStatus(); st != nil {
			st.Message = decisionID.ReplaceAllString(st.Message, "(decision)")
		}
		return r
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := mem.BufferSlice{mem.SliceBuffer(data)}
		dec := func(v any) error { return codec.Unmarshal(in, v) }
		var req authv3.CheckRequest
		uerr := codec.CodecV2.Unmarshal(in, &req)
		var want *authv3.CheckResponse
		var werr error // the generated path's evaluation error
		if uerr == nil {
			w, err := a.Check(context.Background(), &req)
			if err != nil {
				werr = err
			} else {
				want = normalize(proto.Clone(w).(*authv3.CheckResponse))
			}
		}
		for i := range 2 {
			resp, err := authzCheckHandler(a, context.Background(), dec, nil)
			if uerr != nil {
				if err == nil || err.Error() != uerr.Error() {
					t.Fatalf("call %d: error %v, want %v", i, err, uerr)
				}
				continue
			}
			if werr != nil || err != nil {
				if err == nil || werr == nil || err.Error() != werr.Error() {
					t.Fatalf("call %d: error %v, want %v", i, err, werr)
				}
				continue
			}
			out, err := codec.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			got := new(authv3.CheckResponse)
			err = proto.Unmarshal(out.Materialize(), got)
			out.Free()
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(normalize(got), want) {
				t.Fatalf("call %d:\n got %v\nwant %v", i, got, want)
			}
		}
	})
}
