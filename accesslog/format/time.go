package format

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"
)

// timeFormat is a compiled START_TIME format: literals and fields. Times
// are rendered in UTC.
type timeFormat struct {
	parts []timePart
	// last is the rendering of the latest second seen: the lines of one
	// second share it and only fill in their fractional digits.
	last atomic.Pointer[renderedSecond]
}

// renderedSecond is a timeFormat rendered for one second, with zero
// nanoseconds. It is immutable once stored.
type renderedSecond struct {
	sec  int64 // Unix seconds
	text []byte
	frac []fracSlot // where the fractional digits go in text
}

type fracSlot struct{ pos, width int }

type timePart struct {
	lit   string
	field byte // 0 for a literal; otherwise the strftime letter ('f' with digits)
	width int  // digits for %f / %E<n>S
}

// defaultTime is Envoy's default: ISO 8601 with milliseconds, in UTC.
var defaultTime = &timeFormat{parts: []timePart{
	{field: 'F'}, {lit: "T"}, {field: 'H'}, {lit: ":"}, {field: 'M'}, {lit: ":"},
	{field: 'S'}, {lit: "."}, {field: 'f', width: 3}, {lit: "Z"},
}}

// compileTime compiles a strftime-style format. Supported: %Y %y %C %m %d
// %e %H %I %M %S %p %j %a %A %b %h %B %z %Z %s %T %F %D %R %n %t %% %u %w,
// %f and %1f..%9f (fractional seconds, 9 digits by default) and %E<n>S /
// %E*S (seconds with n or 9 fractional digits).
func compileTime(f string) (*timeFormat, error) {
	if f == "" {
		return defaultTime, nil
	}
	tf := &timeFormat{}
	lit := []byte{}
	flush := func() {
		if len(lit) > 0 {
			tf.parts = append(tf.parts, timePart{lit: string(lit)})
			lit = lit[:0]
		}
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '%' {
			lit = append(lit, c)
			continue
		}
		i++
		if i >= len(f) {
			return nil, errors.New("START_TIME format ends with '%'")
		}
		c = f[i]
		switch c {
		case '%':
			lit = append(lit, '%')
		case 'n':
			lit = append(lit, '\n')
		case 't':
			lit = append(lit, '\t')
		case 'Y', 'y', 'C', 'm', 'd', 'e', 'H', 'I', 'M', 'S', 'p', 'j', 'a', 'A', 'b', 'h', 'B',
			'z', 'Z', 's', 'T', 'F', 'D', 'R', 'u', 'w':
			flush()
			tf.parts = append(tf.parts, timePart{field: c})
		case 'f':
			flush()
			tf.parts = append(tf.parts, timePart{field: 'f', width: 9})
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			if i+1 >= len(f) || f[i+1] != 'f' {
				return nil, errors.New("START_TIME specifier %" + string(c) + " must be followed by 'f'")
			}
			flush()
			tf.parts = append(tf.parts, timePart{field: 'f', width: int(c - '0')})
			i++
		case 'E':
			if i+2 >= len(f) || f[i+2] != 'S' || !(f[i+1] == '*' || '0' <= f[i+1] && f[i+1] <= '9') {
				return nil, errors.New("START_TIME specifier %E must be %E<digit>S or %E*S")
			}
			w := 9
			if f[i+1] != '*' {
				w = int(f[i+1] - '0')
			}
			flush()
			tf.parts = append(tf.parts, timePart{field: 'E', width: w})
			i += 2
		default:
			return nil, errors.New("unsupported START_TIME specifier %" + string(c))
		}
	}
	flush()
	return tf, nil
}

var (
	shortDays   = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	longDays    = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	shortMonths = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
	longMonths  = [...]string{"January", "February", "March", "April", "May", "June", "July",
		"August", "September", "October", "November", "December"}
)

func appendPad(dst []byte, n, width int, pad byte) []byte {
	if n < 0 {
		dst = append(dst, '-')
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 || i == len(b) {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	for k := len(b) - i; k < width; k++ {
		dst = append(dst, pad)
	}
	return append(dst, b[i:]...)
}

func appendFrac(dst []byte, nanos, width int) []byte {
	var b [9]byte
	for i := 8; i >= 0; i-- {
		b[i] = byte('0' + nanos%10)
		nanos /= 10
	}
	return append(dst, b[:width]...)
}

// append renders t (converted to UTC) and appends it to dst. Every field
// but the fractional seconds depends on the second only, so the second's
// rendering is kept and reused.
func (tf *timeFormat) append(dst []byte, t time.Time) []byte {
	sec := t.Unix()
	r := tf.last.Load()
	if r == nil || r.sec != sec {
		r = tf.render(sec)
		tf.last.Store(r)
	}
	start := len(dst)
	dst = append(dst, r.text...)
	if len(r.frac) > 0 {
		var digits [9]byte
		appendFrac(digits[:0], t.Nanosecond(), 9)
		for _, f := range r.frac {
			copy(dst[start+f.pos:start+f.pos+f.width], digits[:f.width])
		}
	}
	return dst
}

// render renders the second sec, recording where fractional digits go.
func (tf *timeFormat) render(sec int64) *renderedSecond {
	r := &renderedSecond{sec: sec}
	r.text = tf.appendFields(nil, time.Unix(sec, 0), func(pos, width int) {
		r.frac = append(r.frac, fracSlot{pos, width})
	})
	return r
}

// appendFields renders t (converted to UTC) and appends it to dst, calling
// frac with the position and width of each fractional-seconds field.
func (tf *timeFormat) appendFields(dst []byte, t time.Time, frac func(pos, width int)) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	for i := range tf.parts {
		p := &tf.parts[i]
		switch p.field {
		case 0:
			dst = append(dst, p.lit...)
		case 'Y':
			dst = appendPad(dst, year, 4, '0')
		case 'y':
			dst = appendPad(dst, year%100, 2, '0')
		case 'C':
			dst = appendPad(dst, year/100, 2, '0')
		case 'm':
			dst = appendPad(dst, int(month), 2, '0')
		case 'd':
			dst = appendPad(dst, day, 2, '0')
		case 'e':
			dst = appendPad(dst, day, 2, ' ')
		case 'H':
			dst = appendPad(dst, hour, 2, '0')
		case 'I':
			h := hour % 12
			if h == 0 {
				h = 12
			}
			dst = appendPad(dst, h, 2, '0')
		case 'M':
			dst = appendPad(dst, min, 2, '0')
		case 'S':
			dst = appendPad(dst, sec, 2, '0')
		case 'p':
			if hour < 12 {
				dst = append(dst, "AM"...)
			} else {
				dst = append(dst, "PM"...)
			}
		case 'j':
			dst = appendPad(dst, t.YearDay(), 3, '0')
		case 'a':
			dst = append(dst, shortDays[t.Weekday()]...)
		case 'A':
			dst = append(dst, longDays[t.Weekday()]...)
		case 'b', 'h':
			dst = append(dst, shortMonths[month-1]...)
		case 'B':
			dst = append(dst, longMonths[month-1]...)
		case 'z':
			dst = append(dst, "+0000"...)
		case 'Z':
			dst = append(dst, "UTC"...)
		case 's':
			dst = strconv.AppendInt(dst, t.Unix(), 10)
		case 'u':
			wd := int(t.Weekday())
			if wd == 0 {
				wd = 7
			}
			dst = appendPad(dst, wd, 1, '0')
		case 'w':
			dst = appendPad(dst, int(t.Weekday()), 1, '0')
		case 'T':
			dst = appendPad(dst, hour, 2, '0')
			dst = append(dst, ':')
			dst = appendPad(dst, min, 2, '0')
			dst = append(dst, ':')
			dst = appendPad(dst, sec, 2, '0')
		case 'R':
			dst = appendPad(dst, hour, 2, '0')
			dst = append(dst, ':')
			dst = appendPad(dst, min, 2, '0')
		case 'F':
			dst = appendPad(dst, year, 4, '0')
			dst = append(dst, '-')
			dst = appendPad(dst, int(month), 2, '0')
			dst = append(dst, '-')
			dst = appendPad(dst, day, 2, '0')
		case 'D':
			dst = appendPad(dst, int(month), 2, '0')
			dst = append(dst, '/')
			dst = appendPad(dst, day, 2, '0')
			dst = append(dst, '/')
			dst = appendPad(dst, year%100, 2, '0')
		case 'f':
			frac(len(dst), p.width)
			dst = appendFrac(dst, t.Nanosecond(), p.width)
		case 'E':
			dst = appendPad(dst, sec, 2, '0')
			if p.width > 0 {
				dst = append(dst, '.')
				frac(len(dst), p.width)
				dst = appendFrac(dst, t.Nanosecond(), p.width)
			}
		}
	}
	return dst
}
