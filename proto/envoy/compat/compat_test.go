package compat_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/remora-mesh/remora/proto/envoy/compat"
	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	accesslogv3 "github.com/remora-mesh/remora/proto/envoy/data/accesslog/v3"
	alsv3 "github.com/remora-mesh/remora/proto/envoy/service/accesslog/v3"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
	typev3 "github.com/remora-mesh/remora/proto/envoy/type/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/descriptors.json and testdata/ours_*.bin")

// ourFiles are every .proto file of proto/envoy.
var ourFiles = []protoreflect.FileDescriptor{
	typev3.File_envoy_type_v3_http_status_proto,
	corev3.File_envoy_config_core_v3_address_proto,
	corev3.File_envoy_config_core_v3_base_proto,
	authv3.File_envoy_service_auth_v3_attribute_context_proto,
	authv3.File_envoy_service_auth_v3_external_auth_proto,
	accesslogv3.File_envoy_data_accesslog_v3_accesslog_proto,
	alsv3.File_envoy_service_accesslog_v3_als_proto,
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the generated schema's output; run with -update after a deliberate change, then run compat/upstream", path)
	}
}

func TestDescriptorSummary(t *testing.T) {
	b, err := compat.Summarize(ourFiles...).JSON()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "descriptors.json", b)
}

// TestEveryMessageReachable makes sure the golden roots exercise every
// message we define: a message no root reaches would be unchecked.
func TestEveryMessageReachable(t *testing.T) {
	s := compat.Summarize(ourFiles...)
	seen := map[string]bool{}
	var walk func(m protoreflect.MessageDescriptor)
	walk = func(m protoreflect.MessageDescriptor) {
		if seen[string(m.FullName())] {
			return
		}
		seen[string(m.FullName())] = true
		for i := 0; i < m.Fields().Len(); i++ {
			if mm := m.Fields().Get(i).Message(); mm != nil {
				walk(mm)
			}
		}
	}
	for _, r := range compat.Roots {
		walk(mustType(t, r).Descriptor())
	}
	for name := range s.Messages {
		if !seen[name] {
			t.Errorf("message %s is not reachable from compat.Roots", name)
		}
	}
}

func mustType(t *testing.T, name string) protoreflect.MessageType {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	return mt
}

// TestOursGolden writes (with -update) or checks the wire bytes of every
// root variant, filled from our own schema.
func TestOursGolden(t *testing.T) {
	s := compat.Summarize(ourFiles...)
	for _, root := range compat.Roots {
		for v := range compat.Variants {
			name := compat.GoldenName("ours", root, v)
			t.Run(name, func(t *testing.T) {
				m := mustType(t, root).New()
				s.Fill(m, v)
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Interface())
				if err != nil {
					t.Fatal(err)
				}
				golden(t, name, b)
			})
		}
	}
}

// TestDecodeUpstream decodes the bytes go-control-plane's types wrote
// (compat/upstream, filled with the fields of our summary) and compares them
// field by field with our own fill of the same variant.
func TestDecodeUpstream(t *testing.T) {
	s := compat.Summarize(ourFiles...)
	for _, root := range compat.Roots {
		for v := range compat.Variants {
			name := compat.GoldenName("upstream", root, v)
			t.Run(name, func(t *testing.T) {
				b, err := os.ReadFile(filepath.Join("testdata", name))
				if err != nil {
					t.Fatalf("%v (run go test ./proto/envoy/compat/upstream -update)", err)
				}
				mt := mustType(t, root)
				got := mt.New()
				if err := proto.Unmarshal(b, got.Interface()); err != nil {
					t.Fatalf("decode %s: %v", name, err)
				}
				want := mt.New()
				s.Fill(want, v)
				if !proto.Equal(got.Interface(), want.Interface()) {
					t.Errorf("%s decodes to\n%v\nwant\n%v", name, got, want)
				}
				if len(got.GetUnknown()) != 0 {
					t.Errorf("%s: unknown fields at the root: %x", name, got.GetUnknown())
				}
			})
		}
	}
}

// TestUnknownFieldsKept: a field upstream defines and we omit survives a
// decode/encode round trip through our types (Envoy sends fields we leave out).
func TestUnknownFieldsKept(t *testing.T) {
	// Field 99 of AccessLogCommon is unknown to us, nested one level down.
	common := &accesslogv3.AccessLogCommon{RouteName: "r"}
	inner, err := proto.Marshal(common)
	if err != nil {
		t.Fatal(err)
	}
	// HTTPAccessLogEntry.common_properties (field 1, length-delimited) with
	// an unknown varint field 99 = 7 appended inside it.
	inner = append(inner, 0x98, 0x06, 0x07) // tag 99<<3|0 = 792 as a varint, then 7
	b := append([]byte{0x0a, byte(len(inner))}, inner...)
	var out accesslogv3.HTTPAccessLogEntry
	if err := proto.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.GetCommonProperties().GetRouteName() != "r" {
		t.Fatalf("route_name = %q", out.GetCommonProperties().GetRouteName())
	}
	re, err := proto.Marshal(&out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(re, b) {
		t.Errorf("round trip lost the unknown field: %x, want %x", re, b)
	}
}

func TestParseSummaryErrors(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"not json", "{messages"},
		{"wrong shape", `{"messages": [1, 2]}`},
		{"no messages", `{"messages": {}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := compat.ParseSummary([]byte(tc.in)); err == nil {
				t.Fatalf("ParseSummary(%q) succeeded", tc.in)
			}
		})
	}
}

func FuzzParseSummary(f *testing.F) {
	b, err := compat.Summarize(ourFiles...).JSON()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"messages": {"a": []}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := compat.ParseSummary(in)
		if err != nil {
			return
		}
		// A parsed summary must drive Fill without panicking.
		m := (&authv3.CheckResponse{}).ProtoReflect()
		s.Fill(m, 1)
	})
}
