package hcm

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/remora-mesh/remora/proxy/filter"
)

// commonHeaders maps canonical net/http header names to lower case and
// back, so that converting the usual headers allocates nothing.
var (
	toLower     = map[string]string{}
	toCanonical = map[string]string{}
)

func init() {
	for _, n := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Access-Control-Allow-Origin",
		"Age", "Allow", "Authorization", "Cache-Control", "Connection", "Content-Disposition", "Content-Encoding",
		"Content-Language", "Content-Length", "Content-Location", "Content-Range", "Content-Type", "Cookie", "Date",
		"Etag", "Expect", "Expires", "Forwarded", "From", "Grpc-Encoding", "Grpc-Accept-Encoding", "Grpc-Message",
		"Grpc-Status", "Grpc-Timeout", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range",
		"If-Unmodified-Since", "Keep-Alive", "Last-Modified", "Link", "Location", "Origin", "Pragma",
		"Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Range", "Referer", "Retry-After", "Server",
		"Set-Cookie", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "User-Agent", "Vary", "Via", "Www-Authenticate",
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id", "X-Envoy-Original-Path",
		"X-Real-Ip", "Sec-Websocket-Key", "Sec-Websocket-Accept", "Sec-Websocket-Version", "Sec-Websocket-Protocol",
		"Sec-Websocket-Extensions", "Traceparent", "Tracestate", "B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Sampled",
		"X-Content-Type-Options", "Strict-Transport-Security", "Content-Security-Policy", "Alt-Svc",
	} {
		l := strings.ToLower(n)
		toLower[n] = l
		toCanonical[l] = n
	}
}

func lowerHeader(canonical string) string {
	if l, ok := toLower[canonical]; ok {
		return l
	}
	return strings.ToLower(canonical)
}

func canonicalHeader(lower string) string {
	if c, ok := toCanonical[lower]; ok {
		return c
	}
	return textproto.CanonicalMIMEHeaderKey(lower)
}

// hopByHop are the connection-specific headers never forwarded
// (RFC 9110 section 7.6.1), plus te except "te: trailers".
var hopByHop = [...]string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization", "expect"}

// requestHeaders fills h from r: pseudo-headers first, then the fields
// with lower-case names, without the hop-by-hop ones (and without the
// names listed in Connection). upgrade reports an HTTP/1.1 Upgrade
// request (WebSocket ...), whose upgrade and connection headers are kept.
func requestHeaders(h *filter.HeaderMap, r *http.Request, scheme string) (upgrade bool) {
	h.Add(filter.HeaderMethod, r.Method)
	h.Add(filter.HeaderScheme, scheme)
	h.Add(filter.HeaderAuthority, r.Host)
	if r.Method != http.MethodConnect {
		h.Add(filter.HeaderPath, r.RequestURI)
	}
	conn := r.Header["Connection"]
	upgrade = r.ProtoMajor == 1 && len(r.Header["Upgrade"]) > 0 && headerListHas(conn, "upgrade")
	if r.ProtoMajor == 2 && r.Method == http.MethodConnect {
		if p := r.Header.Get(":protocol"); p != "" {
			h.Add(filter.HeaderProtocol, p)
		}
	}
	for k, vs := range r.Header {
		name := lowerHeader(k)
		if isHopByHop(name) {
			if upgrade && name == "upgrade" {
				for _, v := range vs {
					h.Add(name, v)
				}
			}
			continue
		}
		if name == "te" {
			if headerListHas(vs, "trailers") {
				h.Add("te", "trailers")
			}
			continue
		}
		if len(conn) > 0 && headerListHas(conn, name) {
			continue
		}
		for _, v := range vs {
			h.Add(name, v)
		}
	}
	return upgrade
}

func isHopByHop(name string) bool {
	for _, n := range hopByHop {
		if n == name {
			return true
		}
	}
	return false
}

// headerListHas reports whether a comma-separated header value list holds
// token (case-insensitive).
func headerListHas(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(item), token) {
				return true
			}
		}
	}
	return false
}

// writeResponseHeaders copies h (minus pseudo-headers and hop-by-hop ones)
// into dst.
func writeResponseHeaders(dst http.Header, h *filter.HeaderMap, keepUpgrade bool) {
	fields := h.Fields()
	var conn []string
	for i := range fields {
		if fields[i].Name == "connection" {
			conn = append(conn, fields[i].Value)
		}
	}
	// One backing array for every value: one allocation per response.
	vals := make([]string, 0, len(fields))
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
		if len(conn) > 0 && !keepUpgrade && headerListHas(conn, f.Name) {
			continue
		}
		k := canonicalHeader(f.Name)
		if prev, ok := dst[k]; ok {
			dst[k] = append(prev[:len(prev):len(prev)], f.Value)
			continue
		}
		vals = append(vals, f.Value)
		dst[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
}
