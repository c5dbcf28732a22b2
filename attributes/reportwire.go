package attributes

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// ReportEncoder writes a Report batch straight to protobuf wire bytes (the
// field numbers are wire.go's): the
// same message EncodeReport builds (same word indexes, same delta records),
// without the generated types' maps and pointers. It keeps its scratch
// buffers between batches, so a sidecar's reporting costs no allocation
// per record once warm. A ReportEncoder is not safe for concurrent use.
type ReportEncoder struct {
	words   WordEncoder
	changed []entry
	rec     []byte // one CompressedAttributes being built
	sm      []byte // one StringMap being built
}

// Append appends the wire form of an istio.mixer.v1.ReportRequest holding
// bags to dst and returns it. Like EncodeReport, DELTA_ENCODING falls back
// to INDEPENDENT_ENCODING when an attribute disappears within the batch.
func (e *ReportEncoder) Append(dst []byte, bags []Bag, semantics mixerv1.ReportRequest_RepeatedAttributesSemantics, globalWordCount uint32) []byte {
	if semantics == mixerv1.ReportRequest_DELTA_ENCODING && !deltaExpressible(bags) {
		semantics = mixerv1.ReportRequest_INDEPENDENT_ENCODING
	}
	e.words.global = min(globalWordCount, GlobalWordCount())
	e.words.words = e.words.words[:0]
	clear(e.words.local)
	for i, b := range bags {
		entries := b.entries
		if i > 0 && semantics == mixerv1.ReportRequest_DELTA_ENCODING {
			e.changed = appendChanged(e.changed[:0], bags[i-1].entries, b.entries)
			entries = e.changed
		}
		e.rec = e.appendCompressed(e.rec[:0], entries)
		dst = protowire.AppendTag(dst, reportAttributes, protowire.BytesType)
		dst = protowire.AppendBytes(dst, e.rec)
	}
	for _, w := range e.words.words {
		dst = protowire.AppendTag(dst, reportDefaultWords, protowire.BytesType)
		dst = protowire.AppendString(dst, w)
	}
	if e.words.global != 0 {
		dst = protowire.AppendTag(dst, reportGlobalCount, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(e.words.global))
	}
	if semantics != 0 {
		dst = protowire.AppendTag(dst, reportSemantics, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(semantics))
	}
	clear(e.changed) // drop references to the batch's values
	return dst
}

// appendCompressed appends the fields of one CompressedAttributes holding
// entries, indexing words as compressInto does.
func (e *ReportEncoder) appendCompressed(b []byte, entries []entry) []byte {
	for _, en := range entries {
		name := e.words.Index(en.name)
		v := en.value
		switch v.kind {
		case KindString:
			b = appendMapEntry(b, caStrings, name, protowire.VarintType, protowire.EncodeZigZag(int64(e.words.Index(v.str()))), nil)
		case KindInt64:
			b = appendMapEntry(b, caInt64s, name, protowire.VarintType, uint64(v.n), nil)
		case KindDouble:
			b = appendMapEntry(b, caDoubles, name, protowire.Fixed64Type, math.Float64bits(v.DoubleValue()), nil)
		case KindBool:
			b = appendMapEntry(b, caBools, name, protowire.VarintType, uint64(v.n), nil)
		case KindBytes, KindIPAddress:
			b = appendMapEntry(b, caBytes, name, protowire.BytesType, 0, v.BytesValue())
		case KindTimestamp:
			e.sm = appendSecondsNanos(e.sm[:0], v.n, v.nanos)
			b = appendMapEntry(b, caTimestamps, name, protowire.BytesType, 0, e.sm)
		case KindDuration:
			e.sm = appendSecondsNanos(e.sm[:0], v.n/1e9, int32(v.n%1e9))
			b = appendMapEntry(b, caDurations, name, protowire.BytesType, 0, e.sm)
		case KindStringMap:
			e.sm = e.sm[:0]
			for _, kv := range v.kvs() {
				k, val := e.words.Index(kv.Key), e.words.Index(kv.Value)
				e.sm = appendMapEntry(e.sm, 1, k, protowire.VarintType, protowire.EncodeZigZag(int64(val)), nil)
			}
			b = appendMapEntry(b, caStringMaps, name, protowire.BytesType, 0, e.sm)
		}
	}
	return b
}

// appendMapEntry appends one entry of a map<sint32, V> field: key 1 as a
// zigzag varint, value 2 as a varint or fixed64 (n) or as bytes (data).
func appendMapEntry(b []byte, field protowire.Number, key int32, typ protowire.Type, n uint64, data []byte) []byte {
	k := protowire.EncodeZigZag(int64(key))
	size := 1 + protowire.SizeVarint(k) + 1
	switch typ {
	case protowire.VarintType:
		size += protowire.SizeVarint(n)
	case protowire.Fixed64Type:
		size += 8
	default:
		size += protowire.SizeBytes(len(data))
	}
	b = protowire.AppendTag(b, field, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, k)
	b = protowire.AppendTag(b, 2, typ)
	switch typ {
	case protowire.VarintType:
		b = protowire.AppendVarint(b, n)
	case protowire.Fixed64Type:
		b = protowire.AppendFixed64(b, n)
	default:
		b = protowire.AppendBytes(b, data)
	}
	return b
}

// appendSecondsNanos appends a google.protobuf.Timestamp or Duration body.
func appendSecondsNanos(b []byte, seconds int64, nanos int32) []byte {
	if seconds != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(seconds))
	}
	if nanos != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(nanos)))
	}
	return b
}
