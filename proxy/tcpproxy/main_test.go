package tcpproxy_test

import (
	"fmt"
	"github.com/remora-mesh/remora/internal/leakcheck"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	_ "github.com/remora-mesh/remora/accesslog"
	"github.com/remora-mesh/remora/proxy/config"
	proxyserver "github.com/remora-mesh/remora/proxy/server"
)

// backend is a loopback TCP server running handle on each connection.
func backend(t testing.TB, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); handle(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// echo copies everything back, then half-closes.
func echo(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// startProxy runs a sidecar from a YAML config; %[1]s in it is replaced
// by the first argument and so on.
func startProxy(t testing.TB, yaml string, args ...any) (*proxyserver.Server, *prometheus.Registry) {
	t.Helper()
	cfg, err := config.Parse([]byte("admin: {address: \"-\"}\n" + fmt.Sprintf(yaml, args...)))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := proxyserver.New(cfg, proxyserver.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, reg
}

func dial(t testing.TB, s *proxyserver.Server, listener string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", s.ListenerAddr(listener).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second)) // a hung test fails instead of hanging
	return c.(*net.TCPConn)
}

// waitClosed reads until the proxy closes c (EOF or reset) and returns
// what was read.
func waitClosed(t testing.TB, c net.Conn) []byte {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("waiting for the proxy to close: %v", err)
	}
	return b
}

func counter(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var v float64
			for _, m := range mf.GetMetric() {
				if c := m.GetCounter(); c != nil {
					v += c.GetValue()
				} else if g := m.GetGauge(); g != nil {
					v += g.GetValue()
				}
			}
			return v
		}
	}
	return 0
}

func logPath(t testing.TB) string { return filepath.Join(t.TempDir(), "access.log") }

// TestMain fails the package when a goroutine of the proxy outlives the
// tests.
func TestMain(m *testing.M) { leakcheck.Main(m, "remora/proxy/") }
