package attributes

import (
	"math"
	"unsafe"

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
	// memo remembers the indexes of the batch's words by string data
	// pointer: the records of a batch share most of their strings
	// (attribute names, interned header names, the identity's values),
	// so most lookups cost a pointer comparison instead of map lookups.
	// It is cleared after each batch.
	memo *[memoSize]memoSlot
}

// memoSize is the number of memo slots (24 KiB).
const memoSize = 1 << memoBits

const memoBits = 10

// memoSlot is one remembered word. Holding the string keeps its bytes
// alive, so another string with the same data pointer and length is the
// same word.
type memoSlot struct {
	w   string
	idx int32
}

// Append appends the wire form of an istio.mixer.v1.ReportRequest holding
// bags to dst and returns it. Like EncodeReport, DELTA_ENCODING falls back
// to INDEPENDENT_ENCODING when an attribute disappears within the batch.
func (e *ReportEncoder) Append(dst []byte, bags []Bag, semantics mixerv1.ReportRequest_RepeatedAttributesSemantics, globalWordCount uint32) []byte {
	if e.memo == nil {
		e.memo = new([memoSize]memoSlot)
	}
	defer clear(e.memo[:]) // the batch's indexes, and its strings
	return e.append(dst, bags, semantics, globalWordCount)
}

func (e *ReportEncoder) append(dst []byte, bags []Bag, semantics mixerv1.ReportRequest_RepeatedAttributesSemantics, globalWordCount uint32) []byte {
	start := len(dst)
	e.words.global = min(globalWordCount, GlobalWordCount())
	e.words.words = e.words.words[:0]
	clear(e.words.local)
	for i, b := range bags {
		entries := b.entries
		if i > 0 && semantics == mixerv1.ReportRequest_DELTA_ENCODING {
			var ok bool
			e.changed, ok = appendChangedSuperset(e.changed[:0], bags[i-1].entries, b.entries)
			if !ok {
				// Delta cannot say an attribute went away: encode the
				// whole batch again, independently, with words (and so
				// the memo) numbered anew.
				clear(e.changed)
				clear(e.memo[:])
				return e.append(dst[:start], bags, mixerv1.ReportRequest_INDEPENDENT_ENCODING, globalWordCount)
			}
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
		name := e.index(en.name)
		v := en.value
		switch v.kind {
		case KindString:
			b = appendMapEntry(b, caStrings, name, protowire.VarintType, protowire.EncodeZigZag(int64(e.index(v.str()))), nil)
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
				k, val := e.index(kv.Key), e.index(kv.Value)
				e.sm = appendMapEntry(e.sm, 1, k, protowire.VarintType, protowire.EncodeZigZag(int64(val)), nil)
			}
			b = appendMapEntry(b, caStringMaps, name, protowire.BytesType, 0, e.sm)
		}
	}
	return b
}

// index is e.words.Index, answered from the memo when the same string
// (same bytes in memory) was indexed before in this batch.
func (e *ReportEncoder) index(w string) int32 {
	p := unsafe.StringData(w)
	if p == nil {
		return e.words.Index(w)
	}
	h := (uint64(uintptr(unsafe.Pointer(p))) ^ uint64(len(w))) * 0x9e3779b97f4a7c15
	slot := &e.memo[h>>(64-memoBits)]
	if unsafe.StringData(slot.w) == p && len(slot.w) == len(w) {
		return slot.idx
	}
	i := e.words.Index(w)
	*slot = memoSlot{w: w, idx: i}
	return i
}

// appendChangedSuperset appends to dst the entries of cur that are absent
// from prev or differ from it, as appendChanged does, and reports whether
// cur has every name of prev (deltaExpressible for the pair), in one pass.
// Both are sorted by name; names of consecutive records are mostly the
// same strings, so the equality test comes first.
func appendChangedSuperset(dst, prev, cur []entry) ([]entry, bool) {
	j := 0
	for i := range cur {
		c := &cur[i]
		if j < len(prev) {
			p := &prev[j]
			if p.name == c.name {
				j++
				if !p.value.Equal(c.value) {
					dst = append(dst, *c)
				}
				continue
			}
			if p.name < c.name {
				return dst, false // prev's attribute is missing from cur
			}
		}
		dst = append(dst, *c) // new in cur
	}
	return dst, j == len(prev)
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
