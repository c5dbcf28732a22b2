package format

import (
	"encoding/json"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/remora-mesh/remora/proxy/filter"
)

// appendText renders v as a text format shows it.
func (v *value) appendText(dst []byte, omit bool) []byte {
	switch v.kind {
	case vUnset:
		if omit {
			return dst
		}
		return append(dst, '-')
	case vString, vBytes, vJSON:
		return append(dst, v.s...)
	case vInt:
		return strconv.AppendInt(dst, v.int(), 10)
	case vUint:
		return strconv.AppendUint(dst, v.n, 10)
	case vFloat:
		return appendFloat(dst, v.float())
	case vBool:
		return strconv.AppendBool(dst, v.bool())
	case vNull:
		return append(dst, "null"...)
	}
	return dst
}

// empty reports whether omit_empty_values leaves v out.
func (v *value) empty() bool {
	switch v.kind {
	case vUnset, vNull:
		return true
	case vString, vBytes:
		return v.s == ""
	}
	return false
}

// appendJSONString renders v's text form as a JSON string without quotes.
func (v *value) appendJSONStringBody(dst []byte, omit bool) []byte {
	switch v.kind {
	case vString, vBytes, vJSON:
		return appendEscaped(dst, v.s)
	default:
		// Numbers, booleans, "-" and "null" need no escaping.
		return v.appendText(dst, omit)
	}
}

// appendTyped renders v as a typed JSON value.
func (v *value) appendTyped(dst []byte) []byte {
	switch v.kind {
	case vUnset, vNull:
		return append(dst, "null"...)
	case vString, vBytes:
		dst = append(dst, '"')
		dst = appendEscaped(dst, v.s)
		return append(dst, '"')
	case vJSON:
		return append(dst, v.s...)
	case vInt:
		return strconv.AppendInt(dst, v.int(), 10)
	case vUint:
		return strconv.AppendUint(dst, v.n, 10)
	case vFloat:
		if f := v.float(); math.IsNaN(f) || math.IsInf(f, 0) {
			return append(dst, "null"...)
		}
		return appendFloat(dst, v.float())
	case vBool:
		return strconv.AppendBool(dst, v.bool())
	}
	return dst
}

func appendFloat(dst []byte, f float64) []byte {
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends s escaped for the inside of a JSON string:
// quotes, backslashes and control characters are escaped and invalid UTF-8
// becomes U+FFFD.
func appendEscaped(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = appendEscapedByte(dst, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

func appendEscapedByte(dst []byte, c byte) []byte {
	switch c {
	case '"':
		return append(dst, '\\', '"')
	case '\\':
		return append(dst, '\\', '\\')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}

func addrPort(ap netip.AddrPort, withPort bool, sc *scratch) value {
	if !ap.Addr().IsValid() {
		return value{}
	}
	if withPort {
		sc.b = ap.AppendTo(sc.b[:0])
	} else {
		sc.b = ap.Addr().AppendTo(sc.b[:0])
	}
	return bytesValue(vBytes, sc.b)
}

// metadata renders DYNAMIC_METADATA(NS[:KEY...]).
func (o *operator) metadata(info *filter.StreamInfo, sc *scratch) value {
	var cur any
	if len(o.mdPath) == 0 {
		ns := info.DynamicMetadataNamespace(o.mdNS)
		if ns == nil {
			return value{}
		}
		cur = ns
	} else {
		v, ok := info.DynamicMetadata(o.mdNS, o.mdPath[0])
		if !ok {
			return value{}
		}
		cur = v
		for _, k := range o.mdPath[1:] {
			m, ok := cur.(map[string]any)
			if !ok {
				return value{}
			}
			if cur, ok = m[k]; !ok {
				return value{}
			}
		}
	}
	return anyValue(cur, sc)
}

// anyValue converts a metadata value without reflection for the scalar
// types; maps and lists are marshalled to JSON (allocating).
func anyValue(x any, sc *scratch) value {
	switch t := x.(type) {
	case nil:
		return value{kind: vNull}
	case string:
		return value{kind: vString, s: t}
	case bool:
		return boolValue(t)
	case int:
		return intValue(int64(t))
	case int32:
		return intValue(int64(t))
	case int64:
		return intValue(t)
	case uint32:
		return uintValue(uint64(t))
	case uint64:
		return uintValue(t)
	case float32:
		return floatValue(float64(t))
	case float64:
		return floatValue(t)
	case map[string]any:
		sc.b = appendJSONAny(sc.b[:0], t)
		return bytesValue(vJSON, sc.b)
	}
	b, err := json.Marshal(x)
	if err != nil {
		return value{}
	}
	return bytesValue(vJSON, b)
}

// appendJSONAny renders a metadata map with sorted keys.
func appendJSONAny(dst []byte, m map[string]any) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	dst = append(dst, '{')
	var sc scratch
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = appendEscaped(dst, k)
		dst = append(dst, '"', ':')
		v := anyValue(m[k], &sc)
		dst = v.appendTyped(dst)
	}
	return append(dst, '}')
}
