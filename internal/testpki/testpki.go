// Package testpki issues a throwaway CA, a server certificate for
// 127.0.0.1 and a client certificate with a SPIFFE URI SAN, written to PEM
// files, for tests of TLS and mTLS between Remora's components. It is for
// tests only.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a CA with one server and one client certificate, as files.
type PKI struct {
	CAFile                        string
	ServerCertFile, ServerKeyFile string
	ClientCertFile, ClientKeyFile string
	// ServerTLS is a server configuration requiring and verifying client
	// certificates signed by the CA.
	ServerTLS *tls.Config

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	now   time.Time
	// issue signs a leaf certificate from tmpl into files named name.
	issue func(name string, tmpl *x509.Certificate) (certFile, keyFile string)
}

// IssueServer issues another server certificate, for dnsNames and
// 127.0.0.1, signed by the CA, into files named after name.
func (p *PKI) IssueServer(name string, dnsNames ...string) (certFile, keyFile string) {
	return p.issue(name, &x509.Certificate{Subject: pkix.Name{CommonName: name}, DNSNames: dnsNames,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
}

// IssueClient issues another client certificate with URI SAN id, signed
// by the CA, into files named after name.
func (p *PKI) IssueClient(name, id string) (certFile, keyFile string) {
	u, err := url.Parse(id)
	if err != nil {
		panic("testpki: bad client id: " + err.Error())
	}
	return p.issue(name, &x509.Certificate{Subject: pkix.Name{CommonName: name}, URIs: []*url.URL{u},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

// New issues the certificates into t's temporary directory. The client
// certificate's URI SAN is clientID (for example a spiffe:// id).
func New(t testing.TB, clientID string) *PKI {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "remora test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	ca, err := x509.ParseCertificate(caDER)
	must(err)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		must(os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	issue := func(name string, serial int64, tmpl *x509.Certificate) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		must(err)
		kder, err := x509.MarshalECPrivateKey(key)
		must(err)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p := &PKI{CAFile: write("ca.pem", "CERTIFICATE", caDER), ca: ca, caKey: caKey, now: now}
	serial := int64(10)
	p.issue = func(name string, tmpl *x509.Certificate) (string, string) {
		serial++
		return issue(name, serial, tmpl)
	}
	p.ServerCertFile, p.ServerKeyFile = issue("server", 2, &x509.Certificate{Subject: pkix.Name{CommonName: "server"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	u, err := url.Parse(clientID)
	must(err)
	p.ClientCertFile, p.ClientKeyFile = issue("client", 3, &x509.Certificate{Subject: pkix.Name{CommonName: "client"},
		URIs: []*url.URL{u}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	serverCert, err := tls.LoadX509KeyPair(p.ServerCertFile, p.ServerKeyFile)
	must(err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	p.ServerTLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	return p
}

// CAPool returns a new pool holding the CA, for clients that verify the
// server.
func (p *PKI) CAPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	return pool
}

// ClientCertificate loads the client certificate and key, for
// tls.Config.Certificates.
func (p *PKI) ClientCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(p.ClientCertFile, p.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ReissueServer overwrites ServerCertFile and ServerKeyFile with a new
// server certificate (same names, serial number serial) and sets both
// files' modification time serial minutes after New's, so that a watcher
// comparing modification times sees the change whatever the file system's
// timestamp granularity. ServerTLS is not changed.
func (p *PKI) ReissueServer(t testing.TB, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "server"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	mt := p.now.Add(time.Duration(serial) * time.Minute)
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{p.ServerCertFile, "CERTIFICATE", der}, {p.ServerKeyFile, "EC PRIVATE KEY", kder}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f.path, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}
