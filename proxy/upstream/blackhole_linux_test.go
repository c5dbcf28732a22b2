package upstream

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

// fullBacklogListener returns the address of a loopback listener that
// never accepts and whose accept queue is full: Linux drops further SYNs,
// so a connect there hangs like one to a black-holed host, without any
// network beyond loopback.
func fullBacklogListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skipf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr // the queue is full: this SYN was dropped
		}
		conns = append(conns, c)
	}
	t.Skip("the accept queue never filled (SYN cookies or a large minimum backlog)")
	return ""
}

func TestConnectTimeoutRealBlackhole(t *testing.T) {
	addr := fullBacklogListener(t)
	cfg := staticCluster("blackhole", addr)
	cfg.ConnectTimeout.UnmarshalYAML(yamlScalar("50ms"))
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("blackhole")
	_, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{})
	var e *Error
	if !errors.As(err, &e) || e.Flag != filter.UpstreamConnectionFailure || e.Reason != "connect timeout" {
		t.Fatalf("err %v, want UF connect timeout", err)
	}
	if statOf(c, statCxConnectTimeout) != 1 {
		t.Fatalf("upstream_cx_connect_timeout = %d", statOf(c, statCxConnectTimeout))
	}
}
