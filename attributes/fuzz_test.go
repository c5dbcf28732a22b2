package attributes

import (
	"testing"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzDecompress feeds arbitrary bytes as a CompressedAttributes message.
// Decoding must never panic, and whatever decodes must survive a round trip.
func FuzzDecompress(f *testing.F) {
	seed, _ := proto.Marshal(Compress(requestBag(), GlobalWordCount()))
	f.Add(seed, uint32(222))
	f.Add(seed, uint32(3))
	f.Add([]byte{0x12, 0x04, 0x08, 0x01, 0x10, 0x7f}, uint32(222))
	f.Fuzz(func(t *testing.T, data []byte, gwc uint32) {
		var ca mixerv1.CompressedAttributes
		if proto.Unmarshal(data, &ca) != nil {
			return
		}
		b, err := Decompress(&ca, gwc)
		if err != nil {
			return
		}
		again, err := Decompress(Compress(b, gwc), gwc)
		if err != nil {
			t.Fatalf("re-decoding our own encoding failed: %v", err)
		}
		if !again.Equal(b) {
			t.Fatalf("round trip changed the bag:\n%s\nwant\n%s", again, b)
		}
	})
}

// FuzzDecodeReport feeds arbitrary bytes as a ReportRequest.
func FuzzDecodeReport(f *testing.F) {
	seed, _ := proto.Marshal(EncodeReport([]Bag{requestBag(), requestBag()}, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount()))
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		var req mixerv1.ReportRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		bags, err := DecodeReport(&req)
		if err != nil {
			return
		}
		again, err := DecodeReport(EncodeReport(bags, req.RepeatedAttributesSemantics, req.GlobalWordCount))
		if err != nil {
			t.Fatalf("re-decoding our own encoding failed: %v", err)
		}
		for i := range bags {
			if !again[i].Equal(bags[i]) {
				t.Fatalf("record %d changed in a round trip", i)
			}
		}
	})
}

// FuzzDecodeForwarded feeds arbitrary x-istio-attributes header values.
func FuzzDecodeForwarded(f *testing.F) {
	seed, _ := EncodeForwarded(requestBag())
	f.Add(seed)
	f.Add("")
	f.Add("CgA=")
	f.Fuzz(func(t *testing.T, header string) {
		b, err := DecodeForwarded(header, 0)
		if err != nil {
			return
		}
		h, err := EncodeForwarded(b)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeForwarded(h, 1<<20)
		if err != nil || !again.Equal(b) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzDecodeReportWire compares the wire decoder with proto.Unmarshal and
// DecodeReport on the same bytes: the same bags, or both an error.
func FuzzDecodeReportWire(f *testing.F) {
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{0, 1} {
		seed, _ := proto.Marshal(EncodeReport([]Bag{requestBag(), requestBag()}, sem, GlobalWordCount()))
		f.Add(seed)
	}
	f.Add([]byte{0x18, 0x80, 0x01, 0x0a, 0x06, 0x12, 0x04, 0x08, 0x02, 0x10, 0x7f})
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeBoth(t, data)
	})
}
