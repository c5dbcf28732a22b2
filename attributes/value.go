package attributes

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"
)

// Kind is the type of an attribute value. The names follow Istio's
// ValueType; DNS names, URIs and e-mail addresses travel as strings.
type Kind uint8

const (
	KindInvalid Kind = iota
	KindString
	KindInt64
	KindDouble
	KindBool
	KindBytes
	KindTimestamp
	KindDuration
	KindStringMap
	KindIPAddress
)

var kindNames = [...]string{"INVALID", "STRING", "INT64", "DOUBLE", "BOOL", "BYTES", "TIMESTAMP", "DURATION", "STRING_MAP", "IP_ADDRESS"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is one typed attribute value. The zero Value is invalid (no value).
// Values are immutable: byte slices and string maps given to a constructor
// are owned by the Value afterwards, and those returned by accessors must
// not be modified.
//
// A Value is 24 bytes: entries of bags and builders stay small to sort and
// copy. String, Bytes and IPAddress values keep a pointer to their bytes
// and the length in n; a StringMap keeps a pointer to its first KV and the
// count in n.
type Value struct {
	p     unsafe.Pointer // String, Bytes, IPAddress: the bytes; StringMap: the first KV
	n     int64          // the length of p's data; Int64, Bool (0/1), Duration (ns), Timestamp (Unix seconds), Double (bits)
	nanos int32          // Timestamp: nanoseconds within the second
	kind  Kind
}

// strValue returns a value of kind over the bytes of s.
func strValue(kind Kind, s string) Value {
	return Value{kind: kind, p: unsafe.Pointer(unsafe.StringData(s)), n: int64(len(s))}
}

// str returns the bytes of a String, Bytes or IPAddress value as a string.
func (v Value) str() string {
	switch v.kind {
	case KindString, KindBytes, KindIPAddress:
		return unsafe.String((*byte)(v.p), int(v.n))
	}
	return ""
}

// kvs returns the entries of a StringMap value.
func (v Value) kvs() []KV {
	if v.kind != KindStringMap {
		return nil
	}
	return unsafe.Slice((*KV)(v.p), int(v.n))
}

// String returns a string value.
func String(s string) Value { return strValue(KindString, s) }

// Int64 returns an integer value.
func Int64(n int64) Value { return Value{kind: KindInt64, n: n} }

// Double returns a floating-point value.
func Double(f float64) Value { return Value{kind: KindDouble, n: int64(math.Float64bits(f))} }

// Bool returns a boolean value.
func Bool(b bool) Value {
	v := Value{kind: KindBool}
	if b {
		v.n = 1
	}
	return v
}

// Bytes returns a bytes value. The Value takes ownership of b.
func Bytes(b []byte) Value { return strValue(KindBytes, bytesString(b)) }

// bytesString returns a string over b without copying; b must not be
// modified afterwards (Bytes takes ownership, so it is not).
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// Timestamp returns a point in time (monotonic clock and location dropped).
func Timestamp(t time.Time) Value {
	return Value{kind: KindTimestamp, n: t.Unix(), nanos: int32(t.Nanosecond())}
}

// Duration returns a duration value.
func Duration(d time.Duration) Value { return Value{kind: KindDuration, n: int64(d)} }

// StringMapValue returns a string-map value.
func StringMapValue(m StringMap) Value {
	return Value{kind: KindStringMap, p: unsafe.Pointer(unsafe.SliceData(m.kvs)), n: int64(len(m.kvs))}
}

// IPAddress returns an IP address value; an IPv4-mapped IPv6 address is
// stored as IPv4, as Envoy reports it. Recently used addresses share their
// bytes (see ipCells), so that a sidecar's per-request source and
// destination addresses cost no allocation.
func IPAddress(ip netip.Addr) Value {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return strValue(KindIPAddress, "")
	}
	a := ip.As16()
	lo, hi := binary.LittleEndian.Uint64(a[:8]), binary.LittleEndian.Uint64(a[8:])
	slot := &ipCells[((lo^hi)*0x9e3779b97f4a7c15)>>(64-ipCellBits)]
	if c := slot.Load(); c != nil && c.addr == ip {
		return strValue(KindIPAddress, c.bytes())
	}
	c := &ipCell{addr: ip}
	if ip.Is4() {
		a4 := ip.As4()
		c.n = uint8(copy(c.b[:], a4[:]))
	} else {
		c.n = uint8(copy(c.b[:], a[:]))
	}
	slot.Store(c)
	return strValue(KindIPAddress, c.bytes())
}

// ipCellBits sizes ipCells: 256 addresses, a few KiB.
const ipCellBits = 8

// ipCells is a direct-mapped cache of the bytes of recently seen
// addresses. A cell is immutable once stored and never reused: values keep
// pointing into a cell that was replaced, which the collector then keeps
// alive, so sharing cells between goroutines and values is safe.
var ipCells [1 << ipCellBits]atomic.Pointer[ipCell]

type ipCell struct {
	addr netip.Addr
	b    [16]byte
	n    uint8
}

func (c *ipCell) bytes() string { return unsafe.String(&c.b[0], int(c.n)) }

// ipFromBytes returns an IP address value over raw 4- or 16-byte b.
func ipFromBytes(b string) (Value, bool) {
	if len(b) != 4 && len(b) != 16 {
		return Value{}, false
	}
	return strValue(KindIPAddress, b), true
}

// Kind reports the value's type; KindInvalid for the zero Value.
func (v Value) Kind() Kind { return v.kind }

// IsValid reports whether v holds a value.
func (v Value) IsValid() bool { return v.kind != KindInvalid }

// StringValue returns the string of a KindString value, "" otherwise.
func (v Value) StringValue() string {
	if v.kind != KindString {
		return ""
	}
	return unsafe.String((*byte)(v.p), int(v.n))
}

// Int64Value returns the integer of a KindInt64 value, 0 otherwise.
func (v Value) Int64Value() int64 {
	if v.kind != KindInt64 {
		return 0
	}
	return v.n
}

// DoubleValue returns the number of a KindDouble value, 0 otherwise.
func (v Value) DoubleValue() float64 {
	if v.kind != KindDouble {
		return 0
	}
	return math.Float64frombits(uint64(v.n))
}

// BoolValue returns the boolean of a KindBool value, false otherwise.
func (v Value) BoolValue() bool { return v.kind == KindBool && v.n != 0 }

// BytesValue returns the bytes of a KindBytes or KindIPAddress value, nil
// otherwise. The slice shares the value's storage and must not be modified.
func (v Value) BytesValue() []byte {
	if (v.kind != KindBytes && v.kind != KindIPAddress) || v.n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(v.p), int(v.n))
}

// TimeValue returns the time of a KindTimestamp value (UTC), zero otherwise.
func (v Value) TimeValue() time.Time {
	if v.kind != KindTimestamp {
		return time.Time{}
	}
	return time.Unix(v.n, int64(v.nanos)).UTC()
}

// DurationValue returns the duration of a KindDuration value, 0 otherwise.
func (v Value) DurationValue() time.Duration {
	if v.kind != KindDuration {
		return 0
	}
	return time.Duration(v.n)
}

// StringMapValue returns the map of a KindStringMap value (empty otherwise).
func (v Value) StringMapValue() StringMap { return StringMap{kvs: v.kvs()} }

// IPValue returns the address of a KindIPAddress value.
func (v Value) IPValue() (netip.Addr, bool) {
	if v.kind != KindIPAddress {
		return netip.Addr{}, false
	}
	switch b := v.BytesValue(); len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b)), true
	case 16:
		return netip.AddrFrom16([16]byte(b)), true
	}
	return netip.Addr{}, false
}

// Equal reports whether v and o have the same kind and value. Doubles
// compare by bits, so NaN equals itself (a cache key needs that).
func (v Value) Equal(o Value) bool {
	if v.kind != o.kind || v.nanos != o.nanos {
		return false
	}
	switch v.kind {
	case KindString, KindBytes, KindIPAddress:
		return v.str() == o.str()
	case KindStringMap:
		return slices.Equal(v.kvs(), o.kvs())
	}
	return v.n == o.n
}

// AppendKey appends an unambiguous binary encoding of v to dst: equal
// values give equal encodings and different values different ones. Check
// caches use it to build keys; it allocates nothing when dst has room.
func (v Value) AppendKey(dst []byte) []byte {
	dst = append(dst, byte(v.kind))
	switch v.kind {
	case KindString, KindBytes, KindIPAddress:
		dst = appendLenString(dst, v.str())
	case KindInt64, KindDouble, KindBool, KindDuration:
		dst = binary.LittleEndian.AppendUint64(dst, uint64(v.n))
	case KindTimestamp:
		dst = binary.LittleEndian.AppendUint64(dst, uint64(v.n))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(v.nanos))
	case KindStringMap:
		kvs := v.kvs()
		dst = binary.AppendUvarint(dst, uint64(len(kvs)))
		for _, kv := range kvs {
			dst = appendLenString(dst, kv.Key)
			dst = appendLenString(dst, kv.Value)
		}
	}
	return dst
}

func appendLenString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// String renders v for humans (logs, debugging); it is not a wire format.
func (v Value) String() string {
	switch v.kind {
	case KindString:
		return strconv.Quote(v.str())
	case KindInt64:
		return strconv.FormatInt(v.n, 10)
	case KindDouble:
		return strconv.FormatFloat(v.DoubleValue(), 'g', -1, 64)
	case KindBool:
		return strconv.FormatBool(v.BoolValue())
	case KindBytes:
		return fmt.Sprintf("%x", v.str())
	case KindTimestamp:
		return v.TimeValue().Format(time.RFC3339Nano)
	case KindDuration:
		return v.DurationValue().String()
	case KindStringMap:
		return v.StringMapValue().String()
	case KindIPAddress:
		ip, _ := v.IPValue()
		return ip.String()
	}
	return "<invalid>"
}
