package attributes

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// checkOracle decodes a CheckRequest the general way: proto.Unmarshal,
// then Decompress.
func checkOracle(data []byte) (Bag, uint32, error) {
	var req mixerv1.CheckRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		return Bag{}, 0, err
	}
	b, err := Decompress(req.GetAttributes(), req.GetGlobalWordCount())
	return b, req.GetGlobalWordCount(), err
}

// checkBoth decodes data with a CheckDecoder and with the oracle: when the
// decoder accepts a request, the oracle must accept it too, with the same
// bag and word count. It returns whether the decoder accepted it.
func checkBoth(t *testing.T, d *CheckDecoder, data []byte) bool {
	t.Helper()
	bag, gwc, ok := d.Decode(data)
	if !ok {
		return false
	}
	want, wantGWC, err := checkOracle(data)
	if err != nil {
		t.Fatalf("the wire decoder accepted what the oracle rejects (%v): %x", err, data)
	}
	if gwc != wantGWC || !bag.Equal(want) {
		t.Fatalf("wire decoder: gwc %d bag\n%s\noracle: gwc %d bag\n%s", gwc, bag, wantGWC, want)
	}
	return true
}

func marshalCheck(t testing.TB, req *mixerv1.CheckRequest) []byte {
	data, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCheckDecoder(t *testing.T) {
	gwc := GlobalWordCount()
	full := Compress(requestBag(), gwc)
	valid := marshalCheck(t, &mixerv1.CheckRequest{Attributes: full, GlobalWordCount: gwc, DeduplicationId: "dedup-1"})
	// A name sent with the wrong type: rejected by Decompress.
	badType := Compress(BagOf(map[string]Value{RequestPath: Int64(3)}), gwc)
	// A local index beyond the words sent.
	badIndex := marshalCheck(t, &mixerv1.CheckRequest{Attributes: &mixerv1.CompressedAttributes{Strings: map[int32]int32{-5: 1}}, GlobalWordCount: gwc})
	// The attributes field twice: protobuf merges the two messages.
	twice := append(slicesClone(valid), valid...)
	withUnknown := protowire.AppendVarint(protowire.AppendTag(slicesClone(valid), 99, protowire.VarintType), 7)
	badDedup := protowire.AppendBytes(protowire.AppendTag(nil, checkDedupID, protowire.BytesType), []byte{0xff, 0xfe})
	for _, tc := range []struct {
		name   string
		data   []byte
		accept bool // the wire decoder decodes it itself
	}{
		{"full", valid, true},
		{"empty", nil, true},
		{"no attributes", marshalCheck(t, &mixerv1.CheckRequest{GlobalWordCount: 10}), true},
		{"older peer", marshalCheck(t, &mixerv1.CheckRequest{Attributes: Compress(requestBag(), 40), GlobalWordCount: 40}), true},
		{"unknown field", withUnknown, true},
		{"quotas", marshalCheck(t, &mixerv1.CheckRequest{Attributes: full, GlobalWordCount: gwc,
			Quotas: map[string]*mixerv1.CheckRequest_QuotaParams{"rq": {Amount: 1}}}), false},
		{"attributes twice", twice, false},
		{"wrong type", marshalCheck(t, &mixerv1.CheckRequest{Attributes: badType, GlobalWordCount: gwc}), false},
		{"bad index", badIndex, false},
		{"word count too high", marshalCheck(t, &mixerv1.CheckRequest{GlobalWordCount: gwc + 1}), false},
		{"dedup id not UTF-8", badDedup, false},
		{"truncated", valid[:len(valid)-3], false},
		{"bad tag", []byte{0x00}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d CheckDecoder
			if got := checkBoth(t, &d, tc.data); got != tc.accept {
				_, _, err := checkOracle(tc.data)
				t.Fatalf("accepted %v, want %v (oracle: %v)", got, tc.accept, err)
			}
			// The decoder is reusable: a second request decodes the same.
			checkBoth(t, &d, valid)
		})
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

// FuzzCheckDecoder compares the wire decoder with proto.Unmarshal and
// Decompress on the same bytes: whatever the decoder accepts, the oracle
// decodes to the same bag.
func FuzzCheckDecoder(f *testing.F) {
	gwc := GlobalWordCount()
	f.Add(marshalCheck(f, &mixerv1.CheckRequest{Attributes: Compress(requestBag(), gwc), GlobalWordCount: gwc}))
	f.Add(marshalCheck(f, &mixerv1.CheckRequest{Attributes: Compress(requestBag(), 12), GlobalWordCount: 12, DeduplicationId: "x"}))
	f.Add([]byte{0x10, 0x80, 0x01, 0x0a, 0x06, 0x12, 0x04, 0x08, 0x02, 0x10, 0x7f})
	var d CheckDecoder
	f.Fuzz(func(t *testing.T, data []byte) {
		checkBoth(t, &d, data)
	})
}

func BenchmarkCheckDecoder(b *testing.B) {
	gwc := GlobalWordCount()
	data := marshalCheck(b, &mixerv1.CheckRequest{Attributes: Compress(requestBag(), gwc), GlobalWordCount: gwc})
	b.Run("wire", func(b *testing.B) {
		var d CheckDecoder
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := d.Decode(data); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("generated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := checkOracle(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
