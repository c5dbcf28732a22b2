package telemetry

import (
	"encoding/hex"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/remora-mesh/remora/attributes"
)

// labelKind selects how a label's value is computed.
type labelKind uint8

const (
	// labelAttr: the first present attribute of refs, else def.
	labelAttr labelKind = iota
	// labelReporter: Istio's reporter label from context.reporter.kind.
	labelReporter
	// labelSecurityPolicy: Istio's connection_security_policy.
	labelSecurityPolicy
)

type label struct {
	name string
	kind labelKind
	refs []attrRef
	def  string
}

// labelSet is an ordered list of labels shared by metrics; a record's key
// for a set is computed once and reused by every metric using the set.
type labelSet struct {
	id     int
	names  []string
	labels []label
}

// appendKey appends the record's label values, each followed by labelSep.
func (ls *labelSet) appendKey(dst []byte, b *resolved) []byte {
	for i := range ls.labels {
		l := &ls.labels[i]
		switch l.kind {
		case labelReporter:
			dst = append(dst, reporter(b)...)
		case labelSecurityPolicy:
			dst = append(dst, securityPolicy(b)...)
		default:
			found := false
			for ri := range l.refs {
				if dst, found = appendAttr(dst, b, &l.refs[ri]); found {
					break
				}
			}
			if !found {
				dst = append(dst, l.def...)
			}
		}
		dst = append(dst, labelSep)
	}
	return dst
}

// reporter follows Istio: "source" for an outbound (client-side) report,
// otherwise "destination".
func reporter(b *resolved) string {
	if v, ok := b.get(b.reporter); ok && v.StringValue() == attributes.ReporterOutbound {
		return "source"
	}
	return "destination"
}

// securityPolicy follows Istio: a client cannot know what its server
// required, so outbound reports say "unknown"; inbound ones say
// "mutual_tls" when connection.mtls is true and "none" otherwise.
func securityPolicy(b *resolved) string {
	if reporter(b) == "source" {
		return "unknown"
	}
	if v, ok := b.get(b.mtls); ok && v.BoolValue() {
		return "mutual_tls"
	}
	return "none"
}

// appendAttr appends the value r names, reporting whether it was present
// and printable.
func appendAttr(dst []byte, b *resolved, r *attrRef) ([]byte, bool) {
	v, ok := b.get(r.slot)
	if !ok {
		return dst, false
	}
	if r.hasKey {
		if v.Kind() != attributes.KindStringMap {
			return dst, false
		}
		s, ok := v.StringMapValue().Get(r.key)
		if !ok {
			return dst, false
		}
		return appendString(dst, s, b.utf8), true
	}
	switch v.Kind() {
	case attributes.KindString:
		return appendString(dst, v.StringValue(), b.utf8), true
	case attributes.KindInt64:
		return strconv.AppendInt(dst, v.Int64Value(), 10), true
	case attributes.KindDouble:
		return strconv.AppendFloat(dst, v.DoubleValue(), 'g', -1, 64), true
	case attributes.KindBool:
		return strconv.AppendBool(dst, v.BoolValue()), true
	case attributes.KindDuration:
		return append(dst, v.DurationValue().String()...), true
	case attributes.KindTimestamp:
		return v.TimeValue().UTC().AppendFormat(dst, time.RFC3339Nano), true
	case attributes.KindIPAddress:
		ip, _ := v.IPValue()
		return ip.AppendTo(dst), true
	case attributes.KindBytes:
		return hex.AppendEncode(dst, v.BytesValue()), true
	}
	return dst, false
}

// appendString appends s, which is known to be valid UTF-8 when valid is
// true, and otherwise checked by appendUTF8.
func appendString(dst []byte, s string, valid bool) []byte {
	if valid {
		return append(dst, s...)
	}
	return appendUTF8(dst, s)
}

// appendUTF8 appends s with invalid UTF-8 replaced, so that labelSep never
// occurs inside a value and Prometheus accepts the label.
func appendUTF8(dst []byte, s string) []byte {
	if utf8.ValidString(s) {
		return append(dst, s...)
	}
	for _, r := range s {
		dst = utf8.AppendRune(dst, r) // invalid bytes decode as U+FFFD
	}
	return dst
}

// valueFunc computes the value a record contributes to a metric.
type valueFunc struct {
	one    bool // count the record
	refs   []attrRef
	hasDef bool // a record without the value contributes 0
}

// get returns the value, and false when the record has none.
func (f valueFunc) get(b *resolved) (float64, bool) {
	if f.one {
		return 1, true
	}
	for _, r := range f.refs {
		v, ok := b.get(r.slot)
		if !ok {
			continue
		}
		if r.hasKey {
			if v.Kind() != attributes.KindStringMap {
				continue
			}
			s, ok := v.StringMapValue().Get(r.key)
			if !ok {
				continue
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				continue
			}
			return f, true
		}
		switch v.Kind() {
		case attributes.KindInt64:
			return float64(v.Int64Value()), true
		case attributes.KindDouble:
			return v.DoubleValue(), true
		case attributes.KindDuration:
			return float64(v.DurationValue()) / float64(time.Millisecond), true
		case attributes.KindBool:
			if v.BoolValue() {
				return 1, true
			}
			return 0, true
		}
	}
	return 0, f.hasDef
}

// resolved holds one record's values of every attribute the metrics use,
// indexed by slot, so that each attribute is looked up once per record
// however many labels and metrics use it.
type resolved struct {
	names []string           // sorted attribute names, by slot
	vals  []attributes.Value // by slot; the zero Value means absent
	utf8  bool               // every string in vals is valid UTF-8

	proto, event, reporter, mtls int // slots of the attributes the matchers and built-in labels read
}

func (r *resolved) get(slot int) (attributes.Value, bool) {
	v := r.vals[slot]
	return v, v.IsValid()
}

// fill resolves b in one merge of two sorted lists: the bag's attributes
// and the names the metrics use.
func (r *resolved) fill(b attributes.Bag) {
	clear(r.vals)
	i, names := 0, r.names
	for name, v := range b.All() {
		for i < len(names) && names[i] < name {
			i++
		}
		if i == len(names) {
			return
		}
		if names[i] == name {
			r.vals[i] = v
			i++
		}
	}
}
