package attributes

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// projectedNames is the projection the differential tests use: global
// words of every kind, string maps, a local-only name and a name nobody
// sends.
var projectedNames = []string{
	ContextProtocol, ContextReporterKind, ConnectionMTLS, DestinationIP, DestinationLabels,
	DestinationServiceHost, RequestSize, RequestTime, ResponseCode, ResponseDuration,
	SourceLabels, SourceWorkloadName, "custom.local", "never.sent", "request.api_key",
}

func testProjection(t testing.TB) *Projection {
	t.Helper()
	p, err := NewProjection(projectedNames)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// projectBoth decodes data with ReportDecoder (the oracle) and with a
// ProjectionDecoder and fails the test unless they agree: the same error
// message and sentinel, or the projected values of every record. It
// returns whether the ProjectionDecoder's fast path decided.
func projectBoth(t testing.TB, d *ProjectionDecoder, p *Projection, data []byte) (fast bool, err error) {
	t.Helper()
	var full ReportDecoder
	bags, wantErr := full.DecodeAll(data)
	// The ProjectionDecoder refers to its input: give it its own copy.
	in := append([]byte(nil), data...)
	rows, n, err := d.Decode(in, p)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("ProjectionDecoder err = %v, ReportDecoder err = %v", err, wantErr)
	}
	if err != nil {
		if err.Error() != wantErr.Error() {
			t.Fatalf("ProjectionDecoder err = %v\nwant %v", err, wantErr)
		}
		for _, sentinel := range []error{ErrWire, ErrIndex, ErrType, ErrDuplicate, ErrValue, ErrWordCount} {
			if errors.Is(err, sentinel) != errors.Is(wantErr, sentinel) {
				t.Fatalf("errors.Is(%v, %v) differs from the oracle", err, sentinel)
			}
		}
		if rows != nil || n != 0 {
			t.Fatalf("%d rows returned with an error", n)
		}
		return !d.slow, err
	}
	k := len(p.Names())
	if n != len(bags) || len(rows) != n*k {
		t.Fatalf("%d records in %d values, want %d records", n, len(rows), len(bags))
	}
	for i, b := range bags {
		for c, name := range p.Names() {
			want, _ := b.Get(name)
			if got := rows[i*k+c]; !got.Equal(want) {
				t.Fatalf("record %d %s = %v, want %v", i, name, got, want)
			}
		}
	}
	return !d.slow, nil
}

// sidecarBags are delta-friendly records with header maps, IPs,
// timestamps and a local-only attribute name, like a sidecar's.
func sidecarBags(n int) []Bag {
	bags := make([]Bag, n)
	for i := range bags {
		bd := NewBuilderFrom(requestBag(), 8)
		bd.Set(ResponseCode, Int64(int64(200+i%3)))
		bd.Set(ResponseDuration, Duration(time.Duration(i+1)*time.Millisecond))
		bd.Set(RequestTime, Timestamp(time.Unix(1_700_000_000+int64(i), 5)))
		bd.Set(RequestHeaders, StringMapValue(StringMapOf(map[string]string{"x-request-id": fmt.Sprint("id-", i), ":path": "/", "user-agent": "curl"})))
		bd.Set(SourceLabels, StringMapValue(StringMapOf(map[string]string{"app": "productpage", "version": fmt.Sprint("v", i%2)})))
		bd.Set(DestinationIP, IPAddress(netip.MustParseAddr("10.0.0.7")))
		bd.Set(ConnectionMTLS, Bool(i%2 == 0))
		bd.Set("custom.local", String(fmt.Sprint("local-", i%4)))
		bd.Set("custom.other", Double(float64(i)/3))
		bd.Set("custom.bytes", Bytes([]byte{byte(i), 1, 2}))
		bags[i] = bd.Build()
	}
	return bags
}

// record builds one CompressedAttributes from wire fields.
func record(fields ...[]byte) []byte {
	var b []byte
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

func field(num protowire.Number, entry []byte) []byte { return appendEntry(nil, num, entry) }

func bytesEntry(key int32, v []byte) []byte {
	e := protowire.AppendTag(nil, 1, protowire.VarintType)
	e = protowire.AppendVarint(e, protowire.EncodeZigZag(int64(key)))
	return appendEntry(e, 2, v)
}

func stringMapEntry(key int32, kvs ...int32) []byte {
	var m []byte
	for i := 0; i < len(kvs); i += 2 {
		m = appendEntry(m, 1, sint32Entry(kvs[i], kvs[i+1]))
	}
	return bytesEntry(key, m)
}

// withWords is report(records...) with default words.
func withWords(words []string, sem uint64, records ...[]byte) []byte {
	b := report(records...)
	for _, w := range words {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, w)
	}
	if sem != 0 {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, sem)
	}
	return b
}

func TestProjectionDecoderMatchesReportDecoder(t *testing.T) {
	p := testProjection(t)
	g := func(w string) int32 { return global(t, w) }
	path, code, hdrs, srcLabels, dstIP := g(RequestPath), g(ResponseCode), g(RequestHeaders), g(SourceLabels), g(DestinationIP)
	get := g("GET")
	delta, indep := uint64(mixerv1.ReportRequest_DELTA_ENCODING), uint64(mixerv1.ReportRequest_INDEPENDENT_ENCODING)
	tests := []struct {
		name     string
		data     []byte
		wantFast bool // the fast path decides
		wantErr  bool
	}{
		{"sidecar batch, delta", marshal(t, EncodeReport(sidecarBags(20), mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount())), true, false},
		{"sidecar batch, independent", marshal(t, EncodeReport(sidecarBags(20), mixerv1.ReportRequest_INDEPENDENT_ENCODING, GlobalWordCount())), true, false},
		{"sidecar batch, few global words", marshal(t, EncodeReport(sidecarBags(5), mixerv1.ReportRequest_DELTA_ENCODING, 40)), true, false},
		{"empty request", nil, true, false},
		{"empty records", report(nil, nil), true, false},
		{"delta carries values over",
			withWords([]string{"a", "b"}, delta, field(caStrings, sint32Entry(path, -1)), field(caInt64s, sint32Entry(code, 404))), true, false},
		{"independent does not carry values over",
			withWords([]string{"a", "b"}, indep, field(caStrings, sint32Entry(path, -1)), field(caInt64s, sint32Entry(code, 404))), true, false},
		{"local word names a global attribute",
			withWords([]string{ResponseCode}, 0, field(caInt64s, sint32Entry(-1, 503))), true, false},
		{"local word names a global attribute, sent twice",
			withWords([]string{ResponseCode}, 0, record(field(caInt64s, sint32Entry(-1, 503)), field(caInt64s, sint32Entry(code, 200)))), false, true},
		{"two local words with one name",
			withWords([]string{"custom.local", "custom.local"}, 0, record(field(caStrings, sint32Entry(-1, -1)), field(caStrings, sint32Entry(-2, -1)))), false, true},
		{"one name in two maps",
			report(record(field(caInt64s, sint32Entry(code, 1)), field(caStrings, sint32Entry(code, get)))), false, true},
		{"repeated map key: the last wins",
			report(record(field(caStrings, sint32Entry(path, 9999)), field(caStrings, sint32Entry(path, get)))), false, false},
		{"repeated map key: the last is checked",
			report(record(field(caStrings, sint32Entry(path, get)), field(caStrings, sint32Entry(path, 9999)))), false, true},
		{"record with its own words",
			report(record(field(caWords, []byte("custom.local")), field(caStrings, sint32Entry(-1, -1)))), false, false},
		{"unknown name index", report(field(caInt64s, sint32Entry(9999, 1))), false, true},
		{"unknown local name index", withWords([]string{"a"}, 0, field(caInt64s, sint32Entry(-2, 1))), false, true},
		{"unknown value index in an unread attribute", report(field(caStrings, sint32Entry(path, 9999))), false, true},
		{"unknown key index in an unread string map", report(field(caStringMaps, stringMapEntry(hdrs, 9999, get))), false, true},
		{"unknown value index in an unread string map", withWords([]string{"a"}, 0, field(caStringMaps, stringMapEntry(hdrs, get, -2))), false, true},
		{"unknown value index in a read string map", report(field(caStringMaps, stringMapEntry(srcLabels, get, 9999))), false, true},
		{"string map with a repeated key", report(field(caStringMaps, stringMapEntry(srcLabels, get, 1, get, 2))), true, false},
		{"wrong type", report(field(caStrings, sint32Entry(code, get))), false, true},
		{"IP of 5 bytes", report(field(caBytes, bytesEntry(dstIP, []byte{1, 2, 3, 4, 5}))), false, true},
		{"IP of 4 bytes", report(field(caBytes, bytesEntry(dstIP, []byte{1, 2, 3, 4}))), true, false},
		{"timestamp out of range", report(field(caTimestamps, bytesEntry(g(RequestTime), protowire.AppendVarint([]byte{0x08}, 1<<62)))), false, true},
		{"duration out of range", report(field(caDurations, bytesEntry(g(ResponseDuration), protowire.AppendVarint([]byte{0x08}, 1<<62)))), false, true},
		{"truncated record", report([]byte{0x1a, 0x05, 0x08}), false, true},
		{"truncated request", report(sint32Entry(1, 2))[:5], false, true},
		{"unknown semantics", withWords(nil, 7), false, true},
		{"global word count too high", append(report(), protowire.AppendVarint([]byte{0x18}, uint64(GlobalWordCount())+1)...), false, true},
		{"name beyond global word count", append(report(field(caInt64s, sint32Entry(code, 1))), 0x18, 0x05), false, true},
	}
	var d ProjectionDecoder // reused: nothing may leak from one request to the next
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fast, err := projectBoth(t, &d, p, tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if fast != tt.wantFast {
				t.Fatalf("fast path = %v, want %v", fast, tt.wantFast)
			}
		})
	}
}

// TestProjectionDecoderErrorsNameThePlace: the errors name the record,
// the map, the attribute and the index, as ReportDecoder's do.
func TestProjectionDecoderErrorsNameThePlace(t *testing.T) {
	p := testProjection(t)
	hdrs := global(t, RequestHeaders)
	ok := field(caInt64s, sint32Entry(global(t, ResponseCode), 200))
	data := report(ok, ok, field(caStringMaps, stringMapEntry(hdrs, global(t, "GET"), 9999)))
	var d ProjectionDecoder
	_, _, err := d.Decode(data, p)
	var de *DecodeError
	if !errors.As(err, &de) || de.Element != 2 || de.Field != "string_maps" || de.Attribute != RequestHeaders || de.Index != 9999 || !errors.Is(err, ErrIndex) {
		t.Fatalf("err = %#v", err)
	}
}

func TestNewProjectionRejectsRepeatedNames(t *testing.T) {
	if _, err := NewProjection([]string{RequestPath, ResponseCode, RequestPath}); err == nil {
		t.Fatal("no error for a repeated name")
	}
}

// TestProjectionDecoderSteadyStateAllocatesNothing: once its buffers
// have grown, the fast path allocates nothing per request.
func TestProjectionDecoderSteadyStateAllocatesNothing(t *testing.T) {
	p := testProjection(t)
	data := marshal(t, EncodeReport(sidecarBags(100), mixerv1.ReportRequest_DELTA_ENCODING, GlobalWordCount()))
	var d ProjectionDecoder
	allocs := testing.AllocsPerRun(20, func() {
		if _, _, err := d.Decode(data, p); err != nil {
			t.Fatal(err)
		}
		d.Reset()
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per request", allocs)
	}
}

// FuzzProjectionDecoder compares the ProjectionDecoder with ReportDecoder
// on arbitrary bytes: the same projected values, or the same error.
func FuzzProjectionDecoder(f *testing.F) {
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{0, 1} {
		seed, _ := proto.Marshal(EncodeReport(sidecarBags(3), sem, GlobalWordCount()))
		f.Add(seed)
	}
	f.Add(withWords([]string{ResponseCode, "custom.local"}, 0, field(caInt64s, sint32Entry(-1, 503)), field(caStrings, sint32Entry(-2, -1))))
	f.Add(report(field(caStringMaps, stringMapEntry(globalIndex[SourceLabels], globalIndex["GET"], 1, globalIndex["GET"], -1))))
	p, err := NewProjection(projectedNames)
	if err != nil {
		f.Fatal(err)
	}
	var d ProjectionDecoder
	f.Fuzz(func(t *testing.T, data []byte) {
		projectBoth(t, &d, p, data)
	})
}
