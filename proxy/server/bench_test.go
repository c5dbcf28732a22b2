package server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// benchUpstream is a 1 KiB-answering HTTP/1.1 server.
func benchUpstream(b *testing.B) (net.Listener, []byte) {
	payload := bytes.Repeat([]byte("x"), 1024)
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", "1024")
		w.Write(payload)
	})}
	ln := listenLoopback(b)
	go up.Serve(ln)
	b.Cleanup(func() { up.Close() })
	return ln, payload
}

// runClient posts 1 KiB to url b.N times on one keep-alive connection.
func runClient(b *testing.B, url string, payload []byte) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	body := bytes.NewReader(payload)
	req, _ := http.NewRequest("POST", url, body)
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(2048)
	for b.Loop() {
		body.Reset(payload)
		req.Body = io.NopCloser(body)
		req.ContentLength = int64(len(payload))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkDirectHTTP1KeepAlive is the baseline for the proxied benchmark:
// the same client and upstream, no proxy. The difference is the proxy's
// cost.
func BenchmarkDirectHTTP1KeepAlive(b *testing.B) {
	ln, payload := benchUpstream(b)
	runClient(b, "http://"+ln.Addr().String()+"/bench", payload)
}

// BenchmarkProxyHTTP1KeepAlive is a full proxied request in-process:
// HTTP/1.1 keep-alive client → listener → connection manager → router →
// upstream pool → HTTP/1.1 upstream, 1 KiB request and response bodies.
func BenchmarkProxyHTTP1KeepAlive(b *testing.B) {
	ln, payload := benchUpstream(b)
	s := startRouteAll(b, ln.Addr())
	runClient(b, "http://"+s.ListenerAddr("main").String()+"/bench", payload)
}

// rawUpstream answers every request on a connection with a fixed 1 KiB
// response. It parses just enough (the head, a Content-Length body) to
// stay in step, so that the benchmark below measures the proxy, not
// net/http.
func rawUpstream(b *testing.B) net.Listener {
	resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nContent-Type: text/plain\r\n\r\n"), bytes.Repeat([]byte("x"), 1024)...)
	ln := listenLoopback(b)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					cl, chunked := 0, false
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
						if len(line) > 16 && (line[0] == 'c' || line[0] == 'C') && strings.EqualFold(string(line[:15]), "content-length:") {
							cl, _ = strconv.Atoi(strings.TrimSpace(string(line[15:])))
						}
						if len(line) > 18 && (line[0] == 't' || line[0] == 'T') && strings.EqualFold(string(line[:18]), "transfer-encoding:") {
							chunked = true
						}
					}
					if _, err := br.Discard(cl); err != nil {
						return
					}
					for chunked { // chunk sizes and data; no trailers
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						n, _ := strconv.ParseInt(strings.TrimSpace(string(line)), 16, 64)
						if _, err := br.Discard(int(n) + 2); err != nil {
							return
						}
						chunked = n > 0
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() { ln.Close() })
	return ln
}

// BenchmarkProxyHTTP1RawClient is BenchmarkProxyHTTP1KeepAlive without
// net/http on either side: a raw keep-alive client posting 1 KiB and a raw
// upstream answering 1 KiB, so ns/op, B/op and allocs/op are the proxy's
// own (listener, HTTP/1 codec, connection manager, router, upstream pool).
// The body arrives with the head, so the response is pumped on the
// connection's goroutine.
func BenchmarkProxyHTTP1RawClient(b *testing.B) {
	req := append([]byte("POST /bench HTTP/1.1\r\nHost: bench\r\nContent-Length: 1024\r\n\r\n"), bytes.Repeat([]byte("y"), 1024)...)
	benchRawClient(b, req, 2048)
}

// BenchmarkProxyHTTP1RawClientGET is BenchmarkProxyHTTP1RawClient with a
// bodyless GET (as wrk and fortio send).
func BenchmarkProxyHTTP1RawClientGET(b *testing.B) {
	benchRawClient(b, []byte("GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n"), 1024)
}

// BenchmarkProxyHTTP1RawClientChunked is BenchmarkProxyHTTP1RawClient with
// a chunked 1 KiB body: the body streams, so the response is pumped from
// a goroutine of its own while the request body is forwarded.
func BenchmarkProxyHTTP1RawClientChunked(b *testing.B) {
	req := append([]byte("POST /bench HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n"), bytes.Repeat([]byte("y"), 1024)...)
	req = append(req, "\r\n0\r\n\r\n"...)
	benchRawClient(b, req, 2048)
}

func benchRawClient(b *testing.B, req []byte, bytesPerOp int64) {
	ln := rawUpstream(b)
	s := startRouteAll(b, ln.Addr())
	c, err := net.Dial("tcp", s.ListenerAddr("main").String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 8<<10)
	b.ReportAllocs()
	b.SetBytes(bytesPerOp)
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		cl := -1
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(line) <= 2 {
				break
			}
			if bytes.HasPrefix(line, []byte("Content-Length: ")) {
				cl, _ = strconv.Atoi(string(bytes.TrimSpace(line[16:])))
			}
		}
		if cl != 1024 {
			b.Fatalf("content-length %d", cl)
		}
		if _, err := br.Discard(cl); err != nil {
			b.Fatal(err)
		}
	}
}
