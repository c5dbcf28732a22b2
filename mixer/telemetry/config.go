package telemetry

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/remora-mesh/remora/internal/config"
)

// Defaults applied by (*Config).ApplyDefaults.
const (
	DefaultMaxSeriesPerMetric = 10000
	DefaultSeriesExpiry       = 10 * time.Minute
	// DefaultLabelValue replaces a missing attribute in a label.
	DefaultLabelValue = "unknown"
)

// Config configures the telemetry pipeline. The zero Config, after
// ApplyDefaults, exports the standard Istio metrics only.
type Config struct {
	// DisableStandard turns off the built-in Istio standard metrics.
	DisableStandard bool `yaml:"disable_standard"`
	// MaxSeriesPerMetric bounds the series of every metric; records that
	// would create more are counted as overflow and dropped.
	MaxSeriesPerMetric int `yaml:"max_series_per_metric"`
	// SeriesExpiry removes a series that has not been updated for this long.
	SeriesExpiry config.Duration `yaml:"series_expiry"`
	// Metrics are additional metrics computed from report attributes.
	Metrics []MetricConfig `yaml:"metrics"`
}

// MetricConfig defines one custom metric.
type MetricConfig struct {
	// Name is the Prometheus metric name.
	Name string `yaml:"name"`
	// Help is the HELP text; a default is derived from the name.
	Help string `yaml:"help"`
	// Kind is counter, histogram or gauge.
	Kind string `yaml:"kind"`
	// Value is the attribute expression giving the observed value. A
	// counter without a value counts records. Durations are observed in
	// milliseconds, booleans as 0 or 1. A record without the value is
	// skipped for this metric.
	Value string `yaml:"value"`
	// Protocols limits the metric to records whose context.protocol is one
	// of these; empty means every record.
	Protocols []string `yaml:"protocols"`
	// Labels are the metric's labels, in order.
	Labels []LabelConfig `yaml:"labels"`
	// Buckets are a histogram's upper bounds, strictly increasing
	// (default: Prometheus' default buckets).
	Buckets []float64 `yaml:"buckets"`
}

// LabelConfig maps a label to an attribute expression.
type LabelConfig struct {
	// Name is the label name.
	Name string `yaml:"name"`
	// Attribute is an attribute expression: a name ("request.method"), a
	// string-map entry ("request.headers[user-agent]"), or alternatives
	// separated by "|", the first present one winning
	// ("api.protocol | context.protocol").
	Attribute string `yaml:"attribute"`
	// Default is the value when no alternative is present (default "unknown").
	Default string `yaml:"default"`
}

// ApplyDefaults fills in zero fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.MaxSeriesPerMetric == 0 {
		c.MaxSeriesPerMetric = DefaultMaxSeriesPerMetric
	}
	if c.SeriesExpiry == 0 {
		c.SeriesExpiry = config.Duration(DefaultSeriesExpiry)
	}
	for i := range c.Metrics {
		m := &c.Metrics[i]
		if m.Help == "" {
			m.Help = "Custom metric " + m.Name + "."
		}
		if m.Kind == "histogram" && len(m.Buckets) == 0 {
			m.Buckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
		}
		for j := range m.Labels {
			if m.Labels[j].Default == "" {
				m.Labels[j].Default = DefaultLabelValue
			}
		}
	}
}

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Validate returns every problem, each prefixed by its field path under
// prefix (for example "telemetry").
func (c *Config) Validate(prefix string) error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if c.MaxSeriesPerMetric < 0 {
		add(prefix+".max_series_per_metric", "must not be negative, got %d", c.MaxSeriesPerMetric)
	}
	names := map[string]bool{}
	if !c.DisableStandard {
		for _, s := range standardNames {
			names[s] = true
		}
	}
	for i, m := range c.Metrics {
		p := fmt.Sprintf("%s.metrics[%d]", prefix, i)
		switch {
		case m.Name == "":
			add(p+".name", "required")
		case !metricNameRE.MatchString(m.Name):
			add(p+".name", "%q is not a valid Prometheus metric name", m.Name)
		case names[m.Name]:
			add(p+".name", "metric %q is defined twice (or is a standard metric)", m.Name)
		}
		names[m.Name] = true
		switch m.Kind {
		case "counter":
		case "histogram", "gauge":
			if m.Value == "" {
				add(p+".value", "required for a %s", m.Kind)
			}
		case "":
			add(p+".kind", "required: counter, histogram or gauge")
		default:
			add(p+".kind", "unknown kind %q: want counter, histogram or gauge", m.Kind)
		}
		if m.Value != "" {
			if _, err := parseExpr(m.Value); err != nil {
				add(p+".value", "%v", err)
			}
		}
		if m.Kind != "histogram" && len(m.Buckets) > 0 {
			add(p+".buckets", "only a histogram has buckets")
		}
		for j := 1; j < len(m.Buckets); j++ {
			if !(m.Buckets[j] > m.Buckets[j-1]) {
				add(fmt.Sprintf("%s.buckets[%d]", p, j), "buckets must be strictly increasing (%g after %g)", m.Buckets[j], m.Buckets[j-1])
			}
		}
		for j, b := range m.Buckets {
			if math.IsNaN(b) || math.IsInf(b, 0) {
				add(fmt.Sprintf("%s.buckets[%d]", p, j), "bucket bound must be finite")
			}
		}
		labels := map[string]bool{}
		for j, l := range m.Labels {
			lp := fmt.Sprintf("%s.labels[%d]", p, j)
			switch {
			case l.Name == "":
				add(lp+".name", "required")
			case !labelNameRE.MatchString(l.Name) || strings.HasPrefix(l.Name, "__"):
				add(lp+".name", "%q is not a valid Prometheus label name", l.Name)
			case l.Name == "le" && m.Kind == "histogram":
				add(lp+".name", `"le" is reserved in a histogram`)
			case labels[l.Name]:
				add(lp+".name", "label %q is defined twice", l.Name)
			}
			labels[l.Name] = true
			if l.Attribute == "" {
				add(lp+".attribute", "required")
			} else if _, err := parseExpr(l.Attribute); err != nil {
				add(lp+".attribute", "%v", err)
			}
		}
		for j, pr := range m.Protocols {
			if !slices.Contains([]string{"http", "grpc", "tcp"}, pr) {
				add(fmt.Sprintf("%s.protocols[%d]", p, j), "unknown protocol %q: want http, grpc or tcp", pr)
			}
		}
	}
	return errors.Join(errs...)
}

// attrRef names an attribute, or one entry of a string-map attribute.
type attrRef struct {
	name string
	slot int // index into resolved.vals, set by New
	key  string
	// hasKey distinguishes "m[]" (an empty key) from "m".
	hasKey bool
}

var attrNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.\-]*$`)

// parseExpr parses "a.b | c.d[key]".
func parseExpr(s string) ([]attrRef, error) {
	var refs []attrRef
	for _, part := range strings.Split(s, "|") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("empty alternative in attribute expression %q", s)
		}
		ref := attrRef{name: part}
		if i := strings.IndexByte(part, '['); i >= 0 {
			if !strings.HasSuffix(part, "]") {
				return nil, fmt.Errorf("attribute expression %q: missing ] in %q", s, part)
			}
			ref.name, ref.key, ref.hasKey = part[:i], part[i+1:len(part)-1], true
			if strings.ContainsAny(ref.key, "[]") {
				return nil, fmt.Errorf("attribute expression %q: nested brackets in %q", s, part)
			}
		}
		if !attrNameRE.MatchString(ref.name) {
			return nil, fmt.Errorf("attribute expression %q: %q is not an attribute name", s, ref.name)
		}
		refs = append(refs, ref)
	}
	return refs, nil
}
