package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/remora-mesh/remora/internal/testpki"
)

const tlsConfig = `
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  # no listener_filters: tls_inspector is added because chains match on SNI
  filter_chains:
  - filter_chain_match: {server_names: [a.example.com]}
    tls: {cert_file: %[1]s, key_file: %[2]s}
    http_connection_manager: {route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [
      {match: {prefix: /up}, route: {cluster: backend}},
      {match: {prefix: /}, direct_response: {status: 200, body: exact}}]}]}}
  - filter_chain_match: {server_names: ["*.example.com"]}
    tls: {cert_file: %[3]s, key_file: %[4]s, alpn: [http/1.1]}
    http_connection_manager: {route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: wildcard}}]}]}}
  - filter_chain_match: {server_names: ["*.example.com"], application_protocols: [h2]}
    tls: {cert_file: %[3]s, key_file: %[4]s}
    http_connection_manager: {route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: wildcard-h2}}]}]}}
  - filter_chain_match: {server_names: [h1.only]}
    tls: {cert_file: %[1]s, key_file: %[2]s}
    http_connection_manager: {codec_type: HTTP1, route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: h1 only}}]}]}}
  - filter_chain_match: {transport_protocol: raw_buffer}
    http_connection_manager: {route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: plain}}]}]}}
clusters:
- name: backend
  protocol: use_downstream
  endpoints: [{address: %[5]s}]
`

func TestTLSAndFilterChainMatch(t *testing.T) {
	be := backend(t)
	pki := testpki.New(t, "spiffe://test/client")
	certA, keyA := pki.IssueServer("a", "a.example.com")
	certW, keyW := pki.IssueServer("wildcard", "*.example.com")
	poolA, poolW := pki.CAPool(), pki.CAPool()
	s := startProxy(t, fmt.Sprintf(tlsConfig, certA, keyA, certW, keyW, be.Listener.Addr()))
	addr := s.ListenerAddr("main").String()

	client := func(sni string, pool *x509.CertPool, h2 bool) *http.Client {
		tc := &tls.Config{ServerName: sni, RootCAs: pool}
		if pool == nil {
			// Offer h2 first: the chain must still answer over HTTP/1.1.
			tc = &tls.Config{ServerName: sni, InsecureSkipVerify: true}
			return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
		}
		if h2 {
			var p http.Protocols
			p.SetHTTP2(true)
			return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Protocols: &p}}
		}
		tc.NextProtos = []string{"http/1.1"}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: false}}
	}
	tests := []struct {
		name      string
		sni       string
		pool      *x509.CertPool
		h2        bool
		path      string
		wantBody  string
		wantProto string
	}{
		{"exact sni h2", "a.example.com", poolA, true, "/", "exact", "HTTP/2.0"},
		{"exact sni h1", "a.example.com", poolA, false, "/", "exact", "HTTP/1.1"},
		{"exact sni proxied over h2", "a.example.com", poolA, true, "/up", "GET /up 0", "HTTP/2.0"},
		{"wildcard sni alpn h2", "b.example.com", poolW, true, "/", "wildcard-h2", "HTTP/2.0"},
		{"wildcard sni alpn h1", "b.example.com", poolW, false, "/", "wildcard", "HTTP/1.1"},
		{"HTTP1 codec refuses h2 by ALPN", "h1.only", nil, false, "/", "h1 only", "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client(tt.sni, tt.pool, tt.h2)
			defer c.CloseIdleConnections()
			resp, err := c.Get("https://" + addr + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != tt.wantBody || resp.Proto != tt.wantProto {
				t.Fatalf("got %q over %s, want %q over %s", b, resp.Proto, tt.wantBody, tt.wantProto)
			}
			if tt.path == "/up" && resp.Header.Get("X-Got-Xfp") != "https" {
				t.Fatalf("x-forwarded-proto = %q, want https", resp.Header.Get("X-Got-Xfp"))
			}
		})
	}
	t.Run("plaintext on the same port", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "plain" {
			t.Fatalf("got %q", b)
		}
	})
	t.Run("unknown sni has no chain", func(t *testing.T) {
		c := client("other.org", poolA, false)
		defer c.CloseIdleConnections()
		if _, err := c.Get("https://" + addr + "/"); err == nil {
			t.Fatal("connection with an unmatched SNI was served")
		}
	})
}

// clientHello captures a real ClientHello from crypto/tls.
func clientHello(t testing.TB, sni string, alpn ...string) []byte {
	c1, c2 := net.Pipe()
	defer c2.Close()
	go func() {
		tc := tls.Client(c1, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true})
		tc.Handshake()
		c1.Close()
	}()
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for {
		n, err := c2.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if _, perr := ParseClientHello(buf); !errors.Is(perr, errNeedMore) || err != nil {
			return buf
		}
	}
}

func TestParseClientHello(t *testing.T) {
	hello := clientHello(t, "svc.example.com", "h2", "http/1.1")
	ch, err := ParseClientHello(hello)
	if err != nil {
		t.Fatal(err)
	}
	if ch.ServerName != "svc.example.com" || strings.Join(ch.ALPN, ",") != "h2,http/1.1" {
		t.Fatalf("got %+v", ch)
	}
	// Split across two records.
	body := hello[5:]
	split := append([]byte{22, 3, 1, 0, 10}, body[:10]...)
	rest := body[10:]
	split = append(split, 22, 3, 1, byte(len(rest)>>8), byte(len(rest)))
	split = append(split, rest...)
	if ch, err := ParseClientHello(split); err != nil || ch.ServerName != "svc.example.com" {
		t.Fatalf("two records: %+v %v", ch, err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"http", []byte("GET / HTTP/1.1\r\n"), errNotTLS},
		{"empty", nil, errNeedMore},
		{"partial header", hello[:3], errNeedMore},
		{"partial body", hello[:40], errNeedMore},
		{"not client hello", []byte{22, 3, 1, 0, 4, 2, 0, 0, 0}, nil},
		{"zero record", []byte{22, 3, 1, 0, 0}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseClientHello(tt.in)
			if err == nil {
				t.Fatal("want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// Corrupt every length byte in turn: never a panic, always an error
	// or a parse.
	for i := 5; i < len(hello); i++ {
		b := bytes.Clone(hello)
		b[i] ^= 0xff
		ParseClientHello(b)
	}
}

func FuzzParseClientHello(f *testing.F) {
	f.Add(clientHello(f, "a.example.com", "h2"))
	f.Add(clientHello(f, "", "http/1.1"))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := ParseClientHello(b)
		if err == nil && ch == nil {
			t.Fatal("nil hello without error")
		}
	})
}
