package quota

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/remora-mesh/remora/internal/config"
)

// Defaults applied by (*Config).ApplyDefaults.
const (
	DefaultWindow  = time.Second
	DefaultTicks   = 10
	DefaultMaxKeys = 10000
)

// Config defines one quota.
type Config struct {
	// Name is the quota name a CheckRequest asks for.
	Name string `yaml:"name"`
	// MaxAmount is the amount granted per window and dimension key.
	MaxAmount int64 `yaml:"max_amount"`
	// Window is the rolling window's length (default 1s).
	Window config.Duration `yaml:"window"`
	// Ticks divides the window; capacity frees up tick by tick (default 10).
	Ticks int `yaml:"ticks"`
	// ValidDuration is how long a client may use a grant (default: one
	// tick, Window/Ticks).
	ValidDuration config.Duration `yaml:"valid_duration"`
	// Dimensions maps a dimension label to an attribute name or a
	// string-map entry ("request.headers[x-user]"). Each distinct
	// combination of values has its own window.
	Dimensions map[string]string `yaml:"dimensions"`
	// Overrides set another max_amount for specific dimension values.
	Overrides []Override `yaml:"overrides"`
	// MaxKeys bounds the number of dimension keys held (default 10000).
	MaxKeys int `yaml:"max_keys"`
}

// Override applies MaxAmount to requests whose dimensions have the given
// values. Dimensions not listed match any value; the first matching
// override wins.
type Override struct {
	Dimensions map[string]string `yaml:"dimensions"`
	MaxAmount  int64             `yaml:"max_amount"`
}

// ApplyDefaults fills in zero fields.
func (c *Config) ApplyDefaults() {
	if c.Window == 0 {
		c.Window = config.Duration(DefaultWindow)
	}
	if c.Ticks == 0 {
		c.Ticks = DefaultTicks
	}
	if c.ValidDuration == 0 && c.Ticks > 0 {
		c.ValidDuration = config.Duration(c.Window.D() / time.Duration(c.Ticks))
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
}

var (
	labelRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	attrRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.\-]*(\[[^\[\]]*\])?$`)
)

// ValidateAll checks a list of quotas, each prefixed by path[i].
func ValidateAll(path string, qs []Config) error {
	var errs []error
	seen := map[string]bool{}
	for i, q := range qs {
		p := fmt.Sprintf("%s[%d]", path, i)
		if err := q.Validate(p); err != nil {
			errs = append(errs, err)
		}
		if q.Name != "" && seen[q.Name] {
			errs = append(errs, fmt.Errorf("%s.name: quota %q is defined twice", p, q.Name))
		}
		seen[q.Name] = true
	}
	return errors.Join(errs...)
}

// Validate returns every problem of the (defaulted) quota.
func (c *Config) Validate(path string) error {
	var errs []error
	add := func(f, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, f, fmt.Sprintf(format, args...)))
	}
	if c.Name == "" {
		add("name", "required")
	}
	if c.MaxAmount <= 0 {
		add("max_amount", "must be positive, got %d", c.MaxAmount)
	}
	if c.Window <= 0 {
		add("window", "must be positive")
	}
	if c.Ticks <= 0 || c.Ticks > 1000 {
		add("ticks", "must be between 1 and 1000, got %d", c.Ticks)
	} else if c.Window > 0 && c.Window.D()/time.Duration(c.Ticks) <= 0 {
		add("ticks", "window %s is too short for %d ticks", c.Window, c.Ticks)
	}
	if c.MaxKeys < 0 {
		add("max_keys", "must not be negative")
	}
	for _, l := range sortedKeys(c.Dimensions) {
		if !labelRE.MatchString(l) {
			add("dimensions", "%q is not a valid dimension label", l)
		}
		if !attrRE.MatchString(strings.TrimSpace(c.Dimensions[l])) {
			add("dimensions."+l, "%q is not an attribute name or map entry (name[key])", c.Dimensions[l])
		}
	}
	for i, o := range c.Overrides {
		if o.MaxAmount < 0 {
			add(fmt.Sprintf("overrides[%d].max_amount", i), "must not be negative")
		}
		if len(o.Dimensions) == 0 {
			add(fmt.Sprintf("overrides[%d].dimensions", i), "required: the dimension values the override applies to")
		}
		for _, l := range sortedKeys(o.Dimensions) {
			if _, ok := c.Dimensions[l]; !ok {
				add(fmt.Sprintf("overrides[%d].dimensions", i), "unknown dimension %q", l)
			}
		}
	}
	return errors.Join(errs...)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
