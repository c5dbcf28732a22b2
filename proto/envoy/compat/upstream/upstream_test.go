package upstream_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"testing"

	// go-control-plane v1.40.0: the reference Envoy types. Nothing here may
	// import Remora's proto/envoy packages (same full names: registry panic).
	_ "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/remora-mesh/remora/proto/envoy/compat"
)

var update = flag.Bool("update", false, "rewrite ../testdata/upstream_*.bin")

var testdata = filepath.Join("..", "testdata")

func summary(t *testing.T) *compat.Summary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, "descriptors.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := compat.ParseSummary(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestSchemaMatchesUpstream checks every message, field, enum value and
// service method Remora defines against go-control-plane's descriptor of the
// same full name: same number, kind, type, label and oneof; same input,
// output and streaming.
func TestSchemaMatchesUpstream(t *testing.T) {
	s := summary(t)
	for _, name := range sortedKeys(s.Messages) {
		t.Run(name, func(t *testing.T) {
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
			if err != nil {
				t.Fatalf("upstream has no message %s: %v", name, err)
			}
			md, ok := d.(protoreflect.MessageDescriptor)
			if !ok {
				t.Fatalf("upstream %s is a %T, not a message", name, d)
			}
			for _, f := range s.Messages[name] {
				ud := md.Fields().ByName(protoreflect.Name(f.Name))
				if ud == nil {
					t.Errorf("field %s: not defined upstream", f.Name)
					continue
				}
				if got := compat.FieldOf(ud); got != f {
					t.Errorf("field %s:\n ours     %+v\n upstream %+v", f.Name, f, got)
				}
			}
		})
	}
	if len(s.Services) != 2 {
		t.Errorf("summary has %d services, want ext_authz and ALS", len(s.Services))
	}
	for _, name := range sortedKeys(s.Services) {
		t.Run(name, func(t *testing.T) {
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
			if err != nil {
				t.Fatalf("upstream has no service %s: %v", name, err)
			}
			sd, ok := d.(protoreflect.ServiceDescriptor)
			if !ok {
				t.Fatalf("upstream %s is a %T, not a service", name, d)
			}
			for _, m := range s.Services[name] {
				um := sd.Methods().ByName(protoreflect.Name(m.Name))
				if um == nil {
					t.Errorf("method %s: not defined upstream", m.Name)
				} else if got := compat.MethodOf(um); got != m {
					t.Errorf("method %s:\n ours     %+v\n upstream %+v", m.Name, m, got)
				}
			}
		})
	}
	for _, name := range sortedKeys(s.Enums) {
		t.Run(name, func(t *testing.T) {
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
			if err != nil {
				t.Fatalf("upstream has no enum %s: %v", name, err)
			}
			ed, ok := d.(protoreflect.EnumDescriptor)
			if !ok {
				t.Fatalf("upstream %s is a %T, not an enum", name, d)
			}
			for _, v := range sortedKeys(s.Enums[name]) {
				uv := ed.Values().ByName(protoreflect.Name(v))
				if uv == nil {
					t.Errorf("value %s: not defined upstream", v)
				} else if int32(uv.Number()) != s.Enums[name][v] {
					t.Errorf("value %s = %d, upstream %d", v, s.Enums[name][v], uv.Number())
				}
			}
		})
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

// TestDecodeOurs decodes the bytes Remora's types wrote with
// go-control-plane's types and compares them field by field with
// go-control-plane's own fill of the same variant (restricted to the fields
// of our summary).
func TestDecodeOurs(t *testing.T) {
	s := summary(t)
	for _, root := range compat.Roots {
		for v := range compat.Variants {
			name := compat.GoldenName("ours", root, v)
			t.Run(name, func(t *testing.T) {
				b, err := os.ReadFile(filepath.Join(testdata, name))
				if err != nil {
					t.Fatal(err)
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
				// Fill reaches as deep as our schema does: make sure our
				// bytes are non-trivial for every root that has fields.
				if len(s.Messages[root]) > 0 && len(b) == 0 {
					t.Errorf("%s is empty", name)
				}
			})
		}
	}
}

// TestUpstreamGolden writes (with -update) or checks the wire bytes
// go-control-plane's types produce for every root variant; compat's own
// tests decode them with Remora's types.
func TestUpstreamGolden(t *testing.T) {
	s := summary(t)
	for _, root := range compat.Roots {
		for v := range compat.Variants {
			name := compat.GoldenName("upstream", root, v)
			t.Run(name, func(t *testing.T) {
				m := mustType(t, root).New()
				s.Fill(m, v)
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Interface())
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(testdata, name)
				if *update {
					if err := os.WriteFile(path, b, 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run with -update)", err)
				}
				if !bytes.Equal(b, want) {
					t.Errorf("%s differs from go-control-plane's encoding; run with -update", path)
				}
			})
		}
	}
}
