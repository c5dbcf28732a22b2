package tcpproxy_test

import (
	"io"
	"net"
	"testing"
	"time"
)

const benchConfig = `
listeners:
- name: tcp
  address: 127.0.0.1:0
  filter_chains:
  - tcp_proxy: {cluster: backend}
clusters:
- name: backend
  endpoints: [{address: %[1]s}]
`

// BenchmarkTransfer1MiB sends 1 MiB through tcp_proxy to an echo upstream
// and reads it back, on one connection (the splice path both ways).
func BenchmarkTransfer1MiB(b *testing.B) {
	s, _ := startProxy(b, benchConfig, backend(b, echo))
	c := dial(b, s, "tcp")
	c.SetDeadline(noDeadline)
	data := make([]byte, 1<<20)
	got := make([]byte, 1<<20)
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		errc := make(chan error, 1)
		go func() { _, err := c.Write(data); errc <- err }()
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConnection measures a whole short connection: accept, upstream
// connect, 1 KiB each way, half-closes, access-log-free teardown.
func BenchmarkConnection(b *testing.B) {
	s, _ := startProxy(b, benchConfig, backend(b, echo))
	addr := s.ListenerAddr("tcp").String()
	data := make([]byte, 1<<10)
	got := make([]byte, 1<<10)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c := nc.(*net.TCPConn)
		if _, err := c.Write(data); err != nil {
			b.Fatal(err)
		}
		c.CloseWrite()
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, c)
		c.Close()
	}
}

var noDeadline time.Time

// BenchmarkTransfer1MiBDirect is BenchmarkTransfer1MiB without the proxy,
// for the ratio.
func BenchmarkTransfer1MiBDirect(b *testing.B) {
	nc, err := net.Dial("tcp", backend(b, echo))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	data := make([]byte, 1<<20)
	got := make([]byte, 1<<20)
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		errc := make(chan error, 1)
		go func() { _, err := nc.Write(data); errc <- err }()
		if _, err := io.ReadFull(nc, got); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
}
