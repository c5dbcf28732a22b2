package attributes

import (
	"iter"
	"slices"
	"strings"
)

type entry struct {
	name  string
	value Value
}

// Bag is an immutable set of named attribute values, sorted by name. The
// zero Bag is empty. Copying a Bag is cheap and copies share storage; a
// Bag is safe for concurrent use because nothing mutates it.
type Bag struct {
	entries []entry
}

func compareEntry(a, b entry) int { return strings.Compare(a.name, b.name) }

// Get returns the value of the named attribute.
func (b Bag) Get(name string) (Value, bool) {
	i, ok := slices.BinarySearchFunc(b.entries, name, func(e entry, n string) int { return strings.Compare(e.name, n) })
	if !ok {
		return Value{}, false
	}
	return b.entries[i].value, true
}

// Has reports whether the named attribute is present.
func (b Bag) Has(name string) bool {
	_, ok := b.Get(name)
	return ok
}

// Len is the number of attributes.
func (b Bag) Len() int { return len(b.entries) }

// All yields the attributes in name order.
func (b Bag) All() iter.Seq2[string, Value] {
	return func(yield func(string, Value) bool) {
		for _, e := range b.entries {
			if !yield(e.name, e.value) {
				return
			}
		}
	}
}

// Names returns the attribute names in order.
func (b Bag) Names() []string {
	names := make([]string, len(b.entries))
	for i, e := range b.entries {
		names[i] = e.name
	}
	return names
}

// Equal reports whether b and o hold the same attributes and values.
func (b Bag) Equal(o Bag) bool {
	return slices.EqualFunc(b.entries, o.entries, func(x, y entry) bool {
		return x.name == y.name && x.value.Equal(y.value)
	})
}

// String renders the bag for humans, one attribute per line.
func (b Bag) String() string {
	var sb strings.Builder
	for _, e := range b.entries {
		sb.WriteString(e.name)
		sb.WriteString(": ")
		sb.WriteString(e.value.String())
		sb.WriteByte('\n')
	}
	return sb.String()
}

// Builder collects attributes for one Bag. The zero Builder is ready to use.
// It is not safe for concurrent use.
type Builder struct {
	entries []entry
}

// NewBuilder returns a builder with room for n attributes.
func NewBuilder(n int) *Builder { return &Builder{entries: make([]entry, 0, n)} }

// NewBuilderFrom returns a builder holding the attributes of b, with room
// for extra more. It copies b's entries (b is unchanged).
func NewBuilderFrom(b Bag, extra int) *Builder {
	entries := make([]entry, len(b.entries), len(b.entries)+extra)
	copy(entries, b.entries)
	return &Builder{entries: entries}
}

// Set records name = v, replacing an earlier value of name. A zero
// (invalid) Value deletes name instead.
func (bd *Builder) Set(name string, v Value) {
	if !v.IsValid() {
		bd.Delete(name)
		return
	}
	for i := range bd.entries {
		if bd.entries[i].name == name {
			bd.entries[i].value = v
			return
		}
	}
	bd.entries = append(bd.entries, entry{name: name, value: v})
}

// Get returns the value recorded for name.
func (bd *Builder) Get(name string) (Value, bool) {
	for i := range bd.entries {
		if bd.entries[i].name == name {
			return bd.entries[i].value, true
		}
	}
	return Value{}, false
}

// Delete removes name.
func (bd *Builder) Delete(name string) {
	bd.entries = slices.DeleteFunc(bd.entries, func(e entry) bool { return e.name == name })
}

// Merge sets every attribute of b, overriding values already recorded.
func (bd *Builder) Merge(b Bag) {
	for _, e := range b.entries {
		bd.Set(e.name, e.value)
	}
}

// Len is the number of attributes recorded.
func (bd *Builder) Len() int { return len(bd.entries) }

// Build returns the bag and leaves the builder empty. The bag owns the
// builder's storage; the builder allocates anew on its next Set.
func (bd *Builder) Build() Bag {
	entries := bd.entries
	bd.entries = nil
	slices.SortFunc(entries, compareEntry)
	return Bag{entries: entries}
}

// BagOf returns a bag of the given attributes; a later duplicate name wins.
func BagOf(attrs map[string]Value) Bag {
	bd := NewBuilder(len(attrs))
	for n, v := range attrs {
		bd.Set(n, v)
	}
	return bd.Build()
}
