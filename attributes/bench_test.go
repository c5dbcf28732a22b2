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
