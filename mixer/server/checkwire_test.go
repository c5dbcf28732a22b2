package server

import (
	"context"
	"regexp"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/attributes"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// decisionID matches the per-answer decision ID in a deny message.
var decisionID = regexp.MustCompile(`\(decision [^)]*\)`)

// sameCheckResponse compares two answers but for their decision IDs.
func sameCheckResponse(a, b *mixerv1.CheckResponse) bool {
	a, b = proto.Clone(a).(*mixerv1.CheckResponse), proto.Clone(b).(*mixerv1.CheckResponse)
	for _, r := range []*mixerv1.CheckResponse{a, b} {
		if st := r.GetPrecondition().GetStatus(); st != nil {
			st.Message = decisionID.ReplaceAllString(st.Message, "(decision)")
		}
	}
	return proto.Equal(a, b)
}

// TestCheckWireMatchesGenerated: over gRPC, the server decodes Check
// requests from the wire and answers repeated ones from the decision
// cache with a response rendered once; every answer must equal the one
// the generated path (proto.Unmarshal, Check, no decision cache) gives.
func TestCheckWireMatchesGenerated(t *testing.T) {
	ts := start(t, policyConfig(rbacPolicy), Options{}, nil)
	refCfg := policyConfig(rbacPolicy)
	refCfg.Policy.DecisionCache.Disabled = true
	ref, err := New(context.Background(), refCfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	refMixer := &mixerService{s: ref}

	older := checkRequest("POST", "/private/x", headers("x-role", "admin"))
	older.Attributes = attributes.Compress(attributes.BagOf(map[string]attributes.Value{
		attributes.RequestMethod:  attributes.String("POST"),
		attributes.RequestPath:    attributes.String("/private/x"),
		attributes.RequestHeaders: headers("x-role", "admin"),
	}), 20)
	older.GlobalWordCount = 20
	quotas := checkRequest("GET", "/public/a", headers())
	quotas.Quotas = map[string]*mixerv1.CheckRequest_QuotaParams{"requestcount": {Amount: 1}}
	tests := []struct {
		name string
		req  *mixerv1.CheckRequest
	}{
		{"admin", checkRequest("POST", "/private/x", headers("x-role", "admin", "accept", "*/*"))},
		{"public", checkRequest("GET", "/public/a", headers())},
		{"denied", checkRequest("POST", "/private/x", headers("x-role", "guest"))},
		{"older peer", older},
		{"quotas", quotas},
		{"dedup id", &mixerv1.CheckRequest{Attributes: checkRequest("GET", "/public/b", headers()).Attributes,
			GlobalWordCount: attributes.GlobalWordCount(), DeduplicationId: "d-1"}},
		{"empty", &mixerv1.CheckRequest{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := refMixer.Check(ctxT(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 { // a miss, then answers from the cache
				got, err := ts.mixer.Check(ctxT(t), tt.req)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if !sameCheckResponse(got, want) {
					t.Fatalf("call %d:\n got %v\nwant %v", i, got, want)
				}
			}
		})
	}
}

// rawCheckCodec sends a []byte request as it is and decodes the response
// as a CheckResponse.
type rawCheckCodec struct{}

func (rawCheckCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCheckCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}
func (rawCheckCodec) Name() string { return "proto" }

// TestCheckWireMalformed: bytes that are not a CheckRequest fail as they
// did with the generated handler, with grpc's unmarshalling error.
func TestCheckWireMalformed(t *testing.T) {
	ts := start(t, policyConfig(rbacPolicy), Options{}, nil)
	valid, err := proto.Marshal(checkRequest("POST", "/private/x", headers("x-role", "admin")))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"truncated", valid[:len(valid)-2]},
		{"bad tag", []byte{0x00, 0x01}},
		{"dedup id not UTF-8", []byte{0x1a, 0x02, 0xff, 0xfe}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			uerr := proto.Unmarshal(tt.data, new(mixerv1.CheckRequest))
			if uerr == nil {
				t.Fatal("the generated code accepts the request")
			}
			want := status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", uerr)
			var out mixerv1.CheckResponse
			err := ts.conn.Invoke(ctxT(t), mixerv1.Mixer_Check_FullMethodName, &tt.data, &out, grpc.ForceCodecV2(rawCheckCodec{}))
			if status.Code(err) != codes.Internal || err.Error() != want.Error() {
				t.Fatalf("error %v, want %v", err, want)
			}
		})
	}
}

// objectPolicy answers with an object decision: headers, removals,
// response headers and dynamic metadata when allowed, a 401 otherwise.
const objectPolicy = `package envoy.authz

import rego.v1

default allow := {"allowed": false, "http_status": 401, "body": "login", "headers": {"www-authenticate": "Bearer"}}

allow := {
	"allowed": true,
	"headers": {"x-user": input.attributes.request.http.headers["x-user"], "x-tags": ["a", "b"]},
	"request_headers_to_remove": ["authorization"],
	"response_headers_to_add": {"x-checked": "yes"},
	"dynamic_metadata": {"user": input.attributes.request.http.headers["x-user"], "level": 3, "nested": {"k": [1, "x"]}},
} if input.attributes.request.http.headers["x-user"]
`

// TestRenderedAnswersMatch: with the decision cache on, repeated requests
// are answered from a rendering made once per cached decision; over both
// APIs every answer must equal the one a server without the cache gives.
func TestRenderedAnswersMatch(t *testing.T) {
	ts := start(t, policyConfig(objectPolicy), Options{}, nil)
	refCfg := policyConfig(objectPolicy)
	refCfg.Policy.DecisionCache.Disabled = true
	ref, err := New(context.Background(), refCfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	refAuthz, refMixer := &authzService{s: ref}, &mixerService{s: ref}
	normalize := func(r *authv3.CheckResponse) *authv3.CheckResponse {
		r = proto.Clone(r).(*authv3.CheckResponse)
		if st := r.GetStatus(); st != nil {
			st.Message = decisionID.ReplaceAllString(st.Message, "(decision)")
		}
		return r
	}
	for _, user := range []string{"alice", "bob", ""} {
		t.Run("user="+user, func(t *testing.T) {
			hdrs := map[string]string{"authorization": "Bearer x"}
			mh := headers("authorization", "Bearer x")
			if user != "" {
				hdrs["x-user"] = user
				mh = headers("authorization", "Bearer x", "x-user", user)
			}
			areq, mreq := authzRequest("GET", "/", hdrs), checkRequest("GET", "/", mh)
			wantA, err := refAuthz.Check(ctxT(t), areq)
			if err != nil {
				t.Fatal(err)
			}
			wantM, err := refMixer.Check(ctxT(t), mreq)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				gotA, err := ts.authz.Check(ctxT(t), areq)
				if err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(normalize(gotA), normalize(wantA)) {
					t.Fatalf("ext_authz call %d:\n got %v\nwant %v", i, gotA, wantA)
				}
				gotM, err := ts.mixer.Check(ctxT(t), mreq)
				if err != nil {
					t.Fatal(err)
				}
				if !sameCheckResponse(gotM, wantM) {
					t.Fatalf("mixer call %d:\n got %v\nwant %v", i, gotM, wantM)
				}
			}
		})
	}
}
