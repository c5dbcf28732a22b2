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
