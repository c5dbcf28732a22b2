package tcpproxy_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

const tcpConfig = `
listeners:
- name: tcp
  address: 127.0.0.1:0
  filter_chains:
  - tcp_proxy:
      stat_prefix: db
      cluster: backend
      idle_timeout: %[2]s
      access_log:
      - type: file
        config:
          path: %[3]s
          flush_bytes: 1
          format: "%%DOWNSTREAM_REMOTE_ADDRESS%% %%UPSTREAM_HOST%% %%BYTES_RECEIVED%% %%BYTES_SENT%% %%DURATION%% %%RESPONSE_FLAGS%% %%UPSTREAM_CLUSTER%% %%PROTOCOL%% %%RESPONSE_CODE_DETAILS%%\n"
clusters:
- name: backend
  connect_timeout: 1s
  circuit_breakers: {max_connections: %[4]d}
  endpoints: [{address: %[1]s}]
`

func TestEcho(t *testing.T) {
	s, reg := startProxy(t, tcpConfig, backend(t, echo), "1h", logPath(t), 1024)
	t.Run("small both ways", func(t *testing.T) {
		c := dial(t, s, "tcp")
		for _, msg := range []string{"hello", "world", strings.Repeat("x", 1000)} {
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
				t.Fatalf("echo %q: got %q, %v", msg, got, err)
			}
		}
	})
	t.Run("large transfer", func(t *testing.T) {
		c := dial(t, s, "tcp")
		data := make([]byte, 8<<20)
		rand.Read(data)
		want := sha256.Sum256(data)
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			if err == nil {
				err = c.CloseWrite()
			}
			errc <- err
		}()
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("got %d bytes with another digest, want %d", n, len(data))
		}
	})
	s.Close()
	if got := counter(t, reg, "remora_tcp_downstream_cx_total"); got != 2 {
		t.Errorf("downstream_cx_total = %v, want 2", got)
	}
	if got := counter(t, reg, "remora_tcp_downstream_cx_active"); got != 0 {
		t.Errorf("downstream_cx_active = %v, want 0", got)
	}
	want := float64(5 + 5 + 1000 + 8<<20)
	if rx, tx := counter(t, reg, "remora_tcp_downstream_cx_rx_bytes_total"), counter(t, reg, "remora_tcp_downstream_cx_tx_bytes_total"); rx != want || tx != want {
		t.Errorf("rx %v tx %v bytes, want %v each", rx, tx, want)
	}
}

// TestHalfClose: the client ends its side; the upstream sees EOF and can
// still answer; the connection ends once the upstream is done too.
func TestHalfClose(t *testing.T) {
	addr := backend(t, func(c net.Conn) {
		b, _ := io.ReadAll(c) // until the client's FIN
		fmt.Fprintf(c, "got %d bytes: %s", len(b), b)
	})
	s, reg := startProxy(t, tcpConfig, addr, "1h", logPath(t), 1024)
	c := dial(t, s, "tcp")
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got := waitClosed(t, c)
	if string(got) != "got 7 bytes: request" {
		t.Fatalf("answer after half-close: %q", got)
	}
	s.Close()
	if n := counter(t, reg, "remora_tcp_downstream_cx_half_closed_total"); n != 1 {
		t.Errorf("half_closed_total = %v, want 1", n)
	}
}

// TestUpstreamHalfClose: the upstream ends its side first; the client can
// still send and the upstream still receives.
func TestUpstreamHalfClose(t *testing.T) {
	got := make(chan string, 1)
	addr := backend(t, func(c net.Conn) {
		io.WriteString(c, "banner")
		c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	s, _ := startProxy(t, tcpConfig, addr, "1h", logPath(t), 1024)
	c := dial(t, s, "tcp")
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "banner" {
		t.Fatalf("read %q %v", b, err)
	}
	if _, err := c.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if b := <-got; b != "after" {
		t.Fatalf("upstream got %q after its half-close, want %q", b, "after")
	}
}

var logLine = regexp.MustCompile(`^127\.0\.0\.1:\d+ (\S+) (\d+) (\d+) (\d+) (\S+) (\S+) (\S+) (\S+)$`)

// TestAccessLog checks one line per connection through the file sink,
// with TCP fields, and the failure flags.
func TestAccessLog(t *testing.T) {
	up := backend(t, echo)
	for _, tc := range []struct {
		name     string
		upstream string
		maxConn  int
		run      func(t *testing.T, c *net.TCPConn)
		wantRx   string
		wantFlag string
		wantHost string
	}{
		{"proxied", up, 1024, func(t *testing.T, c *net.TCPConn) {
			c.Write([]byte("0123456789"))
			c.CloseWrite()
			if b := waitClosed(t, c); string(b) != "0123456789" {
				t.Errorf("echo %q", b)
			}
		}, "10", "-", up},
		{"connect failure", closedAddr(t), 1024, func(t *testing.T, c *net.TCPConn) {
			if b := waitClosed(t, c); len(b) != 0 {
				t.Errorf("read %q from a failed connection", b)
			}
		}, "0", "UF", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := logPath(t)
			host := tc.upstream
			s, _ := startProxy(t, tcpConfig, host, "1h", path, tc.maxConn)
			tc.run(t, dial(t, s, "tcp"))
			s.Close() // logs are written when the proxy's connections and sinks close
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("%d lines, want 1:\n%s", len(lines), data)
			}
			m := logLine.FindStringSubmatch(lines[0])
			if m == nil {
				t.Fatalf("line %q does not match %s", lines[0], logLine)
			}
			if m[1] != host || m[2] != tc.wantRx || m[3] != tc.wantRx || m[5] != tc.wantFlag || m[6] != "backend" || m[7] != "-" {
				t.Errorf("line %q: want host %s, %s bytes each way, flags %s, cluster backend, no protocol", lines[0], host, tc.wantRx, tc.wantFlag)
			}
		})
	}
}

// TestOverflow: with max_connections 1, a second connection is refused
// (UO) while the first is open.
func TestOverflow(t *testing.T) {
	path := logPath(t)
	s, reg := startProxy(t, tcpConfig, backend(t, echo), "1h", path, 1)
	first := dial(t, s, "tcp")
	first.Write([]byte("x"))
	io.ReadFull(first, make([]byte, 1)) // the first connection is established upstream
	second := dial(t, s, "tcp")
	waitClosed(t, second)
	first.Close()
	s.Close()
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), " UO backend ") {
		t.Errorf("no UO line in the access log:\n%s", data)
	}
	if n := counter(t, reg, "remora_tcp_upstream_cx_connect_fail_total"); n != 1 {
		t.Errorf("upstream_cx_connect_fail_total = %v, want 1", n)
	}
}

// TestIdleTimeout: a connection on which nothing moves is closed after the
// idle timeout; one that keeps talking is not.
func TestIdleTimeout(t *testing.T) {
	path := logPath(t)
	s, reg := startProxy(t, tcpConfig, backend(t, echo), "100ms", path, 1024)
	t.Run("idle", func(t *testing.T) {
		c := dial(t, s, "tcp")
		c.Write([]byte("hi"))
		if b := waitClosed(t, c); string(b) != "hi" {
			t.Fatalf("read %q", b)
		}
	})
	t.Run("half-closed then idle", func(t *testing.T) {
		c := dial(t, s, "tcp")
		// The upstream (echo) half-closes back after our FIN, so the
		// connection ends normally: not an idle close.
		c.CloseWrite()
		waitClosed(t, c)
	})
	s.Close()
	if n := counter(t, reg, "remora_tcp_idle_timeout_total"); n != 1 {
		t.Errorf("idle_timeout_total = %v, want 1", n)
	}
	data, _ := os.ReadFile(path)
	if strings.Count(string(data), "\n") != 2 || strings.Count(string(data), " idle_timeout\n") != 1 {
		t.Errorf("want 2 lines, one with details idle_timeout:\n%s", data)
	}
}

// TestIdleTimeoutOneWayTraffic: bytes flowing in one direction only keep
// the connection open past several idle timeouts.
func TestIdleTimeoutOneWayTraffic(t *testing.T) {
	addr := backend(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "ok %d", n)
	})
	// The idle timeout is far above the pacing so that a loaded CI machine
	// delaying a tick cannot look like idleness.
	s, reg := startProxy(t, tcpConfig, addr, "400ms", logPath(t), 1024)
	c := dial(t, s, "tcp")
	// The ticker paces the traffic (one byte every 20ms for 1.2s, three
	// idle timeouts); it synchronises nothing.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(1200 * time.Millisecond)
	sent := 0
	for time.Now().Before(end) {
		<-tick.C
		if _, err := c.Write([]byte{'x'}); err != nil {
			t.Fatalf("write after %d bytes: %v (closed as idle?)", sent, err)
		}
		sent++
	}
	c.CloseWrite()
	if b := waitClosed(t, c); string(b) != fmt.Sprintf("ok %d", sent) {
		t.Fatalf("got %q, want ok %d: the connection was closed while bytes flowed", b, sent)
	}
	s.Close()
	if n := counter(t, reg, "remora_tcp_idle_timeout_total"); n != 0 {
		t.Errorf("idle_timeout_total = %v, want 0", n)
	}
}
