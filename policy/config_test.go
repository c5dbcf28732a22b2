package policy

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestConfigYAMLAndDefaults(t *testing.T) {
	var c Config
	src := `
paths: [/etc/remora/policy, /etc/remora/bundle.tar.gz]
query: data.authz.decision
watch: false
poll_interval: 250ms
valid_duration: 30s
valid_use_count: 500
decision_log: {enabled: true, sample_rate: 0.5, max_per_second: 10}
`
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate("policy"); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.WatchEnabled() || c.Query != "data.authz.decision" || c.PollInterval.String() != "250ms" ||
		c.ValidDuration.String() != "30s" || c.ValidUseCount != 500 || c.RegoVersion != RegoVersionAuto ||
		!c.DecisionLog.Enabled || c.DecisionLog.SampleRate != 0.5 || c.DecisionLog.MaxPerSecond != 10 ||
		c.DecisionLog.QueueSize != DefaultDecisionLogQueueSize {
		t.Errorf("config = %+v", c)
	}

	var d Config
	d.Paths = []string{"p"}
	d.ApplyDefaults()
	if !d.WatchEnabled() || d.Query != DefaultQuery || d.ValidDuration.D() != DefaultValidDuration ||
		d.ValidUseCount != DefaultValidUseCount || d.PollInterval.D() != DefaultPollInterval ||
		d.DecisionCache.Disabled || d.DecisionCache.MaxEntries != DefaultDecisionCacheMaxEntries ||
		d.DecisionCache.TTL.D() != DefaultDecisionCacheTTL {
		t.Errorf("defaults = %+v", d)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want []string
	}{
		{"no policy", func(c *Config) { c.Paths = nil }, []string{"policy.paths: at least one policy path is required"}},
		{"empty path", func(c *Config) { c.Paths = []string{"a", " "} }, []string{"policy.paths[1]: empty path"}},
		{"bad query", func(c *Config) { c.Query = "data.x[" }, []string{"policy.query: invalid query"}},
		{"query not a ref", func(c *Config) { c.Query = "x := 1" }, []string{"policy.query: query \"x := 1\" must be a"}},
		{"query into input", func(c *Config) { c.Query = "input.x" }, []string{"must be a constant reference into data"}},
		{"query with var", func(c *Config) { c.Query = "data.x[y]" }, []string{"must be a constant reference into data"}},
		{"two queries", func(c *Config) { c.Query = "data.x; data.y" }, []string{"must be a single reference"}},
		{"rego version", func(c *Config) { c.RegoVersion = "v2" }, []string{`policy.rego_version: must be "auto", "v1" or "v0", not "v2"`}},
		{"negative", func(c *Config) { c.ValidUseCount = -1; c.PollInterval = -1 }, []string{
			"policy.valid_use_count: must not be negative", "policy.poll_interval: must be positive"}},
		{"decision log", func(c *Config) {
			c.DecisionLog.SampleRate = 2
			c.DecisionLog.MaxPerSecond = -1
			c.DecisionLog.QueueSize = -1
		}, []string{
			"policy.decision_log.sample_rate: must be in (0, 1], not 2",
			"policy.decision_log.max_per_second: must be positive",
			"policy.decision_log.queue_size: must be positive"}},
		{"decision cache", func(c *Config) {
			c.DecisionCache.MaxEntries = -1
			c.DecisionCache.TTL = -1
		}, []string{
			"policy.decision_cache.max_entries: must be positive",
			"policy.decision_cache.ttl: must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Paths: []string{"p"}}
			c.ApplyDefaults()
			tt.mod(&c)
			err := c.Validate("policy")
			if err == nil {
				t.Fatal("Validate: want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"data.envoy.authz.allow", "data.x[\"y\"]", "input", "x := 1", "data.x[", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		ref, err := parseQuery(q)
		if err == nil && (len(ref) == 0 || !ref.IsGround()) {
			t.Fatalf("parseQuery(%q) = %v without error", q, ref)
		}
	})
}
