package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// serverCredentials builds the gRPC transport credentials of t; nil means
// plaintext. The files are loaded now, so that a bad certificate fails the
// start, and reloaded on a later handshake when one of them changed, so
// that rotated certificates (SPIFFE certificates live hours) are picked up
// without a restart. A reload that fails keeps the previous files in use
// and is logged.
func serverCredentials(t TLSConfig, log *zap.Logger) (credentials.TransportCredentials, error) {
	if !t.Enabled() {
		return nil, nil
	}
	f := &tlsFiles{cfg: t, log: log}
	if err := f.refresh(); err != nil {
		return nil, err
	}
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if err := f.refresh(); err != nil {
				f.log.Warn("tls reload failed; the previous certificates stay in use", zap.Error(err))
			}
			return f.config(), nil
		},
	}
	return credentials.NewTLS(base), nil
}

// tlsFiles holds the current certificate and client CAs and the
// modification times they were read at.
type tlsFiles struct {
	cfg TLSConfig
	log *zap.Logger

	mu      sync.Mutex
	stamp   [3]time.Time // cert, key, CA file modification times
	failed  [3]time.Time // the times of files that failed to load
	current *tls.Config
}

// refresh rereads the files when their modification times changed.
func (f *tlsFiles) refresh() error {
	var stamp [3]time.Time
	for i, name := range []string{f.cfg.CertFile, f.cfg.KeyFile, f.cfg.ClientCAFile} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return fmt.Errorf("mixer: grpc.tls: %w", err)
		}
		stamp[i] = fi.ModTime()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.current != nil && (stamp == f.stamp || stamp == f.failed) {
		return nil // unchanged, or already reported broken
	}
	if err := f.load(stamp); err != nil {
		f.failed = stamp
		return err
	}
	return nil
}

// load reads the files; f.mu must be held.
func (f *tlsFiles) load(stamp [3]time.Time) error {
	cert, err := tls.LoadX509KeyPair(f.cfg.CertFile, f.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("mixer: grpc.tls: loading cert_file/key_file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	if f.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(f.cfg.ClientCAFile)
		if err != nil {
			return fmt.Errorf("mixer: grpc.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("mixer: grpc.tls.client_ca_file: %s holds no PEM certificate", f.cfg.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if f.cfg.RequireClientCert {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	if f.current != nil {
		f.log.Info("tls files reloaded")
	}
	f.current, f.stamp = tc, stamp
	return nil
}

func (f *tlsFiles) config() *tls.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.current
}

// peerPrincipal returns the first URI SAN (a SPIFFE ID in a mesh) of the
// caller's verified client certificate, or "" when the caller presented
// none or it was not verified against client_ca_file.
func peerPrincipal(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.PeerCertificates) == 0 {
		return ""
	}
	for _, u := range ti.State.PeerCertificates[0].URIs {
		return u.String()
	}
	return ""
}
