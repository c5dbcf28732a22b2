package server

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/remora-mesh/remora/internal/testpki"
)

func TestMutualTLSPeerIdentity(t *testing.T) {
	pki := testpki.New(t, "spiffe://cluster.local/ns/default/sa/reviews")
	certFile, keyFile := pki.IssueServer("svc", "svc.local")
	caFile, pool := pki.CAFile, pki.CAPool()
	client := pki.ClientCertificate(t)
	s := startProxy(t, fmt.Sprintf(`
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - tls: {cert_file: %s, key_file: %s, client_ca_file: %s, require_client_certificate: true}
    http_connection_manager:
      access_log: [{type: test}]
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: hi}}]}]}
`, certFile, keyFile, caFile))
	url := "https://" + s.ListenerAddr("main").String() + "/"
	t.Run("verified client", func(t *testing.T) {
		drainLogs()
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "svc.local", RootCAs: pool, Certificates: []tls.Certificate{client}}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		info := lastLog(t)
		if !info.DownstreamTLS || info.DownstreamPeerURISAN != "spiffe://cluster.local/ns/default/sa/reviews" || info.RequestedServerName != "svc.local" {
			t.Fatalf("tls %v san %q sni %q", info.DownstreamTLS, info.DownstreamPeerURISAN, info.RequestedServerName)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "svc.local", RootCAs: pool}}
		defer tr.CloseIdleConnections()
		if resp, err := (&http.Client{Transport: tr}).Get(url); err == nil {
			resp.Body.Close()
			t.Fatal("request without a client certificate was served")
		}
	})
}

// TestDownstreamCertificateRotation: a chain serves a rewritten
// certificate on the next handshake, without a reload.
func TestDownstreamCertificateRotation(t *testing.T) {
	pki := testpki.New(t, "spiffe://test/client")
	s := startProxy(t, fmt.Sprintf(`
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - tls: {cert_file: %s, key_file: %s}
    http_connection_manager:
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: hi}}]}]}
`, pki.ServerCertFile, pki.ServerKeyFile))
	serial := func() int64 {
		t.Helper()
		c, err := tls.Dial("tcp", s.ListenerAddr("main").String(), &tls.Config{RootCAs: pki.CAPool(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	before := serial()
	pki.ReissueServer(t, 99)
	if got := serial(); got != 99 || before == 99 {
		t.Fatalf("serial %d after the rotation (was %d), want 99", got, before)
	}
}
