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
		{"typical", []filter.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":path", Value: "/a?b=1"}, {Name: ":authority", Value: "h:1"}, {Name: ":scheme", Value: "http"},
			{Name: "user-agent", Value: "ua"}, {Name: "x-request-id", Value: "id"}, {Name: "content-length", Value: "12"}, {Name: "content-type", Value: "application/grpc"}}},
		{"repeated names keep the first", []filter.HeaderField{{Name: "referer", Value: "r1"}, {Name: "user-agent", Value: "u1"}, {Name: "referer", Value: "r2"},
			{Name: "x-forwarded-proto", Value: "https"}, {Name: "user-agent", Value: "u2"}, {Name: "x-forwarded-proto", Value: "http"}, {Name: "content-length", Value: ""}, {Name: "content-length", Value: "5"}}},
		{"unrelated names", []filter.HeaderField{{Name: "x-user", Value: "alice"}, {Name: "accept", Value: "*/*"}, {Name: ":status", Value: "200"}}},
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
