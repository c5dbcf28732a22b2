package attributes

import (
	"fmt"
	"math"
	"slices"
	"time"

	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Compress encodes b for a peer that knows globalWordCount global words
// (pass GlobalWordCount() when talking to a Remora or Istio server).
func Compress(b Bag, globalWordCount uint32) *mixerv1.CompressedAttributes {
	enc := NewWordEncoder(globalWordCount)
	ca := &mixerv1.CompressedAttributes{}
	compressInto(ca, b.entries, enc)
	ca.Words = enc.Words()
	return ca
}

// compressInto adds entries to ca, indexing words with enc.
func compressInto(ca *mixerv1.CompressedAttributes, entries []entry, enc *WordEncoder) {
	for _, e := range entries {
		name := enc.Index(e.name)
		v := e.value
		switch v.kind {
		case KindString:
			if ca.Strings == nil {
				ca.Strings = make(map[int32]int32)
			}
			ca.Strings[name] = enc.Index(v.str())
		case KindInt64:
			if ca.Int64S == nil {
				ca.Int64S = make(map[int32]int64)
			}
			ca.Int64S[name] = v.n
		case KindDouble:
			if ca.Doubles == nil {
				ca.Doubles = make(map[int32]float64)
			}
			ca.Doubles[name] = v.DoubleValue()
		case KindBool:
			if ca.Bools == nil {
				ca.Bools = make(map[int32]bool)
			}
			ca.Bools[name] = v.n != 0
		case KindBytes, KindIPAddress:
			if ca.Bytes == nil {
				ca.Bytes = make(map[int32][]byte)
			}
			ca.Bytes[name] = v.BytesValue()
		case KindTimestamp:
			if ca.Timestamps == nil {
				ca.Timestamps = make(map[int32]*timestamppb.Timestamp)
			}
			ca.Timestamps[name] = &timestamppb.Timestamp{Seconds: v.n, Nanos: v.nanos}
		case KindDuration:
			if ca.Durations == nil {
				ca.Durations = make(map[int32]*durationpb.Duration)
			}
			ca.Durations[name] = durationpb.New(time.Duration(v.n))
		case KindStringMap:
			if ca.StringMaps == nil {
				ca.StringMaps = make(map[int32]*mixerv1.StringMap)
			}
			sm := &mixerv1.StringMap{Entries: make(map[int32]int32, v.n)}
			for _, kv := range v.kvs() {
				sm.Entries[enc.Index(kv.Key)] = enc.Index(kv.Value)
			}
			ca.StringMaps[name] = sm
		}
	}
}

// Decompress decodes ca, sent by a peer that knew globalWordCount global
// words. Every index, type and value is checked; the error says which
// attribute or index is wrong.
func Decompress(ca *mixerv1.CompressedAttributes, globalWordCount uint32) (Bag, error) {
	dec, err := NewWordDecoder(globalWordCount, ca.GetWords())
	if err != nil {
		return Bag{}, err
	}
	entries, err := decompress(nil, ca, dec, -1)
	if err != nil {
		return Bag{}, err
	}
	return finish(entries, -1)
}

// finish sorts entries into a Bag and rejects duplicate names.
func finish(entries []entry, element int) (Bag, error) {
	slices.SortFunc(entries, compareEntry)
	for i := 1; i < len(entries); i++ {
		if entries[i].name == entries[i-1].name {
			return Bag{}, &DecodeError{Element: element, Attribute: entries[i].name, Err: ErrDuplicate,
				Detail: fmt.Sprintf("appears as both %s and %s", entries[i-1].value.kind, entries[i].value.kind)}
		}
	}
	return Bag{entries: entries}, nil
}

// decompress appends the attributes of ca to entries.
func decompress(entries []entry, ca *mixerv1.CompressedAttributes, dec WordDecoder, element int) ([]entry, error) {
	if entries == nil {
		entries = make([]entry, 0, countAttributes(ca))
	}
	fail := func(field string, attr string, idx int32, err error, detail string) error {
		return &DecodeError{Element: element, Field: field, Attribute: attr, Index: idx, Err: err, Detail: detail}
	}
	// name resolves an attribute name and checks its wire kind against
	// the vocabulary.
	name := func(field string, idx int32, wire Kind) (string, Kind, error) {
		n, err := dec.Word(idx)
		if err != nil {
			return "", 0, fail(field, "", idx, ErrIndex, "attribute name: "+err.Error())
		}
		want, known := Vocabulary[n]
		switch {
		case !known, want == wire:
			return n, wire, nil
		case want == KindIPAddress && wire == KindBytes:
			return n, KindIPAddress, nil
		}
		return "", 0, fail(field, n, idx, ErrType, fmt.Sprintf("the vocabulary says %s, the message sent %s", want, wire))
	}

	for k, v := range ca.GetStrings() {
		n, _, err := name("strings", k, KindString)
		if err != nil {
			return nil, err
		}
		s, err := dec.Word(v)
		if err != nil {
			return nil, fail("strings", n, v, ErrIndex, "value: "+err.Error())
		}
		entries = append(entries, entry{n, String(s)})
	}
	for k, v := range ca.GetInt64S() {
		n, _, err := name("int64s", k, KindInt64)
		if err != nil {
			return nil, err
		}
		entries = append(entries, entry{n, Int64(v)})
	}
	for k, v := range ca.GetDoubles() {
		n, _, err := name("doubles", k, KindDouble)
		if err != nil {
			return nil, err
		}
		entries = append(entries, entry{n, Double(v)})
	}
	for k, v := range ca.GetBools() {
		n, _, err := name("bools", k, KindBool)
		if err != nil {
			return nil, err
		}
		entries = append(entries, entry{n, Bool(v)})
	}
	for k, v := range ca.GetBytes() {
		n, kind, err := name("bytes", k, KindBytes)
		if err != nil {
			return nil, err
		}
		val := Bytes(v)
		if kind == KindIPAddress {
			var ok bool
			if val, ok = ipFromBytes(bytesString(v)); !ok {
				return nil, fail("bytes", n, k, ErrValue, fmt.Sprintf("an IP address has 4 or 16 bytes, got %d", len(v)))
			}
		}
		entries = append(entries, entry{n, val})
	}
	for k, v := range ca.GetTimestamps() {
		n, _, err := name("timestamps", k, KindTimestamp)
		if err != nil {
			return nil, err
		}
		val, err := timestampValue(v)
		if err != nil {
			return nil, fail("timestamps", n, k, ErrValue, err.Error())
		}
		entries = append(entries, entry{n, val})
	}
	for k, v := range ca.GetDurations() {
		n, _, err := name("durations", k, KindDuration)
		if err != nil {
			return nil, err
		}
		val, err := durationValue(v)
		if err != nil {
			return nil, fail("durations", n, k, ErrValue, err.Error())
		}
		entries = append(entries, entry{n, val})
	}
	for k, v := range ca.GetStringMaps() {
		n, _, err := name("string_maps", k, KindStringMap)
		if err != nil {
			return nil, err
		}
		kvs := make([]KV, 0, len(v.GetEntries()))
		for mk, mv := range v.GetEntries() {
			key, err := dec.Word(mk)
			if err != nil {
				return nil, fail("string_maps", n, mk, ErrIndex, "map key: "+err.Error())
			}
			val, err := dec.Word(mv)
			if err != nil {
				return nil, fail("string_maps", n, mv, ErrIndex, fmt.Sprintf("value of map key %q: %v", key, err))
			}
			kvs = append(kvs, KV{key, val})
		}
		entries = append(entries, entry{n, StringMapValue(NewStringMap(kvs))})
	}
	return entries, nil
}

func countAttributes(ca *mixerv1.CompressedAttributes) int {
	return len(ca.GetStrings()) + len(ca.GetInt64S()) + len(ca.GetDoubles()) + len(ca.GetBools()) +
		len(ca.GetBytes()) + len(ca.GetTimestamps()) + len(ca.GetDurations()) + len(ca.GetStringMaps())
}

// timestampValue converts a wire timestamp, rejecting one outside
// 0001-01-01 .. 9999-12-31 or with nanos outside [0, 1e9).
func timestampValue(ts *timestamppb.Timestamp) (Value, error) {
	if ts == nil {
		return Value{}, fmt.Errorf("timestamp is empty")
	}
	return timestampOf(ts.GetSeconds(), ts.GetNanos())
}

// Bounds of google.protobuf.Timestamp and Duration, as their CheckValid
// methods enforce them.
const (
	minTimestampSeconds = -62135596800 // 0001-01-01T00:00:00Z
	maxTimestampSeconds = 253402300799 // 9999-12-31T23:59:59Z
	maxDurationSeconds  = 315576000000 // 10,000 years
)

// timestampOf is timestampValue over the fields, without a message.
func timestampOf(sec int64, nanos int32) (Value, error) {
	if sec < minTimestampSeconds || sec > maxTimestampSeconds || nanos < 0 || nanos >= 1e9 {
		return Value{}, fmt.Errorf("timestamp {seconds:%d nanos:%d} is out of range", sec, nanos)
	}
	return Value{kind: KindTimestamp, n: sec, nanos: nanos}, nil
}

// durationValue converts a wire duration, rejecting one that a Go
// time.Duration cannot hold (about ±292 years) or with inconsistent signs.
func durationValue(d *durationpb.Duration) (Value, error) {
	if d == nil {
		return Value{}, fmt.Errorf("duration is empty")
	}
	return durationOf(d.GetSeconds(), d.GetNanos())
}

// durationOf is durationValue over the fields, without a message.
func durationOf(s int64, nanos int32) (Value, error) {
	if s < -maxDurationSeconds || s > maxDurationSeconds || nanos <= -1e9 || nanos >= 1e9 ||
		(s > 0 && nanos < 0) || (s < 0 && nanos > 0) {
		return Value{}, fmt.Errorf("duration {seconds:%d nanos:%d} is invalid", s, nanos)
	}
	ns := int64(nanos)
	if s > math.MaxInt64/int64(time.Second) || s < math.MinInt64/int64(time.Second) {
		return Value{}, fmt.Errorf("duration of %d seconds does not fit in 292 years", s)
	}
	total := s*int64(time.Second) + ns
	if (s > 0 && total < 0) || (s < 0 && total > 0) {
		return Value{}, fmt.Errorf("duration of %d seconds does not fit in 292 years", s)
	}
	return Duration(time.Duration(total)), nil
}
