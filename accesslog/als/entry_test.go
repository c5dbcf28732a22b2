package als

import (
	"net/netip"
	"testing"
	"time"
	"unsafe"

	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	datav3 "github.com/remora-mesh/remora/proto/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/remora-mesh/remora/proxy/filter"
)

func stream() *filter.StreamInfo {
	info := &filter.StreamInfo{
		StartTime:                      time.Date(2024, 1, 2, 3, 4, 5, 678_000_000, time.UTC),
		Protocol:                       filter.ProtocolHTTP2,
		LastDownstreamRxByteReceived:   2 * time.Millisecond,
		FirstUpstreamTxByteSent:        3 * time.Millisecond,
		LastUpstreamTxByteSent:         4 * time.Millisecond,
		FirstUpstreamRxByteReceived:    15 * time.Millisecond,
		LastUpstreamRxByteReceived:     20 * time.Millisecond,
		FirstDownstreamTxByteSent:      16 * time.Millisecond,
		LastDownstreamTxByteSent:       21 * time.Millisecond,
		BytesReceived:                  154,
		BytesSent:                      1024,
		ResponseCode:                   503,
		ResponseCodeDetails:            "upstream_reset_before_response_started{connection_failure}",
		ResponseFlags:                  filter.UpstreamConnectionFailure | filter.UpstreamRetryLimitExceeded | filter.UnauthorizedExternalService,
		RouteName:                      "default-route",
		UpstreamCluster:                "backend",
		UpstreamHost:                   "10.0.0.7:8080",
		UpstreamLocalAddress:           "10.0.0.2:45678",
		UpstreamTransportFailureReason: "connection refused",
		DownstreamRemoteAddress:        netip.MustParseAddrPort("192.0.2.10:51234"),
		DownstreamLocalAddress:         netip.MustParseAddrPort("[2001:db8::1]:15006"),
		DownstreamDirectRemoteAddress:  netip.MustParseAddrPort("192.0.2.1:40000"),
		RequestedServerName:            "api.example.com",
		DownstreamTLS:                  true,
		DownstreamPeerURISAN:           "spiffe://cluster.local/ns/default/sa/client",
		RequestHeaders: filter.NewHeaderMap(
			filter.HeaderField{Name: ":method", Value: "POST"},
			filter.HeaderField{Name: ":path", Value: "/pkg.Service/Method"},
			filter.HeaderField{Name: ":authority", Value: "api.example.com:8443"},
			filter.HeaderField{Name: ":scheme", Value: "https"},
			filter.HeaderField{Name: "x-envoy-original-path", Value: "/original"},
			filter.HeaderField{Name: "user-agent", Value: "grpc-go/1.85"},
			filter.HeaderField{Name: "referer", Value: "https://example.com/"},
			filter.HeaderField{Name: "x-forwarded-for", Value: "10.0.35.28"},
			filter.HeaderField{Name: "x-request-id", Value: "cc21"},
			filter.HeaderField{Name: "x-tenant", Value: "acme"},
			filter.HeaderField{Name: "x-tenant", Value: "beta"},
		),
		ResponseHeaders: filter.NewHeaderMap(
			filter.HeaderField{Name: ":status", Value: "503"},
			filter.HeaderField{Name: "x-cache", Value: "miss"},
		),
		ResponseTrailers: filter.NewHeaderMap(filter.HeaderField{Name: "grpc-status", Value: "14"}),
	}
	info.SetDynamicMetadata("authz", "user", "alice")
	info.SetDynamicMetadata("authz", "score", 0.5)
	info.SetDynamicMetadata("other", "x", 1)
	return info
}

func sock(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func TestHTTPEntry(t *testing.T) {
	ms := func(n int) *durationpb.Duration { return durationpb.New(time.Duration(n) * time.Millisecond) }
	want := &datav3.HTTPAccessLogEntry{
		ProtocolVersion: datav3.HTTPAccessLogEntry_HTTP2,
		CommonProperties: &datav3.AccessLogCommon{
			SampleRate:                     1,
			DownstreamRemoteAddress:        sock("192.0.2.10", 51234),
			DownstreamLocalAddress:         sock("2001:db8::1", 15006),
			DownstreamDirectRemoteAddress:  sock("192.0.2.1", 40000),
			UpstreamRemoteAddress:          sock("10.0.0.7", 8080),
			UpstreamLocalAddress:           sock("10.0.0.2", 45678),
			UpstreamCluster:                "backend",
			UpstreamTransportFailureReason: "connection refused",
			RouteName:                      "default-route",
			StartTime:                      timestamppb.New(time.Date(2024, 1, 2, 3, 4, 5, 678_000_000, time.UTC)),
			TimeToLastRxByte:               ms(2),
			TimeToFirstUpstreamTxByte:      ms(3),
			TimeToLastUpstreamTxByte:       ms(4),
			TimeToFirstUpstreamRxByte:      ms(15),
			TimeToLastUpstreamRxByte:       ms(20),
			TimeToFirstDownstreamTxByte:    ms(16),
			TimeToLastDownstreamTxByte:     ms(21),
			Duration:                       ms(21),
			ResponseFlags: &datav3.ResponseFlags{
				UpstreamConnectionFailure:  true,
				UpstreamRetryLimitExceeded: true,
				UnauthorizedDetails:        &datav3.ResponseFlags_Unauthorized{Reason: datav3.ResponseFlags_Unauthorized_EXTERNAL_SERVICE},
			},
			TlsProperties: &datav3.TLSProperties{
				TlsSniHostname: "api.example.com",
				PeerCertificateProperties: &datav3.TLSProperties_CertificateProperties{
					SubjectAltName: []*datav3.TLSProperties_CertificateProperties_SubjectAltName{
						{San: &datav3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: "spiffe://cluster.local/ns/default/sa/client"}},
					},
				},
			},
			Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
				"authz": {Fields: map[string]*structpb.Value{"user": structpb.NewStringValue("alice"), "score": structpb.NewNumberValue(0.5)}},
			}},
		},
		Request: &datav3.HTTPRequestProperties{
			RequestMethod:       corev3.RequestMethod_POST,
			Scheme:              "https",
			Authority:           "api.example.com:8443",
			Port:                wrapperspb.UInt32(8443),
			Path:                "/pkg.Service/Method",
			UserAgent:           "grpc-go/1.85",
			Referer:             "https://example.com/",
			ForwardedFor:        "10.0.35.28",
			RequestId:           "cc21",
			OriginalPath:        "/original",
			RequestHeadersBytes: 0, // set below
			RequestBodyBytes:    154,
			RequestHeaders:      map[string]string{"x-tenant": "acme,beta"},
		},
		Response: &datav3.HTTPResponseProperties{
			ResponseCode:         wrapperspb.UInt32(503),
			ResponseHeadersBytes: uint64(len(":status503x-cachemiss")),
			ResponseBodyBytes:    1024,
			ResponseHeaders:      map[string]string{"x-cache": "miss"},
			ResponseTrailers:     map[string]string{"grpc-status": "14"},
			ResponseCodeDetails:  "upstream_reset_before_response_started{connection_failure}",
		},
	}
	info := stream()
	for _, f := range info.RequestHeaders.Fields() {
		want.Request.RequestHeadersBytes += uint64(len(f.Name) + len(f.Value))
	}
	got := HTTPEntry(info, NewEntryOptions([]string{"X-Tenant", "x-absent"}, []string{"X-CACHE"}, []string{"grpc-status"}, []string{"authz", "missing"}))
	if !proto.Equal(want, got) {
		t.Errorf("HTTPEntry mismatch:\n got %s\nwant %s", prototext.Format(got), prototext.Format(want))
	}
	// The entry must not share memory with the reused StreamInfo.
	info.Reset()
	info.RequestHeaders = nil
	if got.Request.Path != "/pkg.Service/Method" || got.CommonProperties.UpstreamCluster != "backend" {
		t.Error("entry changed after the StreamInfo was reset")
	}
}

// TestHTTPEntryCopies builds header values over a mutable buffer, as a
// zero-copy codec would, and overwrites it after the conversion.
func TestHTTPEntryCopies(t *testing.T) {
	buf := []byte("/path/aaaaGET-agentxyz")
	view := func(i, j int) string { return unsafe.String(&buf[i], j-i) }
	info := &filter.StreamInfo{
		UpstreamCluster: view(0, 5),
		RequestHeaders: filter.NewHeaderMap(
			filter.HeaderField{Name: ":path", Value: view(0, 10)},
			filter.HeaderField{Name: "user-agent", Value: view(13, 19)},
			filter.HeaderField{Name: "x-extra", Value: view(19, 22)},
		),
	}
	e := HTTPEntry(info, NewEntryOptions([]string{"x-extra"}, nil, nil, nil))
	for i := range buf {
		buf[i] = '#'
	}
	if e.Request.Path != "/path/aaaa" || e.Request.UserAgent != "-agent" || e.CommonProperties.UpstreamCluster != "/path" ||
		e.Request.RequestHeaders["x-extra"] != "xyz" {
		t.Errorf("entry aliases the stream's buffer: %v", e)
	}
}

func TestHTTPEntryEmpty(t *testing.T) {
	got := HTTPEntry(&filter.StreamInfo{}, nil)
	want := &datav3.HTTPAccessLogEntry{
		CommonProperties: &datav3.AccessLogCommon{SampleRate: 1},
		Request:          &datav3.HTTPRequestProperties{},
		Response:         &datav3.HTTPResponseProperties{},
	}
	if !proto.Equal(got, want) {
		t.Errorf("got %v", got)
	}
}

// TestResponseFlagsComplete checks that every flag but DO maps to exactly
// one field of the proto.
func TestResponseFlagsComplete(t *testing.T) {
	for i, name := range filter.ResponseFlagNames() {
		f := filter.ResponseFlags(1 << i)
		rf := ResponseFlags(f)
		set := 0
		rf.ProtoReflect().Range(func(protoreflect.FieldDescriptor, protoreflect.Value) bool { set++; return true })
		want := 1
		if name == "DO" {
			want = 0
		}
		if set != want {
			t.Errorf("flag %s sets %d proto fields, want %d", name, set, want)
		}
	}
	if ResponseFlags(0) != nil {
		t.Error("no flags should map to nil")
	}
}

func TestMethodsAndAuthority(t *testing.T) {
	for m, want := range map[string]corev3.RequestMethod{
		"GET": corev3.RequestMethod_GET, "PATCH": corev3.RequestMethod_PATCH, "PROPFIND": corev3.RequestMethod_METHOD_UNSPECIFIED,
		"METHOD_UNSPECIFIED": corev3.RequestMethod_METHOD_UNSPECIFIED, "": corev3.RequestMethod_METHOD_UNSPECIFIED,
	} {
		if got := method(m); got != want {
			t.Errorf("method(%q) = %v", m, got)
		}
	}
	for a, want := range map[string]int{"h:80": 80, "h": -1, "[::1]:443": 443, "::1": -1, "h:x": -1, "h:70000": -1} {
		p, ok := authorityPort(a)
		if (want < 0) == ok || ok && int(p) != want {
			t.Errorf("authorityPort(%q) = %d, %v", a, p, ok)
		}
	}
	if a := parseAddress("unix:/x", newArena(0)); a.GetSocketAddress().GetAddress() != "unix:/x" {
		t.Errorf("parseAddress kept %v", a)
	}
}

func BenchmarkHTTPEntry(b *testing.B) {
	info := stream()
	opts := NewEntryOptions([]string{"x-tenant"}, nil, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		HTTPEntry(info, opts)
	}
}

func TestTCPEntry(t *testing.T) {
	info := &filter.StreamInfo{
		StartTime:               time.Unix(1700000000, 0),
		BytesReceived:           10,
		BytesSent:               20,
		UpstreamCluster:         "db",
		UpstreamHost:            "10.0.0.9:5432",
		DownstreamRemoteAddress: netip.MustParseAddrPort("192.0.2.1:4000"),
		ResponseFlags:           filter.UpstreamConnectionFailure,
	}
	info.SetDynamicMetadata("ns", "k", "v")
	got := TCPEntry(info, &EntryOptions{MetadataNamespaces: []string{"ns"}})
	want := &datav3.TCPAccessLogEntry{
		CommonProperties: &datav3.AccessLogCommon{
			SampleRate:              1,
			StartTime:               timestamppb.New(time.Unix(1700000000, 0)),
			UpstreamCluster:         "db",
			UpstreamRemoteAddress:   sock("10.0.0.9", 5432),
			DownstreamRemoteAddress: sock("192.0.2.1", 4000),
			ResponseFlags:           &datav3.ResponseFlags{UpstreamConnectionFailure: true},
			Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
				"ns": {Fields: map[string]*structpb.Value{"k": structpb.NewStringValue("v")}},
			}},
		},
		ConnectionProperties: &datav3.ConnectionProperties{ReceivedBytes: 10, SentBytes: 20},
	}
	if !proto.Equal(got, want) {
		t.Errorf("TCPEntry:\n got %s\nwant %s", prototext.Format(got), prototext.Format(want))
	}
	if e := TCPEntry(&filter.StreamInfo{}, nil); e.GetConnectionProperties() == nil {
		t.Error("TCPEntry(nil opts) lost connection properties")
	}
}
