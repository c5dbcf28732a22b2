package mixer

import (
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
)

// TestReadRequestHeadersMatchesGet checks the one-pass read against
// HeaderMap.Get for every name it reads: first values of repeated names,
// absent names, empty values.
func TestReadRequestHeadersMatchesGet(t *testing.T) {
	tests := []struct {
		name   string
		fields []filter.HeaderField
	}{
		{"none", nil},
		{"typical", []filter.HeaderField{{":method", "GET"}, {":path", "/a?b=1"}, {":authority", "h:1"}, {":scheme", "http"},
			{"user-agent", "ua"}, {"x-request-id", "id"}, {"content-length", "12"}, {"content-type", "application/grpc"}}},
		{"repeated names keep the first", []filter.HeaderField{{"referer", "r1"}, {"user-agent", "u1"}, {"referer", "r2"},
			{"x-forwarded-proto", "https"}, {"user-agent", "u2"}, {"x-forwarded-proto", "http"}, {"content-length", ""}, {"content-length", "5"}}},
		{"unrelated names", []filter.HeaderField{{"x-user", "alice"}, {"accept", "*/*"}, {":status", "200"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := filter.NewHeaderMap(tt.fields...)
			r := readRequestHeaders(h.Fields())
			for name, got := range map[string]string{
				filter.HeaderAuthority: r.authority, filter.HeaderMethod: r.method, filter.HeaderPath: r.path,
				filter.HeaderScheme: r.scheme, "x-forwarded-proto": r.forwardedProto, "content-type": r.contentType,
				"content-length": r.contentLength, "x-request-id": r.requestID, "referer": r.referer, "user-agent": r.userAgent,
			} {
				if want := h.Value(name); got != want {
					t.Errorf("%s = %q, HeaderMap.Get gives %q", name, got, want)
				}
			}
		})
	}
}
