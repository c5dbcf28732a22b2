package hcm

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

// appendFields writes h's fields as HTTP/1 header lines, canonically
// capitalised, without pseudo-headers, hop-by-hop fields and those the
// connection header lists (keepUpgrade keeps upgrade and connection for a
// 101). Values have CR, LF and NUL replaced by spaces.
func appendFields(b []byte, h *filter.HeaderMap, skipServer, keepUpgrade bool) ([]byte, bool, bool) {
	fields := h.Fields()
	hasConn := false
	for i := range fields {
		if fields[i].Name == "connection" {
			hasConn = true
			break
		}
	}
	hasCL, hasDate := false, false
	for i := range fields {
		f := &fields[i]
		if f.Name == "" || f.Name[0] == ':' {
			continue
		}
		if isHopByHop(f.Name) || f.Name == "te" {
			if !(keepUpgrade && (f.Name == "upgrade" || f.Name == "connection")) {
				continue
			}
		}
		if hasConn && !keepUpgrade && connectionLists(fields, f.Name) {
			continue
		}
		switch f.Name {
		case "server":
			if skipServer {
				continue
			}
		case "content-length":
			if hasCL {
				continue
			}
			hasCL = true
		case "date":
			hasDate = true
		}
		if !validName(f.Name) {
			continue
		}
		b = appendCanonical(b, f.Name)
		b = append(b, ':', ' ')
		for j := 0; j < len(f.Value); j++ {
			c := f.Value[j]
			if c == '\r' || c == '\n' || c == 0 {
				c = ' '
			}
			b = append(b, c)
		}
		b = append(b, '\r', '\n')
	}
	return b, hasCL, hasDate
}

func connectionLists(fields []filter.HeaderField, name string) bool {
	for i := range fields {
		if fields[i].Name == "connection" && headerListHas([]string{fields[i].Value}, name) {
			return true
		}
	}
	return false
}

func validName(n string) bool {
	for i := 0; i < len(n); i++ {
		if !tokenTable[n[i]] {
			return false
		}
	}
	return true
}

// appendCanonical writes a lower-case name as net/http would
// ("content-type" → "Content-Type").
func appendCanonical(b []byte, name string) []byte {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
		upper = c == '-'
	}
	return b
}

// statusLines are the precomputed "HTTP/1.1 NNN Reason\r\n" lines.
var statusLines = func() (t [600]string) {
	for code := 100; code < 600; code++ {
		t[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n"
	}
	return t
}()

func appendStatusLine(b []byte, code int) []byte {
	if code >= 100 && code < 600 {
		return append(b, statusLines[code]...)
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	return append(b, " \r\n"...)
}

// dateLine caches the "Date: ..." line for the current second.
type dateLine struct {
	sec  int64
	line []byte
}

var dateCache atomic.Pointer[dateLine]

func appendDate(b []byte) []byte {
	now := time.Now()
	sec := now.Unix()
	d := dateCache.Load()
	if d == nil || d.sec != sec {
		l := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
		d = &dateLine{sec: sec, line: append(l, '\r', '\n')}
		dateCache.Store(d)
	}
	return append(b, d.line...)
}
