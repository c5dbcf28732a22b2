package accesslog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/accesslog/format"
	"github.com/remora-mesh/remora/proxy/filter"
)

// FilterConfig selects which streams an access log records. It is shaped
// like Envoy's config.accesslog.v3.AccessLogFilter: exactly one field must
// be set, and and_filter/or_filter nest further filters.
type FilterConfig struct {
	StatusCode     *ComparisonFilter   `yaml:"status_code_filter,omitempty"`
	Duration       *ComparisonFilter   `yaml:"duration_filter,omitempty"`
	NotHealthCheck *struct{}           `yaml:"not_health_check_filter,omitempty"`
	Runtime        *RuntimeFilter      `yaml:"runtime_filter,omitempty"`
	ResponseFlag   *ResponseFlagFilter `yaml:"response_flag_filter,omitempty"`
	Header         *HeaderFilter       `yaml:"header_filter,omitempty"`
	GRPCStatus     *GRPCStatusFilter   `yaml:"grpc_status_filter,omitempty"`
	And            *ListFilter         `yaml:"and_filter,omitempty"`
	Or             *ListFilter         `yaml:"or_filter,omitempty"`
}

// ComparisonFilter compares the response code (status_code_filter) or the
// total duration in milliseconds (duration_filter) with a value.
type ComparisonFilter struct {
	Comparison Comparison `yaml:"comparison,omitempty"`
}

// Comparison is `op: EQ|NE|GE|LE` (EQ when omitted, as in Envoy) and
// `value: N`. As in Envoy the value may
// also be written `value: {default_value: N}` (a runtime_key is accepted and
// ignored: Remora has no runtime).
type Comparison struct {
	Op    string          `yaml:"op,omitempty"`
	Value ComparisonValue `yaml:"value,omitempty"`
}

// ComparisonValue is a non-negative integer, written bare or as Envoy's
// RuntimeUInt32 {default_value, runtime_key}.
type ComparisonValue struct {
	Value uint32
	set   bool
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (v *ComparisonValue) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var rt struct {
			DefaultValue *uint32 `yaml:"default_value,omitempty"`
			RuntimeKey   string  `yaml:"runtime_key,omitempty"`
		}
		if err := n.Decode(&rt); err != nil {
			return err
		}
		if rt.DefaultValue == nil {
			return fmt.Errorf("line %d: comparison value needs default_value", n.Line)
		}
		v.Value, v.set = *rt.DefaultValue, true
		return nil
	}
	var u uint32
	if err := n.Decode(&u); err != nil {
		return fmt.Errorf("line %d: comparison value must be a non-negative integer", n.Line)
	}
	v.Value, v.set = u, true
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (v ComparisonValue) MarshalYAML() (any, error) { return v.Value, nil }

// RuntimeFilter samples a percentage of streams. With an x-request-id
// header and use_independent_randomness false, the decision is a
// deterministic function of the id (the same id is always sampled the same
// way, so every hop of a request agrees); otherwise it is random.
type RuntimeFilter struct {
	// RuntimeKey is accepted for Envoy compatibility and ignored.
	RuntimeKey               string            `yaml:"runtime_key,omitempty"`
	PercentSampled           FractionalPercent `yaml:"percent_sampled,omitempty"`
	UseIndependentRandomness bool              `yaml:"use_independent_randomness,omitempty"`
}

// FractionalPercent is Envoy's type.v3.FractionalPercent.
type FractionalPercent struct {
	Numerator uint32 `yaml:"numerator"`
	// Denominator is HUNDRED (default), TEN_THOUSAND or MILLION.
	Denominator string `yaml:"denominator,omitempty"`
}

// ResponseFlagFilter matches streams with any of Flags (Envoy short names
// such as UH, UF, URX), or with any flag at all when Flags is empty.
type ResponseFlagFilter struct {
	Flags []string `yaml:"flags,omitempty"`
}

// HeaderFilter matches a request header.
type HeaderFilter struct {
	Header HeaderMatcher `yaml:"header,omitempty"`
}

// HeaderMatcher is Envoy's config.route.v3.HeaderMatcher: a name and at
// most one of the match kinds; with none, the header must be present.
// Matching looks at the first value of the header. InvertMatch negates the
// result, including for an absent header.
type HeaderMatcher struct {
	Name           string         `yaml:"name,omitempty"`
	ExactMatch     *string        `yaml:"exact_match,omitempty"`
	PrefixMatch    *string        `yaml:"prefix_match,omitempty"`
	SuffixMatch    *string        `yaml:"suffix_match,omitempty"`
	ContainsMatch  *string        `yaml:"contains_match,omitempty"`
	SafeRegexMatch *RegexMatch    `yaml:"safe_regex_match,omitempty"`
	PresentMatch   *bool          `yaml:"present_match,omitempty"`
	StringMatch    *StringMatcher `yaml:"string_match,omitempty"`
	InvertMatch    bool           `yaml:"invert_match,omitempty"`
}

// StringMatcher is Envoy's type.matcher.v3.StringMatcher: exactly one of
// exact, prefix, suffix, contains and safe_regex; IgnoreCase applies to
// all but safe_regex.
type StringMatcher struct {
	Exact      *string     `yaml:"exact,omitempty"`
	Prefix     *string     `yaml:"prefix,omitempty"`
	Suffix     *string     `yaml:"suffix,omitempty"`
	Contains   *string     `yaml:"contains,omitempty"`
	SafeRegex  *RegexMatch `yaml:"safe_regex,omitempty"`
	IgnoreCase bool        `yaml:"ignore_case,omitempty"`
}

// RegexMatch is a regular expression (Go RE2 syntax) that must match the
// whole value.
type RegexMatch struct {
	Regex string `yaml:"regex,omitempty"`
}

// GRPCStatusFilter matches streams whose gRPC status (as %GRPC_STATUS%
// determines it from trailers, headers or the HTTP code; UNKNOWN when none)
// is in Statuses, or not in them with Exclude.
type GRPCStatusFilter struct {
	Statuses []string `yaml:"statuses,omitempty"`
	Exclude  bool     `yaml:"exclude,omitempty"`
}

// ListFilter is the operand list of and_filter and or_filter.
type ListFilter struct {
	Filters []FilterConfig `yaml:"filters,omitempty"`
}

var comparisonOps = map[string]bool{"": true, "EQ": true, "NE": true, "GE": true, "LE": true}

var denominators = map[string]uint64{"": 100, "HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}

// grpcCodes maps Envoy's GrpcStatusFilter.Status names to codes.
var grpcCodes = map[string]uint64{
	"OK": 0, "CANCELED": 1, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
	"NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
	"FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13,
	"UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

// Validate reports every problem in the filter with its field path under
// path.
func (c *FilterConfig) Validate(path string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	set := 0
	if c.StatusCode != nil {
		set++
		c.StatusCode.validate(path+".status_code_filter", &errs)
	}
	if c.Duration != nil {
		set++
		c.Duration.validate(path+".duration_filter", &errs)
	}
	if c.NotHealthCheck != nil {
		set++
	}
	if c.Runtime != nil {
		set++
		if _, ok := denominators[c.Runtime.PercentSampled.Denominator]; !ok {
			bad("runtime_filter.percent_sampled.denominator", "%q must be HUNDRED, TEN_THOUSAND or MILLION", c.Runtime.PercentSampled.Denominator)
		} else if uint64(c.Runtime.PercentSampled.Numerator) > denominators[c.Runtime.PercentSampled.Denominator] {
			bad("runtime_filter.percent_sampled.numerator", "%d is more than the denominator", c.Runtime.PercentSampled.Numerator)
		}
	}
	if c.ResponseFlag != nil {
		set++
		for i, f := range c.ResponseFlag.Flags {
			if _, err := filter.ParseResponseFlag(f); err != nil {
				bad(fmt.Sprintf("response_flag_filter.flags[%d]", i), "unknown response flag %q (want one of %s)", f, strings.Join(filter.ResponseFlagNames(), ", "))
			}
		}
	}
	if c.Header != nil {
		set++
		c.Header.Header.validate(path+".header_filter.header", &errs)
	}
	if c.GRPCStatus != nil {
		set++
		if len(c.GRPCStatus.Statuses) == 0 {
			bad("grpc_status_filter.statuses", "must list at least one status")
		}
		for i, s := range c.GRPCStatus.Statuses {
			if _, ok := grpcCodes[s]; !ok {
				bad(fmt.Sprintf("grpc_status_filter.statuses[%d]", i), "unknown gRPC status %q (want OK, CANCELED, ..., UNAUTHENTICATED)", s)
			}
		}
	}
	for _, l := range []struct {
		name string
		f    *ListFilter
	}{{"and_filter", c.And}, {"or_filter", c.Or}} {
		if l.f == nil {
			continue
		}
		set++
		if len(l.f.Filters) < 2 {
			bad(l.name+".filters", "needs at least two filters")
		}
		for i := range l.f.Filters {
			if err := l.f.Filters[i].Validate(fmt.Sprintf("%s.%s.filters[%d]", path, l.name, i)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if set != 1 {
		errs = append(errs, fmt.Errorf("%s: exactly one filter kind must be set, found %d", path, set))
	}
	return errors.Join(errs...)
}

func (c *ComparisonFilter) validate(path string, errs *[]error) {
	if !comparisonOps[c.Comparison.Op] {
		*errs = append(*errs, fmt.Errorf("%s.comparison.op: %q must be EQ, NE, GE or LE", path, c.Comparison.Op))
	}
	if !c.Comparison.Value.set {
		*errs = append(*errs, fmt.Errorf("%s.comparison.value: required", path))
	}
}

func (h *HeaderMatcher) validate(path string, errs *[]error) {
	if h.Name == "" {
		*errs = append(*errs, fmt.Errorf("%s.name: required", path))
	}
	n := 0
	for _, p := range []*string{h.ExactMatch, h.PrefixMatch, h.SuffixMatch, h.ContainsMatch} {
		if p != nil {
			n++
		}
	}
	if h.PresentMatch != nil {
		n++
	}
	if h.SafeRegexMatch != nil {
		n++
		if _, err := regexp.Compile(h.SafeRegexMatch.Regex); err != nil {
			*errs = append(*errs, fmt.Errorf("%s.safe_regex_match.regex: %w", path, err))
		}
	}
	if sm := h.StringMatch; sm != nil {
		n++
		k := 0
		for _, p := range []*string{sm.Exact, sm.Prefix, sm.Suffix, sm.Contains} {
			if p != nil {
				k++
			}
		}
		if sm.SafeRegex != nil {
			k++
			if _, err := regexp.Compile(sm.SafeRegex.Regex); err != nil {
				*errs = append(*errs, fmt.Errorf("%s.string_match.safe_regex.regex: %w", path, err))
			}
		}
		if k != 1 {
			*errs = append(*errs, fmt.Errorf("%s.string_match: exactly one of exact, prefix, suffix, contains and safe_regex must be set", path))
		}
	}
	if n > 1 {
		*errs = append(*errs, fmt.Errorf("%s: at most one of exact_match, prefix_match, suffix_match, contains_match, safe_regex_match, string_match, present_match may be set", path))
	}
}

// Filter decides whether a stream is logged. Implementations are immutable
// and safe for concurrent use.
type Filter interface {
	Match(info *filter.StreamInfo) bool
}

// NewFilter compiles a validated filter configuration. A nil c returns a
// nil Filter, which callers treat as "log everything".
func NewFilter(c *FilterConfig) (Filter, error) {
	if c == nil {
		return nil, nil
	}
	if err := c.Validate("filter"); err != nil {
		return nil, err
	}
	return compileFilter(c), nil
}

func compileFilter(c *FilterConfig) Filter {
	switch {
	case c.StatusCode != nil:
		return statusCodeFilter{cmp(c.StatusCode.Comparison)}
	case c.Duration != nil:
		return durationFilter{cmp(c.Duration.Comparison)}
	case c.NotHealthCheck != nil:
		return notHealthCheckFilter{}
	case c.Runtime != nil:
		return runtimeFilter{
			numerator:   uint64(c.Runtime.PercentSampled.Numerator),
			denominator: denominators[c.Runtime.PercentSampled.Denominator],
			independent: c.Runtime.UseIndependentRandomness,
		}
	case c.ResponseFlag != nil:
		var mask filter.ResponseFlags
		for _, n := range c.ResponseFlag.Flags {
			f, _ := filter.ParseResponseFlag(n)
			mask |= f
		}
		if mask == 0 {
			mask = ^filter.ResponseFlags(0)
		}
		return responseFlagFilter{mask}
	case c.Header != nil:
		return newHeaderFilter(&c.Header.Header)
	case c.GRPCStatus != nil:
		f := grpcStatusFilter{exclude: c.GRPCStatus.Exclude}
		for _, s := range c.GRPCStatus.Statuses {
			f.codes |= 1 << grpcCodes[s]
		}
		return f
	case c.And != nil:
		return andFilter(compileList(c.And))
	default:
		return orFilter(compileList(c.Or))
	}
}

func compileList(l *ListFilter) []Filter {
	fs := make([]Filter, len(l.Filters))
	for i := range l.Filters {
		fs[i] = compileFilter(&l.Filters[i])
	}
	return fs
}

type comparison struct {
	op    byte // '=', '!', '>', '<' for EQ, NE, GE, LE
	value uint64
}

func cmp(c Comparison) comparison {
	ops := map[string]byte{"": '=', "EQ": '=', "NE": '!', "GE": '>', "LE": '<'}
	return comparison{op: ops[c.Op], value: uint64(c.Value.Value)}
}

func (c comparison) match(v uint64) bool {
	switch c.op {
	case '=':
		return v == c.value
	case '!':
		return v != c.value
	case '>':
		return v >= c.value
	default:
		return v <= c.value
	}
}

type statusCodeFilter struct{ c comparison }

func (f statusCodeFilter) Match(info *filter.StreamInfo) bool {
	return f.c.match(uint64(max(info.ResponseCode, 0)))
}

// durationFilter compares the total duration in milliseconds; a stream
// without a recorded duration does not match.
type durationFilter struct{ c comparison }

func (f durationFilter) Match(info *filter.StreamInfo) bool {
	d := info.Duration()
	if d <= 0 {
		return false
	}
	return f.c.match(uint64(d / time.Millisecond))
}

type notHealthCheckFilter struct{}

func (notHealthCheckFilter) Match(info *filter.StreamInfo) bool { return !info.HealthCheck }

type runtimeFilter struct {
	numerator, denominator uint64
	independent            bool
}

func (f runtimeFilter) Match(info *filter.StreamInfo) bool {
	var r uint64
	if id, ok := info.RequestHeaders.Get("x-request-id"); ok && id != "" && !f.independent {
		r = hashID(id)
	} else {
		r = rand.Uint64()
	}
	return r%f.denominator < f.numerator
}

// hashID is 64-bit FNV-1a, computed without allocating.
func hashID(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

type responseFlagFilter struct{ mask filter.ResponseFlags }

func (f responseFlagFilter) Match(info *filter.StreamInfo) bool {
	return info.ResponseFlags&f.mask != 0
}

type headerKind uint8

const (
	hPresent headerKind = iota
	hExact
	hPrefix
	hSuffix
	hContains
	hRegex
)

type headerFilter struct {
	name    string
	kind    headerKind
	value   string
	re      *regexp.Regexp
	present bool // for hPresent: whether presence (true) or absence (false) matches
	invert  bool
	fold    bool // ignore_case: value is lower-case, compare case-insensitively
}

func newHeaderFilter(m *HeaderMatcher) headerFilter {
	f := headerFilter{name: strings.ToLower(m.Name), invert: m.InvertMatch, present: true}
	switch {
	case m.ExactMatch != nil:
		f.kind, f.value = hExact, *m.ExactMatch
	case m.PrefixMatch != nil:
		f.kind, f.value = hPrefix, *m.PrefixMatch
	case m.SuffixMatch != nil:
		f.kind, f.value = hSuffix, *m.SuffixMatch
	case m.ContainsMatch != nil:
		f.kind, f.value = hContains, *m.ContainsMatch
	case m.SafeRegexMatch != nil:
		f.kind, f.re = hRegex, regexp.MustCompile("^(?:"+m.SafeRegexMatch.Regex+")$")
	case m.PresentMatch != nil:
		f.present = *m.PresentMatch
	case m.StringMatch != nil:
		sm := m.StringMatch
		f.fold = sm.IgnoreCase
		switch {
		case sm.Exact != nil:
			f.kind, f.value = hExact, *sm.Exact
		case sm.Prefix != nil:
			f.kind, f.value = hPrefix, *sm.Prefix
		case sm.Suffix != nil:
			f.kind, f.value = hSuffix, *sm.Suffix
		case sm.Contains != nil:
			f.kind, f.value = hContains, *sm.Contains
		default:
			f.kind, f.re, f.fold = hRegex, regexp.MustCompile("^(?:"+sm.SafeRegex.Regex+")$"), false
		}
		if f.fold {
			f.value = strings.ToLower(f.value)
		}
	}
	return f
}

func (f headerFilter) Match(info *filter.StreamInfo) bool {
	return f.match(info) != f.invert
}

func (f headerFilter) match(info *filter.StreamInfo) bool {
	v, ok := info.RequestHeaders.Get(f.name)
	if !ok {
		return f.kind == hPresent && !f.present
	}
	if f.fold {
		switch f.kind {
		case hExact:
			return strings.EqualFold(v, f.value)
		case hPrefix:
			return len(v) >= len(f.value) && strings.EqualFold(v[:len(f.value)], f.value)
		case hSuffix:
			return len(v) >= len(f.value) && strings.EqualFold(v[len(v)-len(f.value):], f.value)
		case hContains:
			return containsFold(v, f.value)
		}
	}
	switch f.kind {
	case hPresent:
		return f.present
	case hExact:
		return v == f.value
	case hPrefix:
		return strings.HasPrefix(v, f.value)
	case hSuffix:
		return strings.HasSuffix(v, f.value)
	case hContains:
		return strings.Contains(v, f.value)
	default:
		return f.re.MatchString(v)
	}
}

// containsFold reports whether lower-case sub occurs in s, ignoring ASCII
// case, without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

type grpcStatusFilter struct {
	codes   uint32 // bit i set: code i listed
	exclude bool
}

func (f grpcStatusFilter) Match(info *filter.StreamInfo) bool {
	code, ok := format.GRPCResponseStatus(info)
	if !ok {
		code = 2 // UNKNOWN, as Envoy treats a stream without a status
	}
	found := code < 32 && f.codes&(1<<code) != 0
	return found != f.exclude
}

type andFilter []Filter

func (fs andFilter) Match(info *filter.StreamInfo) bool {
	for _, f := range fs {
		if !f.Match(info) {
			return false
		}
	}
	return true
}

type orFilter []Filter

func (fs orFilter) Match(info *filter.StreamInfo) bool {
	for _, f := range fs {
		if f.Match(info) {
			return true
		}
	}
	return false
}
