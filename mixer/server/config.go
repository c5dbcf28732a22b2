package server

import (
	"errors"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/accesslog"
	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/mixer/quota"
	"github.com/remora-mesh/remora/mixer/telemetry"
	"github.com/remora-mesh/remora/policy"
)

// Defaults applied by (*Config).ApplyDefaults.
const (
	DefaultGRPCAddress          = ":9091"
	DefaultMonitoringAddress    = ":15014"
	DefaultMaxRecvMessageSize   = 4 << 20
	DefaultMaxSendMessageSize   = 4 << 20
	DefaultMaxConcurrentStreams = 1024
	DefaultMaxInflightRequests  = 1024
	DefaultShutdownTimeout      = 10 * time.Second
	DefaultKeepaliveTime        = 30 * time.Second
	DefaultKeepaliveTimeout     = 10 * time.Second
	DefaultKeepaliveMinTime     = 10 * time.Second
	DefaultLogLevel             = "info"
	DefaultGCPercent            = 400
)

// Config is the whole `remora mixer` configuration.
type Config struct {
	GRPC       GRPCConfig       `yaml:"grpc"`
	Monitoring MonitoringConfig `yaml:"monitoring"`
	Log        LogConfig        `yaml:"log"`
	Policy     policy.Config    `yaml:"policy"`
	Quotas     []quota.Config   `yaml:"quotas"`
	Telemetry  telemetry.Config `yaml:"telemetry"`
	// AccessLogService configures the Envoy access-log service served on
	// the gRPC port (see als.go).
	AccessLogService AccessLogServiceConfig `yaml:"access_log_service"`
	Runtime          RuntimeConfig          `yaml:"runtime"`
}

// RuntimeConfig tunes the Go runtime of the `remora mixer` process; the
// command applies it (a Server never changes process-wide settings).
type RuntimeConfig struct {
	// GCPercent is the garbage collector's target, as GOGC: a collection
	// starts when the heap has grown by this percentage of what the last
	// one left live. Policy evaluation allocates quickly from a live heap
	// of a few MB, so Go's default (100) collects tens of times a second;
	// each collection also shrinks the stacks that OPA's evaluator has to
	// grow again. Default 400; the GOGC environment variable, when set,
	// wins.
	GCPercent int `yaml:"gc_percent"`
}

// AccessLogServiceConfig configures envoy.service.accesslog.v3
// AccessLogService, which turns Envoy access-log entries into telemetry.
type AccessLogServiceConfig struct {
	// Disabled leaves the service unregistered (default false: served).
	Disabled bool `yaml:"disabled"`
	// DefaultReporterKind is the context.reporter.kind of entries whose
	// log name and node metadata do not say: "inbound" (default) or
	// "outbound".
	DefaultReporterKind string `yaml:"default_reporter_kind"`
	// File, when set, also writes every ingested entry through an access-log
	// file sink (the proxy's type: file config: path, format, json_format...).
	File *accesslog.FileConfig `yaml:"file,omitempty"`
}

// GRPCConfig configures the gRPC listener.
type GRPCConfig struct {
	Address              string          `yaml:"address"`
	MaxRecvMessageSize   int             `yaml:"max_recv_message_size"`
	MaxSendMessageSize   int             `yaml:"max_send_message_size"`
	MaxConcurrentStreams uint32          `yaml:"max_concurrent_streams"`
	MaxInflightRequests  int             `yaml:"max_inflight_requests"`
	ShutdownTimeout      config.Duration `yaml:"shutdown_timeout"`
	Keepalive            KeepaliveConfig `yaml:"keepalive"`
	TLS                  TLSConfig       `yaml:"tls"`
}

// KeepaliveConfig configures HTTP/2 keepalive pings and connection ages.
type KeepaliveConfig struct {
	Time                  config.Duration `yaml:"time"`
	Timeout               config.Duration `yaml:"timeout"`
	MinTime               config.Duration `yaml:"min_time"`
	PermitWithoutStream   bool            `yaml:"permit_without_stream"`
	MaxConnectionIdle     config.Duration `yaml:"max_connection_idle"`
	MaxConnectionAge      config.Duration `yaml:"max_connection_age"`
	MaxConnectionAgeGrace config.Duration `yaml:"max_connection_age_grace"`
}

// TLSConfig enables TLS and mutual TLS on the gRPC listener.
type TLSConfig struct {
	CertFile          string `yaml:"cert_file"`
	KeyFile           string `yaml:"key_file"`
	ClientCAFile      string `yaml:"client_ca_file"`
	RequireClientCert bool   `yaml:"require_client_cert"`
	// PrincipalAttribute is reserved for the caller's verified identity:
	// the server sets it to the URI SAN of a verified client certificate
	// and removes any value the caller sent. Default
	// context.reporter.principal (the caller is usually a sidecar checking
	// for someone else, so its identity is not source.principal).
	PrincipalAttribute string `yaml:"principal_attribute"`
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// MonitoringConfig configures the monitoring HTTP listener.
type MonitoringConfig struct {
	Address string `yaml:"address"`
	Pprof   bool   `yaml:"pprof"`
}

// LogConfig configures the JSON logs.
type LogConfig struct {
	Level string `yaml:"level"`
}

// ApplyDefaults fills every zero field with its default; it is the one
// place defaults live.
func (c *Config) ApplyDefaults() {
	g := &c.GRPC
	setStr(&g.Address, DefaultGRPCAddress)
	setInt(&g.MaxRecvMessageSize, DefaultMaxRecvMessageSize)
	setInt(&g.MaxSendMessageSize, DefaultMaxSendMessageSize)
	if g.MaxConcurrentStreams == 0 {
		g.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	setInt(&g.MaxInflightRequests, DefaultMaxInflightRequests)
	setDur(&g.ShutdownTimeout, DefaultShutdownTimeout)
	setDur(&g.Keepalive.Time, DefaultKeepaliveTime)
	setDur(&g.Keepalive.Timeout, DefaultKeepaliveTimeout)
	setDur(&g.Keepalive.MinTime, DefaultKeepaliveMinTime)
	setStr(&g.TLS.PrincipalAttribute, attributes.ContextReporterPrincipal)
	setStr(&c.Monitoring.Address, DefaultMonitoringAddress)
	setStr(&c.Log.Level, DefaultLogLevel)
	c.Policy.ApplyDefaults()
	for i := range c.Quotas {
		c.Quotas[i].ApplyDefaults()
	}
	c.Telemetry.ApplyDefaults()
	setStr(&c.AccessLogService.DefaultReporterKind, attributes.ReporterInbound)
	if c.AccessLogService.File != nil {
		c.AccessLogService.File.ApplyDefaults()
	}
	setInt(&c.Runtime.GCPercent, DefaultGCPercent)
}

func setStr(p *string, d string) {
	if *p == "" {
		*p = d
	}
}

func setInt(p *int, d int) {
	if *p == 0 {
		*p = d
	}
}

func setDur(p *config.Duration, d time.Duration) {
	if *p == 0 {
		*p = config.Duration(d)
	}
}

// Validate returns every problem of the (defaulted) configuration with its
// field path, joined with errors.Join.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	g := c.GRPC
	if g.Address == "" {
		add("grpc.address", "required")
	}
	if g.MaxRecvMessageSize < 0 {
		add("grpc.max_recv_message_size", "must not be negative")
	}
	if g.MaxSendMessageSize < 0 {
		add("grpc.max_send_message_size", "must not be negative")
	}
	if g.MaxInflightRequests < 0 {
		add("grpc.max_inflight_requests", "must not be negative")
	}
	if g.Keepalive.Time > 0 && g.Keepalive.Time.D() < time.Second {
		add("grpc.keepalive.time", "must be at least 1s, got %s", g.Keepalive.Time)
	}
	t := g.TLS
	if t.Enabled() {
		if t.CertFile == "" {
			add("grpc.tls.cert_file", "required when grpc.tls.key_file is set")
		}
		if t.KeyFile == "" {
			add("grpc.tls.key_file", "required when grpc.tls.cert_file is set")
		}
	} else if t.ClientCAFile != "" || t.RequireClientCert {
		add("grpc.tls", "client_ca_file and require_client_cert need cert_file and key_file")
	}
	if t.RequireClientCert && t.ClientCAFile == "" {
		add("grpc.tls.client_ca_file", "required when require_client_cert is true")
	}
	if c.Monitoring.Address == "" {
		add("monitoring.address", "required")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	if err := c.Policy.Validate("policy"); err != nil {
		errs = append(errs, err)
	}
	if err := quota.ValidateAll("quotas", c.Quotas); err != nil {
		errs = append(errs, err)
	}
	if err := c.Telemetry.Validate("telemetry"); err != nil {
		errs = append(errs, err)
	}
	switch a := c.AccessLogService; a.DefaultReporterKind {
	case attributes.ReporterInbound, attributes.ReporterOutbound:
	default:
		add("access_log_service.default_reporter_kind", "must be inbound or outbound, not %q", a.DefaultReporterKind)
	}
	if f := c.AccessLogService.File; f != nil {
		if err := f.Validate("access_log_service.file"); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Runtime.GCPercent < 1 {
		add("runtime.gc_percent", "must be at least 1, got %d", c.Runtime.GCPercent)
	}
	return errors.Join(errs...)
}

// ParseConfig decodes YAML strictly (an unknown field is an error naming
// its path) without applying defaults.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if err := config.UnmarshalStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("mixer: config: %w", err)
	}
	return c, nil
}

// LoadConfig reads and parses the file at path.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("mixer: config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%w (in %s)", err, path)
	}
	return c, nil
}

// Marshal renders the configuration as YAML.
func (c Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }
