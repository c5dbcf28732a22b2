package attributes

import (
	"encoding/base64"
	"fmt"
	"time"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ForwardedHeader carries attributes from an outbound sidecar to the
// inbound one: a base64 (standard, padded) encoded Attributes message.
const ForwardedHeader = "x-istio-attributes"

// DefaultMaxForwardedSize bounds the x-istio-attributes header a sidecar
// accepts, before decoding.
const DefaultMaxForwardedSize = 8 << 10

// ToProto returns b as an uncompressed Attributes message.
func ToProto(b Bag) *mixerv1.Attributes {
	m := make(map[string]*mixerv1.Attributes_AttributeValue, len(b.entries))
	for _, e := range b.entries {
		v := e.value
		av := &mixerv1.Attributes_AttributeValue{}
		switch v.kind {
		case KindString:
			av.Value = &mixerv1.Attributes_AttributeValue_StringValue{StringValue: v.str()}
		case KindInt64:
			av.Value = &mixerv1.Attributes_AttributeValue_Int64Value{Int64Value: v.n}
		case KindDouble:
			av.Value = &mixerv1.Attributes_AttributeValue_DoubleValue{DoubleValue: v.DoubleValue()}
		case KindBool:
			av.Value = &mixerv1.Attributes_AttributeValue_BoolValue{BoolValue: v.n != 0}
		case KindBytes, KindIPAddress:
			av.Value = &mixerv1.Attributes_AttributeValue_BytesValue{BytesValue: v.BytesValue()}
		case KindTimestamp:
			av.Value = &mixerv1.Attributes_AttributeValue_TimestampValue{TimestampValue: &timestamppb.Timestamp{Seconds: v.n, Nanos: v.nanos}}
		case KindDuration:
			av.Value = &mixerv1.Attributes_AttributeValue_DurationValue{DurationValue: durationpb.New(time.Duration(v.n))}
		case KindStringMap:
			entries := make(map[string]string, v.n)
			for _, kv := range v.kvs() {
				entries[kv.Key] = kv.Value
			}
			av.Value = &mixerv1.Attributes_AttributeValue_StringMapValue{StringMapValue: &mixerv1.Attributes_StringMap{Entries: entries}}
		}
		m[e.name] = av
	}
	return &mixerv1.Attributes{Attributes: m}
}

// FromProto converts an uncompressed Attributes message into a Bag,
// checking types against the vocabulary as Decompress does.
func FromProto(a *mixerv1.Attributes) (Bag, error) {
	entries := make([]entry, 0, len(a.GetAttributes()))
	for name, av := range a.GetAttributes() {
		var v Value
		var err error
		switch x := av.GetValue().(type) {
		case *mixerv1.Attributes_AttributeValue_StringValue:
			v = String(x.StringValue)
		case *mixerv1.Attributes_AttributeValue_Int64Value:
			v = Int64(x.Int64Value)
		case *mixerv1.Attributes_AttributeValue_DoubleValue:
			v = Double(x.DoubleValue)
		case *mixerv1.Attributes_AttributeValue_BoolValue:
			v = Bool(x.BoolValue)
		case *mixerv1.Attributes_AttributeValue_BytesValue:
			v = Bytes(x.BytesValue)
			if Vocabulary[name] == KindIPAddress {
				var ok bool
				if v, ok = ipFromBytes(bytesString(x.BytesValue)); !ok {
					err = fmt.Errorf("an IP address has 4 or 16 bytes, got %d", len(x.BytesValue))
				}
			}
		case *mixerv1.Attributes_AttributeValue_TimestampValue:
			v, err = timestampValue(x.TimestampValue)
		case *mixerv1.Attributes_AttributeValue_DurationValue:
			v, err = durationValue(x.DurationValue)
		case *mixerv1.Attributes_AttributeValue_StringMapValue:
			v = StringMapValue(StringMapOf(x.StringMapValue.GetEntries()))
		default:
			err = fmt.Errorf("no value")
		}
		if err != nil {
			return Bag{}, &DecodeError{Element: -1, Attribute: name, Err: ErrValue, Detail: err.Error()}
		}
		if want, known := Vocabulary[name]; known && want != v.kind {
			return Bag{}, &DecodeError{Element: -1, Attribute: name, Err: ErrType,
				Detail: fmt.Sprintf("the vocabulary says %s, the message sent %s", want, v.kind)}
		}
		entries = append(entries, entry{name, v})
	}
	return finish(entries, -1)
}

// EncodeForwarded renders b as an x-istio-attributes header value.
func EncodeForwarded(b Bag) (string, error) {
	raw, err := proto.Marshal(ToProto(b))
	if err != nil {
		return "", fmt.Errorf("attributes: encode forwarded attributes: %w", err)
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}

// DecodeForwarded parses an x-istio-attributes header value of at most
// maxSize bytes (DefaultMaxForwardedSize when maxSize <= 0).
func DecodeForwarded(header string, maxSize int) (Bag, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxForwardedSize
	}
	if len(header) > maxSize {
		return Bag{}, fmt.Errorf("attributes: %w: header is %d bytes, the limit is %d", ErrForwarded, len(header), maxSize)
	}
	raw, err := base64.StdEncoding.DecodeString(header)
	if err != nil {
		return Bag{}, fmt.Errorf("attributes: %w: not base64: %v", ErrForwarded, err)
	}
	var a mixerv1.Attributes
	if err := proto.Unmarshal(raw, &a); err != nil {
		return Bag{}, fmt.Errorf("attributes: %w: not an Attributes message: %v", ErrForwarded, err)
	}
	b, err := FromProto(&a)
	if err != nil {
		return Bag{}, fmt.Errorf("attributes: %w: %w", ErrForwarded, err)
	}
	return b, nil
}
