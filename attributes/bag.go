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
//
// Set and Delete append to a log in O(1); Build sorts and resolves it: of
// several records for one name the last wins, and a deletion is a record
// with the zero Value. The first sorted entries of the log (those copied by
// NewBuilderFrom, or left by an earlier compaction) are sorted and unique,
// so that Build sorts only what was set since and merges it in.
//
// A builder can also be reused from bag to bag: Reset reclaims the storage
// of the bags it built, and KVs hands out string-map storage that Reset
// reclaims too, so that a builder kept in a pool builds without allocating
// once warm. Reuse is for owners that can prove the old bags unreachable
// (see Reset); everything else lets bags own their storage for good.
type Builder struct {
	entries []entry
	sorted  int // entries[:sorted] are sorted by name, unique and valid
	// spare is the storage of the last bag built, for Reset to reclaim.
	spare []entry
	// kvs is string-map storage: kvs[:len(kvs)] was handed out by KVs
	// since the last Reset.
	kvs []KV
}

// compactAfter is how many unsorted records the log may hold before Set
// compacts it rather than growing it, so that setting one name over and
// over does not grow the builder without bound.
const compactAfter = 32

// NewBuilder returns a builder with room for n attributes.
func NewBuilder(n int) *Builder { return &Builder{entries: make([]entry, 0, n)} }

// NewBuilderFrom returns a builder holding the attributes of b, with room
// for extra more. It copies b's entries (b is unchanged).
func NewBuilderFrom(b Bag, extra int) *Builder {
	entries := make([]entry, len(b.entries), len(b.entries)+extra)
	copy(entries, b.entries)
	return &Builder{entries: entries, sorted: len(entries)}
}

// Set records name = v, replacing an earlier value of name. A zero
// (invalid) Value deletes name instead.
func (bd *Builder) Set(name string, v Value) {
	if len(bd.entries) == cap(bd.entries) && len(bd.entries)-bd.sorted >= compactAfter {
		bd.normalize()
	}
	bd.entries = append(bd.entries, entry{name: name, value: v})
}

// Get returns the value recorded for name.
func (bd *Builder) Get(name string) (Value, bool) {
	for i := len(bd.entries) - 1; i >= bd.sorted; i-- {
		if bd.entries[i].name == name {
			return bd.entries[i].value, bd.entries[i].value.IsValid()
		}
	}
	return Bag{entries: bd.entries[:bd.sorted]}.Get(name)
}

// Delete removes name.
func (bd *Builder) Delete(name string) { bd.Set(name, Value{}) }

// Merge sets every attribute of b, overriding values already recorded.
func (bd *Builder) Merge(b Bag) {
	for _, e := range b.entries {
		bd.Set(e.name, e.value)
	}
}

// Len is the number of attributes recorded.
func (bd *Builder) Len() int {
	bd.normalize()
	return len(bd.entries)
}

// Build returns the bag and leaves the builder empty. The bag owns the
// builder's storage until Reset; the builder allocates anew on its next
// Set.
func (bd *Builder) Build() Bag {
	bd.normalize()
	entries := bd.entries
	bd.entries, bd.sorted, bd.spare = nil, 0, entries
	return Bag{entries: entries}
}

// Reset empties bd and starts it with the attributes of base (none for the
// zero Bag), as NewBuilderFrom does, except that the string maps of base
// are copied into bd's own storage: the bags bd builds next share no
// reclaimable storage with base.
//
// Reset reclaims the storage of the last bag bd built and of every string
// map KVs handed out since the previous Reset, overwriting it from then
// on. The caller guarantees that those bags, their copies and their string
// maps are no longer used by anyone: Bags are immutable by contract, so
// only an owner that never let them escape may reset (the mixer filter its
// per-stream builder once the stream's report is built; the mixer client a
// report builder once its batch is encoded).
func (bd *Builder) Reset(base Bag) {
	clear(bd.entries)
	clear(bd.spare)
	s := bd.spare
	if cap(bd.entries) > cap(s) {
		s = bd.entries
	}
	bd.spare = nil
	clear(bd.kvs)
	bd.kvs = bd.kvs[:0]
	if cap(s) < len(base.entries)+resetRoom {
		s = make([]entry, 0, len(base.entries)+resetRoom)
	}
	bd.entries = append(s[:0], base.entries...)
	bd.sorted = len(bd.entries)
	for i := range bd.entries {
		e := &bd.entries[i]
		if e.value.kind == KindStringMap {
			kvs := append(bd.KVs(int(e.value.n)), e.value.kvs()...)
			e.value = StringMapValue(StringMap{kvs: kvs})
		}
	}
}

// resetRoom is how many attributes Reset leaves room for beyond the base
// (a request's or a response's own), so that reused storage seldom grows.
const resetRoom = 16

// KVs returns an empty slice with room for n entries, in storage that bd
// reclaims on Reset: fill it and pass it to NewStringMap for a value of
// the bags bd builds. Appending beyond n moves the slice out of bd's
// storage (safe, but no longer reused).
func (bd *Builder) KVs(n int) []KV {
	l := len(bd.kvs)
	if cap(bd.kvs)-l < n {
		// A new block; the old one stays with the bags that use it and
		// is left to the collector.
		bd.kvs = make([]KV, 0, max(2*cap(bd.kvs), n, 16))
		l = 0
	}
	bd.kvs = bd.kvs[:l+n]
	return bd.kvs[l : l : l+n]
}

// normalize sorts the log by name, keeps the last record of each name and
// drops deletions, without allocating for up to 32 new records.
func (bd *Builder) normalize() {
	nb, n := bd.sorted, len(bd.entries)
	if nb == n {
		return
	}
	// Sort the new records in a copy, on the stack for up to 32 of them:
	// moving entries there costs no GC write barriers, and the merge below
	// can overwrite the log while reading them.
	var buf [32]entry
	top := buf[:0]
	if n-nb > len(buf) {
		top = make([]entry, 0, n-nb)
	}
	top = append(top, bd.entries[nb:]...)
	// Stable, so that of records for one name the last stays last.
	if len(top) <= len(buf) {
		insertionSortEntries(top)
	} else {
		slices.SortStableFunc(top, compareEntry)
	}
	// Keep the last record of each name.
	nt := 0
	for i := range top {
		if i+1 < len(top) && top[i+1].name == top[i].name {
			continue
		}
		if nt != i {
			top[nt] = top[i]
		}
		nt++
	}
	// Merge from the back: base entries are never overwritten before
	// being read, since w stays at or above i+j.
	base := bd.entries[:nb]
	w := nb + nt
	i, j := nb, nt
	for j > 0 {
		t := &top[j-1]
		switch {
		case i > 0 && base[i-1].name > t.name:
			w--
			bd.entries[w] = base[i-1]
			i--
		default:
			if i > 0 && base[i-1].name == t.name {
				i-- // replaced or deleted
			}
			if t.value.IsValid() {
				w--
				bd.entries[w] = *t
			}
			j--
		}
	}
	// base[:i] is in place when nothing was dropped; else move it up.
	if w != i {
		copy(bd.entries[w-i:w], base[:i])
	}
	w -= i
	out := bd.entries[:copy(bd.entries, bd.entries[w:nb+nt])]
	clear(bd.entries[len(out):n])
	clear(buf[:min(n-nb, len(buf))])
	bd.entries = out
	bd.sorted = len(out)
}

// insertionSortEntries sorts a few entries by name, stably.
func insertionSortEntries(es []entry) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].name < es[j-1].name; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// BagOf returns a bag of the given attributes; a later duplicate name wins.
func BagOf(attrs map[string]Value) Bag {
	bd := NewBuilder(len(attrs))
	for n, v := range attrs {
		bd.Set(n, v)
	}
	return bd.Build()
}
