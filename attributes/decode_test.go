package attributes

import (
	"errors"
	"strings"
	"testing"
	"time"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// global returns the global index of a word, failing the test if absent.
func global(t *testing.T, w string) int32 {
	t.Helper()
	i, ok := globalIndex[w]
	if !ok {
		t.Fatalf("%q is not a global word", w)
	}
	return i
}

// decompressErrorCase is one malformed CompressedAttributes.
type decompressErrorCase struct {
	name    string
	ca      *mixerv1.CompressedAttributes
	gwc     uint32
	wantErr error
	want    []string // substrings of the message
}

// decompressErrorCases are shared by the Decompress and wire decoder tests.
func decompressErrorCases(t *testing.T) []decompressErrorCase {
	all := GlobalWordCount()
	reqSize := global(t, RequestSize)
	srcIP := global(t, SourceIP)
	return []decompressErrorCase{
		{
			name: "gwc beyond dictionary", ca: &mixerv1.CompressedAttributes{}, gwc: all + 1,
			wantErr: ErrWordCount, want: []string{"global_word_count is 223", "knows 222"},
		},
		{
			name: "global name index beyond gwc", gwc: 10,
			ca:      &mixerv1.CompressedAttributes{Int64S: map[int32]int64{reqSize: 1}},
			wantErr: ErrIndex, want: []string{"int64s", "global index 23 is beyond global_word_count 10"},
		},
		{
			name: "negative name index beyond words", gwc: all,
			ca:      &mixerv1.CompressedAttributes{Words: []string{"a"}, Bools: map[int32]bool{-3: true}},
			wantErr: ErrIndex, want: []string{"bools", "index -3 names local word 2 but the message has 1 words"},
		},
		{
			name: "string value index bad", gwc: all,
			ca:      &mixerv1.CompressedAttributes{Strings: map[int32]int32{global(t, RequestPath): -1}},
			wantErr: ErrIndex, want: []string{`attribute "request.path"`, "value:", "has 0 words"},
		},
		{
			name: "wrong type for vocabulary attribute", gwc: all,
			ca:      &mixerv1.CompressedAttributes{Strings: map[int32]int32{reqSize: 0}},
			wantErr: ErrType, want: []string{`attribute "request.size"`, "vocabulary says INT64, the message sent STRING"},
		},
		{
			name: "bad ip length", gwc: all,
			ca:      &mixerv1.CompressedAttributes{Bytes: map[int32][]byte{srcIP: {1, 2, 3}}},
			wantErr: ErrValue, want: []string{`attribute "source.ip"`, "4 or 16 bytes, got 3"},
		},
		{
			name: "duplicate across maps", gwc: all,
			ca: &mixerv1.CompressedAttributes{Words: []string{"custom"},
				Int64S: map[int32]int64{-1: 1}, Strings: map[int32]int32{-1: -1}},
			wantErr: ErrDuplicate, want: []string{`attribute "custom"`},
		},
		{
			name: "timestamp out of range", gwc: all,
			ca:      &mixerv1.CompressedAttributes{Timestamps: map[int32]*timestamppb.Timestamp{global(t, RequestTime): {Seconds: 1 << 60}}},
			wantErr: ErrValue, want: []string{`attribute "request.time"`, "out of range"},
		},
		{
			name: "nil timestamp", gwc: all,
			ca:      &mixerv1.CompressedAttributes{Timestamps: map[int32]*timestamppb.Timestamp{global(t, RequestTime): nil}},
			wantErr: ErrValue, want: []string{"timestamp is empty"},
		},
		{
			name: "duration beyond time.Duration", gwc: all,
			ca:      &mixerv1.CompressedAttributes{Durations: map[int32]*durationpb.Duration{global(t, ResponseDuration): {Seconds: 315576000000}}},
			wantErr: ErrValue, want: []string{`attribute "response.duration"`, "does not fit"},
		},
		{
			name: "string map bad key", gwc: all,
			ca: &mixerv1.CompressedAttributes{StringMaps: map[int32]*mixerv1.StringMap{
				global(t, RequestHeaders): {Entries: map[int32]int32{-5: 0}}}},
			wantErr: ErrIndex, want: []string{`attribute "request.headers"`, "map key:"},
		},
		{
			name: "string map bad value", gwc: all,
			ca: &mixerv1.CompressedAttributes{StringMaps: map[int32]*mixerv1.StringMap{
				global(t, RequestHeaders): {Entries: map[int32]int32{global(t, ":path"): 999}}}},
			wantErr: ErrIndex, want: []string{`value of map key ":path"`, "global index 999"},
		},
	}
}

func TestDecompressErrors(t *testing.T) {
	for _, tt := range decompressErrorCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decompress(tt.ca, tt.gwc)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestReportRoundTrip(t *testing.T) {
	base := requestBag()
	bags := make([]Bag, 5)
	for i := range bags {
		bd := NewBuilder(base.Len() + 2)
		bd.Merge(base)
		bd.Set(ResponseCode, Int64(int64(200+i%2)))
		bd.Set(ResponseDuration, Duration(time.Duration(i+1)*time.Millisecond))
		bags[i] = bd.Build()
	}
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{mixerv1.ReportRequest_DELTA_ENCODING, mixerv1.ReportRequest_INDEPENDENT_ENCODING} {
		t.Run(sem.String(), func(t *testing.T) {
			req := EncodeReport(bags, sem, GlobalWordCount())
			if req.RepeatedAttributesSemantics != sem {
				t.Fatalf("semantics = %v", req.RepeatedAttributesSemantics)
			}
			for i, ca := range req.Attributes {
				if len(ca.Words) != 0 {
					t.Fatalf("record %d has its own words; all words belong in default_words", i)
				}
				if sem == mixerv1.ReportRequest_DELTA_ENCODING && i > 0 && countAttributes(ca) != 2 {
					t.Fatalf("delta record %d carries %d attributes, want the 2 that changed", i, countAttributes(ca))
				}
			}
			got, err := DecodeReport(req)
			if err != nil {
				t.Fatal(err)
			}
			for i := range bags {
				if !got[i].Equal(bags[i]) {
					t.Fatalf("record %d differs:\n%s\nwant\n%s", i, got[i], bags[i])
				}
			}
		})
	}
}

func TestReportDeltaFallsBackWhenAttributeDisappears(t *testing.T) {
	a := BagOf(map[string]Value{RequestPath: String("/a"), RequestReferer: String("r")})
	b := BagOf(map[string]Value{RequestPath: String("/b")})
	req := EncodeReport([]Bag{a, b}, mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount())
	if req.RepeatedAttributesSemantics != mixerv1.ReportRequest_INDEPENDENT_ENCODING {
		t.Fatal("a batch where an attribute disappears must be sent independently")
	}
	got, err := DecodeReport(req)
	if err != nil {
		t.Fatal(err)
	}
	if got[1].Has(RequestReferer) {
		t.Fatal("record 1 gained the referer of record 0")
	}
}

func TestDecodeReportOwnWordsAndErrors(t *testing.T) {
	// A record with its own words uses them instead of default_words.
	req := &mixerv1.ReportRequest{
		DefaultWords:    []string{"default.attr"},
		GlobalWordCount: GlobalWordCount(),
		Attributes: []*mixerv1.CompressedAttributes{
			{Int64S: map[int32]int64{-1: 1}},
			{Words: []string{"own.attr"}, Int64S: map[int32]int64{-1: 2}},
		},
		RepeatedAttributesSemantics: mixerv1.ReportRequest_INDEPENDENT_ENCODING,
	}
	got, err := DecodeReport(req)
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Has("default.attr") || !got[1].Has("own.attr") || got[1].Has("default.attr") {
		t.Fatalf("got %v / %v", got[0], got[1])
	}

	req.Attributes[1].Int64S = map[int32]int64{-2: 2}
	_, err = DecodeReport(req)
	var de *DecodeError
	if !errors.As(err, &de) || de.Element != 1 || !strings.Contains(err.Error(), "record 1") {
		t.Fatalf("err = %v, want one naming record 1", err)
	}
	req.RepeatedAttributesSemantics = 7
	if _, err := DecodeReport(req); err == nil || !strings.Contains(err.Error(), "repeated_attributes_semantics 7") {
		t.Fatalf("err = %v", err)
	}
	req.RepeatedAttributesSemantics = 0
	req.GlobalWordCount = 999
	if _, err := DecodeReport(req); !errors.Is(err, ErrWordCount) {
		t.Fatalf("err = %v", err)
	}
}
