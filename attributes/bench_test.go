package attributes

import (
	"testing"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
	"google.golang.org/protobuf/proto"
)

func BenchmarkCompress(b *testing.B) {
	bag := requestBag()
	b.ReportAllocs()
	for b.Loop() {
		Compress(bag, GlobalWordCount())
	}
}

func BenchmarkDecompress(b *testing.B) {
	ca := Compress(requestBag(), GlobalWordCount())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decompress(ca, GlobalWordCount()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecompressWire includes protobuf unmarshalling, as a server sees it.
func BenchmarkDecompressWire(b *testing.B) {
	raw, _ := proto.Marshal(Compress(requestBag(), GlobalWordCount()))
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		var ca mixerv1.CompressedAttributes
		if err := proto.Unmarshal(raw, &ca); err != nil {
			b.Fatal(err)
		}
		if _, err := Decompress(&ca, GlobalWordCount()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBagGet(b *testing.B) {
	bag := requestBag()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := bag.Get(RequestPath); !ok {
			b.Fatal("missing")
		}
	}
}

func BenchmarkValueAppendKey(b *testing.B) {
	v, _ := requestBag().Get(RequestHeaders)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = v.AppendKey(buf[:0])
	}
}

func BenchmarkEncodeReport100(b *testing.B) {
	bags := make([]Bag, 100)
	for i := range bags {
		bags[i] = requestBag()
	}
	b.ReportAllocs()
	for b.Loop() {
		EncodeReport(bags, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount())
	}
}

// reportWire is a 100-record DELTA batch of requestBag variations.
func reportWire(b *testing.B, sem mixerv1.ReportRequest_RepeatedAttributesSemantics) []byte {
	base := requestBag()
	bags := make([]Bag, 100)
	for i := range bags {
		bd := NewBuilderFrom(base, 2)
		bd.Set(ResponseCode, Int64(int64(200+i%3)))
		bd.Set(RequestPath, String("/reviews/"+string(rune('a'+i%26))))
		bags[i] = bd.Build()
	}
	data, err := proto.Marshal(EncodeReport(bags, sem, GlobalWordCount()))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkDecodeReport100 is the generated-types path: unmarshal, then
// DecodeReport, for a 100-record batch.
func BenchmarkDecodeReport100(b *testing.B) {
	data := reportWire(b, mixerv1.ReportRequest_DELTA_ENCODING)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var req mixerv1.ReportRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeReport(&req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkDecodeReportFunc100 is the wire decoder on the same batch.
func BenchmarkDecodeReportFunc100(b *testing.B) {
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{mixerv1.ReportRequest_DELTA_ENCODING, mixerv1.ReportRequest_INDEPENDENT_ENCODING} {
		b.Run(sem.String(), func(b *testing.B) {
			data := reportWire(b, sem)
			fn := func(int, Bag) error { return nil }
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := DecodeReportFunc(data, fn); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
