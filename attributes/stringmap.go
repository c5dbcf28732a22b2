package attributes

import (
	"iter"
	"slices"
	"strconv"
	"strings"
)

// KV is one entry of a StringMap.
type KV struct {
	Key   string
	Value string
}

// StringMap is an immutable map of strings, stored as entries sorted by key.
// It is the value of request.headers, source.labels and the like.
type StringMap struct {
	kvs []KV
}

// NewStringMap returns a map over kvs. It takes ownership of kvs, sorts it
// by key and, when a key repeats, keeps the last entry for it.
func NewStringMap(kvs []KV) StringMap {
	SortKVs(kvs)
	// Keep the last of equal keys: walk forward, overwrite while equal.
	j := 0
	for i := range kvs {
		if j > 0 && kvs[j-1].Key == kvs[i].Key {
			kvs[j-1] = kvs[i]
			continue
		}
		kvs[j] = kvs[i]
		j++
	}
	clear(kvs[j:])
	return StringMap{kvs: kvs[:j]}
}

// SortKVs sorts kvs by key, stably: of entries with one key, the first
// stays first. A few entries (a request's headers) are sorted by
// insertion, which costs one comparison per entry when they come sorted.
func SortKVs(kvs []KV) {
	if len(kvs) > 24 {
		slices.SortStableFunc(kvs, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
		return
	}
	for i := 1; i < len(kvs); i++ {
		for j := i; j > 0 && kvs[j].Key < kvs[j-1].Key; j-- {
			kvs[j], kvs[j-1] = kvs[j-1], kvs[j]
		}
	}
}

// JoinRepeated sorts kvs by key, stably, and joins the values of a
// repeated key with "," in their order, HTTP's rule for repeated header
// fields. It returns kvs shortened to the distinct keys (the rest cleared).
func JoinRepeated(kvs []KV) []KV {
	SortKVs(kvs)
	n := 0
	for i := range kvs {
		if n > 0 && kvs[n-1].Key == kvs[i].Key {
			kvs[n-1].Value += "," + kvs[i].Value
			continue
		}
		kvs[n] = kvs[i]
		n++
	}
	clear(kvs[n:])
	return kvs[:n]
}

// StringMapOf returns a map holding the entries of m.
func StringMapOf(m map[string]string) StringMap {
	kvs := make([]KV, 0, len(m))
	for k, v := range m {
		kvs = append(kvs, KV{k, v})
	}
	return NewStringMap(kvs)
}

// Get returns the value under key.
func (m StringMap) Get(key string) (string, bool) {
	i, ok := slices.BinarySearchFunc(m.kvs, key, func(kv KV, k string) int { return strings.Compare(kv.Key, k) })
	if !ok {
		return "", false
	}
	return m.kvs[i].Value, true
}

// Len is the number of entries.
func (m StringMap) Len() int { return len(m.kvs) }

// All yields the entries in key order.
func (m StringMap) All() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, kv := range m.kvs {
			if !yield(kv.Key, kv.Value) {
				return
			}
		}
	}
}

// Entries returns the sorted entries; the slice must not be modified.
func (m StringMap) Entries() []KV { return m.kvs }

// Equal reports whether m and o hold the same entries.
func (m StringMap) Equal(o StringMap) bool { return slices.Equal(m.kvs, o.kvs) }

// String renders the map for humans.
func (m StringMap) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, kv := range m.kvs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(kv.Key))
		b.WriteByte(':')
		b.WriteString(strconv.Quote(kv.Value))
	}
	b.WriteByte('}')
	return b.String()
}
