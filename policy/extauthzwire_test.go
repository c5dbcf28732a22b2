package policy

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/remora-mesh/remora/attributes"
	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
)

// authzOracle is the general path: proto.Unmarshal, then BagFromCheckRequest.
func authzOracle(data []byte) (attributes.Bag, error) {
	req := new(authv3.CheckRequest)
	if err := proto.Unmarshal(data, req); err != nil {
		return attributes.Bag{}, err
	}
	return BagFromCheckRequest(req), nil
}

// checkAuthzWire checks the decoder against the general path on data: when
// it accepts, the general path accepts and builds the same bag. It reports
// whether the decoder accepted.
func checkAuthzWire(t *testing.T, d *CheckRequestDecoder, data []byte) bool {
	t.Helper()
	want, err := authzOracle(data)
	got, ok := d.Decode(append([]byte(nil), data...))
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("decoder accepted a request proto.Unmarshal rejects (%v): %x", err, data)
	}
	if !got.Equal(want) {
		t.Fatalf("bags differ for %x\nwire:\n%v\ngenerated:\n%v", data, got, want)
	}
	return true
}

func socketPeer(ip string, port uint32, principal string, labels map[string]string) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
		Principal: principal,
		Labels:    labels,
		Service:   "svc",
	}
}

// envoyRequest is a CheckRequest shaped as Envoy's ext_authz filter sends it.
func envoyRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      socketPeer("10.0.0.1", 51000, "spiffe://cluster.local/ns/a/sa/b", map[string]string{"app": "a"}),
		Destination: socketPeer("10.0.0.2", 8080, "spiffe://cluster.local/ns/c/sa/d", nil),
		Request: &authv3.AttributeContext_Request{
			Time: &timestamppb.Timestamp{Seconds: 1700000000, Nanos: 123},
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "42", Method: "POST", Path: "/private/x?y=1", Host: "example.com", Scheme: "https",
				Protocol: "HTTP/1.1", Size: 12, Body: "hello",
				Headers: map[string]string{":authority": "example.com", "user-agent": "curl", "content-type": "application/grpc+proto", "x-role": "admin"},
			},
		},
		ContextExtensions: map[string]string{"route": "r1"},
		MetadataContext:   &corev3.Metadata{},
		TlsSession:        &authv3.AttributeContext_TLSSession{Sni: "example.com"},
	}}
}

func marshalAuthz(t testing.TB, req *authv3.CheckRequest) []byte {
	t.Helper()
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// authzWireCases are requests of every shape: accept says whether the
// decoder must decode them itself (the rest it must decline, or decode
// exactly as the general path would).
func authzWireCases(t testing.TB) []struct {
	name   string
	data   []byte
	accept bool
} {
	full := envoyRequest()
	minimal := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}}}}
	ipv6 := envoyRequest()
	ipv6.Attributes.Source = socketPeer("::ffff:10.1.2.3", 1, "", nil)
	ipv6.Attributes.Destination = socketPeer("fe80::1", 0, "", nil)
	badIP := envoyRequest()
	badIP.Attributes.Source = socketPeer("not-an-ip", 9, "p", nil)
	badTime := envoyRequest()
	badTime.Attributes.Request.Time = &timestamppb.Timestamp{Seconds: 1 << 60}
	rawBody := envoyRequest()
	rawBody.Attributes.Request.Http.RawBody = []byte{0xff, 0}
	rawBody.Attributes.Request.Http.Query, rawBody.Attributes.Request.Http.Fragment = "a=b", "f"
	headerMap := envoyRequest()
	headerMap.Attributes.Request.Http.Headers = nil
	headerMap.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "X-A", Value: "1"}, {Key: "user-agent", Value: "curl"}, {Key: "x-a", RawValue: []byte("2")},
		{Key: "content-type", Value: "application/grpc", RawValue: []byte("ignored")}, {Key: "x-b"}, {Key: "x-a", Value: "3"},
		{Key: "x-raw", RawValue: []byte{0xff}}}}
	bothHeaders := envoyRequest()
	bothHeaders.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x-not-used", Value: "1"}}}
	metadata := envoyRequest()
	md, _ := structpb.NewStruct(map[string]any{"k": "v"})
	metadata.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"f": md}}
	pipe := envoyRequest()
	pipe.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/s"}}}
	named := envoyRequest()
	named.Attributes.Source.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_NamedPort{NamedPort: "http"}
	emptyHTTP := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}}

	fullData := marshalAuthz(t, full)
	// Appending a second attributes field merges it into the first.
	twice := append(append([]byte(nil), fullData...), marshalAuthz(t, minimal)...)
	// An unknown top-level field.
	unknown := protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), fullData...), 99, protowire.VarintType), 7)
	// A string field with invalid UTF-8 (request.http.method).
	badUTF8 := protowire.AppendTag(nil, 2, protowire.BytesType)
	badUTF8 = protowire.AppendBytes(badUTF8, []byte{0xff})
	badUTF8 = protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), badUTF8) // Request.http
	badUTF8 = protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), badUTF8) // AttributeContext.request
	badUTF8 = protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), badUTF8) // CheckRequest.attributes
	return []struct {
		name   string
		data   []byte
		accept bool
	}{
		{"envoy", fullData, true},
		{"minimal", marshalAuthz(t, minimal), true},
		{"empty", nil, true},
		{"empty attributes", marshalAuthz(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}), true},
		{"empty http", marshalAuthz(t, emptyHTTP), true},
		{"ipv6 and mapped", marshalAuthz(t, ipv6), true},
		{"unparsable ip", marshalAuthz(t, badIP), true},
		{"invalid time", marshalAuthz(t, badTime), true},
		{"raw body query fragment", marshalAuthz(t, rawBody), true},
		{"header_map", marshalAuthz(t, headerMap), true},
		{"headers and header_map", marshalAuthz(t, bothHeaders), true},
		{"header_map twice", append(marshalAuthz(t, headerMap), marshalAuthz(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{}}}}})...), false},
		{"metadata", marshalAuthz(t, metadata), false},
		{"pipe", marshalAuthz(t, pipe), false},
		{"named port", marshalAuthz(t, named), false},
		{"attributes twice", twice, false},
		{"unknown field", unknown, false},
		{"invalid utf8", badUTF8, false},
		{"truncated", fullData[:len(fullData)-3], false},
		{"bad tag", []byte{0x0f}, false},
	}
}

func TestCheckRequestDecoder(t *testing.T) {
	var d CheckRequestDecoder
	for _, tc := range authzWireCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkAuthzWire(t, &d, tc.data); got != tc.accept {
				t.Fatalf("decoder accepted = %v, want %v", got, tc.accept)
			}
		})
	}
}

// TestCheckRequestDecoderReuse decodes different requests with one decoder
// and checks that a bag is intact until the next Decode.
func TestCheckRequestDecoderReuse(t *testing.T) {
	var d CheckRequestDecoder
	a := marshalAuthz(t, envoyRequest())
	small := envoyRequest()
	small.Attributes.Request.Http.Headers = map[string]string{"a": "b"}
	small.Attributes.Source.Labels = nil
	b := marshalAuthz(t, small)
	for i := range 4 {
		data := a
		if i%2 == 1 {
			data = b
		}
		if !checkAuthzWire(t, &d, data) {
			t.Fatalf("round %d: declined", i)
		}
	}
}

// FuzzCheckRequestDecoder checks the decoder against proto.Unmarshal and
// BagFromCheckRequest on arbitrary bytes: whatever it accepts, the general
// path accepts with the same bag.
func FuzzCheckRequestDecoder(f *testing.F) {
	for _, tc := range authzWireCases(f) {
		f.Add(tc.data)
	}
	var d CheckRequestDecoder
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAuthzWire(t, &d, data)
	})
}

func BenchmarkCheckRequestDecoder(b *testing.B) {
	data := marshalAuthz(b, envoyRequest())
	var d CheckRequestDecoder
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := d.Decode(data); !ok {
			b.Fatal("declined")
		}
	}
}

func BenchmarkBagFromCheckRequestGenerated(b *testing.B) {
	data := marshalAuthz(b, envoyRequest())
	b.ReportAllocs()
	for b.Loop() {
		req := new(authv3.CheckRequest)
		if err := proto.Unmarshal(data, req); err != nil {
			b.Fatal(err)
		}
		_ = BagFromCheckRequest(req)
	}
}
