package format

import (
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/remora-mesh/remora/proxy/filter"
)

// DefaultFormat is Envoy's default HTTP access-log format, byte for byte.
const DefaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// Options tune how values are rendered.
type Options struct {
	// OmitEmptyValues prints nothing instead of "-" for unset values in text
	// formats, and leaves out JSON keys whose value is unset or empty.
	OmitEmptyValues bool
}

// Formatter renders StreamInfos with a compiled format. It is immutable and
// safe for concurrent use.
type Formatter struct {
	text  []segment // text format; nil for JSON
	json  *object   // JSON dictionary; nil for text
	typed bool
	omit  bool
}

// scratch is per-call working space for values rendered to bytes (times,
// addresses) before they are copied, escaped if need be, into the output.
type scratch struct{ b []byte }

var scratchPool = sync.Pool{New: func() any { return &scratch{b: make([]byte, 0, 128)} }}

// Compile compiles an Envoy format string. An empty format means
// DefaultFormat.
func Compile(format string, opts Options) (*Formatter, error) {
	if format == "" {
		format = DefaultFormat
	}
	segs, err := parse(format)
	if err != nil {
		return nil, err
	}
	return &Formatter{text: segs, omit: opts.OmitEmptyValues}, nil
}

// MustCompile is Compile for formats known to be valid; it panics on error
// and is meant for package-level variables and tests.
func MustCompile(format string, opts Options) *Formatter {
	f, err := Compile(format, opts)
	if err != nil {
		panic(err)
	}
	return f
}

// Append renders info with the format and appends the result to dst. It
// does not retain info or dst.
func (f *Formatter) Append(dst []byte, info *filter.StreamInfo) []byte {
	sc := scratchPool.Get().(*scratch)
	if f.json != nil {
		dst = f.appendObject(dst, f.json, info, sc)
		dst = append(dst, '\n')
	} else {
		for i := range f.text {
			dst = f.text[i].appendText(dst, info, f.omit, sc)
		}
	}
	if cap(sc.b) <= 4096 {
		scratchPool.Put(sc)
	}
	return dst
}

// segment is a literal or an operator.
type segment struct {
	lit string
	op  *operator // nil for a literal
}

func (s *segment) appendText(dst []byte, info *filter.StreamInfo, omit bool, sc *scratch) []byte {
	if s.op == nil {
		return append(dst, s.lit...)
	}
	v := s.op.eval(info, sc)
	return v.appendText(dst, omit)
}

// parse splits a format string into literals and operators.
func parse(format string) ([]segment, error) {
	var segs []segment
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			segs = append(segs, segment{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(format); {
		c := format[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(format) && format[i+1] == '%' {
			lit.WriteByte('%')
			i += 2
			continue
		}
		op, n, err := parseOperator(format, i)
		if err != nil {
			return nil, err
		}
		flush()
		segs = append(segs, segment{op: op})
		i += n
	}
	flush()
	return segs, nil
}

func isCommandByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

// parseOperator parses `%COMMAND[(params)][:max_length]%` starting at
// format[pos] == '%' and returns the operator and its length in bytes.
func parseOperator(format string, pos int) (*operator, int, error) {
	errf := func(msg string) error { return &Error{Pos: pos, Msg: msg} }
	i := pos + 1
	for i < len(format) && isCommandByte(format[i]) {
		i++
	}
	name := format[pos+1 : i]
	if name == "" {
		return nil, 0, errf("'%' must start an operator like %REQ(:PATH)% or be written %% for a literal percent")
	}
	var params string
	hasParams := false
	if i < len(format) && format[i] == '(' {
		end := strings.IndexByte(format[i:], ')')
		if end < 0 {
			return nil, 0, errf("operator %" + name + "(...)% is missing ')'")
		}
		params = format[i+1 : i+end]
		hasParams = true
		i += end + 1
	}
	maxLen := -1
	if i < len(format) && format[i] == ':' {
		j := i + 1
		for j < len(format) && '0' <= format[j] && format[j] <= '9' {
			j++
		}
		if j == i+1 {
			return nil, 0, errf("operator %" + name + "%: ':' must be followed by a maximum length")
		}
		n, err := strconv.Atoi(format[i+1 : j])
		if err != nil || n > 1<<20 {
			return nil, 0, errf("operator %" + name + "%: maximum length " + format[i+1:j] + " is out of range")
		}
		maxLen = n
		i = j
	}
	if i >= len(format) || format[i] != '%' {
		return nil, 0, errf("operator %" + name + "% is not terminated by '%'")
	}
	i++
	text := format[pos:i]
	op, err := newOperator(name, params, hasParams, maxLen)
	if err == errUnknown {
		return nil, 0, errf("unknown operator %" + name + "%")
	}
	if err != nil {
		return nil, 0, errf("operator " + text + ": " + err.Error())
	}
	return op, i - pos, nil
}

// hostname is read once: %HOSTNAME% is the same for every line.
var hostname = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
})
