package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// ClientFiles is a client TLS configuration read from c's files and read
// again, on a later Config call, when one of them changed (modification
// time or size), so that rotated certificates are picked up without a
// restart. It is safe for concurrent use.
type ClientFiles struct {
	c   Client
	min uint16

	mu      sync.Mutex
	stamp   [3]fileStamp // ca, cert, key
	failed  [3]fileStamp // the stamps of files that failed to load
	current *tls.Config
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// NewClientFiles reads c's files now, so that a bad file fails the
// configuration load. minVersion is a crypto/tls version constant (0 means
// TLS 1.2). c.ServerName is ignored: callers set the name per connection.
func NewClientFiles(c Client, minVersion uint16) (*ClientFiles, error) {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("tls: cert_file and key_file go together")
	}
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	f := &ClientFiles{c: c, min: minVersion}
	if _, err := f.Config(); err != nil {
		return nil, err
	}
	return f, nil
}

// Config returns the current configuration, after reading the files again
// when one changed. When that fails it returns the previous configuration
// (nil if there was none) with the error; a file that keeps failing is not
// read again until it changes. The result is shared: callers Clone it
// before setting per-connection fields.
func (f *ClientFiles) Config() (*tls.Config, error) {
	var stamp [3]fileStamp
	for i, name := range []string{f.c.CAFile, f.c.CertFile, f.c.KeyFile} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.current, fmt.Errorf("tls: %s: %w", [...]string{"ca_file", "cert_file", "key_file"}[i], err)
		}
		stamp[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.current != nil && stamp == f.stamp {
		return f.current, nil
	}
	if stamp == f.failed {
		return f.current, fmt.Errorf("tls: the files failed to load and did not change since")
	}
	tc, err := f.load()
	if err != nil {
		f.failed = stamp
		return f.current, err
	}
	f.current, f.stamp = tc, stamp
	return tc, nil
}

func (f *ClientFiles) load() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: f.min}
	if f.c.CAFile != "" {
		pem, err := os.ReadFile(f.c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: ca_file %s: no PEM certificates", f.c.CAFile)
		}
	}
	if f.c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.c.CertFile, f.c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
