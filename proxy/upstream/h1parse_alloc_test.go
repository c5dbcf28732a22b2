package upstream

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

const benchResponseHead = "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 22 Nov 2026 07:00:00 GMT\r\n" +
	"Content-Type: text/plain\r\nContent-Length: 1024\r\nConnection: keep-alive\r\nAccept-Ranges: bytes\r\n\r\n"

// TestParseResponseHeadAllocs pins the cost of a typical response head:
// one allocation for its text, one for its header map and fields.
func TestParseResponseHeadAllocs(t *testing.T) {
	r := strings.NewReader(benchResponseHead)
	br := bufio.NewReader(r)
	var scratch []byte
	var spans []fieldSpan
	n := testing.AllocsPerRun(100, func() {
		r.Reset(benchResponseHead)
		br.Reset(r)
		var rh responseHead
		var err error
		rh, scratch, spans, err = parseResponseHead(br, scratch, spans)
		if err != nil || rh.headers.Len() != 7 {
			t.Fatalf("parse: %v, %d fields", err, rh.headers.Len())
		}
	})
	if n > 2 {
		t.Fatalf("%v allocations per response head, want at most 2", n)
	}
}

func TestNewResponseHeaders(t *testing.T) {
	for _, n := range []int{0, 1, smallHeadFields, smallHeadFields + 1, 40} {
		h := newResponseHeaders(n)
		for i := range n + 2 { // more than announced still works
			h.Add("x-"+strings.Repeat("a", i), "v")
		}
		if h.Len() != n+2 {
			t.Fatalf("n=%d: %d fields", n, h.Len())
		}
	}
}

func BenchmarkParseResponseHead(b *testing.B) {
	head := []byte(benchResponseHead)
	r := bytes.NewReader(head)
	br := bufio.NewReader(r)
	var scratch []byte
	var spans []fieldSpan
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(head)
		br.Reset(r)
		var err error
		_, scratch, spans, err = parseResponseHead(br, scratch, spans)
		if err != nil {
			b.Fatal(err)
		}
	}
}
