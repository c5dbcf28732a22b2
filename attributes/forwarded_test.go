package attributes

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
	"google.golang.org/protobuf/proto"
)

func TestForwardedRoundTrip(t *testing.T) {
	b := requestBag()
	h, err := EncodeForwarded(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeForwarded(h, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(b) {
		t.Fatalf("round trip changed the bag:\n%s\nwant\n%s", got, b)
	}
}

func TestDecodeForwardedErrors(t *testing.T) {
	enc := func(a *mixerv1.Attributes) string {
		raw, err := proto.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(raw)
	}
	tests := []struct {
		name   string
		header string
		max    int
		want   string
	}{
		{"too large", strings.Repeat("A", 101), 100, "header is 101 bytes, the limit is 100"},
		{"not base64", "!!!", 0, "not base64"},
		{"not a message", base64.StdEncoding.EncodeToString([]byte{0xff, 0xff, 0xff}), 0, "not an Attributes message"},
		{"no value", enc(&mixerv1.Attributes{Attributes: map[string]*mixerv1.Attributes_AttributeValue{"x": {}}}), 0, `attribute "x"`},
		{"wrong type", enc(&mixerv1.Attributes{Attributes: map[string]*mixerv1.Attributes_AttributeValue{
			ResponseCode: {Value: &mixerv1.Attributes_AttributeValue_StringValue{StringValue: "200"}}}}), 0, "vocabulary says INT64"},
		{"bad ip", enc(&mixerv1.Attributes{Attributes: map[string]*mixerv1.Attributes_AttributeValue{
			SourceIP: {Value: &mixerv1.Attributes_AttributeValue_BytesValue{BytesValue: []byte{1}}}}}), 0, "4 or 16 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeForwarded(tt.header, tt.max)
			if !errors.Is(err, ErrForwarded) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrForwarded mentioning %q", err, tt.want)
			}
		})
	}
}
