package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/remora-mesh/remora/internal/config"
)

// Defaults applied by Config.ApplyDefaults.
const (
	DefaultQuery         = "data.envoy.authz.allow"
	DefaultValidDuration = time.Minute
	DefaultValidUseCount = 10000
	DefaultPollInterval  = time.Second
	DefaultRegoVersion   = RegoVersionAuto

	DefaultDecisionLogSampleRate   = 1.0
	DefaultDecisionLogMaxPerSecond = 100
	DefaultDecisionLogQueueSize    = 1024

	DefaultDecisionCacheMaxEntries = 10000
	DefaultDecisionCacheTTL        = time.Minute
)

// Rego versions accepted by Config.RegoVersion.
const (
	// RegoVersionAuto parses each module as Rego v1 and, when that fails,
	// as Rego v0 (the syntax opa-envoy-plugin users wrote before OPA 1.0).
	RegoVersionAuto = "auto"
	// RegoVersionV1 accepts Rego v1 modules only.
	RegoVersionV1 = "v1"
	// RegoVersionV0 parses every module as Rego v0.
	RegoVersionV0 = "v0"
)

// Config configures an Engine. The zero Config with ApplyDefaults and at
// least one of Paths or Modules is a working configuration.
type Config struct {
	// Paths are Rego files, directories (searched recursively for .rego
	// modules and .json/.yaml data documents) and OPA bundles (.tar.gz).
	Paths []string `yaml:"paths"`
	// Modules are embedded Rego modules, file name → source. They are
	// compiled together with the modules found under Paths.
	Modules map[string]string `yaml:"-"`
	// Query is the decision to evaluate; default data.envoy.authz.allow.
	Query string `yaml:"query"`
	// RegoVersion is "auto" (default), "v1" or "v0"; see RegoVersionAuto.
	RegoVersion string `yaml:"rego_version"`
	// Watch enables hot reload: Paths are polled every PollInterval and a
	// change recompiles the policy. Nil means true.
	Watch *bool `yaml:"watch"`
	// PollInterval is how often Paths are checked for changes; default 1s.
	PollInterval config.Duration `yaml:"poll_interval"`
	// ValidDuration is how long a cacheable decision stays valid; default 1m.
	ValidDuration config.Duration `yaml:"valid_duration"`
	// ValidUseCount is how many times a cacheable decision may be used;
	// default 10000.
	ValidUseCount int32 `yaml:"valid_use_count"`
	// DecisionLog configures the decision log.
	DecisionLog DecisionLogConfig `yaml:"decision_log"`
	// DecisionCache configures the server-side decision cache.
	DecisionCache DecisionCacheConfig `yaml:"decision_cache"`
}

// DecisionCacheConfig configures the server-side decision cache: decisions
// of a cacheable policy kept in an LRU keyed on the exact values of the
// attributes the policy references (docs/policy.md, "Decision cache").
type DecisionCacheConfig struct {
	// Disabled turns the cache off; default false (on).
	Disabled bool `yaml:"disabled"`
	// MaxEntries bounds the entries (rounded up to a multiple of 16);
	// default 10000.
	MaxEntries int `yaml:"max_entries"`
	// TTL bounds how long an entry serves; a decision's own valid_duration
	// bounds it too. Default 1m.
	TTL config.Duration `yaml:"ttl"`
}

// DecisionLogConfig configures the decision log: one structured zap entry
// per logged decision on the logger named "decision".
type DecisionLogConfig struct {
	// Enabled turns the decision log on; default off.
	Enabled bool `yaml:"enabled"`
	// SampleRate is the fraction of decisions logged, in (0, 1]; default 1.
	SampleRate float64 `yaml:"sample_rate"`
	// MaxPerSecond bounds the rate of logged decisions; beyond it entries
	// are dropped and counted. Default 100.
	MaxPerSecond int `yaml:"max_per_second"`
	// QueueSize bounds the entries waiting to be written; beyond it entries
	// are dropped and counted. Default 1024.
	QueueSize int `yaml:"queue_size"`
}

// WatchEnabled reports whether hot reload is on (Watch nil or true).
func (c *Config) WatchEnabled() bool { return c.Watch == nil || *c.Watch }

// ApplyDefaults fills unset fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.Query == "" {
		c.Query = DefaultQuery
	}
	if c.RegoVersion == "" {
		c.RegoVersion = DefaultRegoVersion
	}
	if c.PollInterval == 0 {
		c.PollInterval = config.Duration(DefaultPollInterval)
	}
	if c.ValidDuration == 0 {
		c.ValidDuration = config.Duration(DefaultValidDuration)
	}
	if c.ValidUseCount == 0 {
		c.ValidUseCount = DefaultValidUseCount
	}
	d := &c.DecisionLog
	if d.SampleRate == 0 {
		d.SampleRate = DefaultDecisionLogSampleRate
	}
	if d.MaxPerSecond == 0 {
		d.MaxPerSecond = DefaultDecisionLogMaxPerSecond
	}
	if d.QueueSize == 0 {
		d.QueueSize = DefaultDecisionLogQueueSize
	}
	if c.DecisionCache.MaxEntries == 0 {
		c.DecisionCache.MaxEntries = DefaultDecisionCacheMaxEntries
	}
	if c.DecisionCache.TTL == 0 {
		c.DecisionCache.TTL = config.Duration(DefaultDecisionCacheTTL)
	}
}

// Validate returns every problem of the (defaulted) configuration, each
// prefixed by its field path under path (for example "policy"), joined
// with errors.Join; nil when the configuration is valid.
func (c *Config) Validate(path string) error {
	field := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	var errs []error
	add := func(f, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{f}, args...)...))
	}
	if len(c.Paths) == 0 && len(c.Modules) == 0 {
		add(field("paths"), "at least one policy path is required")
	}
	for i, p := range c.Paths {
		if strings.TrimSpace(p) == "" {
			add(fmt.Sprintf("%s[%d]", field("paths"), i), "empty path")
		}
	}
	if c.Query == "" {
		add(field("query"), "required")
	} else if _, err := parseQuery(c.Query); err != nil {
		add(field("query"), "%v", err)
	}
	switch c.RegoVersion {
	case RegoVersionAuto, RegoVersionV0, RegoVersionV1:
	default:
		add(field("rego_version"), "must be %q, %q or %q, not %q", RegoVersionAuto, RegoVersionV1, RegoVersionV0, c.RegoVersion)
	}
	if c.PollInterval <= 0 {
		add(field("poll_interval"), "must be positive")
	}
	if c.ValidDuration < 0 {
		add(field("valid_duration"), "must not be negative")
	}
	if c.ValidUseCount < 0 {
		add(field("valid_use_count"), "must not be negative")
	}
	d := c.DecisionLog
	if d.SampleRate <= 0 || d.SampleRate > 1 {
		add(field("decision_log.sample_rate"), "must be in (0, 1], not %g", d.SampleRate)
	}
	if d.MaxPerSecond <= 0 {
		add(field("decision_log.max_per_second"), "must be positive")
	}
	if d.QueueSize <= 0 {
		add(field("decision_log.queue_size"), "must be positive")
	}
	if c.DecisionCache.MaxEntries <= 0 {
		add(field("decision_cache.max_entries"), "must be positive")
	}
	if c.DecisionCache.TTL <= 0 {
		add(field("decision_cache.ttl"), "must be positive")
	}
	return errors.Join(errs...)
}

// parseQuery parses a decision query such as data.envoy.authz.allow. The
// query must be a single reference into data so that its value is the
// decision.
func parseQuery(q string) (ast.Ref, error) {
	body, err := ast.ParseBodyWithOpts(q, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("invalid query %q: %w", q, err)
	}
	if len(body) != 1 {
		return nil, fmt.Errorf("query %q must be a single reference like data.envoy.authz.allow", q)
	}
	t, ok := body[0].Terms.(*ast.Term)
	if !ok {
		return nil, fmt.Errorf("query %q must be a single reference like data.envoy.authz.allow", q)
	}
	ref, ok := t.Value.(ast.Ref)
	if !ok || !ref.HasPrefix(ast.DefaultRootRef) || !ref.IsGround() {
		return nil, fmt.Errorf("query %q must be a constant reference into data like data.envoy.authz.allow", q)
	}
	return ref, nil
}
