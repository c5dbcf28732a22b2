package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/remora-mesh/remora/internal/config"
)

// FailPolicy says what Check answers when the server cannot be reached.
type FailPolicy string

const (
	// FailOpen lets requests through while the server is unreachable.
	FailOpen FailPolicy = "open"
	// FailClose denies them with UNAVAILABLE (HTTP 503).
	FailClose FailPolicy = "close"
)

// Encoding is the report batch encoding.
type Encoding string

const (
	EncodingDelta       Encoding = "delta"
	EncodingIndependent Encoding = "independent"
)

// Config configures the client. The zero value with an Address is usable
// once ApplyDefaults has run; YAML tags give the names used in the
// proxy's mixer filter configuration.
type Config struct {
	// Address of the server, host:port.
	Address string `yaml:"address"`
	// TLS to the server; nil or empty means plaintext.
	TLS *TLSConfig `yaml:"tls,omitempty"`
	// Check configures Check calls and the decision cache.
	Check CheckConfig `yaml:"check"`
	// Report configures the report batcher.
	Report ReportConfig `yaml:"report"`
}

// TLSConfig configures TLS (and mTLS with a client certificate) to the server.
type TLSConfig struct {
	// CAFile verifies the server's certificate; empty uses the system roots.
	CAFile string `yaml:"ca_file,omitempty"`
	// CertFile and KeyFile are the client certificate for mTLS.
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
	// ServerName overrides the name verified in the server's certificate.
	ServerName string `yaml:"server_name,omitempty"`
}

// CheckConfig configures Check.
type CheckConfig struct {
	// Timeout bounds one Check attempt. Default 5s.
	Timeout config.Duration `yaml:"timeout"`
	// FailPolicy is "open" (default) or "close".
	FailPolicy FailPolicy `yaml:"fail_policy"`
	// Retries after a transport failure. Default 0, as Istio.
	Retries int `yaml:"retries"`
	// BaseRetryWait and MaxRetryWait bound the randomized exponential
	// backoff between attempts: the wait before retry n is uniform in
	// [base, min(max, base·2^n)]. Defaults 80ms and 1s.
	BaseRetryWait config.Duration `yaml:"base_retry_wait"`
	MaxRetryWait  config.Duration `yaml:"max_retry_wait"`
	// CacheEntries bounds the decision cache (LRU). Default 10000; -1
	// disables the cache.
	CacheEntries int `yaml:"cache_entries"`
}

// ReportConfig configures the report batcher.
type ReportConfig struct {
	// MaxBatchEntries flushes a batch when it holds this many records.
	// Default 100.
	MaxBatchEntries int `yaml:"max_batch_entries"`
	// MaxBatchTime flushes a batch this long after its first record.
	// Default 1s.
	MaxBatchTime config.Duration `yaml:"max_batch_time"`
	// Encoding of a batch: "delta" (default) or "independent".
	Encoding Encoding `yaml:"encoding"`
	// MaxQueueEntries and MaxQueueBytes bound the records waiting to be
	// delivered (including those being retried). Beyond either bound the
	// oldest records are dropped and counted. Defaults 100000 records and
	// 64 MiB.
	MaxQueueEntries int `yaml:"max_queue_entries"`
	MaxQueueBytes   int `yaml:"max_queue_bytes"`
	// Timeout bounds one Report call. Default 5s.
	Timeout config.Duration `yaml:"timeout"`
	// BaseRetryWait and MaxRetryWait bound the backoff between attempts
	// to deliver a failed batch. Defaults 80ms and 10s.
	BaseRetryWait config.Duration `yaml:"base_retry_wait"`
	MaxRetryWait  config.Duration `yaml:"max_retry_wait"`
}

// ApplyDefaults fills every unset field with its default.
func (c *Config) ApplyDefaults() {
	ck := &c.Check
	setDuration(&ck.Timeout, 5*time.Second)
	if ck.FailPolicy == "" {
		ck.FailPolicy = FailOpen
	}
	setDuration(&ck.BaseRetryWait, 80*time.Millisecond)
	setDuration(&ck.MaxRetryWait, time.Second)
	if ck.CacheEntries == 0 {
		ck.CacheEntries = 10000
	}
	r := &c.Report
	if r.MaxBatchEntries == 0 {
		r.MaxBatchEntries = 100
	}
	setDuration(&r.MaxBatchTime, time.Second)
	if r.Encoding == "" {
		r.Encoding = EncodingDelta
	}
	if r.MaxQueueEntries == 0 {
		r.MaxQueueEntries = 100000
	}
	if r.MaxQueueBytes == 0 {
		r.MaxQueueBytes = 64 << 20
	}
	setDuration(&r.Timeout, 5*time.Second)
	setDuration(&r.BaseRetryWait, 80*time.Millisecond)
	setDuration(&r.MaxRetryWait, 10*time.Second)
}

func setDuration(d *config.Duration, def time.Duration) {
	if *d == 0 {
		*d = config.Duration(def)
	}
}

// Validate reports every problem, each prefixed by path (the field path of
// this config in the enclosing document).
func (c *Config) Validate(path string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	if c.Address == "" {
		bad("address", "required")
	}
	if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	ck := c.Check
	if ck.FailPolicy != FailOpen && ck.FailPolicy != FailClose {
		bad("check.fail_policy", "must be %q or %q, not %q", FailOpen, FailClose, ck.FailPolicy)
	}
	if ck.Retries < 0 || ck.Retries > 10 {
		bad("check.retries", "must be between 0 and 10, not %d", ck.Retries)
	}
	if ck.BaseRetryWait > ck.MaxRetryWait {
		bad("check.base_retry_wait", "%s exceeds max_retry_wait %s", ck.BaseRetryWait, ck.MaxRetryWait)
	}
	if ck.CacheEntries < -1 {
		bad("check.cache_entries", "must be positive, or -1 to disable the cache")
	}
	r := c.Report
	if r.MaxBatchEntries < 1 {
		bad("report.max_batch_entries", "must be at least 1")
	}
	if r.Encoding != EncodingDelta && r.Encoding != EncodingIndependent {
		bad("report.encoding", "must be %q or %q, not %q", EncodingDelta, EncodingIndependent, r.Encoding)
	}
	if r.MaxQueueEntries < r.MaxBatchEntries {
		bad("report.max_queue_entries", "%d is below max_batch_entries %d", r.MaxQueueEntries, r.MaxBatchEntries)
	}
	if r.MaxQueueBytes < 4096 {
		bad("report.max_queue_bytes", "must be at least 4096")
	}
	if r.BaseRetryWait > r.MaxRetryWait {
		bad("report.base_retry_wait", "%s exceeds max_retry_wait %s", r.BaseRetryWait, r.MaxRetryWait)
	}
	return errors.Join(errs...)
}
