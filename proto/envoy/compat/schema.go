package compat

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Field is one field of a message as the summary records it.
type Field struct {
	Name   string `json:"name"`
	Number int32  `json:"number"`
	Kind   string `json:"kind"`
	// Type is the full name of the field's message or enum type, empty for scalars.
	Type  string `json:"type,omitempty"`
	Label string `json:"label"`
	// Oneof is the name of the real (non-synthetic) oneof holding the field.
	Oneof string `json:"oneof,omitempty"`
}

// Method is one RPC of a service as the summary records it.
type Method struct {
	Name         string `json:"name"`
	Input        string `json:"input"`
	Output       string `json:"output"`
	ClientStream bool   `json:"client_stream,omitempty"`
	ServerStream bool   `json:"server_stream,omitempty"`
}

// MethodOf summarises one method descriptor.
func MethodOf(md protoreflect.MethodDescriptor) Method {
	return Method{
		Name:         string(md.Name()),
		Input:        string(md.Input().FullName()),
		Output:       string(md.Output().FullName()),
		ClientStream: md.IsStreamingClient(),
		ServerStream: md.IsStreamingServer(),
	}
}

// Summary describes a schema by full names: every message's fields, every
// enum's values and every service's methods. It is what both test packages
// compare.
type Summary struct {
	Messages map[string][]Field          `json:"messages"`
	Enums    map[string]map[string]int32 `json:"enums"`
	Services map[string][]Method         `json:"services"`
}

// Summarize records every message (nested and map entries included) and enum
// declared in files, and every service's methods.
func Summarize(files ...protoreflect.FileDescriptor) *Summary {
	s := &Summary{Messages: map[string][]Field{}, Enums: map[string]map[string]int32{}, Services: map[string][]Method{}}
	for _, f := range files {
		s.addEnums(f.Enums())
		s.addMessages(f.Messages())
		for i := 0; i < f.Services().Len(); i++ {
			sd := f.Services().Get(i)
			ms := []Method{}
			for j := 0; j < sd.Methods().Len(); j++ {
				ms = append(ms, MethodOf(sd.Methods().Get(j)))
			}
			s.Services[string(sd.FullName())] = ms
		}
	}
	return s
}

func (s *Summary) addEnums(es protoreflect.EnumDescriptors) {
	for i := 0; i < es.Len(); i++ {
		e := es.Get(i)
		vals := map[string]int32{}
		for j := 0; j < e.Values().Len(); j++ {
			v := e.Values().Get(j)
			vals[string(v.Name())] = int32(v.Number())
		}
		s.Enums[string(e.FullName())] = vals
	}
}

func (s *Summary) addMessages(ms protoreflect.MessageDescriptors) {
	for i := 0; i < ms.Len(); i++ {
		m := ms.Get(i)
		fs := []Field{}
		for j := 0; j < m.Fields().Len(); j++ {
			fs = append(fs, FieldOf(m.Fields().Get(j)))
		}
		s.Messages[string(m.FullName())] = fs
		s.addEnums(m.Enums())
		s.addMessages(m.Messages())
	}
}

// FieldOf summarises one field descriptor.
func FieldOf(fd protoreflect.FieldDescriptor) Field {
	f := Field{
		Name:   string(fd.Name()),
		Number: int32(fd.Number()),
		Kind:   fd.Kind().String(),
		Label:  fd.Cardinality().String(),
	}
	switch {
	case fd.Message() != nil:
		f.Type = string(fd.Message().FullName())
	case fd.Enum() != nil:
		f.Type = string(fd.Enum().FullName())
	}
	if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() {
		f.Oneof = string(o.Name())
	}
	return f
}

// JSON renders the summary with sorted keys, one field per line.
func (s *Summary) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("compat: encode summary: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseSummary decodes a summary written by JSON.
func ParseSummary(b []byte) (*Summary, error) {
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("compat: decode summary: %w", err)
	}
	if len(s.Messages) == 0 {
		return nil, fmt.Errorf("compat: summary has no messages")
	}
	return &s, nil
}

// has reports whether the summary defines field fd of its message. Messages
// outside the summary (well-known types) are filled completely.
func (s *Summary) has(fd protoreflect.FieldDescriptor) bool {
	fs, ok := s.Messages[string(fd.ContainingMessage().FullName())]
	if !ok {
		return true
	}
	return slices.ContainsFunc(fs, func(f Field) bool { return f.Name == string(fd.Name()) })
}

// enumValue picks a non-zero value of e that the summary defines (or, for an
// enum outside it, that e declares), chosen by seed.
func (s *Summary) enumValue(e protoreflect.EnumDescriptor, seed uint64) protoreflect.EnumNumber {
	var nums []int32
	if vals, ok := s.Enums[string(e.FullName())]; ok {
		for _, n := range vals {
			nums = append(nums, n)
		}
	} else {
		for i := 0; i < e.Values().Len(); i++ {
			nums = append(nums, int32(e.Values().Get(i).Number()))
		}
	}
	nums = slices.DeleteFunc(nums, func(n int32) bool { return n == 0 })
	if len(nums) == 0 {
		return 0
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	nums = slices.Compact(nums)
	return protoreflect.EnumNumber(nums[seed%uint64(len(nums))])
}

// maxDepth bounds the recursion of Fill (google.protobuf.Struct is recursive).
const maxDepth = 12

// Fill sets every field of m that the summary defines to a value derived
// from the field's full name and variant: scalars non-zero, lists with two
// elements, maps with one entry, messages recursively. For each oneof it
// sets the member at index variant modulo the number of members the summary
// defines, so variants 0..n-1 cover every member. The same summary, message
// type and variant always give the same message.
func (s *Summary) Fill(m protoreflect.Message, variant int) {
	s.fill(m, variant, 0)
}

func (s *Summary) fill(m protoreflect.Message, variant, depth int) {
	md := m.Descriptor()
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		if !s.has(fd) {
			continue
		}
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() {
			var members []protoreflect.FieldDescriptor
			for j := 0; j < o.Fields().Len(); j++ {
				if s.has(o.Fields().Get(j)) {
					members = append(members, o.Fields().Get(j))
				}
			}
			if members[variant%len(members)] != fd {
				continue
			}
		}
		if fd.Message() != nil && !fd.IsMap() && depth >= maxDepth {
			continue
		}
		seed := seedOf(fd, variant)
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			k := s.scalar(fd.MapKey(), seed).MapKey()
			if fd.MapValue().Message() != nil {
				if depth >= maxDepth {
					continue
				}
				v := mp.NewValue()
				s.fill(v.Message(), variant, depth+1)
				mp.Set(k, v)
			} else {
				mp.Set(k, s.scalar(fd.MapValue(), seed))
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for n := uint64(0); n < 2; n++ {
				if fd.Message() != nil {
					v := l.NewElement()
					s.fill(v.Message(), variant+int(n), depth+1)
					l.Append(v)
				} else {
					l.Append(s.scalar(fd, seed+n))
				}
			}
		case fd.Message() != nil:
			s.fill(m.Mutable(fd).Message(), variant, depth+1)
		default:
			m.Set(fd, s.scalar(fd, seed))
		}
	}
}

func seedOf(fd protoreflect.FieldDescriptor, variant int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(fd.FullName()))
	return h.Sum64()%100000 + uint64(variant)*7
}

func (s *Summary) scalar(fd protoreflect.FieldDescriptor, seed uint64) protoreflect.Value {
	n := seed%1000 + 1
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(s.enumValue(fd.Enum(), seed))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(-int32(n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(-int64(n) << 33)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n) << 20)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(n << 40)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(n) + 0.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(n) + 0.25)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("%s-%d", fd.Name(), seed))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(fmt.Sprintf("\x00\xff%s-%d", fd.Name(), seed)))
	}
	panic(fmt.Sprintf("compat: unhandled kind %v of %s", fd.Kind(), fd.FullName()))
}

// Roots are the top-level messages whose variants the golden files hold;
// every message of the summary is reachable from one of them.
var Roots = []string{
	"envoy.service.auth.v3.CheckRequest",
	"envoy.service.auth.v3.CheckResponse",
	"envoy.service.accesslog.v3.StreamAccessLogsMessage",
	"envoy.service.accesslog.v3.StreamAccessLogsResponse",
}

// Variants is how many variants of each root the golden files hold: enough
// to select every member of the largest oneof.
const Variants = 3

// GoldenName is the testdata file name of a root's variant written by side
// ("ours" or "upstream").
func GoldenName(side, root string, variant int) string {
	return fmt.Sprintf("%s_%s_%d.bin", side, root, variant)
}
