package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"go.uber.org/zap"

	"github.com/remora-mesh/remora/internal/sockio"
	"github.com/remora-mesh/remora/internal/tlsconfig"
)

// ALPN protocol names offered by HTTP connections.
const (
	alpnH2    = "h2"
	alpnHTTP1 = "http/1.1"
)

// tlsOrigin makes a cluster's connections TLS client connections.
type tlsOrigin struct {
	sni   string
	alpn  []string
	files *tlsconfig.Files
	log   *zap.Logger
}

func newTLSOrigin(cfg *UpstreamTLSConfig, log *zap.Logger) (*tlsOrigin, error) {
	var min uint16 = tls.VersionTLS12
	if cfg.MinVersion == TLSVersion13 {
		min = tls.VersionTLS13
	}
	t := &tlsOrigin{sni: cfg.SNI, alpn: cfg.ALPN, log: log}
	var err error
	t.files, err = tlsconfig.NewClientFiles(tlsconfig.Client{CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}, min)
	if err != nil {
		return nil, err // "tls: ca_file: ...", prefixed by NewManager with the field path
	}
	return t, nil
}

// config returns the TLS configuration of one connection to h offering
// alpn. The server name (sent as SNI and verified) is the configured sni,
// else the host's DNS name, else its IP address (verified, not sent: TLS
// carries no IP addresses in SNI).
func (t *tlsOrigin) config(h *Host, alpn []string) (*tls.Config, error) {
	base, err := t.files.Config()
	if err != nil {
		if base == nil {
			return nil, err
		}
		t.log.Warn("upstream tls files failed to reload; the previous ones stay in use", zap.Error(err))
	}
	cfg := base.Clone()
	cfg.NextProtos = alpn
	switch {
	case t.sni != "":
		cfg.ServerName = t.sni
	case h.hostname != "" && !isIP(h.hostname):
		cfg.ServerName = h.hostname
	default:
		host, _, _ := net.SplitHostPort(h.addr)
		cfg.ServerName = host
	}
	return cfg, nil
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// tlsError is a failed upstream TLS handshake.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "upstream: tls handshake: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// dialHost connects to h within ctx (which carries connect_timeout) and,
// when the cluster originates TLS, completes the handshake offering alpn
// (nil: the cluster's tls.alpn). A handshake failure is a *tlsError and
// counts ssl.connection_error; a connection offered one protocol that
// negotiated another is a failure too.
func (c *Cluster) dialHost(ctx context.Context, h *Host, alpn []string) (net.Conn, error) {
	nc, err := c.dialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, err
	}
	nc = sockio.Wrap(nc)
	if c.tls == nil {
		return nc, nil
	}
	if alpn == nil {
		alpn = c.tls.alpn
	}
	cfg, err := c.tls.config(h, alpn)
	if err != nil {
		nc.Close()
		c.stats.inc(statSSLConnectionError)
		return nil, &tlsError{err}
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		if ctx.Err() != nil { // connect timeout or pool closed: not a TLS fault
			return nil, fmt.Errorf("upstream: tls handshake: %w", ctx.Err())
		}
		c.stats.inc(statSSLConnectionError)
		return nil, &tlsError{err}
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != "" && len(alpn) == 1 && got != alpn[0] {
		tc.Close()
		c.stats.inc(statSSLConnectionError)
		return nil, &tlsError{fmt.Errorf("server negotiated ALPN %q, want %q", got, alpn[0])}
	}
	c.stats.inc(statSSLHandshake)
	return tc, nil
}

// tlsFailureReason renders a handshake failure for
// %UPSTREAM_TRANSPORT_FAILURE_REASON%.
func tlsFailureReason(err error) (string, bool) {
	var te *tlsError
	if !errors.As(err, &te) {
		return "", false
	}
	return "TLS error: " + te.err.Error(), true
}
