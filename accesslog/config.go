package accesslog

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/accesslog/format"
	"github.com/remora-mesh/remora/internal/config"
)

// Sink types of Config.Type.
const (
	TypeFile = "file"
	TypeGRPC = "grpc"
)

// Defaults applied by ApplyDefaults.
const (
	DefaultFileFlushInterval = time.Second
	DefaultFileBufferBytes   = 1 << 20  // 1 MiB
	DefaultFileFlushBytes    = 64 << 10 // 64 KiB, Envoy's min_flush_size

	DefaultGRPCFlushInterval   = time.Second
	DefaultGRPCBufferSizeBytes = 16 << 10 // 16 KiB, Envoy's buffer_size_bytes
	DefaultGRPCMaxBufferBytes  = 4 << 20  // 4 MiB
	DefaultGRPCReconnectBase   = 250 * time.Millisecond
	DefaultGRPCReconnectMax    = 30 * time.Second
	DefaultGRPCMaxMessageBytes = 1 << 20 // per StreamAccessLogsMessage
)

// Config is one access log: `{name, type, filter, config}` in an
// access_log list. After YAML decoding, exactly one of File and GRPC is set
// according to Type (both nil for an unknown type, which Validate reports).
type Config struct {
	// Name labels the sink's metrics and log lines; default "file:<path>"
	// or "grpc:<log_name>".
	Name   string        `yaml:"name"`
	Type   string        `yaml:"type"`
	Filter *FilterConfig `yaml:"filter"`

	File *FileConfig `yaml:"-"`
	GRPC *GRPCConfig `yaml:"-"`
}

// FileConfig configures a file sink (type: file).
type FileConfig struct {
	// Path is the file to append to; /dev/stdout and /dev/stderr work.
	Path string `yaml:"path,omitempty"`
	// Format is an Envoy format string; empty means format.DefaultFormat.
	// At most one of Format, JSONFormat and TypedJSONFormat may be set.
	Format          string         `yaml:"format,omitempty"`
	JSONFormat      map[string]any `yaml:"json_format,omitempty"`
	TypedJSONFormat map[string]any `yaml:"typed_json_format,omitempty"`
	OmitEmptyValues bool           `yaml:"omit_empty_values,omitempty"`
	// FlushInterval is how often buffered lines are written (default 1s).
	FlushInterval config.Duration `yaml:"flush_interval,omitempty"`
	// FlushBytes writes as soon as this many bytes are buffered
	// (default 64 KiB; more than BufferBytes means only the timer flushes).
	FlushBytes int `yaml:"flush_bytes,omitempty"`
	// BufferBytes bounds the bytes waiting to be written (default 1 MiB);
	// lines that do not fit are dropped and counted in logs_dropped.
	BufferBytes int `yaml:"buffer_bytes,omitempty"`
}

// GRPCConfig configures an Envoy access-log service sink (type: grpc).
type GRPCConfig struct {
	// Address is the service's host:port (a gRPC dial target).
	Address string `yaml:"address,omitempty"`
	// LogName is sent in the stream identifier; required.
	LogName string `yaml:"log_name,omitempty"`
	// Additional headers (case-insensitive) copied into the entries.
	AdditionalRequestHeadersToLog   []string `yaml:"additional_request_headers_to_log,omitempty"`
	AdditionalResponseHeadersToLog  []string `yaml:"additional_response_headers_to_log,omitempty"`
	AdditionalResponseTrailersToLog []string `yaml:"additional_response_trailers_to_log,omitempty"`
	// MetadataNamespaces lists the dynamic-metadata namespaces copied into
	// the entries' common_properties.metadata.
	MetadataNamespaces []string `yaml:"metadata_namespaces,omitempty"`
	// BufferFlushInterval sends buffered entries at least this often
	// (default 1s); BufferSizeBytes sends as soon as this many bytes of
	// entries are buffered (default 16 KiB).
	BufferFlushInterval config.Duration `yaml:"buffer_flush_interval,omitempty"`
	BufferSizeBytes     int             `yaml:"buffer_size_bytes,omitempty"`
	// MaxBufferBytes bounds the entries held while the service is slow or
	// unreachable (default 4 MiB); entries beyond it are dropped and counted.
	MaxBufferBytes int `yaml:"max_buffer_bytes,omitempty"`
	// Reconnect backoff: exponential from ReconnectBaseInterval (default
	// 250ms) to ReconnectMaxInterval (default 30s), with jitter.
	ReconnectBaseInterval config.Duration `yaml:"reconnect_base_interval,omitempty"`
	ReconnectMaxInterval  config.Duration `yaml:"reconnect_max_interval,omitempty"`
}

// configYAML is Config as written, with the sink config kept raw until the
// type is known.
type configYAML struct {
	Name   string        `yaml:"name"`
	Type   string        `yaml:"type"`
	Filter *FilterConfig `yaml:"filter"`
	Config yaml.Node     `yaml:"config"`
}

// UnmarshalYAML implements yaml.Unmarshaler. Unknown fields are errors
// naming their path and line.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	var raw configYAML
	if err := config.DecodeStrict(n, &raw); err != nil {
		return err
	}
	*c = Config{Name: raw.Name, Type: raw.Type, Filter: raw.Filter}
	var target any
	switch raw.Type {
	case TypeFile:
		c.File = &FileConfig{}
		target = c.File
	case TypeGRPC:
		c.GRPC = &GRPCConfig{}
		target = c.GRPC
	default:
		return nil // Validate reports the type
	}
	if raw.Config.Kind == 0 {
		return nil
	}
	return config.DecodeStrictAt(&raw.Config, target, "config")
}

// MarshalYAML implements yaml.Marshaler, writing the shape UnmarshalYAML
// reads.
func (c Config) MarshalYAML() (any, error) {
	out := struct {
		Name   string        `yaml:"name,omitempty"`
		Type   string        `yaml:"type"`
		Filter *FilterConfig `yaml:"filter,omitempty"`
		Config any           `yaml:"config,omitempty"`
	}{Name: c.Name, Type: c.Type, Filter: c.Filter}
	if c.File != nil {
		out.Config = c.File
	} else if c.GRPC != nil {
		out.Config = c.GRPC
	}
	return out, nil
}

// ApplyDefaults fills the zero fields that have defaults.
func (c *Config) ApplyDefaults() {
	if c.File != nil {
		c.File.ApplyDefaults()
		if c.Name == "" {
			c.Name = "file:" + c.File.Path
		}
	}
	if c.GRPC != nil {
		c.GRPC.ApplyDefaults()
		if c.Name == "" {
			c.Name = "grpc:" + c.GRPC.LogName
		}
	}
}

// ApplyDefaults fills the zero fields that have defaults.
func (c *FileConfig) ApplyDefaults() {
	if c.FlushInterval == 0 {
		c.FlushInterval = config.Duration(DefaultFileFlushInterval)
	}
	if c.BufferBytes == 0 {
		c.BufferBytes = DefaultFileBufferBytes
	}
	if c.FlushBytes == 0 {
		c.FlushBytes = min(DefaultFileFlushBytes, c.BufferBytes)
	}
}

// ApplyDefaults fills the zero fields that have defaults.
func (c *GRPCConfig) ApplyDefaults() {
	if c.BufferFlushInterval == 0 {
		c.BufferFlushInterval = config.Duration(DefaultGRPCFlushInterval)
	}
	if c.BufferSizeBytes == 0 {
		c.BufferSizeBytes = DefaultGRPCBufferSizeBytes
	}
	if c.MaxBufferBytes == 0 {
		c.MaxBufferBytes = max(DefaultGRPCMaxBufferBytes, c.BufferSizeBytes)
	}
	if c.ReconnectBaseInterval == 0 {
		c.ReconnectBaseInterval = config.Duration(DefaultGRPCReconnectBase)
	}
	if c.ReconnectMaxInterval == 0 {
		c.ReconnectMaxInterval = config.Duration(max(DefaultGRPCReconnectMax, c.ReconnectBaseInterval.D()))
	}
}

// Validate reports every problem with its field path under path (for
// example "access_log[0]"). Call it after ApplyDefaults.
func (c *Config) Validate(path string) error {
	var errs []error
	switch c.Type {
	case TypeFile:
		if c.File == nil {
			errs = append(errs, fmt.Errorf("%s.config: required for type file (path, format ...)", path))
		} else if err := c.File.Validate(path + ".config"); err != nil {
			errs = append(errs, err)
		}
	case TypeGRPC:
		if c.GRPC == nil {
			errs = append(errs, fmt.Errorf("%s.config: required for type grpc (address, log_name ...)", path))
		} else if err := c.GRPC.Validate(path + ".config"); err != nil {
			errs = append(errs, err)
		}
	case "":
		errs = append(errs, fmt.Errorf("%s.type: required (file or grpc)", path))
	default:
		errs = append(errs, fmt.Errorf("%s.type: unknown access log type %q (want file or grpc)", path, c.Type))
	}
	if c.Filter != nil {
		if err := c.Filter.Validate(path + ".filter"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Validate reports every problem with its field path under path.
func (c *FileConfig) Validate(path string) error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, fmt.Errorf("%s.path: required", path))
	}
	n := 0
	if c.Format != "" {
		n++
	}
	if c.JSONFormat != nil {
		n++
	}
	if c.TypedJSONFormat != nil {
		n++
	}
	if n > 1 {
		errs = append(errs, fmt.Errorf("%s: at most one of format, json_format and typed_json_format may be set", path))
	} else if _, err := c.formatter(); err != nil {
		field := "format"
		if c.JSONFormat != nil {
			field = "json_format"
		} else if c.TypedJSONFormat != nil {
			field = "typed_json_format"
		}
		errs = append(errs, fmt.Errorf("%s.%s: %w", path, field, err))
	}
	if c.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("%s.flush_interval: must be positive", path))
	}
	if c.BufferBytes <= 0 {
		errs = append(errs, fmt.Errorf("%s.buffer_bytes: must be positive", path))
	}
	if c.FlushBytes <= 0 {
		errs = append(errs, fmt.Errorf("%s.flush_bytes: must be positive", path))
	}
	return errors.Join(errs...)
}

func (c *FileConfig) formatter() (*format.Formatter, error) {
	opts := format.Options{OmitEmptyValues: c.OmitEmptyValues}
	switch {
	case c.JSONFormat != nil:
		return format.CompileJSON(c.JSONFormat, false, opts)
	case c.TypedJSONFormat != nil:
		return format.CompileJSON(c.TypedJSONFormat, true, opts)
	default:
		return format.Compile(c.Format, opts)
	}
}

// Validate reports every problem with its field path under path.
func (c *GRPCConfig) Validate(path string) error {
	var errs []error
	bad := func(field, msg string) { errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, msg)) }
	if c.Address == "" {
		bad("address", "required")
	}
	if c.LogName == "" {
		bad("log_name", "required")
	}
	for _, l := range []struct {
		name string
		hs   []string
	}{
		{"additional_request_headers_to_log", c.AdditionalRequestHeadersToLog},
		{"additional_response_headers_to_log", c.AdditionalResponseHeadersToLog},
		{"additional_response_trailers_to_log", c.AdditionalResponseTrailersToLog},
	} {
		for i, h := range l.hs {
			if h == "" || strings.ContainsAny(h, " \t\r\n\"") {
				bad(fmt.Sprintf("%s[%d]", l.name, i), fmt.Sprintf("invalid header name %q", h))
			}
		}
	}
	if c.BufferFlushInterval <= 0 {
		bad("buffer_flush_interval", "must be positive")
	}
	if c.BufferSizeBytes <= 0 {
		bad("buffer_size_bytes", "must be positive")
	}
	if c.MaxBufferBytes < c.BufferSizeBytes {
		bad("max_buffer_bytes", fmt.Sprintf("%d must be at least buffer_size_bytes (%d)", c.MaxBufferBytes, c.BufferSizeBytes))
	}
	if c.ReconnectBaseInterval <= 0 {
		bad("reconnect_base_interval", "must be positive")
	}
	if c.ReconnectMaxInterval < c.ReconnectBaseInterval {
		bad("reconnect_max_interval", "must be at least reconnect_base_interval")
	}
	return errors.Join(errs...)
}
