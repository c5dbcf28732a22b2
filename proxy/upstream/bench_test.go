//lint:file-ignore SA1019 the tests serve h2c with x/net's h2c handler, the counterpart of the client under test.

package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// BenchmarkPoolAcquireRelease measures taking a ready connection from a
// host's pool and giving it back: reused within reuseProbeAfter, so
// without the liveness probe ("probed": idle past it, with the probe).
func BenchmarkPoolAcquireRelease(b *testing.B) {
	for _, bc := range []struct {
		name  string
		after time.Duration
	}{{"recent", reuseProbeAfter}, {"probed", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := newCountingServer(b, okHandler("ok"))
			m := newTestManager(b, Options{}, staticCluster("web", srv.addr()))
			c := m.Cluster("web")
			c.reuseProbeAfter = bc.after
			roundTrip(b, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{}) // one pooled connection
			p := c.Hosts()[0].h1
			ctx := testCtx(b)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				pc, err := p.acquire(ctx, false)
				if err != nil {
					b.Fatal(err)
				}
				p.release(pc, true)
			}
		})
	}
}

// BenchmarkHTTP1Request is one full request through NewStream: a 1 KiB
// POST body and a 1 KiB response over a pooled loopback connection.
func BenchmarkHTTP1Request(b *testing.B) {
	resp := bytes.Repeat([]byte("r"), 1024)
	srv := newCountingServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", "1024")
		w.Write(resp)
	}))
	m := newTestManager(b, Options{}, staticCluster("web", srv.addr()))
	c := m.Cluster("web")
	body := bytes.Repeat([]byte("b"), 1024)
	h := reqHeaders("POST", "/upload", "web", "content-length", "1024", "content-type", "application/octet-stream")
	buf := make([]byte, 4096)
	ctx := testCtx(b)
	b.ReportAllocs()
	b.SetBytes(2048)
	b.ResetTimer()
	for b.Loop() {
		s, err := c.NewStream(ctx, h, false, StreamOptions{Protocol: "HTTP/1.1"})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.WriteData(body, true); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.ReadHeaders(ctx); err != nil {
			b.Fatal(err)
		}
		for {
			_, err := s.ReadData(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		s.Close()
	}
	b.StopTimer()
	if n := srv.conns.Load(); n != 1 {
		b.Fatalf("%d connections, want 1", n)
	}
}

// BenchmarkHTTP2Request is one h2c request with a 1 KiB response, run
// from several goroutines so that streams share connections.
func BenchmarkHTTP2Request(b *testing.B) {
	resp := bytes.Repeat([]byte("r"), 1024)
	srv := newH2CServerB(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(resp)
	}))
	m := newTestManager(b, Options{}, h2Cluster("h2", srv.Listener.Addr().String(), ProtocolHTTP2, 0))
	c := m.Cluster("h2")
	h := reqHeaders("GET", "/", "h2")
	ctx := testCtx(b)
	b.ReportAllocs()
	b.SetBytes(1024)
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 4096)
		for pb.Next() {
			s, err := c.NewStream(ctx, h, true, StreamOptions{})
			if err != nil {
				b.Error(err)
				return
			}
			if _, _, err := s.ReadHeaders(ctx); err != nil {
				b.Error(err)
				s.Reset()
				return
			}
			for {
				_, err := s.ReadData(buf)
				if err != nil {
					break
				}
			}
			s.Close()
		}
	})
}

func newH2CServerB(b *testing.B, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h2c.NewHandler(h, &http2.Server{}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkHTTP1RequestClientOnly is BenchmarkHTTP1Request against a
// minimal raw-TCP upstream that answers from a canned buffer, so that the
// allocations reported are this package's own.
func BenchmarkHTTP1RequestClientOnly(b *testing.B) {
	canned := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n"),
		bytes.Repeat([]byte("r"), 1024)...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReaderSize(c, 8192)
		for {
			// Head (ends with an empty line), then a 1 KiB body.
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) == 2 {
					break
				}
			}
			if _, err := br.Discard(1024); err != nil {
				return
			}
			if _, err := c.Write(canned); err != nil {
				return
			}
		}
	}()
	b.Cleanup(func() { ln.Close(); <-done })
	m := newTestManager(b, Options{}, staticCluster("raw", ln.Addr().String()))
	c := m.Cluster("raw")
	body := bytes.Repeat([]byte("b"), 1024)
	h := reqHeaders("POST", "/upload", "raw", "content-length", "1024")
	buf := make([]byte, 4096)
	ctx := testCtx(b)
	b.ReportAllocs()
	b.SetBytes(2048)
	for b.Loop() {
		s, err := c.NewStream(ctx, h, false, StreamOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.WriteData(body, true); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.ReadHeaders(ctx); err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := s.ReadData(buf); err != nil {
				break
			}
		}
		s.Close()
	}
	b.StopTimer()
	m.Close() // closes the connection so the server goroutine ends
}
