// Package tlsconfig builds TLS settings for Remora's gRPC clients (the mixer
// client, the ext_authz filter) from file paths, in one way.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Client describes a client's TLS: all fields empty means plaintext.
type Client struct {
	// CAFile verifies the server's certificate; empty uses the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate for mTLS.
	CertFile, KeyFile string
	// ServerName overrides the name verified in the server's certificate.
	ServerName string
}

// Credentials returns gRPC transport credentials for c: insecure when c is
// empty, TLS 1.2+ otherwise. Errors name the file at fault.
func (c Client) Credentials() (credentials.TransportCredentials, error) {
	if c == (Client{}) {
		return insecure.NewCredentials(), nil
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("tls: cert_file and key_file go together")
	}
	tc := &tls.Config{ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: ca_file %s: no PEM certificates", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(tc), nil
}
