package tcpproxy_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-mesh/remora/internal/testpki"
)

const tlsChains = `
listeners:
- name: tcp
  address: 127.0.0.1:0
  filter_chains:
  - filter_chain_match: {server_names: [term.example.com]}
    tls: {cert_file: %[1]s, key_file: %[2]s}
    tcp_proxy:
      cluster: echo
      access_log: [{type: file, config: {path: %[5]s, flush_bytes: 1, format: "%%REQUESTED_SERVER_NAME%% %%BYTES_RECEIVED%%\n"}}]
  - filter_chain_match: {server_names: [pass.example.com]}
    tcp_proxy:
      cluster: tls-echo
      access_log: [{type: file, config: {path: %[5]s, flush_bytes: 1, format: "%%REQUESTED_SERVER_NAME%% %%BYTES_RECEIVED%%\n"}}]
  - filter_chain_match: {transport_protocol: raw_buffer}
    tcp_proxy: {cluster: echo}
clusters:
- name: echo
  endpoints: [{address: %[3]s}]
- name: tls-echo
  endpoints: [{address: %[4]s}]
`

// TestTLS: a chain terminating TLS, a pass-through chain picked by SNI
// (the ClientHello tls_inspector read goes upstream first), and a
// plaintext chain on the same listener.
func TestTLS(t *testing.T) {
	pki := testpki.New(t, "spiffe://test/client")
	cert, key := pki.IssueServer("term", "term.example.com", "pass.example.com")
	pool := pki.CAPool()
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	tln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				b, _ := io.ReadAll(io.LimitReader(c, 4))
				io.WriteString(c, "tls:"+string(b))
			}()
		}
	}()
	t.Cleanup(func() { tln.Close(); wg.Wait() })
	path := logPath(t)
	s, _ := startProxy(t, tlsChains, cert, key, backend(t, echo), tln.Addr().String(), path)
	addr := s.ListenerAddr("tcp").String()

	for _, tc := range []struct{ sni, want string }{
		{"term.example.com", "ping"},     // proxy terminates, echo upstream
		{"pass.example.com", "tls:ping"}, // upstream terminates
	} {
		t.Run(tc.sni, func(t *testing.T) {
			c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: tc.sni, RootCAs: pool})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "ping")
			got := make([]byte, len(tc.want))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != tc.want {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		c := dial(t, s, "tcp")
		c.Write([]byte("plain"))
		c.CloseWrite()
		if b := waitClosed(t, c); string(b) != "plain" {
			t.Fatalf("got %q", b)
		}
	})
	s.Close()
	data, _ := os.ReadFile(path)
	// Terminated: 4 plaintext bytes; passed through: the whole TLS
	// stream, SNI from tls_inspector.
	if !strings.Contains(string(data), "term.example.com 4\n") || !regexp.MustCompile(`(?m)^pass\.example\.com \d{3,}$`).Match(data) {
		t.Errorf("TLS access log: %q", data)
	}
}

// TestDrain: a drain waits for open TCP connections until its deadline,
// then closes them.
func TestDrain(t *testing.T) {
	s, _ := startProxy(t, benchConfig, backend(t, echo))
	c := dial(t, s, "tcp")
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Drain(ctx); err == nil {
		t.Error("drain with an open connection returned nil, want the deadline error")
	}
	waitClosed(t, c)
	if _, err := net.Dial("tcp", s.ListenerAddr("tcp").String()); err == nil {
		t.Error("listener still accepts after a drain")
	}
}
