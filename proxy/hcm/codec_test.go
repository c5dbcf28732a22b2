package hcm

import (
	"net/http"
	"reflect"
	"regexp"
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
)

func TestRequestHeaders(t *testing.T) {
	r, _ := http.NewRequest("POST", "http://svc.local:8080/p?q=1", nil)
	r.RequestURI = "/p?q=1"
	r.Header = http.Header{
		"Content-Type":      {"application/json"},
		"Connection":        {"keep-alive, X-Hop"},
		"X-Hop":             {"1"},
		"Keep-Alive":        {"timeout=5"},
		"Te":                {"trailers, deflate"},
		"Transfer-Encoding": {"chunked"},
		"X-Multi":           {"a", "b"},
		"Expect":            {"100-continue"},
	}
	var h filter.HeaderMap
	if up := requestHeaders(&h, r, "http"); up {
		t.Fatal("not an upgrade")
	}
	want := map[string][]string{":method": {"POST"}, ":scheme": {"http"}, ":authority": {"svc.local:8080"}, ":path": {"/p?q=1"},
		"content-type": {"application/json"}, "te": {"trailers"}, "x-multi": {"a", "b"}}
	got := map[string][]string{}
	for _, f := range h.Fields() {
		got[f.Name] = append(got[f.Name], f.Value)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("headers\n got %v\nwant %v", got, want)
	}

	ws, _ := http.NewRequest("GET", "http://a/chat", nil)
	ws.RequestURI = "/chat"
	ws.Header = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}
	var wh filter.HeaderMap
	if !requestHeaders(&wh, ws, "http") || wh.Value("upgrade") != "websocket" {
		t.Fatalf("upgrade request: %v", wh.Fields())
	}
}

func TestWriteResponseHeaders(t *testing.T) {
	h := filter.NewHeaderMap(
		filter.HeaderField{Name: ":status", Value: "200"},
		filter.HeaderField{Name: "content-length", Value: "3"},
		filter.HeaderField{Name: "connection", Value: "x-secret"},
		filter.HeaderField{Name: "x-secret", Value: "1"},
		filter.HeaderField{Name: "set-cookie", Value: "a=1"},
		filter.HeaderField{Name: "set-cookie", Value: "b=2"},
		filter.HeaderField{Name: "x-custom-thing", Value: "v"},
		filter.HeaderField{Name: "transfer-encoding", Value: "chunked"},
	)
	dst := http.Header{}
	writeResponseHeaders(dst, h, false)
	want := http.Header{"Content-Length": {"3"}, "Set-Cookie": {"a=1", "b=2"}, "X-Custom-Thing": {"v"}}
	if !reflect.DeepEqual(dst, want) {
		t.Fatalf("got %v, want %v", dst, want)
	}
}

func TestRequestIDAndGRPCMessage(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id := newRequestID()
		if !re.MatchString(id) || seen[id] {
			t.Fatalf("bad or repeated request id %q", id)
		}
		seen[id] = true
	}
	for in, want := range map[string]string{"plain": "plain", "100%": "100%25", "ü\n": "%C3%BC%0A"} {
		if got := grpcMessageEncode(in); got != want {
			t.Errorf("grpcMessageEncode(%q) = %q, want %q", in, got, want)
		}
	}
	for code, want := range map[int]int{400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 503: 14, 500: 2} {
		if got := grpcStatus(code); got != want {
			t.Errorf("grpcStatus(%d) = %d, want %d", code, got, want)
		}
	}
}

func BenchmarkRequestHeaders(b *testing.B) {
	r, _ := http.NewRequest("GET", "http://reviews:9080/api/v1/items?x=1", nil)
	r.RequestURI = "/api/v1/items?x=1"
	r.Header = http.Header{"Accept": {"*/*"}, "User-Agent": {"bench"}, "X-Request-Id": {"abc"}, "Content-Type": {"application/json"},
		"Authorization": {"Bearer x"}, "X-B3-Traceid": {"1"}, "Cookie": {"a=b"}}
	var h filter.HeaderMap
	b.ReportAllocs()
	for b.Loop() {
		h.Reset()
		requestHeaders(&h, r, "http")
	}
}

func BenchmarkWriteResponseHeaders(b *testing.B) {
	h := filter.NewHeaderMap(filter.HeaderField{Name: ":status", Value: "200"}, filter.HeaderField{Name: "content-type", Value: "application/json"},
		filter.HeaderField{Name: "content-length", Value: "1024"}, filter.HeaderField{Name: "date", Value: "x"}, filter.HeaderField{Name: "x-envoy-upstream-service-time", Value: "1"})
	dst := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		clear(dst)
		writeResponseHeaders(dst, h, false)
	}
}
