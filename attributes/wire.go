package attributes

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// ErrWire: the bytes are not a well-formed protobuf message of the expected
// type. The report decoder wraps it in a DecodeError.
var ErrWire = errors.New("malformed protobuf")

// Field numbers of istio.mixer.v1.ReportRequest and CompressedAttributes
// (proto/mixer/v1). StringMap, Timestamp and Duration use 1 and 2.
const (
	reportAttributes   = 1
	reportDefaultWords = 2
	reportGlobalCount  = 3
	reportSemantics    = 4

	caWords      = 1
	caStrings    = 2
	caInt64s     = 3
	caDoubles    = 4
	caBools      = 5
	caTimestamps = 6
	caDurations  = 7
	caBytes      = 8
	caStringMaps = 9
)

// caFields names the CompressedAttributes maps, by field number, as
// DecodeError.Field reports them, with their wire kinds.
var caFields = [...]struct {
	name string
	kind Kind
}{
	caStrings: {"strings", KindString}, caInt64s: {"int64s", KindInt64}, caDoubles: {"doubles", KindDouble},
	caBools: {"bools", KindBool}, caTimestamps: {"timestamps", KindTimestamp}, caDurations: {"durations", KindDuration},
	caBytes: {"bytes", KindBytes}, caStringMaps: {"string_maps", KindStringMap},
}

// rawAttr is one map entry of a CompressedAttributes message, parsed but
// not resolved: its value is checked only after later entries of the same
// map had the chance to replace it, as a protobuf map does.
type rawAttr struct {
	name  string // resolved name
	s     string // bytes: the value
	n     int64  // strings: value index; int64s; doubles (bits); bools; timestamps, durations: seconds
	kv    [2]int32
	key   int32 // name index
	nanos int32 // timestamps, durations
	field uint8
	kind  Kind // resolved kind
}

// sortKey orders rawAttrs by name, then wire position.
type sortKey struct {
	name string
	rank int32 // globalRank of a global name, -1 for a local one
	i    int32
}

// ReportDecoder decodes ReportRequest wire bytes straight into bags with
// protowire: no generated types, no maps, and no allocation per record once
// its buffers have grown to the batch size (one string per request holds
// every word). The zero ReportDecoder is ready to use; it is not safe for
// concurrent use.
type ReportDecoder struct {
	s       string     // the request's bytes; every word and bytes value points into it
	words   []string   // default_words
	records [][2]int   // offsets of each record in s
	local   []string   // the current record's own words
	raw     []rawAttr  // the current record's map entries
	pairs   [][2]int32 // string_maps entries of the current record
	kvs     []KV       // string-map storage for the whole request
	order   []sortKey  // d.raw in name order
	rec     []entry    // the current record's own attributes
	arena   []entry    // the whole bags of the request
	bags    []Bag
	owned   bool // d.s is data itself (DecodeAllOwned)
}

var reportDecoders = sync.Pool{New: func() any { return new(ReportDecoder) }}

// DecodeReportFunc decodes the wire bytes of a ReportRequest and calls fn
// with each record's whole bag, in order, applying the request's semantics
// (DELTA_ENCODING overlays each record on the one before it). It accepts
// exactly the requests that proto.Unmarshal and DecodeReport accept, and
// fails with a *DecodeError naming the record, field, attribute and index
// at fault (Err is ErrWire for malformed protobuf). When fn returns an
// error, decoding stops and DecodeReportFunc returns that error.
//
// Records are decoded one by one: when record i is malformed, fn has seen
// records 0 .. i-1. A caller that must act on a whole batch or none of it
// uses ReportDecoder.DecodeAll.
//
// Ownership: data is not retained (it is copied once). The Bag given to fn,
// and the string maps in it, are valid only until fn returns: their storage
// is reused. Strings taken from it are immutable and may be kept.
func DecodeReportFunc(data []byte, fn func(i int, b Bag) error) error {
	d := reportDecoders.Get().(*ReportDecoder)
	defer func() {
		d.Reset()
		reportDecoders.Put(d)
	}()
	return d.decode(data, fn)
}

// DecodeAll decodes every record of the ReportRequest in data, as
// DecodeReportFunc does, and returns the whole bags, or an error and no bag
// at all. The bags are valid until d's next DecodeAll or Reset; data is not
// retained.
func (d *ReportDecoder) DecodeAll(data []byte) ([]Bag, error) {
	if err := d.decode(data, func(_ int, b Bag) error {
		d.bags = append(d.bags, b)
		return nil
	}); err != nil {
		return nil, err
	}
	return d.bags, nil
}

// DecodeAllOwned is DecodeAll for a caller that hands data over: instead
// of copying it, the decoder and every string in the bags refer to data,
// which must therefore never be modified again (a gRPC server's freshly
// received message qualifies). It saves a copy and an allocation per batch.
func (d *ReportDecoder) DecodeAllOwned(data []byte) ([]Bag, error) {
	d.owned = true
	defer func() { d.owned = false }()
	return d.DecodeAll(data)
}

// Reset forgets the last request (the bags it returned become invalid) and
// keeps the buffers for the next one.
func (d *ReportDecoder) Reset() {
	d.s = ""
	clear(d.words)
	clear(d.local)
	clear(d.raw)
	clear(d.order)
	clear(d.kvs)
	clear(d.rec)
	clear(d.arena)
	clear(d.bags)
	d.words, d.records, d.local, d.raw, d.pairs = d.words[:0], d.records[:0], d.local[:0], d.raw[:0], d.pairs[:0]
	d.order = d.order[:0]
	d.kvs, d.rec, d.arena, d.bags = d.kvs[:0], d.rec[:0], d.arena[:0], d.bags[:0]
	// A decoder in a pool keeps its buffers; not those of a huge batch.
	if cap(d.arena) > maxRetainedEntries {
		d.arena = nil
	}
	if cap(d.kvs) > maxRetainedEntries {
		d.kvs = nil
	}
}

// maxRetainedEntries bounds the bag and string-map storage a decoder keeps
// between requests (about 2.5 MiB of entries).
const maxRetainedEntries = 1 << 16

func wireError(element int, detail string, n int) error {
	return &DecodeError{Element: element, Err: ErrWire, Detail: detail + ": " + protowire.ParseError(n).Error()}
}

// consumeTag reads a tag as protobuf-go does, rejecting field numbers
// beyond the valid range.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] < 0x80 && b[0] >= 1<<3 { // one byte, field number >= 1
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1 // protowire.ParseError(-1) is "unexpected EOF"; the detail names the place
	}
	return num, typ, n
}

// consumeVarint is protowire.ConsumeVarint with the one-byte case inline.
func consumeVarint(b []byte) (uint64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	return consumeVarint2(b)
}

// consumeVarint2 is protowire.ConsumeVarint with the two-byte case (every
// word index of the global dictionary) first.
func consumeVarint2(b []byte) (uint64, int) {
	if len(b) > 1 && b[1] < 0x80 {
		return uint64(b[0]&0x7f) | uint64(b[1])<<7, 2
	}
	return protowire.ConsumeVarint(b)
}

// consumeBytes is protowire.ConsumeBytes with a one-byte length inline.
func consumeBytes(b []byte) ([]byte, int) {
	if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
		n := int(b[0])
		return b[1 : 1+n : 1+n], 1 + n
	}
	return protowire.ConsumeBytes(b)
}

// consumeString reads a length-delimited proto3 string at s[off:] (b is s
// as bytes) and returns it as a substring of s.
func consumeString(s string, b []byte, off int) (string, int, error) {
	v, n := consumeBytes(b[off:])
	if n < 0 {
		return "", 0, protowire.ParseError(n)
	}
	start := off + n - len(v)
	w := s[start : start+len(v)]
	if !utf8.ValidString(w) {
		return "", 0, errors.New("string is not valid UTF-8")
	}
	return w, n, nil
}

// skipField skips an unknown (or mistyped) field at b, as protobuf-go
// keeps it among unknown fields.
func skipField(num protowire.Number, typ protowire.Type, b []byte) int {
	return protowire.ConsumeFieldValue(num, typ, b)
}

func (d *ReportDecoder) decode(data []byte, fn func(i int, b Bag) error) error {
	d.Reset()
	if d.owned {
		d.s = bytesString(data)
	} else {
		d.s = string(data)
	}
	s := d.s
	b := data // s and b hold the same bytes at the same offsets
	wd, semantics, err := d.parseRequest(s, b)
	if err != nil {
		return err
	}
	delta := semantics == mixerv1.ReportRequest_DELTA_ENCODING
	var prev []entry
	for i, r := range d.records {
		if err := d.parseRecord(s, b, r[0], r[1], i); err != nil {
			return err
		}
		wd.local = d.local
		if len(wd.local) == 0 {
			wd.local = d.words
		}
		if err := d.resolve(wd, i); err != nil {
			return err
		}
		start := len(d.arena)
		if delta && i > 0 {
			d.arena = overlayInto(d.arena, prev, d.rec)
		} else {
			d.arena = append(d.arena, d.rec...)
		}
		bag := d.arena[start:len(d.arena):len(d.arena)]
		prev = bag
		if err := fn(i, Bag{entries: bag}); err != nil {
			return err
		}
	}
	return nil
}

// parseRequest reads the ReportRequest fields of b (s holds the same bytes)
// into d.records and d.words, checks the semantics and the global word
// count, and returns a word decoder over the default words.
func (d *ReportDecoder) parseRequest(s string, b []byte) (WordDecoder, mixerv1.ReportRequest_RepeatedAttributesSemantics, error) {
	var sem, gwc uint64
	for off := 0; off < len(b); {
		num, typ, n := consumeTag(b[off:])
		if n < 0 {
			return WordDecoder{}, 0, wireError(-1, fmt.Sprintf("report: tag at offset %d", off), n)
		}
		off += n
		switch {
		case num == reportAttributes && typ == protowire.BytesType:
			v, n := consumeBytes(b[off:])
			if n < 0 {
				return WordDecoder{}, 0, wireError(-1, fmt.Sprintf("report: attributes[%d]", len(d.records)), n)
			}
			end := off + n
			d.records = append(d.records, [2]int{end - len(v), end})
			off = end
		case num == reportDefaultWords && typ == protowire.BytesType:
			w, n, err := consumeString(s, b, off)
			if err != nil {
				return WordDecoder{}, 0, &DecodeError{Element: -1, Err: ErrWire, Detail: fmt.Sprintf("report: default_words[%d]: %v", len(d.words), err)}
			}
			d.words = append(d.words, w)
			off += n
		case (num == reportGlobalCount || num == reportSemantics) && typ == protowire.VarintType:
			v, n := consumeVarint(b[off:])
			if n < 0 {
				return WordDecoder{}, 0, wireError(-1, fmt.Sprintf("report: field %d", num), n)
			}
			if num == reportGlobalCount {
				gwc = v
			} else {
				sem = v
			}
			off += n
		default:
			n := skipField(num, typ, b[off:])
			if n < 0 {
				return WordDecoder{}, 0, wireError(-1, fmt.Sprintf("report: field %d", num), n)
			}
			off += n
		}
	}
	semantics := mixerv1.ReportRequest_RepeatedAttributesSemantics(int32(sem))
	if semantics != mixerv1.ReportRequest_DELTA_ENCODING && semantics != mixerv1.ReportRequest_INDEPENDENT_ENCODING {
		return WordDecoder{}, 0, &DecodeError{Element: -1, Err: ErrValue, Detail: fmt.Sprintf("unknown repeated_attributes_semantics %d", semantics)}
	}
	wd, err := NewWordDecoder(uint32(gwc), nil)
	if err != nil {
		return WordDecoder{}, 0, err
	}
	return wd, semantics, nil
}

// parseRecord reads the CompressedAttributes at b[start:end] into d.local,
// d.raw and d.pairs, checking the wire format only.
func (d *ReportDecoder) parseRecord(s string, b []byte, start, end, element int) error {
	clear(d.local)
	d.local, d.raw, d.pairs = d.local[:0], d.raw[:0], d.pairs[:0]
	rb := b[:end]
	for off := start; off < end; {
		num, typ, n := consumeTag(rb[off:])
		if n < 0 {
			return wireError(element, "tag", n)
		}
		off += n
		switch {
		case num == caWords && typ == protowire.BytesType:
			w, n, err := consumeString(s[:end], rb, off)
			if err != nil {
				return &DecodeError{Element: element, Err: ErrWire, Detail: fmt.Sprintf("words[%d]: %v", len(d.local), err)}
			}
			d.local = append(d.local, w)
			off += n
		case num >= caStrings && num <= caStringMaps && typ == protowire.BytesType:
			v, n := consumeBytes(rb[off:])
			if n < 0 {
				return wireError(element, caFields[num].name, n)
			}
			vs := off + n - len(v)
			if a, ok := scalarEntry(v, uint8(num)); ok {
				a.kv = [2]int32{int32(len(d.pairs)), int32(len(d.pairs))}
				d.raw = append(d.raw, a)
			} else if err := d.parseEntry(s, rb[:vs+len(v)], vs, uint8(num)); err != nil {
				return &DecodeError{Element: element, Field: caFields[num].name, Err: ErrWire, Detail: err.Error()}
			}
			off += n
		default:
			n := skipField(num, typ, rb[off:])
			if n < 0 {
				return wireError(element, fmt.Sprintf("field %d", num), n)
			}
			off += n
		}
	}
	return nil
}

// parseEntry reads one map entry at b[off:] (b ends with the entry) into
// d.raw.
func (d *ReportDecoder) parseEntry(s string, b []byte, off int, field uint8) error {
	a := rawAttr{field: field}
	a.kv[0] = int32(len(d.pairs))
	for off < len(b) {
		num, typ, n := consumeTag(b[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		off += n
		known := true
		switch {
		case num == 1 && typ == protowire.VarintType:
			var v uint64
			v, n = consumeVarint(b[off:])
			a.key = int32(protowire.DecodeZigZag(v & math.MaxUint32))
		case num != 2:
			known = false
		case field == caDoubles:
			if known = typ == protowire.Fixed64Type; known {
				var v uint64
				v, n = protowire.ConsumeFixed64(b[off:])
				a.n = int64(v)
			}
		case field == caBytes:
			if known = typ == protowire.BytesType; known {
				var v []byte
				v, n = consumeBytes(b[off:])
				if n >= 0 {
					vs := off + n - len(v)
					a.s = s[vs : vs+len(v)]
				}
			}
		case field == caTimestamps || field == caDurations:
			if known = typ == protowire.BytesType; known {
				var v []byte
				v, n = consumeBytes(b[off:])
				if n >= 0 {
					if err := parseSecondsNanos(v, &a.n, &a.nanos); err != nil {
						return err
					}
				}
			}
		case field == caStringMaps:
			if known = typ == protowire.BytesType; known {
				var v []byte
				v, n = consumeBytes(b[off:])
				if n >= 0 {
					if err := d.parseStringMap(v); err != nil {
						return err
					}
				}
			}
		default: // strings, int64s, bools
			if known = typ == protowire.VarintType; known {
				var v uint64
				v, n = consumeVarint(b[off:])
				switch field {
				case caStrings:
					a.n = int64(int32(protowire.DecodeZigZag(v & math.MaxUint32)))
				case caInt64s:
					a.n = int64(v)
				case caBools:
					a.n = 0
					if v != 0 {
						a.n = 1
					}
				}
			}
		}
		if !known {
			n = skipField(num, typ, b[off:])
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		off += n
	}
	a.kv[1] = int32(len(d.pairs))
	d.raw = append(d.raw, a)
	return nil
}

// scalarEntry reads the map entry e of a strings, int64s, bools or doubles
// map when it has the canonical shape every encoder writes: key (field 1,
// varint) then value (field 2), nothing else. ok is false for any other
// entry, which parseEntry then reads by the general rules (with the same
// result for canonical entries).
func scalarEntry(e []byte, field uint8) (a rawAttr, ok bool) {
	if len(e) < 4 || e[0] != 1<<3|byte(protowire.VarintType) {
		return a, false
	}
	k, n := consumeVarint(e[1:])
	if n < 0 {
		return a, false
	}
	a.key = int32(protowire.DecodeZigZag(k & math.MaxUint32))
	a.field = field
	off := 1 + n
	if off >= len(e) {
		return a, false
	}
	tag := e[off]
	off++
	switch field {
	case caStrings, caInt64s, caBools:
		if tag != 2<<3|byte(protowire.VarintType) {
			return a, false
		}
		v, n := consumeVarint(e[off:])
		if n < 0 {
			return a, false
		}
		off += n
		switch field {
		case caStrings:
			a.n = int64(int32(protowire.DecodeZigZag(v & math.MaxUint32)))
		case caInt64s:
			a.n = int64(v)
		default:
			if v != 0 {
				a.n = 1
			}
		}
	case caDoubles:
		if tag != 2<<3|byte(protowire.Fixed64Type) || len(e)-off < 8 {
			return a, false
		}
		v, _ := protowire.ConsumeFixed64(e[off:])
		a.n = int64(v)
		off += 8
	default:
		return a, false
	}
	return a, off == len(e)
}

// canonicalPair reads a StringMap entry of the canonical shape, key (field
// 1, varint) then value (field 2, varint) and nothing else, as the general
// loop of parseStringMap would; ok is false for any other entry.
func canonicalPair(e []byte) (kv [2]int32, ok bool) {
	if len(e) < 4 || e[0] != 1<<3|byte(protowire.VarintType) {
		return kv, false
	}
	k, n := consumeVarint(e[1:])
	if n < 0 || 1+n >= len(e) || e[1+n] != 2<<3|byte(protowire.VarintType) {
		return kv, false
	}
	v, m := consumeVarint(e[2+n:])
	if m < 0 || 2+n+m != len(e) {
		return kv, false
	}
	kv[0] = int32(protowire.DecodeZigZag(k & math.MaxUint32))
	kv[1] = int32(protowire.DecodeZigZag(v & math.MaxUint32))
	return kv, true
}

// parseSecondsNanos merges a Timestamp or Duration message into
// seconds and nanos.
func parseSecondsNanos(b []byte, sec *int64, nanos *int32) error {
	for off := 0; off < len(b); {
		num, typ, n := consumeTag(b[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		off += n
		if (num == 1 || num == 2) && typ == protowire.VarintType {
			var v uint64
			v, n = consumeVarint(b[off:])
			if num == 1 {
				*sec = int64(v)
			} else {
				*nanos = int32(v)
			}
		} else {
			n = skipField(num, typ, b[off:])
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		off += n
	}
	return nil
}

// parseStringMap appends the entries of a StringMap message to d.pairs.
func (d *ReportDecoder) parseStringMap(b []byte) error {
	for off := 0; off < len(b); {
		num, typ, n := consumeTag(b[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		off += n
		if num != 1 || typ != protowire.BytesType {
			if n = skipField(num, typ, b[off:]); n < 0 {
				return protowire.ParseError(n)
			}
			off += n
			continue
		}
		e, n := consumeBytes(b[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		off += n
		if kv, ok := canonicalPair(e); ok {
			d.pairs = append(d.pairs, kv)
			continue
		}
		var kv [2]int32
		for eo := 0; eo < len(e); {
			num, typ, n := consumeTag(e[eo:])
			if n < 0 {
				return protowire.ParseError(n)
			}
			eo += n
			if (num == 1 || num == 2) && typ == protowire.VarintType {
				var v uint64
				v, n = consumeVarint(e[eo:])
				kv[num-1] = int32(protowire.DecodeZigZag(v & math.MaxUint32))
			} else {
				n = skipField(num, typ, e[eo:])
			}
			if n < 0 {
				return protowire.ParseError(n)
			}
			eo += n
		}
		d.pairs = append(d.pairs, kv)
	}
	return nil
}

// resolve turns d.raw into d.rec: names resolved and checked against the
// vocabulary, a map's repeated keys reduced to the last, values checked,
// sorted by name. The checks and messages are those of decompress.
func (d *ReportDecoder) resolve(dec WordDecoder, element int) error {
	fail := func(field uint8, attr string, idx int32, err error, detail string) error {
		return &DecodeError{Element: element, Field: caFields[field].name, Attribute: attr, Index: idx, Err: err, Detail: detail}
	}
	for i := range d.raw {
		a := &d.raw[i]
		wire := caFields[a.field].kind
		n, err := dec.Word(a.key)
		if err != nil {
			return fail(a.field, "", a.key, ErrIndex, "attribute name: "+err.Error())
		}
		a.name, a.kind = n, wire
		var want Kind
		var known bool
		if a.key >= 0 {
			want = globalVocabulary[a.key]
			known = want != KindInvalid
		} else {
			want, known = Vocabulary[n]
		}
		switch {
		case !known, want == wire:
		case want == KindIPAddress && wire == KindBytes:
			a.kind = KindIPAddress
		default:
			return fail(a.field, n, a.key, ErrType, fmt.Sprintf("the vocabulary says %s, the message sent %s", want, wire))
		}
	}
	// Sort small keys rather than the entries; ties in wire order, so that
	// of entries with one name the last of a map comes last.
	d.order = d.order[:0]
	for i := range d.raw {
		k := sortKey{name: d.raw[i].name, rank: -1, i: int32(i)}
		if key := d.raw[i].key; key >= 0 {
			k.rank = globalRank[key]
		}
		d.order = append(d.order, k)
	}
	slices.SortFunc(d.order, func(x, y sortKey) int {
		if x.rank >= 0 && y.rank >= 0 {
			if x.rank != y.rank {
				return int(x.rank - y.rank)
			}
		} else if c := strings.Compare(x.name, y.name); c != 0 {
			return c
		}
		return int(x.i - y.i)
	})
	d.rec = d.rec[:0]
	for i, k := range d.order {
		a := &d.raw[k.i]
		if i+1 < len(d.order) && d.order[i+1].name == a.name {
			other := &d.raw[d.order[i+1].i]
			if other.field == a.field && other.key == a.key {
				continue // replaced by a later entry of the same map
			}
			return &DecodeError{Element: element, Attribute: a.name, Err: ErrDuplicate,
				Detail: fmt.Sprintf("appears as both %s and %s", a.kind, other.kind)}
		}
		v, err := d.value(a, dec, fail)
		if err != nil {
			return err
		}
		d.rec = append(d.rec, entry{a.name, v})
	}
	return nil
}

// value checks and converts the value of a.
func (d *ReportDecoder) value(a *rawAttr, dec WordDecoder, fail func(uint8, string, int32, error, string) error) (Value, error) {
	switch a.field {
	case caStrings:
		s, err := dec.Word(int32(a.n))
		if err != nil {
			return Value{}, fail(a.field, a.name, int32(a.n), ErrIndex, "value: "+err.Error())
		}
		return String(s), nil
	case caInt64s:
		return Int64(a.n), nil
	case caDoubles:
		return Value{kind: KindDouble, n: a.n}, nil
	case caBools:
		return Bool(a.n != 0), nil
	case caBytes:
		if a.kind == KindIPAddress {
			v, ok := ipFromBytes(a.s)
			if !ok {
				return Value{}, fail(a.field, a.name, a.key, ErrValue, fmt.Sprintf("an IP address has 4 or 16 bytes, got %d", len(a.s)))
			}
			return v, nil
		}
		return strValue(KindBytes, a.s), nil
	case caTimestamps:
		v, err := timestampOf(a.n, a.nanos)
		if err != nil {
			return Value{}, fail(a.field, a.name, a.key, ErrValue, err.Error())
		}
		return v, nil
	case caDurations:
		v, err := durationOf(a.n, a.nanos)
		if err != nil {
			return Value{}, fail(a.field, a.name, a.key, ErrValue, err.Error())
		}
		return v, nil
	}
	// string_maps: of repeated map keys the last wins, as in a protobuf map.
	pairs := d.pairs[a.kv[0]:a.kv[1]]
	start := len(d.kvs)
	for j, p := range pairs {
		if slices.ContainsFunc(pairs[j+1:], func(q [2]int32) bool { return q[0] == p[0] }) {
			continue
		}
		key, err := dec.Word(p[0])
		if err != nil {
			return Value{}, fail(a.field, a.name, p[0], ErrIndex, "map key: "+err.Error())
		}
		val, err := dec.Word(p[1])
		if err != nil {
			return Value{}, fail(a.field, a.name, p[1], ErrIndex, fmt.Sprintf("value of map key %q: %v", key, err))
		}
		d.kvs = append(d.kvs, KV{key, val})
	}
	return StringMapValue(NewStringMap(d.kvs[start:len(d.kvs):len(d.kvs)])), nil
}

// overlayInto appends to dst base with every attribute of top set over it;
// both are sorted by name.
func overlayInto(dst, base, top []entry) []entry {
	i, j := 0, 0
	for i < len(base) && j < len(top) {
		switch c := strings.Compare(base[i].name, top[j].name); {
		case c < 0:
			dst = append(dst, base[i])
			i++
		case c > 0:
			dst = append(dst, top[j])
			j++
		default:
			dst = append(dst, top[j])
			i++
			j++
		}
	}
	dst = append(dst, base[i:]...)
	return append(dst, top[j:]...)
}
