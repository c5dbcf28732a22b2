package attributes

import (
	"testing"
	"time"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
	"google.golang.org/protobuf/proto"
)

// sameAsEncodeReport checks that ReportEncoder (reused through enc) writes
// exactly the message EncodeReport builds for bags.
func sameAsEncodeReport(t *testing.T, enc *ReportEncoder, bags []Bag, sem mixerv1.ReportRequest_RepeatedAttributesSemantics, gwc uint32) {
	t.Helper()
	want := EncodeReport(bags, sem, gwc)
	var got mixerv1.ReportRequest
	if err := proto.Unmarshal(enc.Append([]byte{0xff}[1:], bags, sem, gwc), &got); err != nil {
		t.Fatalf("ReportEncoder wrote bytes that do not unmarshal: %v", err)
	}
	if !proto.Equal(&got, want) {
		t.Fatalf("ReportEncoder wrote\n%v\nEncodeReport builds\n%v", &got, want)
	}
}

func TestReportEncoderMatchesEncodeReport(t *testing.T) {
	varied := variedBags(40)
	only := NewBuilder(1)
	only.Set(RequestID, String("only"))
	shrinking := []Bag{requestBag(), only.Build()}
	zb := NewBuilder(10)
	for _, kv := range []struct {
		name string
		v    Value
	}{
		{RequestSize, Int64(0)}, {ResponseDuration, Duration(0)}, {RequestTime, Timestamp(time.Unix(0, 0))},
		{ConnectionMTLS, Bool(false)}, {"custom.ratio", Double(0)}, {"custom.neg", Int64(-5)},
		{"custom.before", Timestamp(time.Unix(-3, 5))}, {"custom.back", Duration(-1500 * time.Millisecond)},
		{"custom.empty", String("")}, {"custom.nomap", StringMapValue(StringMap{})},
	} {
		zb.Set(kv.name, kv.v)
	}
	zero := zb.Build()
	var enc ReportEncoder // reused across cases on purpose: no state may leak between batches
	for _, c := range []struct {
		name string
		bags []Bag
		sem  mixerv1.ReportRequest_RepeatedAttributesSemantics
		gwc  uint32
	}{
		{"delta, distinct requests", varied, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount()},
		{"independent, distinct requests", varied, mixerv1.ReportRequest_INDEPENDENT_ENCODING, GlobalWordCount()},
		{"delta falls back when an attribute disappears", shrinking, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount()},
		{"delta falls back late in the batch", append(append([]Bag(nil), varied[:6]...), only.Build(), varied[6]), mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount()},
		{"peer knows fewer global words", varied[:5], mixerv1.ReportRequest_DELTA_ENCODING, 20},
		{"peer knows no global words", varied[:5], mixerv1.ReportRequest_DELTA_ENCODING, 0},
		{"zero and negative values", []Bag{zero, zero}, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount()},
		{"one record", varied[:1], mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount()},
		{"empty batch", nil, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount()},
	} {
		t.Run(c.name, func(t *testing.T) { sameAsEncodeReport(t, &enc, c.bags, c.sem, c.gwc) })
	}
}

func TestReportEncoderSteadyStateAllocatesNothing(t *testing.T) {
	bags := variedBags(100)
	var enc ReportEncoder
	buf := enc.Append(nil, bags, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount())
	if n := testing.AllocsPerRun(10, func() {
		buf = enc.Append(buf[:0], bags, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount())
	}); n != 0 {
		t.Fatalf("%v allocations per batch once warm, want 0", n)
	}
}

// FuzzReportEncoder decodes arbitrary Report bytes and, when they are a
// valid batch, checks that ReportEncoder and EncodeReport agree on it.
func FuzzReportEncoder(f *testing.F) {
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{0, 1} {
		seed, _ := proto.Marshal(EncodeReport(variedBags(3), sem, GlobalWordCount()))
		f.Add(seed)
	}
	var enc ReportEncoder
	f.Fuzz(func(t *testing.T, data []byte) {
		var req mixerv1.ReportRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		bags, err := DecodeReport(&req)
		if err != nil {
			return
		}
		sameAsEncodeReport(t, &enc, bags, req.RepeatedAttributesSemantics, req.GlobalWordCount)
	})
}
