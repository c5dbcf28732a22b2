package attributes

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// decodeBoth decodes data with DecodeReport (after proto.Unmarshal) and
// with the wire decoder, and fails the test unless they agree: the same
// bags, or both an error. It returns the wire decoder's bags and error.
func decodeBoth(t testing.TB, data []byte) ([]Bag, error) {
	t.Helper()
	var want []Bag
	var wantErr error
	var req mixerv1.ReportRequest
	if wantErr = proto.Unmarshal(data, &req); wantErr == nil {
		want, wantErr = DecodeReport(&req)
	}
	var d ReportDecoder
	got, err := d.DecodeAll(data)
	// The same decoding over a copy handed to DecodeAllOwned.
	var od ReportDecoder
	owned, oerr := od.DecodeAllOwned(append([]byte(nil), data...))
	if (err == nil) != (oerr == nil) || len(owned) != len(got) {
		t.Fatalf("DecodeAll: %d bags, %v; DecodeAllOwned: %d bags, %v", len(got), err, len(owned), oerr)
	}
	for i := range got {
		if !owned[i].Equal(got[i]) {
			t.Fatalf("record %d: DecodeAllOwned differs", i)
		}
	}
	// The same decoding through DecodeReportFunc, record by record.
	var streamed []string
	ferr := DecodeReportFunc(data, func(i int, b Bag) error {
		if i != len(streamed) {
			t.Fatalf("fn called for record %d after %d records", i, len(streamed))
		}
		streamed = append(streamed, b.String())
		return nil
	})
	if (err == nil) != (ferr == nil) {
		t.Fatalf("DecodeAll err = %v but DecodeReportFunc err = %v", err, ferr)
	}
	if (wantErr == nil) != (err == nil) {
		t.Fatalf("DecodeReport err = %v but the wire decoder's = %v", wantErr, err)
	}
	if err != nil {
		var de *DecodeError
		if !errors.As(err, &de) && !errors.Is(err, ErrWordCount) {
			t.Fatalf("error %v is not a *DecodeError", err)
		}
		return nil, err
	}
	if len(got) != len(want) || len(streamed) != len(want) {
		t.Fatalf("%d bags (%d streamed), want %d", len(got), len(streamed), len(want))
	}
	for i := range want {
		if !got[i].Equal(want[i]) || streamed[i] != want[i].String() {
			t.Fatalf("record %d:\n%s\nwant\n%s", i, got[i], want[i])
		}
	}
	return got, nil
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeReportFuncRoundTrip(t *testing.T) {
	base := requestBag()
	bags := make([]Bag, 6)
	for i := range bags {
		bd := NewBuilderFrom(base, 2)
		bd.Set(ResponseCode, Int64(int64(200+i%2)))
		bd.Set(ResponseDuration, Duration(time.Duration(i+1)*time.Millisecond))
		bd.Set(RequestHeaders, StringMapValue(StringMapOf(map[string]string{"x-i": fmt.Sprint(i), ":path": "/"})))
		bags[i] = bd.Build()
	}
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{mixerv1.ReportRequest_DELTA_ENCODING, mixerv1.ReportRequest_INDEPENDENT_ENCODING} {
		t.Run(sem.String(), func(t *testing.T) {
			got, err := decodeBoth(t, marshal(t, EncodeReport(bags, sem, GlobalWordCount())))
			if err != nil {
				t.Fatal(err)
			}
			for i := range bags {
				if !got[i].Equal(bags[i]) {
					t.Fatalf("record %d:\n%s\nwant\n%s", i, got[i], bags[i])
				}
			}
		})
	}
}

// TestDecodeReportFuncErrors: every malformed record Decompress rejects is
// rejected by the wire decoder with the same message, naming the record.
func TestDecodeReportFuncErrors(t *testing.T) {
	for _, tt := range decompressErrorCases(t) {
		if tt.name == "nil timestamp" {
			continue // a nil map value travels as an empty message: 1970-01-01
		}
		t.Run(tt.name, func(t *testing.T) {
			ok := &mixerv1.CompressedAttributes{Int64S: map[int32]int64{global(t, ResponseCode): 200}}
			req := &mixerv1.ReportRequest{Attributes: []*mixerv1.CompressedAttributes{ok, tt.ca}, GlobalWordCount: tt.gwc,
				RepeatedAttributesSemantics: mixerv1.ReportRequest_INDEPENDENT_ENCODING}
			_, wantErr := DecodeReport(req)
			_, err := decodeBoth(t, marshal(t, req))
			if !errors.Is(err, tt.wantErr) || err.Error() != wantErr.Error() {
				t.Fatalf("err = %v\nwant %v", err, wantErr)
			}
		})
	}
}

// entry appends a map entry {1: key, 2: value} as field num of a message.
func appendEntry(b []byte, num protowire.Number, entry []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, entry)
}

func sint32Entry(key, val int32) []byte {
	e := protowire.AppendTag(nil, 1, protowire.VarintType)
	e = protowire.AppendVarint(e, protowire.EncodeZigZag(int64(key)))
	e = protowire.AppendTag(e, 2, protowire.VarintType)
	return protowire.AppendVarint(e, protowire.EncodeZigZag(int64(val)))
}

func report(records ...[]byte) []byte {
	b := protowire.AppendTag(nil, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(GlobalWordCount()))
	for _, r := range records {
		b = appendEntry(b, 1, r)
	}
	return b
}

// TestDecodeReportFuncProtobufRules: the wire decoder follows protobuf's
// rules where hand-written decoders usually slip.
func TestDecodeReportFuncProtobufRules(t *testing.T) {
	path, code := globalIndex[RequestPath], globalIndex[ResponseCode]
	reqTime, hdrs := globalIndex[RequestTime], globalIndex[RequestHeaders]
	ts := func(fields ...uint64) []byte {
		var m []byte
		for i := 0; i < len(fields); i += 2 {
			m = protowire.AppendTag(m, protowire.Number(fields[i]), protowire.VarintType)
			m = protowire.AppendVarint(m, fields[i+1])
		}
		e := protowire.AppendTag(nil, 1, protowire.VarintType)
		e = protowire.AppendVarint(e, protowire.EncodeZigZag(int64(reqTime)))
		return appendEntry(e, 2, m)
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr bool
	}{
		{"repeated map key: the last wins, the first is never checked",
			report(appendEntry(appendEntry(nil, caStrings, sint32Entry(path, 9999)), caStrings, sint32Entry(path, globalIndex["GET"]))), false},
		{"repeated map key: the last is checked",
			report(appendEntry(appendEntry(nil, caStrings, sint32Entry(path, globalIndex["GET"])), caStrings, sint32Entry(path, 9999))), true},
		{"mistyped field is an unknown field",
			report(protowire.AppendFixed32(protowire.AppendTag(nil, caStrings, protowire.Fixed32Type), 7)), false},
		{"unknown fields everywhere",
			append(report(appendEntry(protowire.AppendVarint(protowire.AppendTag(nil, 77, protowire.VarintType), 1), caInt64s,
				append(sint32Entry(code, 200), protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 3)...))),
				protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 5)...), false},
		{"timestamp fields merge across value occurrences",
			report(appendEntry(nil, caTimestamps, append(ts(1, 1700000000), ts(2, 5)[len(ts()):]...))), false},
		{"empty timestamp is the epoch", report(appendEntry(nil, caTimestamps, ts())), false},
		{"string map repeated key",
			report(appendEntry(nil, caStringMaps, append(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), protowire.EncodeZigZag(int64(hdrs))),
				appendEntry(nil, 2, append(appendEntry(nil, 1, sint32Entry(path, 9999)), appendEntry(nil, 1, sint32Entry(path, path))...))...))), false},
		{"map key missing is index 0 (source.ip, not an int)", report(appendEntry(nil, caInt64s, []byte{0x10, 0x01})), true},
		{"truncated record", report([]byte{0x1a, 0x05, 0x08}), true},
		{"truncated request", report(sint32Entry(1, 2))[:5], true},
		{"invalid UTF-8 word", report(appendEntry(nil, caWords, []byte{0xff, 0xfe})), true},
		{"invalid UTF-8 default word", append(report(), appendEntry(nil, 2, []byte{0xc0})...), true},
		{"field number zero", report([]byte{0x00, 0x01}), true},
		{"end group without start", report([]byte{0x0c}), true},
		{"group unknown field", report([]byte{0x5b, 0x08, 0x01, 0x5c}), false},
		{"huge field number", report(protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3)), true},
		{"empty request", nil, false},
		{"empty record", report(nil, nil), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeBoth(t, tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(tt.name, "truncated") && !errors.Is(err, ErrWire) {
				t.Fatalf("err = %v, want ErrWire", err)
			}
		})
	}
}

func TestDecodeReportFuncStopsOnCallerError(t *testing.T) {
	data := marshal(t, EncodeReport([]Bag{requestBag(), requestBag(), requestBag()}, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount()))
	stop := errors.New("stop")
	calls := 0
	err := DecodeReportFunc(data, func(i int, b Bag) error {
		calls++
		if b.Len() != requestBag().Len() {
			t.Errorf("record %d has %d attributes", i, b.Len())
		}
		return stop
	})
	if err != stop || calls != 1 {
		t.Fatalf("err = %v after %d calls, want the caller's error after 1", err, calls)
	}
}

// TestReportDecoderReuse: a decoder reused for another request decodes it
// afresh, and DecodeAll returns nothing on error.
func TestReportDecoderReuse(t *testing.T) {
	var d ReportDecoder
	a := BagOf(map[string]Value{RequestPath: String("/a"), SourceIP: IPAddress(netip.MustParseAddr("10.0.0.1"))})
	b := BagOf(map[string]Value{RequestPath: String("/b"), ResponseCode: Int64(500)})
	for _, bag := range []Bag{a, b, a} {
		got, err := d.DecodeAll(marshal(t, EncodeReport([]Bag{bag, bag}, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount())))
		if err != nil || len(got) != 2 || !got[0].Equal(bag) || !got[1].Equal(bag) {
			t.Fatalf("got %v, %v; want twice %v", got, err, bag)
		}
	}
	if got, err := d.DecodeAll(report(nil, []byte{0x1a})); err == nil || got != nil {
		t.Fatalf("got %v, %v; want only an error", got, err)
	}
}
