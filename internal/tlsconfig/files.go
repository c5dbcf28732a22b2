package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// Files is a TLS configuration built from files and built again, on a
// later Config call, when one of them changed (modification time or size),
// so that rotated certificates (a mesh's live for hours) are picked up
// without a restart. A rebuild that fails keeps the previous configuration
// in use. It is safe for concurrent use.
type Files struct {
	names []string // the files' roles in errors: ca_file, cert_file ...
	paths []string // "" when not configured
	build func() (*tls.Config, error)

	mu      sync.Mutex
	stamp   []fileStamp
	failed  []fileStamp // the stamps of files that failed to build
	current *tls.Config
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// NewFiles watches paths (named by names in errors, "" paths are skipped)
// and builds the configuration with build now, so that a bad file fails
// the configuration load, and again whenever a file changed.
func NewFiles(names, paths []string, build func() (*tls.Config, error)) (*Files, error) {
	f := &Files{names: names, paths: paths, build: build,
		stamp: make([]fileStamp, len(paths)), failed: make([]fileStamp, len(paths))}
	if _, err := f.Config(); err != nil {
		return nil, err
	}
	return f, nil
}

// NewClientFiles watches a client configuration's files (c.ServerName is
// ignored: callers set the name per connection). minVersion is a
// crypto/tls version constant (0 means TLS 1.2).
func NewClientFiles(c Client, minVersion uint16) (*Files, error) {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("tls: cert_file and key_file go together")
	}
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	return NewFiles([]string{"ca_file", "cert_file", "key_file"}, []string{c.CAFile, c.CertFile, c.KeyFile},
		func() (*tls.Config, error) { return loadClient(c, minVersion) })
}

// Server is a server's certificate files; ClientCAFile, when set, verifies
// client certificates (required when RequireClientCert).
type Server struct {
	CertFile, KeyFile string
	ClientCAFile      string
	RequireClientCert bool
	ALPN              []string
}

// NewServerFiles watches a server configuration's files.
func NewServerFiles(s Server) (*Files, error) {
	return NewFiles([]string{"cert_file", "key_file", "client_ca_file"}, []string{s.CertFile, s.KeyFile, s.ClientCAFile},
		func() (*tls.Config, error) { return loadServer(s) })
}

// Config returns the current configuration, after building it again when
// a file changed. When that fails it returns the previous configuration
// (nil if there was none) with the error; files that keep failing are not
// read again until they change. The result is shared: callers Clone it
// before setting per-connection fields.
func (f *Files) Config() (*tls.Config, error) {
	stamp := make([]fileStamp, len(f.paths))
	for i, name := range f.paths {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.current, fmt.Errorf("tls: %s: %w", f.names[i], err)
		}
		stamp[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.current != nil && slices.Equal(stamp, f.stamp) {
		return f.current, nil
	}
	if slices.Equal(stamp, f.failed) {
		return f.current, fmt.Errorf("tls: the files failed to load and did not change since")
	}
	tc, err := f.build()
	if err != nil {
		f.failed = stamp
		return f.current, err
	}
	f.current, f.stamp = tc, stamp
	return tc, nil
}

func loadClient(c Client, minVersion uint16) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: minVersion}
	if c.CAFile != "" {
		pool, err := loadPool("ca_file", c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func loadServer(s Server) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: cert_file/key_file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: append([]string(nil), s.ALPN...)}
	if s.ClientCAFile != "" {
		pool, err := loadPool("client_ca_file", s.ClientCAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if s.RequireClientCert {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return tc, nil
}

func loadPool(name, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: %s: %w", name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s %s: no PEM certificates", name, path)
	}
	return pool, nil
}
