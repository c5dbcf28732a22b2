package filter

import "strings"

// Pseudo-header names carried in a HeaderMap.
const (
	HeaderMethod    = ":method"
	HeaderPath      = ":path"
	HeaderAuthority = ":authority"
	HeaderScheme    = ":scheme"
	HeaderStatus    = ":status"
	HeaderProtocol  = ":protocol"
)

// HeaderField is one header line. Name is lower-case.
type HeaderField struct {
	Name  string
	Value string
}

// HeaderMap is an ordered list of header fields with lower-case names; a name
// may repeat. Methods that take a name expect it lower-case. The zero value
// is an empty map ready to use. A HeaderMap is not safe for concurrent use;
// it belongs to the stream that carries it.
type HeaderMap struct {
	fields []HeaderField
}

// NewHeaderMap returns a map holding fields (not copied: the map takes
// ownership of the slice).
func NewHeaderMap(fields ...HeaderField) *HeaderMap {
	return &HeaderMap{fields: fields}
}

// Get returns the first value of name.
func (h *HeaderMap) Get(name string) (string, bool) {
	if h == nil {
		return "", false
	}
	for i := range h.fields {
		if h.fields[i].Name == name {
			return h.fields[i].Value, true
		}
	}
	return "", false
}

// Value returns the first value of name, or "" when it is absent.
func (h *HeaderMap) Value(name string) string {
	v, _ := h.Get(name)
	return v
}

// Values appends every value of name to dst and returns it.
func (h *HeaderMap) Values(dst []string, name string) []string {
	if h == nil {
		return dst
	}
	for i := range h.fields {
		if h.fields[i].Name == name {
			dst = append(dst, h.fields[i].Value)
		}
	}
	return dst
}

// Has reports whether name is present.
func (h *HeaderMap) Has(name string) bool {
	_, ok := h.Get(name)
	return ok
}

// Set replaces every value of name with value.
func (h *HeaderMap) Set(name, value string) {
	for i := range h.fields {
		if h.fields[i].Name == name {
			h.fields[i].Value = value
			h.delFrom(i+1, name)
			return
		}
	}
	h.fields = append(h.fields, HeaderField{Name: name, Value: value})
}

// Add appends a value of name, keeping existing ones.
func (h *HeaderMap) Add(name, value string) {
	h.fields = append(h.fields, HeaderField{Name: name, Value: value})
}

// Append adds value to the first value of name as a comma-separated list
// element, or sets it if name is absent (Envoy's append semantics).
func (h *HeaderMap) Append(name, value string) {
	for i := range h.fields {
		if h.fields[i].Name == name {
			if h.fields[i].Value == "" {
				h.fields[i].Value = value
			} else {
				h.fields[i].Value += "," + value
			}
			return
		}
	}
	h.fields = append(h.fields, HeaderField{Name: name, Value: value})
}

// Del removes every value of name.
func (h *HeaderMap) Del(name string) {
	h.delFrom(0, name)
}

func (h *HeaderMap) delFrom(start int, name string) {
	j := start
	for i := start; i < len(h.fields); i++ {
		if h.fields[i].Name != name {
			h.fields[j] = h.fields[i]
			j++
		}
	}
	clear(h.fields[j:])
	h.fields = h.fields[:j]
}

// Len is the number of fields, counting repeats.
func (h *HeaderMap) Len() int {
	if h == nil {
		return 0
	}
	return len(h.fields)
}

// Fields returns the fields in order. The slice belongs to the map: callers
// may read it until the next mutation and must not modify it.
func (h *HeaderMap) Fields() []HeaderField {
	if h == nil {
		return nil
	}
	return h.fields
}

// ByteSize is the size of the fields as HTTP/2 counts it for header-list
// limits: name and value lengths plus 32 per field.
func (h *HeaderMap) ByteSize() int {
	if h == nil {
		return 0
	}
	n := 0
	for i := range h.fields {
		n += len(h.fields[i].Name) + len(h.fields[i].Value) + 32
	}
	return n
}

// Reset empties the map, keeping its storage for reuse.
func (h *HeaderMap) Reset() {
	clear(h.fields)
	h.fields = h.fields[:0]
}

// Clone returns a deep copy of the map's field list.
func (h *HeaderMap) Clone() *HeaderMap {
	if h == nil {
		return nil
	}
	return &HeaderMap{fields: append([]HeaderField(nil), h.fields...)}
}

// Method, Path, Authority, Scheme and Status read the pseudo-headers.
func (h *HeaderMap) Method() string    { return h.Value(HeaderMethod) }
func (h *HeaderMap) Path() string      { return h.Value(HeaderPath) }
func (h *HeaderMap) Authority() string { return h.Value(HeaderAuthority) }
func (h *HeaderMap) Scheme() string    { return h.Value(HeaderScheme) }
func (h *HeaderMap) Status() string    { return h.Value(HeaderStatus) }

// LowerName returns name in lower case, without allocating when it already is.
func LowerName(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}
