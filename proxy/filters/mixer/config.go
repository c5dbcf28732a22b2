// Package mixer is the sidecar's mixer HTTP filter: a check on
// DecodeHeaders against the Mixer server (answered from the client's
// decision cache when it can) and a report of every finished stream,
// batched to the server by the mixer client.
//
// Data enters as the request headers and the stream's connection facts; the
// filter builds the request's attribute bag, checks it, and either lets the
// request continue (applying the server's header operations) or ends it
// with a local reply (flag UAEX). When the stream ends its access-log
// handler adds the response attributes to the bag and queues it for
// reporting.
//
//	http_filters:
//	- name: mixer
//	  config:
//	    server: {address: 127.0.0.1:9091}
//	    identity: {uid: kubernetes://reviews-v2.default, namespace: default, workload: reviews-v2,
//	               labels: {app: reviews, version: v2}, service_host: reviews.default.svc.cluster.local}
package mixer

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/mixer/client"
)

// Config is the filter's listener-level configuration.
type Config struct {
	// Server is how to reach the Mixer server, check and report settings.
	Server client.Config `yaml:"server"`
	// Direction is "inbound" or "outbound"; empty takes the listener's
	// direction (and "inbound" if the listener has none). It sets
	// context.reporter.kind and whose identity the workload attributes
	// describe: destination.* inbound, source.* outbound.
	Direction string `yaml:"direction,omitempty"`
	// Identity is the workload this sidecar serves.
	Identity Identity `yaml:"identity"`
	// MixerAttributes are added to every request's attributes.
	MixerAttributes AttributeValues `yaml:"mixer_attributes,omitempty"`
	// ForwardAttributes are sent to the next sidecar in the
	// x-istio-attributes header of outbound requests, after the source
	// identity.
	ForwardAttributes AttributeValues `yaml:"forward_attributes,omitempty"`
	// IgnoreForwardedAttributes drops x-istio-attributes from inbound
	// requests instead of trusting it (use when the caller is not a mesh
	// sidecar).
	IgnoreForwardedAttributes bool `yaml:"ignore_forwarded_attributes,omitempty"`
	// MaxForwardedSize bounds the x-istio-attributes header accepted.
	// Default 8 KiB.
	MaxForwardedSize int `yaml:"max_forwarded_size,omitempty"`
	// DisableCheckCalls and DisableReportCalls apply to routes without a
	// per-route service config.
	DisableCheckCalls  bool `yaml:"disable_check_calls,omitempty"`
	DisableReportCalls bool `yaml:"disable_report_calls,omitempty"`
	// Quotas are requested on every check (routes may override).
	Quotas []Quota `yaml:"quotas,omitempty"`
}

// Identity names the workload this sidecar belongs to.
type Identity struct {
	UID         string            `yaml:"uid,omitempty"`
	Namespace   string            `yaml:"namespace,omitempty"`
	Workload    string            `yaml:"workload,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	ServiceHost string            `yaml:"service_host,omitempty"`
	ServiceName string            `yaml:"service_name,omitempty"`
	// Principal is this workload's identity (a SPIFFE id) when the proxy
	// does not learn it from a certificate.
	Principal string `yaml:"principal,omitempty"`
}

// Quota is one quota to request on a check.
type Quota struct {
	Name   string `yaml:"name"`
	Amount int64  `yaml:"amount,omitempty"` // default 1
}

// ServiceConfig is the filter's per-route configuration
// (typed_per_filter_config: {mixer: ...} on a route or virtual host).
type ServiceConfig struct {
	DisableCheckCalls  bool            `yaml:"disable_check_calls,omitempty"`
	DisableReportCalls bool            `yaml:"disable_report_calls,omitempty"`
	MixerAttributes    AttributeValues `yaml:"mixer_attributes,omitempty"`
	ForwardAttributes  AttributeValues `yaml:"forward_attributes,omitempty"`
	// Quotas replace the listener's quotas for this route when set.
	Quotas []Quota `yaml:"quotas,omitempty"`
}

// AttributeValues are attributes written in YAML: name → value. A name
// in the Istio vocabulary takes the vocabulary's type (string, integer,
// double, bool, duration like "1.5s", timestamp in RFC 3339, IP address,
// string map as a mapping); any other name is a string.
type AttributeValues struct {
	bag attributes.Bag
	src map[string]any
}

// UnmarshalYAML decodes and type-checks the values.
func (a *AttributeValues) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: attributes must be a mapping of name to value", n.Line)
	}
	bd := attributes.NewBuilder(len(n.Content) / 2)
	a.src = map[string]any{}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, val := n.Content[i].Value, n.Content[i+1]
		v, err := parseAttribute(name, val)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		bd.Set(name, v)
		var raw any
		_ = val.Decode(&raw)
		a.src[name] = raw
	}
	a.bag = bd.Build()
	return errors.Join(errs...)
}

// MarshalYAML writes the values back as they were given.
func (a AttributeValues) MarshalYAML() (any, error) { return a.src, nil }

// IsZero lets omitempty drop an empty set.
func (a AttributeValues) IsZero() bool { return a.bag.Len() == 0 }

// Bag returns the attributes.
func (a AttributeValues) Bag() attributes.Bag { return a.bag }

func parseAttribute(name string, n *yaml.Node) (attributes.Value, error) {
	kind, known := attributes.KindOf(name)
	if !known {
		kind = attributes.KindString
	}
	if kind == attributes.KindStringMap {
		if n.Kind != yaml.MappingNode {
			return attributes.Value{}, fmt.Errorf("line %d: %s is a string map: write a mapping", n.Line, name)
		}
		var m map[string]string
		if err := n.Decode(&m); err != nil {
			return attributes.Value{}, fmt.Errorf("line %d: %s: string map values must be strings", n.Line, name)
		}
		return attributes.StringMapValue(attributes.StringMapOf(m)), nil
	}
	if n.Kind != yaml.ScalarNode {
		return attributes.Value{}, fmt.Errorf("line %d: %s is %s: write a single value", n.Line, name, kind)
	}
	s := n.Value
	bad := func(what string) (attributes.Value, error) {
		return attributes.Value{}, fmt.Errorf("line %d: %s is %s: %q is not %s", n.Line, name, kind, s, what)
	}
	switch kind {
	case attributes.KindInt64:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad("an integer")
		}
		return attributes.Int64(v), nil
	case attributes.KindDouble:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return bad("a number")
		}
		return attributes.Double(v), nil
	case attributes.KindBool:
		v, err := strconv.ParseBool(s)
		if err != nil {
			return bad("true or false")
		}
		return attributes.Bool(v), nil
	case attributes.KindDuration:
		v, err := time.ParseDuration(s)
		if err != nil {
			return bad(`a duration like "1.5s"`)
		}
		return attributes.Duration(v), nil
	case attributes.KindTimestamp:
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return bad("an RFC 3339 time")
		}
		return attributes.Timestamp(v), nil
	case attributes.KindIPAddress:
		v, err := netip.ParseAddr(s)
		if err != nil {
			return bad("an IP address")
		}
		return attributes.IPAddress(v), nil
	}
	return attributes.String(s), nil
}

// ApplyDefaults fills unset fields.
func (c *Config) ApplyDefaults() {
	c.Server.ApplyDefaults()
	if c.MaxForwardedSize == 0 {
		c.MaxForwardedSize = attributes.DefaultMaxForwardedSize
	}
	for i := range c.Quotas {
		if c.Quotas[i].Amount == 0 {
			c.Quotas[i].Amount = 1
		}
	}
}

// Validate reports every problem with its field path.
func (c *Config) Validate() error {
	errs := []error{c.Server.Validate("server")}
	switch c.Direction {
	case "", attributes.ReporterInbound, attributes.ReporterOutbound:
	default:
		errs = append(errs, fmt.Errorf("direction: must be %q or %q, not %q", attributes.ReporterInbound, attributes.ReporterOutbound, c.Direction))
	}
	if c.MaxForwardedSize < 0 {
		errs = append(errs, fmt.Errorf("max_forwarded_size: must not be negative"))
	}
	errs = append(errs, validateQuotas("quotas", c.Quotas))
	return errors.Join(errs...)
}

func validateQuotas(path string, qs []Quota) error {
	var errs []error
	for i, q := range qs {
		if q.Name == "" {
			errs = append(errs, fmt.Errorf("%s[%d].name: required", path, i))
		}
		if q.Amount < 0 {
			errs = append(errs, fmt.Errorf("%s[%d].amount: must be positive", path, i))
		}
	}
	return errors.Join(errs...)
}

// quotaMap turns quotas into the client's request form.
func quotaMap(qs []Quota) map[string]int64 {
	if len(qs) == 0 {
		return nil
	}
	m := make(map[string]int64, len(qs))
	for _, q := range qs {
		amount := q.Amount
		if amount == 0 {
			amount = 1
		}
		m[q.Name] += amount
	}
	return m
}
