package attributes

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of istio.mixer.v1.CheckRequest (proto/mixer/v1).
const (
	checkAttributes  = 1
	checkGlobalCount = 2
	checkDedupID     = 3
	checkQuotas      = 4
)

// CheckDecoder decodes the attributes of an istio.mixer.v1.CheckRequest
// straight from its wire bytes, with the report decoder's protowire code:
// no generated types, no maps, and no allocation but one copy of the
// request once its buffers have grown. It is an accelerator for the common
// request, not a second source of truth: it declines (ok false) every
// request it does not decode exactly as proto.Unmarshal followed by
// Decompress would, and the caller then takes that general path, whose
// errors are the ones to report.
//
// The zero CheckDecoder is ready to use; it is not safe for concurrent use.
type CheckDecoder struct {
	d ReportDecoder
}

// Decode decodes the CheckRequest in data into its attributes and global
// word count. ok is false when the request is malformed (at the wire or
// attribute level), has quotas, or carries its attributes field more than
// once (protobuf merges the occurrences); in those cases the caller
// decodes it with proto.Unmarshal and Decompress.
//
// Ownership: data is copied once and not retained. The Bag is valid until
// the decoder's next Decode or Reset (its entries and string maps live in
// the decoder's storage); strings taken from it are immutable and may be
// kept.
func (c *CheckDecoder) Decode(data []byte) (bag Bag, globalWordCount uint32, ok bool) {
	d := &c.d
	d.Reset()
	d.s = string(data)
	s, b := d.s, data
	start, end := 0, 0
	seen := false
	var gwc uint64
	for off := 0; off < len(b); {
		num, typ, n := consumeTag(b[off:])
		if n < 0 {
			return Bag{}, 0, false
		}
		off += n
		switch {
		case num == checkAttributes && typ == protowire.BytesType:
			if seen {
				return Bag{}, 0, false // merged occurrences: the general path
			}
			seen = true
			v, n := consumeBytes(b[off:])
			if n < 0 {
				return Bag{}, 0, false
			}
			end = off + n
			start = end - len(v)
			off = end
		case num == checkGlobalCount && typ == protowire.VarintType:
			v, n := consumeVarint(b[off:])
			if n < 0 {
				return Bag{}, 0, false
			}
			gwc = v
			off += n
		case num == checkDedupID && typ == protowire.BytesType:
			v, n := consumeBytes(b[off:])
			if n < 0 || !utf8.Valid(v) {
				return Bag{}, 0, false
			}
			off += n
		case num == checkQuotas && typ == protowire.BytesType:
			return Bag{}, 0, false
		default:
			n := skipField(num, typ, b[off:])
			if n < 0 {
				return Bag{}, 0, false
			}
			off += n
		}
	}
	if err := d.parseRecord(s, b, start, end, -1); err != nil {
		return Bag{}, 0, false
	}
	wd, err := NewWordDecoder(uint32(gwc), d.local)
	if err != nil {
		return Bag{}, 0, false
	}
	if err := d.resolve(wd, -1); err != nil {
		return Bag{}, 0, false
	}
	return Bag{entries: d.rec[:len(d.rec):len(d.rec)]}, uint32(gwc), true
}

// Reset forgets the last request (its Bag becomes invalid) and keeps the
// buffers for the next one.
func (c *CheckDecoder) Reset() { c.d.Reset() }
