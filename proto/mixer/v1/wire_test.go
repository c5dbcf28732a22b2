package mixerv1_test

// These tests prove that Remora's istio.mixer.v1 types are wire-compatible
// with Istio's own (istio.io/api at the Istio 1.7.8 commit, gogo-generated):
// the descriptors agree field by field, every message survives a trip
// through the other implementation in both directions, and Istio's generated
// gRPC client can call a server built from our types.

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"sort"
	"strconv"
	"testing"
	"time"

	gogoproto "github.com/gogo/protobuf/proto"
	gogotypes "github.com/gogo/protobuf/types"
	ours "github.com/remora-mesh/remora/proto/mixer/v1"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	istio "istio.io/api/mixer/v1"
	gogorpc "istio.io/gogo-genproto/googleapis/google/rpc"
)

// --- descriptors ---

// istioFile returns Istio's own descriptor for a registered .proto file.
func istioFile(t *testing.T, name string) *descriptorpb.FileDescriptorProto {
	t.Helper()
	gz := gogoproto.FileDescriptor(name)
	if gz == nil {
		t.Fatalf("istio descriptor %s not registered", name)
	}
	r, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var fd descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(raw, &fd); err != nil {
		t.Fatal(err)
	}
	return &fd
}

// shape flattens a file's messages, fields, enums and methods into lines
// that must match exactly between the two implementations. Options (where
// gogoproto lives) are deliberately left out: they never reach the wire.
func shape(fd *descriptorpb.FileDescriptorProto) []string {
	var out []string
	var msg func(prefix string, m *descriptorpb.DescriptorProto)
	enum := func(prefix string, e *descriptorpb.EnumDescriptorProto) {
		for _, v := range e.GetValue() {
			out = append(out, prefix+e.GetName()+"."+v.GetName()+"="+itoa(v.GetNumber()))
		}
	}
	msg = func(prefix string, m *descriptorpb.DescriptorProto) {
		name := prefix + m.GetName()
		out = append(out, "message "+name)
		for _, f := range m.GetField() {
			oneof := ""
			if f.OneofIndex != nil {
				oneof = " oneof " + m.GetOneofDecl()[f.GetOneofIndex()].GetName()
			}
			out = append(out, "field "+name+"."+f.GetName()+"="+itoa(f.GetNumber())+" "+f.GetLabel().String()+" "+f.GetType().String()+" "+f.GetTypeName()+oneof)
		}
		for _, r := range m.GetReservedRange() {
			out = append(out, "reserved "+name+" "+itoa(r.GetStart())+"-"+itoa(r.GetEnd()))
		}
		for _, n := range m.GetNestedType() {
			msg(name+".", n)
		}
		for _, e := range m.GetEnumType() {
			enum(name+".", e)
		}
	}
	out = append(out, "package "+fd.GetPackage())
	for _, m := range fd.GetMessageType() {
		msg("", m)
	}
	for _, e := range fd.GetEnumType() {
		enum("", e)
	}
	for _, s := range fd.GetService() {
		for _, m := range s.GetMethod() {
			out = append(out, "rpc "+s.GetName()+"."+m.GetName()+"("+m.GetInputType()+") "+m.GetOutputType())
		}
	}
	sort.Strings(out)
	return out
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

func TestDescriptorsMatchIstio(t *testing.T) {
	for _, tc := range []struct {
		file string
		ours protoreflect.FileDescriptor
	}{
		{"mixer/v1/attributes.proto", ours.File_mixer_v1_attributes_proto},
		{"mixer/v1/mixer.proto", ours.File_mixer_v1_mixer_proto},
	} {
		t.Run(tc.file, func(t *testing.T) {
			want := shape(istioFile(t, tc.file))
			got := shape(protodesc.ToFileDescriptorProto(tc.ours))
			if len(want) < 10 {
				t.Fatalf("istio descriptor looks empty: %v", want)
			}
			wantSet := map[string]bool{}
			for _, l := range want {
				wantSet[l] = true
			}
			gotSet := map[string]bool{}
			for _, l := range got {
				gotSet[l] = true
				if !wantSet[l] {
					t.Errorf("only in ours:  %s", l)
				}
			}
			for _, l := range want {
				if !gotSet[l] {
					t.Errorf("only in istio: %s", l)
				}
			}
		})
	}
}

// --- values ---

var (
	t0 = time.Date(2026, 11, 22, 4, 5, 6, 7000, time.UTC)
	d0 = 1500 * time.Millisecond
)

func fullCompressed(words ...string) *ours.CompressedAttributes {
	return &ours.CompressedAttributes{
		Words:      words,
		Strings:    map[int32]int32{17: -1, -2: 3},
		Int64S:     map[int32]int64{23: 1024, -1: -5},
		Doubles:    map[int32]float64{-3: 0.25},
		Bools:      map[int32]bool{-4: true, 5: false},
		Timestamps: map[int32]*timestamppb.Timestamp{24: timestamppb.New(t0)},
		Durations:  map[int32]*durationpb.Duration{-5: durationpb.New(d0)},
		Bytes:      map[int32][]byte{0: {10, 0, 0, 1}},
		StringMaps: map[int32]*ours.StringMap{15: {Entries: map[int32]int32{31: -1, -2: 2}}},
	}
}

func fullReferenced() *ours.ReferencedAttributes {
	return &ours.ReferencedAttributes{
		Words: []string{"x-user", "role"},
		AttributeMatches: []*ours.ReferencedAttributes_AttributeMatch{
			{Name: 15, Condition: ours.ReferencedAttributes_EXACT, MapKey: -1},
			{Name: 19, Condition: ours.ReferencedAttributes_ABSENCE},
			{Name: -2, Condition: ours.ReferencedAttributes_REGEX, Regex: "^/api/.*"},
		},
	}
}

func fullDirective() *ours.RouteDirective {
	return &ours.RouteDirective{
		RequestHeaderOperations:  []*ours.HeaderOperation{{Name: "x-a", Value: "1"}, {Name: "x-b", Operation: ours.HeaderOperation_REMOVE}},
		ResponseHeaderOperations: []*ours.HeaderOperation{{Name: "x-c", Value: "2", Operation: ours.HeaderOperation_APPEND}},
		DirectResponseCode:       302,
		DirectResponseBody:       "moved",
	}
}

func fullCheckRequest() *ours.CheckRequest {
	return &ours.CheckRequest{
		Attributes:      fullCompressed("w1", "w2", "w3", "w4", "w5"),
		GlobalWordCount: 222,
		DeduplicationId: "dedup-1",
		Quotas:          map[string]*ours.CheckRequest_QuotaParams{"rq": {Amount: 3, BestEffort: true}},
	}
}

func fullCheckResponse() *ours.CheckResponse {
	return &ours.CheckResponse{
		Precondition: &ours.CheckResponse_PreconditionResult{
			Status:               &rpcstatus.Status{Code: 7, Message: "denied"},
			ValidDuration:        durationpb.New(time.Minute),
			ValidUseCount:        10000,
			ReferencedAttributes: fullReferenced(),
			RouteDirective:       fullDirective(),
		},
		Quotas: map[string]*ours.CheckResponse_QuotaResult{"rq": {
			ValidDuration:        durationpb.New(d0),
			GrantedAmount:        2,
			Status:               &rpcstatus.Status{Code: 8, Message: "quota"},
			ReferencedAttributes: fullReferenced(),
		}},
	}
}

func fullReportRequest() *ours.ReportRequest {
	return &ours.ReportRequest{
		Attributes:                  []*ours.CompressedAttributes{fullCompressed(), fullCompressed("own")},
		RepeatedAttributesSemantics: ours.ReportRequest_INDEPENDENT_ENCODING,
		DefaultWords:                []string{"d1", "d2", "d3", "d4", "d5"},
		GlobalWordCount:             222,
	}
}

func fullAttributes() *ours.Attributes {
	return &ours.Attributes{Attributes: map[string]*ours.Attributes_AttributeValue{
		"s":  {Value: &ours.Attributes_AttributeValue_StringValue{StringValue: "v"}},
		"i":  {Value: &ours.Attributes_AttributeValue_Int64Value{Int64Value: -9}},
		"d":  {Value: &ours.Attributes_AttributeValue_DoubleValue{DoubleValue: 1.5}},
		"b":  {Value: &ours.Attributes_AttributeValue_BoolValue{BoolValue: true}},
		"y":  {Value: &ours.Attributes_AttributeValue_BytesValue{BytesValue: []byte{1, 2}}},
		"t":  {Value: &ours.Attributes_AttributeValue_TimestampValue{TimestampValue: timestamppb.New(t0)}},
		"du": {Value: &ours.Attributes_AttributeValue_DurationValue{DurationValue: durationpb.New(d0)}},
		"m":  {Value: &ours.Attributes_AttributeValue_StringMapValue{StringMapValue: &ours.Attributes_StringMap{Entries: map[string]string{"k": "v"}}}},
	}}
}

// gogoMessage is what Istio's generated types implement.
type gogoMessage interface {
	gogoproto.Message
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

// TestEveryMessageBothWays encodes each message with one implementation and
// decodes it with the other, in both directions, comparing field by field
// through explicit conversions.
func TestEveryMessageBothWays(t *testing.T) {
	tests := []struct {
		name    string
		ours    proto.Message
		istio   func() gogoMessage // a new empty Istio message
		toOurs  func(gogoMessage) proto.Message
		toIstio func(proto.Message) gogoMessage
	}{
		{"Attributes", fullAttributes(), func() gogoMessage { return &istio.Attributes{} },
			func(m gogoMessage) proto.Message { return attributesToOurs(m.(*istio.Attributes)) },
			func(m proto.Message) gogoMessage { return attributesToIstio(m.(*ours.Attributes)) }},
		{"CompressedAttributes", fullCompressed("a", "b", "c", "d", "e"), func() gogoMessage { return &istio.CompressedAttributes{} },
			func(m gogoMessage) proto.Message { return compressedToOurs(*m.(*istio.CompressedAttributes)) },
			func(m proto.Message) gogoMessage { c := compressedToIstio(m.(*ours.CompressedAttributes)); return &c }},
		{"StringMap", &ours.StringMap{Entries: map[int32]int32{1: -1, -7: 200}}, func() gogoMessage { return &istio.StringMap{} },
			func(m gogoMessage) proto.Message { return &ours.StringMap{Entries: m.(*istio.StringMap).Entries} },
			func(m proto.Message) gogoMessage { return &istio.StringMap{Entries: m.(*ours.StringMap).Entries} }},
		{"CheckRequest", fullCheckRequest(), func() gogoMessage { return &istio.CheckRequest{} },
			func(m gogoMessage) proto.Message { return checkRequestToOurs(m.(*istio.CheckRequest)) },
			func(m proto.Message) gogoMessage { return checkRequestToIstio(m.(*ours.CheckRequest)) }},
		{"CheckResponse", fullCheckResponse(), func() gogoMessage { return &istio.CheckResponse{} },
			func(m gogoMessage) proto.Message { return checkResponseToOurs(m.(*istio.CheckResponse)) },
			func(m proto.Message) gogoMessage { return checkResponseToIstio(m.(*ours.CheckResponse)) }},
		{"ReferencedAttributes", fullReferenced(), func() gogoMessage { return &istio.ReferencedAttributes{} },
			func(m gogoMessage) proto.Message { return referencedToOurs(*m.(*istio.ReferencedAttributes)) },
			func(m proto.Message) gogoMessage { r := referencedToIstio(m.(*ours.ReferencedAttributes)); return &r }},
		{"RouteDirective", fullDirective(), func() gogoMessage { return &istio.RouteDirective{} },
			func(m gogoMessage) proto.Message { return directiveToOurs(m.(*istio.RouteDirective)) },
			func(m proto.Message) gogoMessage { return directiveToIstio(m.(*ours.RouteDirective)) }},
		{"HeaderOperation", &ours.HeaderOperation{Name: "n", Value: "v", Operation: ours.HeaderOperation_APPEND}, func() gogoMessage { return &istio.HeaderOperation{} },
			func(m gogoMessage) proto.Message {
				return opsToOurs([]istio.HeaderOperation{*m.(*istio.HeaderOperation)})[0]
			},
			func(m proto.Message) gogoMessage {
				o := opsToIstio([]*ours.HeaderOperation{m.(*ours.HeaderOperation)})[0]
				return &o
			}},
		{"ReportRequest", fullReportRequest(), func() gogoMessage { return &istio.ReportRequest{} },
			func(m gogoMessage) proto.Message { return reportRequestToOurs(m.(*istio.ReportRequest)) },
			func(m proto.Message) gogoMessage { return reportRequestToIstio(m.(*ours.ReportRequest)) }},
		{"ReportResponse", &ours.ReportResponse{}, func() gogoMessage { return &istio.ReportResponse{} },
			func(gogoMessage) proto.Message { return &ours.ReportResponse{} },
			func(proto.Message) gogoMessage { return &istio.ReportResponse{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/ours-to-istio", func(t *testing.T) {
			raw, err := proto.Marshal(tt.ours)
			if err != nil {
				t.Fatal(err)
			}
			im := tt.istio()
			if err := im.Unmarshal(raw); err != nil {
				t.Fatalf("istio cannot decode our bytes: %v", err)
			}
			if got := tt.toOurs(im); !proto.Equal(got, tt.ours) {
				t.Fatalf("istio decoded\n%v\nwant\n%v", got, tt.ours)
			}
		})
		t.Run(tt.name+"/istio-to-ours", func(t *testing.T) {
			raw, err := tt.toIstio(tt.ours).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got := tt.ours.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(raw, got); err != nil {
				t.Fatalf("we cannot decode istio's bytes: %v", err)
			}
			if !proto.Equal(got, tt.ours) {
				t.Fatalf("we decoded\n%v\nwant\n%v", got, tt.ours)
			}
		})
	}
}

// --- gRPC ---

// gogoCodec marshals Istio's gogo messages with their own generated code, as
// Istio's Go clients did.
type gogoCodec struct{}

func (gogoCodec) Marshal(v any) ([]byte, error)      { return v.(gogoMessage).Marshal() }
func (gogoCodec) Unmarshal(data []byte, v any) error { return v.(gogoMessage).Unmarshal(data) }
func (gogoCodec) Name() string                       { return "proto" }

var _ encoding.Codec = gogoCodec{}

// recordingServer is a Mixer server built from our types.
type recordingServer struct {
	ours.UnimplementedMixerServer
	checks  chan *ours.CheckRequest
	reports chan *ours.ReportRequest
}

func (s *recordingServer) Check(_ context.Context, req *ours.CheckRequest) (*ours.CheckResponse, error) {
	s.checks <- req
	return fullCheckResponse(), nil
}

func (s *recordingServer) Report(_ context.Context, req *ours.ReportRequest) (*ours.ReportResponse, error) {
	s.reports <- req
	return &ours.ReportResponse{}, nil
}

func TestIstioClientCallsOurServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rec := &recordingServer{checks: make(chan *ours.CheckRequest, 1), reports: make(chan *ours.ReportRequest, 1)}
	ours.RegisterMixerServer(srv, rec)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(gogoCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := istio.NewMixerClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := client.Check(ctx, checkRequestToIstio(fullCheckRequest()))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got := <-rec.checks; !proto.Equal(got, fullCheckRequest()) {
		t.Fatalf("server received\n%v\nwant\n%v", got, fullCheckRequest())
	}
	if got := checkResponseToOurs(resp); !proto.Equal(got, fullCheckResponse()) {
		t.Fatalf("istio client received\n%v\nwant\n%v", got, fullCheckResponse())
	}

	if _, err := client.Report(ctx, reportRequestToIstio(fullReportRequest())); err != nil {
		t.Fatalf("Report: %v", err)
	}
	if got := <-rec.reports; !proto.Equal(got, fullReportRequest()) {
		t.Fatalf("server received\n%v\nwant\n%v", got, fullReportRequest())
	}
}

// --- explicit field-by-field conversions ---

func attributesToOurs(a *istio.Attributes) *ours.Attributes {
	out := &ours.Attributes{Attributes: map[string]*ours.Attributes_AttributeValue{}}
	for k, v := range a.Attributes {
		var ov ours.Attributes_AttributeValue
		switch x := v.Value.(type) {
		case *istio.Attributes_AttributeValue_StringValue:
			ov.Value = &ours.Attributes_AttributeValue_StringValue{StringValue: x.StringValue}
		case *istio.Attributes_AttributeValue_Int64Value:
			ov.Value = &ours.Attributes_AttributeValue_Int64Value{Int64Value: x.Int64Value}
		case *istio.Attributes_AttributeValue_DoubleValue:
			ov.Value = &ours.Attributes_AttributeValue_DoubleValue{DoubleValue: x.DoubleValue}
		case *istio.Attributes_AttributeValue_BoolValue:
			ov.Value = &ours.Attributes_AttributeValue_BoolValue{BoolValue: x.BoolValue}
		case *istio.Attributes_AttributeValue_BytesValue:
			ov.Value = &ours.Attributes_AttributeValue_BytesValue{BytesValue: x.BytesValue}
		case *istio.Attributes_AttributeValue_TimestampValue:
			ov.Value = &ours.Attributes_AttributeValue_TimestampValue{TimestampValue: &timestamppb.Timestamp{Seconds: x.TimestampValue.Seconds, Nanos: x.TimestampValue.Nanos}}
		case *istio.Attributes_AttributeValue_DurationValue:
			ov.Value = &ours.Attributes_AttributeValue_DurationValue{DurationValue: &durationpb.Duration{Seconds: x.DurationValue.Seconds, Nanos: x.DurationValue.Nanos}}
		case *istio.Attributes_AttributeValue_StringMapValue:
			ov.Value = &ours.Attributes_AttributeValue_StringMapValue{StringMapValue: &ours.Attributes_StringMap{Entries: x.StringMapValue.Entries}}
		}
		out.Attributes[k] = &ov
	}
	return out
}

func attributesToIstio(a *ours.Attributes) *istio.Attributes {
	out := &istio.Attributes{Attributes: map[string]*istio.Attributes_AttributeValue{}}
	for k, v := range a.Attributes {
		var iv istio.Attributes_AttributeValue
		switch x := v.Value.(type) {
		case *ours.Attributes_AttributeValue_StringValue:
			iv.Value = &istio.Attributes_AttributeValue_StringValue{StringValue: x.StringValue}
		case *ours.Attributes_AttributeValue_Int64Value:
			iv.Value = &istio.Attributes_AttributeValue_Int64Value{Int64Value: x.Int64Value}
		case *ours.Attributes_AttributeValue_DoubleValue:
			iv.Value = &istio.Attributes_AttributeValue_DoubleValue{DoubleValue: x.DoubleValue}
		case *ours.Attributes_AttributeValue_BoolValue:
			iv.Value = &istio.Attributes_AttributeValue_BoolValue{BoolValue: x.BoolValue}
		case *ours.Attributes_AttributeValue_BytesValue:
			iv.Value = &istio.Attributes_AttributeValue_BytesValue{BytesValue: x.BytesValue}
		case *ours.Attributes_AttributeValue_TimestampValue:
			iv.Value = &istio.Attributes_AttributeValue_TimestampValue{TimestampValue: gogoTimestamp(x.TimestampValue)}
		case *ours.Attributes_AttributeValue_DurationValue:
			iv.Value = &istio.Attributes_AttributeValue_DurationValue{DurationValue: gogoDuration(x.DurationValue)}
		case *ours.Attributes_AttributeValue_StringMapValue:
			iv.Value = &istio.Attributes_AttributeValue_StringMapValue{StringMapValue: &istio.Attributes_StringMap{Entries: x.StringMapValue.Entries}}
		}
		out.Attributes[k] = &iv
	}
	return out
}

func compressedToOurs(c istio.CompressedAttributes) *ours.CompressedAttributes {
	out := &ours.CompressedAttributes{
		Words: c.Words, Strings: c.Strings, Int64S: c.Int64S, Doubles: c.Doubles, Bools: c.Bools, Bytes: c.Bytes,
	}
	if len(c.Timestamps) > 0 {
		out.Timestamps = map[int32]*timestamppb.Timestamp{}
		for k, v := range c.Timestamps {
			out.Timestamps[k] = timestamppb.New(v)
		}
	}
	if len(c.Durations) > 0 {
		out.Durations = map[int32]*durationpb.Duration{}
		for k, v := range c.Durations {
			out.Durations[k] = durationpb.New(v)
		}
	}
	if len(c.StringMaps) > 0 {
		out.StringMaps = map[int32]*ours.StringMap{}
		for k, v := range c.StringMaps {
			out.StringMaps[k] = &ours.StringMap{Entries: v.Entries}
		}
	}
	return out
}

func compressedToIstio(c *ours.CompressedAttributes) istio.CompressedAttributes {
	out := istio.CompressedAttributes{
		Words: c.Words, Strings: c.Strings, Int64S: c.Int64S, Doubles: c.Doubles, Bools: c.Bools, Bytes: c.Bytes,
	}
	if len(c.Timestamps) > 0 {
		out.Timestamps = map[int32]time.Time{}
		for k, v := range c.Timestamps {
			out.Timestamps[k] = v.AsTime()
		}
	}
	if len(c.Durations) > 0 {
		out.Durations = map[int32]time.Duration{}
		for k, v := range c.Durations {
			out.Durations[k] = v.AsDuration()
		}
	}
	if len(c.StringMaps) > 0 {
		out.StringMaps = map[int32]istio.StringMap{}
		for k, v := range c.StringMaps {
			out.StringMaps[k] = istio.StringMap{Entries: v.Entries}
		}
	}
	return out
}

func checkRequestToOurs(r *istio.CheckRequest) *ours.CheckRequest {
	out := &ours.CheckRequest{
		Attributes:      compressedToOurs(r.Attributes),
		GlobalWordCount: r.GlobalWordCount,
		DeduplicationId: r.DeduplicationId,
	}
	if len(r.Quotas) > 0 {
		out.Quotas = map[string]*ours.CheckRequest_QuotaParams{}
		for k, v := range r.Quotas {
			out.Quotas[k] = &ours.CheckRequest_QuotaParams{Amount: v.Amount, BestEffort: v.BestEffort}
		}
	}
	return out
}

func checkRequestToIstio(r *ours.CheckRequest) *istio.CheckRequest {
	out := &istio.CheckRequest{
		Attributes:      compressedToIstio(r.Attributes),
		GlobalWordCount: r.GlobalWordCount,
		DeduplicationId: r.DeduplicationId,
	}
	if len(r.Quotas) > 0 {
		out.Quotas = map[string]istio.CheckRequest_QuotaParams{}
		for k, v := range r.Quotas {
			out.Quotas[k] = istio.CheckRequest_QuotaParams{Amount: v.Amount, BestEffort: v.BestEffort}
		}
	}
	return out
}

func referencedToOurs(r istio.ReferencedAttributes) *ours.ReferencedAttributes {
	out := &ours.ReferencedAttributes{Words: r.Words}
	for _, m := range r.AttributeMatches {
		out.AttributeMatches = append(out.AttributeMatches, &ours.ReferencedAttributes_AttributeMatch{
			Name: m.Name, Condition: ours.ReferencedAttributes_Condition(m.Condition), Regex: m.Regex, MapKey: m.MapKey,
		})
	}
	return out
}

func referencedToIstio(r *ours.ReferencedAttributes) istio.ReferencedAttributes {
	out := istio.ReferencedAttributes{Words: r.Words}
	for _, m := range r.AttributeMatches {
		out.AttributeMatches = append(out.AttributeMatches, istio.ReferencedAttributes_AttributeMatch{
			Name: m.Name, Condition: istio.ReferencedAttributes_Condition(m.Condition), Regex: m.Regex, MapKey: m.MapKey,
		})
	}
	return out
}

func opsToOurs(ops []istio.HeaderOperation) []*ours.HeaderOperation {
	var out []*ours.HeaderOperation
	for _, o := range ops {
		out = append(out, &ours.HeaderOperation{Name: o.Name, Value: o.Value, Operation: ours.HeaderOperation_Operation(o.Operation)})
	}
	return out
}

func opsToIstio(ops []*ours.HeaderOperation) []istio.HeaderOperation {
	var out []istio.HeaderOperation
	for _, o := range ops {
		out = append(out, istio.HeaderOperation{Name: o.Name, Value: o.Value, Operation: istio.HeaderOperation_Operation(o.Operation)})
	}
	return out
}

func directiveToOurs(d *istio.RouteDirective) *ours.RouteDirective {
	return &ours.RouteDirective{
		RequestHeaderOperations:  opsToOurs(d.RequestHeaderOperations),
		ResponseHeaderOperations: opsToOurs(d.ResponseHeaderOperations),
		DirectResponseCode:       d.DirectResponseCode,
		DirectResponseBody:       d.DirectResponseBody,
	}
}

func directiveToIstio(d *ours.RouteDirective) *istio.RouteDirective {
	return &istio.RouteDirective{
		RequestHeaderOperations:  opsToIstio(d.RequestHeaderOperations),
		ResponseHeaderOperations: opsToIstio(d.ResponseHeaderOperations),
		DirectResponseCode:       d.DirectResponseCode,
		DirectResponseBody:       d.DirectResponseBody,
	}
}

func checkResponseToOurs(r *istio.CheckResponse) *ours.CheckResponse {
	p := r.Precondition
	out := &ours.CheckResponse{Precondition: &ours.CheckResponse_PreconditionResult{
		Status:        &rpcstatus.Status{Code: p.Status.Code, Message: p.Status.Message},
		ValidDuration: durationpb.New(p.ValidDuration),
		ValidUseCount: p.ValidUseCount,
	}}
	if p.ReferencedAttributes != nil {
		out.Precondition.ReferencedAttributes = referencedToOurs(*p.ReferencedAttributes)
	}
	if p.RouteDirective != nil {
		out.Precondition.RouteDirective = directiveToOurs(p.RouteDirective)
	}
	if len(r.Quotas) > 0 {
		out.Quotas = map[string]*ours.CheckResponse_QuotaResult{}
		for k, q := range r.Quotas {
			out.Quotas[k] = &ours.CheckResponse_QuotaResult{
				ValidDuration:        durationpb.New(q.ValidDuration),
				GrantedAmount:        q.GrantedAmount,
				Status:               &rpcstatus.Status{Code: q.Status.Code, Message: q.Status.Message},
				ReferencedAttributes: referencedToOurs(q.ReferencedAttributes),
			}
		}
	}
	return out
}

func checkResponseToIstio(r *ours.CheckResponse) *istio.CheckResponse {
	p := r.Precondition
	out := &istio.CheckResponse{Precondition: istio.CheckResponse_PreconditionResult{
		Status:        gogorpc.Status{Code: p.Status.Code, Message: p.Status.Message},
		ValidDuration: p.ValidDuration.AsDuration(),
		ValidUseCount: p.ValidUseCount,
	}}
	if p.ReferencedAttributes != nil {
		ra := referencedToIstio(p.ReferencedAttributes)
		out.Precondition.ReferencedAttributes = &ra
	}
	if p.RouteDirective != nil {
		out.Precondition.RouteDirective = directiveToIstio(p.RouteDirective)
	}
	if len(r.Quotas) > 0 {
		out.Quotas = map[string]istio.CheckResponse_QuotaResult{}
		for k, q := range r.Quotas {
			out.Quotas[k] = istio.CheckResponse_QuotaResult{
				ValidDuration:        q.ValidDuration.AsDuration(),
				GrantedAmount:        q.GrantedAmount,
				Status:               gogorpc.Status{Code: q.Status.Code, Message: q.Status.Message},
				ReferencedAttributes: referencedToIstio(q.ReferencedAttributes),
			}
		}
	}
	return out
}

func reportRequestToOurs(r *istio.ReportRequest) *ours.ReportRequest {
	out := &ours.ReportRequest{
		RepeatedAttributesSemantics: ours.ReportRequest_RepeatedAttributesSemantics(r.RepeatedAttributesSemantics),
		DefaultWords:                r.DefaultWords,
		GlobalWordCount:             r.GlobalWordCount,
	}
	for _, a := range r.Attributes {
		out.Attributes = append(out.Attributes, compressedToOurs(a))
	}
	return out
}

func reportRequestToIstio(r *ours.ReportRequest) *istio.ReportRequest {
	out := &istio.ReportRequest{
		RepeatedAttributesSemantics: istio.ReportRequest_RepeatedAttributesSemantics(r.RepeatedAttributesSemantics),
		DefaultWords:                r.DefaultWords,
		GlobalWordCount:             r.GlobalWordCount,
	}
	for _, a := range r.Attributes {
		out.Attributes = append(out.Attributes, compressedToIstio(a))
	}
	return out
}

func gogoTimestamp(ts *timestamppb.Timestamp) *gogotypes.Timestamp {
	return &gogotypes.Timestamp{Seconds: ts.Seconds, Nanos: ts.Nanos}
}

func gogoDuration(d *durationpb.Duration) *gogotypes.Duration {
	return &gogotypes.Duration{Seconds: d.Seconds, Nanos: d.Nanos}
}
