package server

import (
	"context"
	"testing"

	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/mixer/quota"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// fuzzServer is a server with the RBAC policy whose handlers are called
// directly, without sockets, so that fuzzing is fast.
func fuzzServer(f *testing.F) *Server {
	cfg := policyConfig(rbacPolicy)
	cfg.Quotas = []quota.Config{{Name: "rq", MaxAmount: 100, Dimensions: map[string]string{"p": "request.path"}}}
	s, err := New(context.Background(), cfg, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	return s
}

// allowedCode reports whether a handler error is one of the statuses it
// may answer a client with.
func allowedCode(err error) bool {
	switch status.Code(err) {
	case codes.OK, codes.InvalidArgument, codes.Internal:
		return true
	}
	return false
}

func FuzzCheck(f *testing.F) {
	s := fuzzServer(f)
	m := &mixerService{s: s}
	seed := checkRequest("GET", "/public/x", headers("x-role", "admin"))
	seed.Quotas = map[string]*mixerv1.CheckRequest_QuotaParams{"rq": {Amount: 2, BestEffort: true}}
	b, _ := proto.Marshal(seed)
	f.Add(b)
	b, _ = proto.Marshal(&mixerv1.CheckRequest{GlobalWordCount: 9999})
	f.Add(b)
	f.Add([]byte{0x0a, 0x04, 0x12, 0x02, 0x08, 0x7f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req mixerv1.CheckRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return
		}
		resp, err := m.Check(context.Background(), &req)
		if !allowedCode(err) {
			t.Fatalf("unexpected status %v", err)
		}
		if err == nil {
			if _, err := proto.Marshal(resp); err != nil {
				t.Fatalf("response does not marshal: %v", err)
			}
		}
	})
}

func FuzzReport(f *testing.F) {
	s := fuzzServer(f)
	m := &mixerService{s: s}
	gwc := attributes.GlobalWordCount()
	bags := []attributes.Bag{
		attributes.BagOf(map[string]attributes.Value{attributes.ContextProtocol: attributes.String("http"), attributes.ResponseCode: attributes.Int64(200)}),
		attributes.BagOf(map[string]attributes.Value{attributes.ContextProtocol: attributes.String("tcp"), attributes.ConnectionEvent: attributes.String("open")}),
	}
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{0, 1} {
		b, _ := proto.Marshal(attributes.EncodeReport(bags, sem, gwc))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req mixerv1.ReportRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return
		}
		if _, err := m.Report(context.Background(), &req); !allowedCode(err) {
			t.Fatalf("unexpected status %v", err)
		}
	})
}

func FuzzExtAuthzCheck(f *testing.F) {
	s := fuzzServer(f)
	a := &authzService{s: s}
	b, _ := proto.Marshal(authzRequest("GET", "/public/x?a=b", map[string]string{"x-role": "admin", "content-type": "application/json"}))
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var req authv3.CheckRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return
		}
		if _, err := a.Check(context.Background(), &req); !allowedCode(err) {
			t.Fatalf("unexpected status %v", err)
		}
	})
}
