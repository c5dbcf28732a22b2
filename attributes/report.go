package attributes

import (
	"fmt"
	"strings"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// EncodeReport encodes a batch of bags as one ReportRequest whose records
// share default_words.
//
// With DELTA_ENCODING each record after the first carries only the
// attributes whose values changed from the record before it. The wire has no
// way to say an attribute went away, so when a record lacks an attribute its
// predecessor had, the batch is sent with INDEPENDENT_ENCODING instead.
func EncodeReport(bags []Bag, semantics mixerv1.ReportRequest_RepeatedAttributesSemantics, globalWordCount uint32) *mixerv1.ReportRequest {
	if semantics == mixerv1.ReportRequest_DELTA_ENCODING && !deltaExpressible(bags) {
		semantics = mixerv1.ReportRequest_INDEPENDENT_ENCODING
	}
	enc := NewWordEncoder(globalWordCount)
	req := &mixerv1.ReportRequest{
		Attributes:                  make([]*mixerv1.CompressedAttributes, len(bags)),
		RepeatedAttributesSemantics: semantics,
		GlobalWordCount:             enc.global,
	}
	var changed []entry
	for i, b := range bags {
		ca := &mixerv1.CompressedAttributes{}
		if i == 0 || semantics == mixerv1.ReportRequest_INDEPENDENT_ENCODING {
			compressInto(ca, b.entries, enc)
		} else {
			changed = appendChanged(changed[:0], bags[i-1].entries, b.entries)
			compressInto(ca, changed, enc)
		}
		req.Attributes[i] = ca
	}
	req.DefaultWords = enc.Words()
	return req
}

// deltaExpressible reports whether every bag has every attribute of the bag
// before it.
func deltaExpressible(bags []Bag) bool {
	for i := 1; i < len(bags); i++ {
		prev, cur := bags[i-1].entries, bags[i].entries
		j := 0
		for _, p := range prev {
			for j < len(cur) && cur[j].name < p.name {
				j++
			}
			if j == len(cur) || cur[j].name != p.name {
				return false
			}
		}
	}
	return true
}

// appendChanged appends the entries of cur that are absent from prev or
// differ from it. Both are sorted by name.
func appendChanged(dst, prev, cur []entry) []entry {
	j := 0
	for _, c := range cur {
		for j < len(prev) && prev[j].name < c.name {
			j++
		}
		if j < len(prev) && prev[j].name == c.name && prev[j].value.Equal(c.value) {
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// DecodeReport decodes every record of req into a whole bag, applying the
// request's semantics. A record with no words of its own uses
// default_words. The error names the record, attribute and index at fault.
func DecodeReport(req *mixerv1.ReportRequest) ([]Bag, error) {
	sem := req.GetRepeatedAttributesSemantics()
	if sem != mixerv1.ReportRequest_DELTA_ENCODING && sem != mixerv1.ReportRequest_INDEPENDENT_ENCODING {
		return nil, &DecodeError{Element: -1, Err: ErrValue, Detail: fmt.Sprintf("unknown repeated_attributes_semantics %d", sem)}
	}
	if _, err := NewWordDecoder(req.GetGlobalWordCount(), nil); err != nil {
		return nil, err
	}
	bags := make([]Bag, len(req.GetAttributes()))
	var prev Bag
	for i, ca := range req.GetAttributes() {
		words := ca.GetWords()
		if len(words) == 0 {
			words = req.GetDefaultWords()
		}
		dec := WordDecoder{global: GlobalDictionary[:req.GetGlobalWordCount()], local: words}
		entries, err := decompress(nil, ca, dec, i)
		if err != nil {
			return nil, err
		}
		b, err := finish(entries, i)
		if err != nil {
			return nil, err
		}
		if sem == mixerv1.ReportRequest_DELTA_ENCODING && i > 0 {
			b = overlay(prev, b)
		}
		bags[i] = b
		prev = b
	}
	return bags, nil
}

// overlay returns base with every attribute of top set over it.
func overlay(base, top Bag) Bag {
	out := make([]entry, 0, len(base.entries)+len(top.entries))
	i, j := 0, 0
	for i < len(base.entries) || j < len(top.entries) {
		switch {
		case j == len(top.entries):
			out = append(out, base.entries[i])
			i++
		case i == len(base.entries):
			out = append(out, top.entries[j])
			j++
		default:
			switch c := strings.Compare(base.entries[i].name, top.entries[j].name); {
			case c < 0:
				out = append(out, base.entries[i])
				i++
			case c > 0:
				out = append(out, top.entries[j])
				j++
			default:
				out = append(out, top.entries[j])
				i++
				j++
			}
		}
	}
	return Bag{entries: out}
}
