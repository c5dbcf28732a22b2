package attributes

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// Projection is the set of attributes a consumer of report records reads
// (telemetry reads a few dozen of the attributes a sidecar sends), resolved
// once to global dictionary indexes. A Projection is immutable and safe for
// concurrent use.
type Projection struct {
	names  []string
	slots  map[string]int32 // name -> column
	global []int32          // GlobalDictionary index -> column, -1 when not projected
}

// NewProjection returns the projection of names: column i of a
// ProjectionDecoder's rows holds attribute names[i]. The names must be
// distinct.
func NewProjection(names []string) (*Projection, error) {
	p := &Projection{names: append([]string(nil), names...), slots: make(map[string]int32, len(names)), global: make([]int32, len(GlobalDictionary))}
	for i, n := range names {
		if _, dup := p.slots[n]; dup {
			return nil, fmt.Errorf("attributes: projection names %q twice", n)
		}
		p.slots[n] = int32(i)
	}
	for i, w := range GlobalDictionary {
		p.global[i] = -1
		if c, ok := p.slots[w]; ok {
			p.global[i] = c
		}
	}
	return p, nil
}

// Names returns the projected names by column; the slice must not be
// modified.
func (p *Projection) Names() []string { return p.names }

// localName is what a ProjectionDecoder learnt about a default word used
// as an attribute name, once per request.
type localName struct {
	id    int32 // the name's identity: equal names have equal ids
	col   int32 // projection column, -1 when not projected
	kind  Kind  // vocabulary kind, KindInvalid when the name is none
	known bool  // the word was looked up in this request
}

// globalNames is the number of name identities global words take: ranks
// are below it, and local-only names get ids from it up.
var globalNames = int32(len(GlobalDictionary))

// ProjectionDecoder decodes ReportRequest wire bytes into the values of a
// Projection's attributes only, record by record: it checks every record as
// ReportDecoder does, but builds no bag, and of the attributes nobody reads
// (request.headers, say) it checks the indexes and values without
// resolving them. Its results equal ReportDecoder's: the same values for
// the projected attributes, and for a request ReportDecoder rejects, the
// same error, which the ProjectionDecoder obtains by running ReportDecoder
// itself (so do the rare well-formed requests its fast path does not
// handle: records with their own words, an attribute sent twice).
//
// The zero ProjectionDecoder is ready to use; it is not safe for
// concurrent use.
type ProjectionDecoder struct {
	full  ReportDecoder // the parsing buffers, and the decoder of last resort
	rows  []Value
	stamp []uint32 // by name id: the record that last set the name
	gen   uint32
	local []localName // by default word
	slow  bool        // the last Decode took the fallback (tests)
}

// errSkip makes the fast path give way to ReportDecoder.
var errSkip = errors.New("attributes: fast path does not apply")

// Decode decodes every record of the ReportRequest in data, applying the
// request's semantics, and returns the projected values: rows holds one
// row of len(p.Names()) values per record (record i's column c is
// rows[i*len(p.Names())+c], the zero Value when absent). The request is
// checked whole before anything is returned: on error there are no rows,
// and the error is ReportDecoder's for the same bytes.
//
// Ownership: no copy of data is made; the values refer to it, so data must
// not be modified while they are in use. The rows are valid until d's next
// Decode or Reset.
func (d *ProjectionDecoder) Decode(data []byte, p *Projection) (rows []Value, n int, err error) {
	if rows, n, ok := d.fast(data, p); ok {
		d.slow = false
		return rows, n, nil
	}
	d.slow = true
	clear(d.rows) // what the fast path wrote: spare rows stay zero
	d.rows = d.rows[:0]
	bags, err := d.full.DecodeAllOwned(data)
	if err != nil {
		d.Reset()
		return nil, 0, err
	}
	k := len(p.names)
	d.rows = d.growRows(len(bags) * k)
	for i, b := range bags {
		row := d.rows[i*k : (i+1)*k]
		for c, name := range p.names {
			row[c], _ = b.Get(name)
		}
	}
	return d.rows, len(bags), nil
}

// Reset forgets the last request (its rows become invalid) and keeps the
// buffers.
func (d *ProjectionDecoder) Reset() {
	d.full.Reset()
	clear(d.rows)
	d.rows = d.rows[:0]
	if cap(d.rows) > maxRetainedEntries {
		d.rows = nil
	}
	clear(d.local)
	d.local = d.local[:0]
	// A decoder in a pool keeps its buffers; not those of a huge word list.
	if cap(d.local) > maxRetainedEntries {
		d.local = nil
	}
	if len(d.stamp) > int(globalNames)+maxRetainedEntries {
		d.stamp = nil
	}
}

// growRows returns d.rows resized to n values, all zero: Reset clears the
// rows it drops, so the spare capacity is always zero.
func (d *ProjectionDecoder) growRows(n int) []Value {
	if cap(d.rows) < n {
		return make([]Value, n)
	}
	return d.rows[:n]
}

// fast decodes data when every record is well formed, uses the default
// words and names each attribute once; ok is false otherwise, and then
// ReportDecoder decides.
func (d *ProjectionDecoder) fast(data []byte, p *Projection) (rows []Value, n int, ok bool) {
	f := &d.full
	d.Reset()
	f.s = bytesString(data)
	wd, semantics, err := f.parseRequest(f.s, data)
	if err != nil {
		return nil, 0, false
	}
	words := f.words
	wd.local = words
	delta := semantics == mixerv1.ReportRequest_DELTA_ENCODING
	k := len(p.names)
	d.rows = d.growRows(len(f.records) * k)
	if cap(d.local) < len(words) {
		d.local = make([]localName, len(words))
	}
	d.local = d.local[:len(words)]
	if ids := int(globalNames) + len(words); len(d.stamp) < ids {
		d.stamp = make([]uint32, ids)
		d.gen = 0
	}
	for i, r := range f.records {
		row := d.rows[i*k : (i+1)*k : (i+1)*k]
		if delta && i > 0 {
			copy(row, d.rows[(i-1)*k:i*k])
		}
		if d.gen++; d.gen == 0 {
			clear(d.stamp)
			d.gen = 1
		}
		if !d.record(data, r[0], r[1], wd, p, row) {
			return nil, 0, false
		}
	}
	return d.rows, len(f.records), true
}

// record reads the CompressedAttributes at data[start:end] as
// ReportDecoder.parseRecord does, and checks each attribute as soon as it
// is read: this path gives way at the first irregularity (a wire error, a
// word list of the record's own, an attribute sent twice), so that it
// never needs what comes later in the record to judge what came before.
func (d *ProjectionDecoder) record(data []byte, start, end int, wd WordDecoder, p *Projection, row []Value) bool {
	f := &d.full
	f.raw, f.pairs = f.raw[:0], f.pairs[:0]
	rb := data[:end]
	for off := start; off < end; {
		num, typ, n := consumeTag(rb[off:])
		if n < 0 {
			return false
		}
		off += n
		switch {
		case num == caWords && typ == protowire.BytesType:
			return false // the record's own words: ReportDecoder
		case num >= caStrings && num <= caStringMaps && typ == protowire.BytesType:
			v, n := consumeBytes(rb[off:])
			if n < 0 {
				return false
			}
			vs := off + n - len(v)
			off += n
			if a, ok := scalarEntry(v, uint8(num)); ok {
				if !d.attribute(&a, wd, p, row) {
					return false
				}
				continue
			}
			if err := f.parseEntry(f.s, rb[:vs+len(v)], vs, uint8(num)); err != nil {
				return false
			}
			if !d.attribute(&f.raw[len(f.raw)-1], wd, p, row) {
				return false
			}
		default:
			if n = skipField(num, typ, rb[off:]); n < 0 {
				return false
			}
			off += n
		}
	}
	return true
}

// attribute checks one map entry of a record as ReportDecoder.resolve and
// value do, and stores its value in row when it is projected.
func (d *ProjectionDecoder) attribute(a *rawAttr, wd WordDecoder, p *Projection, row []Value) bool {
	var id, col int32
	var want Kind
	if a.key >= 0 {
		if int64(a.key) >= int64(len(wd.global)) {
			return false
		}
		id, col, want = globalRank[a.key], p.global[a.key], globalVocabulary[a.key]
		a.name = wd.global[a.key]
	} else {
		j := -int64(a.key) - 1
		if j >= int64(len(wd.local)) {
			return false
		}
		ln := &d.local[j]
		if !ln.known {
			*ln = d.lookupLocal(wd.local, int(j), p)
		}
		id, col, want = ln.id, ln.col, ln.kind
		a.name = wd.local[j]
	}
	if d.stamp[id] == d.gen {
		return false // an attribute sent twice: ReportDecoder decides which wins, or fails
	}
	d.stamp[id] = d.gen
	wire := caFields[a.field].kind
	a.kind = wire
	switch {
	case want == KindInvalid, want == wire:
	case want == KindIPAddress && wire == KindBytes:
		a.kind = KindIPAddress
	default:
		return false
	}
	if col < 0 {
		// Nobody reads the value: check it without building it.
		switch a.field {
		case caInt64s, caDoubles, caBools:
			return true
		case caStrings:
			return wd.valid(int32(a.n))
		case caStringMaps:
			for _, kv := range d.full.pairs[a.kv[0]:a.kv[1]] {
				if !wd.valid(kv[0]) || !wd.valid(kv[1]) {
					return false
				}
			}
			return true
		}
	}
	v, err := d.full.value(a, wd, skipFail)
	if err != nil {
		return false
	}
	if col >= 0 {
		row[col] = v
	}
	return true
}

// skipFail is the fast path's error constructor: the error itself is
// ReportDecoder's to build.
func skipFail(uint8, string, int32, error, string) error { return errSkip }

// lookupLocal resolves default word j as an attribute name.
func (d *ProjectionDecoder) lookupLocal(words []string, j int, p *Projection) localName {
	w := words[j]
	ln := localName{col: -1, kind: Vocabulary[w], known: true}
	if c, ok := p.slots[w]; ok {
		ln.col = c
	}
	if g, ok := globalIndex[w]; ok {
		ln.id = globalRank[g]
		return ln
	}
	first := j
	for i := range j {
		if words[i] == w {
			first = i
			break
		}
	}
	ln.id = globalNames + int32(first)
	return ln
}

// valid reports whether i names a word.
func (d WordDecoder) valid(i int32) bool {
	if i >= 0 {
		return int64(i) < int64(len(d.global))
	}
	return -int64(i)-1 < int64(len(d.local))
}
