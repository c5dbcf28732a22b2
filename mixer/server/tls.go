package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"

	"github.com/remora-mesh/remora/internal/tlsconfig"
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
	files, err := tlsconfig.NewServerFiles(tlsconfig.Server{CertFile: t.CertFile, KeyFile: t.KeyFile,
		ClientCAFile: t.ClientCAFile, RequireClientCert: t.RequireClientCert, ALPN: []string{"h2"}})
	if err != nil {
		return nil, fmt.Errorf("mixer: grpc.%w", err)
	}
	var mu sync.Mutex
	last, _ := files.Config()
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			tc, err := files.Config()
			if err != nil {
				log.Warn("tls reload failed; the previous certificates stay in use", zap.Error(err))
			}
			mu.Lock()
			if tc != last {
				last = tc
				log.Info("tls files reloaded")
			}
			mu.Unlock()
			return tc, nil
		},
	}
	return credentials.NewTLS(base), nil
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
