package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// clientCert makes a CA and a client certificate it signs with uri as a
// URI SAN; it returns the CA file and the client's tls.Certificate.
func clientCert(t *testing.T, uri string) (string, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: "test ca"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	u, _ := url.Parse(uri)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: "client"}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestMutualTLSPeerIdentity(t *testing.T) {
	certFile, keyFile, pool := writeCert(t, "svc.local")
	caFile, client := clientCert(t, "spiffe://cluster.local/ns/default/sa/reviews")
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
