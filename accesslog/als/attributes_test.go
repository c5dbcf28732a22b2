package als

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	datav3 "github.com/remora-mesh/remora/proto/envoy/data/accesslog/v3"
	alsv3 "github.com/remora-mesh/remora/proto/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/proxy/filter"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n got:\n%s\nwant:\n%s", name, got, want)
	}
}

func identifier(logName string) *alsv3.StreamAccessLogsMessage_Identifier {
	md, err := structpb.NewStruct(map[string]any{
		MetadataWorkloadName: "reviews-v1",
		MetadataNamespace:    "default",
		MetadataLabels:       map[string]any{"app": "reviews", "version": "v1", "count": 3},
	})
	if err != nil {
		panic(err)
	}
	return &alsv3.StreamAccessLogsMessage_Identifier{
		Node:    &corev3.Node{Id: "sidecar~10.0.0.1~reviews-v1.default~default.svc.cluster.local", Metadata: md},
		LogName: logName,
	}
}

// The round trip StreamInfo → HTTPEntry → HTTPAttributes gives the bag
// recorded in the golden file; the inbound and outbound identities put the
// node's workload on the destination and the source side respectively.
func TestHTTPAttributesGolden(t *testing.T) {
	opts := NewEntryOptions([]string{"x-tenant", "content-type"}, []string{"x-cache"}, []string{"grpc-status"}, nil)
	for _, tc := range []struct{ name, logName string }{
		{"http_inbound.txt", "inbound_als"},
		{"http_outbound.txt", "OUTBOUND|listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := stream()
			info.RequestHeaders.Add("content-type", "application/grpc")
			e := HTTPEntry(info, opts)
			e.CommonProperties.UpstreamCluster = "outbound|9080||reviews.default.svc.cluster.local"
			e.CommonProperties.ResponseFlags.DownstreamRemoteReset = true
			bag, err := HTTPAttributes(e, NewIdentity(identifier(tc.logName), "inbound", attributes.Bag{}))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, bag.String())
		})
	}
}

func TestTCPAttributes(t *testing.T) {
	info := stream()
	info.Protocol = filter.ProtocolTCP
	e := TCPEntry(info, nil)
	bag, err := TCPAttributes(e, NewIdentity(identifier("outbound"), "inbound", attributes.Bag{}))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "tcp_close.txt", bag.String())

	e.CommonProperties.AccessLogType = datav3.AccessLogType_TcpConnectionStart
	bag, err = TCPAttributes(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := bag.Get(attributes.ConnectionEvent); v.StringValue() != "open" || bag.Has(attributes.ConnectionSentBytes) {
		t.Errorf("start entry: %s", bag)
	}
}

func TestReporterKind(t *testing.T) {
	md := func(kind string) *structpb.Struct {
		s, _ := structpb.NewStruct(map[string]any{MetadataReporterKind: kind})
		return s
	}
	for _, tc := range []struct {
		name    string
		id      *alsv3.StreamAccessLogsMessage_Identifier
		def     string
		want    string
		wantUID string
	}{
		{"no identifier", nil, "inbound", "inbound", ""},
		{"default outbound", nil, "outbound", "outbound", ""},
		{"bad default", nil, "sideways", "inbound", ""},
		{"log name", &alsv3.StreamAccessLogsMessage_Identifier{LogName: "outbound_http", Node: &corev3.Node{Id: "n1"}}, "inbound", "outbound", "n1"},
		{"log name beats node", &alsv3.StreamAccessLogsMessage_Identifier{LogName: "Inbound", Node: &corev3.Node{Metadata: md("outbound")}}, "outbound", "inbound", ""},
		{"node metadata", &alsv3.StreamAccessLogsMessage_Identifier{LogName: "als", Node: &corev3.Node{Metadata: md("outbound")}}, "inbound", "outbound", ""},
		{"bad node metadata", &alsv3.StreamAccessLogsMessage_Identifier{LogName: "als", Node: &corev3.Node{Metadata: md("up")}}, "outbound", "outbound", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := NewIdentity(tc.id, tc.def, attributes.Bag{})
			bag, err := HTTPAttributes(&datav3.HTTPAccessLogEntry{}, id)
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := bag.Get(attributes.ContextReporterKind); v.StringValue() != tc.want || id.Kind != tc.want {
				t.Errorf("kind %q, want %q", v.StringValue(), tc.want)
			}
			if v, _ := bag.Get(attributes.ContextReporterUID); v.StringValue() != tc.wantUID {
				t.Errorf("uid %q, want %q", v.StringValue(), tc.wantUID)
			}
		})
	}
}

// The identity's extra attributes override the entry's, and its dropped
// names are removed.
func TestIdentityExtraAndDrop(t *testing.T) {
	info := stream()
	e := HTTPEntry(info, nil)
	over := NewIdentity(nil, "inbound", attributes.BagOf(map[string]attributes.Value{attributes.SourcePrincipal: attributes.String("caller")}))
	bag, err := HTTPAttributes(e, over)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := bag.Get(attributes.SourcePrincipal); v.StringValue() != "caller" {
		t.Errorf("extra: source.principal %q", v.StringValue())
	}
	bag, err = HTTPAttributes(e, NewIdentity(nil, "inbound", attributes.Bag{}, attributes.SourcePrincipal))
	if err != nil {
		t.Fatal(err)
	}
	if bag.Has(attributes.SourcePrincipal) {
		t.Errorf("drop: source.principal still set")
	}
}

func TestClusterMapping(t *testing.T) {
	for _, tc := range []struct {
		cluster, kind         string
		host, name, namespace string
	}{
		{"outbound|80||reviews.default.svc.cluster.local", "inbound", "reviews.default.svc.cluster.local", "reviews", "default"},
		{"outbound|80|v1|api.example.com", "outbound", "api.example.com", "api", ""},
		{"inbound|8080||", "inbound", "", "", ""},
		{"weird|x", "outbound", "", "", ""},
		{"backend", "outbound", "", "backend", ""},
		{"local_app", "inbound", "", "", ""},
	} {
		t.Run(tc.cluster+"/"+tc.kind, func(t *testing.T) {
			e := &datav3.HTTPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{UpstreamCluster: tc.cluster}}
			bag, err := HTTPAttributes(e, NewIdentity(nil, tc.kind, attributes.Bag{}))
			if err != nil {
				t.Fatal(err)
			}
			for attr, want := range map[string]string{
				attributes.DestinationServiceHost: tc.host, attributes.DestinationServiceName: tc.name,
				attributes.DestinationServiceNamespace: tc.namespace,
			} {
				if v, _ := bag.Get(attr); v.StringValue() != want {
					t.Errorf("%s = %q, want %q", attr, v.StringValue(), want)
				}
			}
		})
	}
}

func TestResponseFlagString(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    *datav3.ResponseFlags
		want string
	}{
		{"none", &datav3.ResponseFlags{}, ""},
		{"one", &datav3.ResponseFlags{NoHealthyUpstream: true}, "UH"},
		{"order", &datav3.ResponseFlags{UpstreamRetryLimitExceeded: true, UpstreamConnectionFailure: true}, "UF,URX"},
		{"uaex", &datav3.ResponseFlags{UnauthorizedDetails: &datav3.ResponseFlags_Unauthorized{}}, "UAEX"},
		{"dr only", &datav3.ResponseFlags{DownstreamRemoteReset: true}, "DR"},
		{"dr last", &datav3.ResponseFlags{DownstreamRemoteReset: true, DnsResolutionFailure: true}, "DF,DR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := responseFlagString(tc.f); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	// Every Remora flag the proto carries survives the round trip.
	all := filter.ResponseFlags(0)
	for _, n := range filter.ResponseFlagNames() {
		f, _ := filter.ParseResponseFlag(n)
		all |= f
	}
	got, _ := EntryFlags(ResponseFlags(all))
	if want := all &^ filter.DropOverload; got != want {
		t.Errorf("round trip %s, want %s", got, want)
	}
}

func TestSkippedEntries(t *testing.T) {
	for _, typ := range []datav3.AccessLogType{datav3.AccessLogType_DownstreamStart, datav3.AccessLogType_DownstreamPeriodic, datav3.AccessLogType_UpstreamEnd} {
		e := &datav3.HTTPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{AccessLogType: typ}}
		if _, err := HTTPAttributes(e, nil); !errors.Is(err, ErrSkipped) {
			t.Errorf("http %s: %v, want ErrSkipped", typ, err)
		}
	}
	//lint:ignore SA1019 older Envoys still mark intermediate entries with this flag; the converter must skip them.
	e := &datav3.HTTPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{IntermediateLogEntry: true}}
	if _, err := HTTPAttributes(e, nil); !errors.Is(err, ErrSkipped) {
		t.Errorf("intermediate http: %v", err)
	}
	for _, typ := range []datav3.AccessLogType{datav3.AccessLogType_TcpPeriodic, datav3.AccessLogType_TcpUpstreamConnected} {
		e := &datav3.TCPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{AccessLogType: typ}}
		if _, err := TCPAttributes(e, nil); !errors.Is(err, ErrSkipped) {
			t.Errorf("tcp %s: %v, want ErrSkipped", typ, err)
		}
	}
}

func TestMalformedEntries(t *testing.T) {
	addr := func(ip string, port uint32) *corev3.Address { return sock(ip, port) }
	for _, tc := range []struct {
		name string
		e    *datav3.HTTPAccessLogEntry
		want string
	}{
		{"nil", nil, "als: http entry: missing"},
		{"start time", &datav3.HTTPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{StartTime: &timestamppb.Timestamp{Nanos: -1}}},
			"als: http entry: common_properties.start_time: "},
		{"remote address", &datav3.HTTPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{DownstreamRemoteAddress: addr("example.com", 80)}},
			`als: http entry: common_properties.downstream_remote_address: address "example.com" is not an IP address`},
		{"local port", &datav3.HTTPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{DownstreamLocalAddress: addr("10.0.0.1", 70000)}},
			"als: http entry: common_properties.downstream_local_address: port 70000 out of range"},
		{"method", &datav3.HTTPAccessLogEntry{Request: &datav3.HTTPRequestProperties{RequestMethod: 99}},
			"als: http entry: request.request_method: unknown method 99"},
		{"body size", &datav3.HTTPAccessLogEntry{Request: &datav3.HTTPRequestProperties{RequestBodyBytes: 1 << 63}},
			"als: http entry: request.request_body_bytes: 9223372036854775808 out of range"},
		{"status", &datav3.HTTPAccessLogEntry{Response: &datav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(1000)}},
			"als: http entry: response.response_code: 1000 is not an HTTP status"},
		{"negative duration", &datav3.HTTPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{TimeToLastDownstreamTxByte: &durationpb.Duration{Seconds: -1}}},
			"als: http entry: common_properties.time_to_last_downstream_tx_byte: negative duration"},
		{"invalid duration", &datav3.HTTPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{Duration: &durationpb.Duration{Seconds: 1, Nanos: -1}}},
			"als: http entry: common_properties.duration: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := HTTPAttributes(tc.e, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || errors.Is(err, ErrSkipped) {
				t.Fatalf("error %v, want prefix %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		e    *datav3.TCPAccessLogEntry
		want string
	}{
		{"nil", nil, "als: tcp entry: missing"},
		{"bytes", &datav3.TCPAccessLogEntry{ConnectionProperties: &datav3.ConnectionProperties{SentBytes: 1 << 63}},
			"als: tcp entry: connection_properties.sent_bytes: 9223372036854775808 out of range"},
		{"address", &datav3.TCPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{DownstreamRemoteAddress: addr("", 1)}},
			`als: tcp entry: common_properties.downstream_remote_address: address "" is not an IP address`},
	} {
		t.Run("tcp "+tc.name, func(t *testing.T) {
			_, err := TCPAttributes(tc.e, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v, want prefix %q", err, tc.want)
			}
		})
	}
}

// HTTPStreamInfo reverses HTTPEntry for the fields an entry carries.
func TestHTTPStreamInfoRoundTrip(t *testing.T) {
	opts := NewEntryOptions([]string{"x-tenant"}, []string{"x-cache"}, []string{"grpc-status"}, nil)
	e := HTTPEntry(stream(), opts)
	var info filter.StreamInfo
	HTTPStreamInfo(e, &info)
	again := HTTPEntry(&info, opts)
	// Header byte counts cover every header, of which only the logged
	// ones travel.
	again.Request.RequestHeadersBytes = e.Request.RequestHeadersBytes
	again.Response.ResponseHeadersBytes = e.Response.ResponseHeadersBytes
	if !proto.Equal(e, again) {
		t.Errorf("round trip differs:\n got %v\nwant %v", again, e)
	}
	var tcp filter.StreamInfo
	TCPStreamInfo(TCPEntry(stream(), nil), &tcp)
	if tcp.Protocol != filter.ProtocolTCP || tcp.BytesSent != 1024 || tcp.UpstreamHost != "10.0.0.7:8080" {
		t.Errorf("tcp stream info %+v", tcp)
	}
}

func fuzzSeeds(f *testing.F, msgs ...proto.Message) {
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzHTTPAttributes decodes arbitrary bytes as an entry: conversion
// never panics, and an accepted entry's status and sizes are in range.
func FuzzHTTPAttributes(f *testing.F) {
	opts := NewEntryOptions([]string{"x-tenant"}, []string{"x-cache"}, []string{"grpc-status"}, nil)
	fuzzSeeds(f, HTTPEntry(stream(), opts), &datav3.HTTPAccessLogEntry{})
	id := NewIdentity(identifier("inbound"), "inbound", attributes.Bag{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e datav3.HTTPAccessLogEntry
		if proto.Unmarshal(b, &e) != nil {
			return
		}
		bag, err := HTTPAttributes(&e, id)
		if err != nil {
			return
		}
		if v, ok := bag.Get(attributes.ResponseCode); ok && (v.Int64Value() < 0 || v.Int64Value() > 999) {
			t.Fatalf("response.code %d", v.Int64Value())
		}
		if v, ok := bag.Get(attributes.RequestTotalSize); ok && v.Int64Value() < 0 {
			t.Fatalf("request.total_size %v", v)
		}
		var info filter.StreamInfo
		HTTPStreamInfo(&e, &info)
	})
}

// FuzzTCPAttributes is FuzzHTTPAttributes for TCP entries.
func FuzzTCPAttributes(f *testing.F) {
	fuzzSeeds(f, TCPEntry(stream(), nil), &datav3.TCPAccessLogEntry{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e datav3.TCPAccessLogEntry
		if proto.Unmarshal(b, &e) != nil {
			return
		}
		bag, err := TCPAttributes(&e, nil)
		if err != nil {
			return
		}
		if v, _ := bag.Get(attributes.ContextProtocol); v.StringValue() != attributes.ProtocolTCP {
			t.Fatalf("context.protocol %v", v)
		}
		var info filter.StreamInfo
		TCPStreamInfo(&e, &info)
	})
}

func BenchmarkHTTPAttributes(b *testing.B) {
	opts := NewEntryOptions([]string{"x-tenant"}, []string{"x-cache"}, []string{"grpc-status"}, nil)
	e := HTTPEntry(stream(), opts)
	id := NewIdentity(identifier("inbound"), "inbound", attributes.Bag{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := HTTPAttributes(e, id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTCPAttributes(b *testing.B) {
	e := TCPEntry(stream(), nil)
	id := NewIdentity(identifier("inbound"), "inbound", attributes.Bag{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TCPAttributes(e, id); err != nil {
			b.Fatal(err)
		}
	}
}
