// Package headermutation is the header_mutation HTTP filter: it adds and
// removes request headers on the way upstream and response headers on the
// way downstream, from the listener's http_filters entry and, on top of
// that, from a route's or virtual host's typed_per_filter_config.
//
//	http_filters:
//	- name: header_mutation
//	  config:
//	    request_headers_to_add: [{name: x-env, value: prod}]
//	    request_headers_to_remove: [x-debug]
//	    response_headers_to_add: [{name: x-served-by, value: remora, append: true}]
//	    response_headers_to_remove: [server-timing]
package headermutation

import (
	"errors"
	"fmt"
	"strings"

	iconfig "github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filter"
	"gopkg.in/yaml.v3"
)

// Name is the filter's name in configuration.
const Name = "header_mutation"

func init() { filter.Register(factory{}) }

// Config is the filter's configuration, listener-wide or per route.
type Config struct {
	config.HeaderMutations `yaml:",inline"`
}

type factory struct{}

var _ filter.Factory = factory{}

func (factory) Name() string { return Name }

func (factory) ParseConfig(node *yaml.Node, _ filter.Env) (any, error) { return parse(node) }

func (factory) ParsePerRouteConfig(node *yaml.Node) (any, error) { return parse(node) }

func parse(node *yaml.Node) (*Config, error) {
	c := &Config{}
	if err := iconfig.DecodeStrict(node, c); err != nil {
		return nil, fmt.Errorf("header_mutation: %w", err)
	}
	var errs []error
	check := func(field string, i int, name string) {
		if name == "" || name != strings.ToLower(name) || strings.HasPrefix(name, ":") || strings.ContainsAny(name, " \t\r\n") {
			errs = append(errs, fmt.Errorf("header_mutation: %s[%d]: invalid header name %q (lower-case, no pseudo-headers)", field, i, name))
		}
	}
	for i, h := range c.RequestHeadersToAdd {
		check("request_headers_to_add", i, h.Name)
	}
	for i, h := range c.ResponseHeadersToAdd {
		check("response_headers_to_add", i, h.Name)
	}
	for i, n := range c.RequestHeadersToRemove {
		check("request_headers_to_remove", i, n)
	}
	for i, n := range c.ResponseHeadersToRemove {
		check("response_headers_to_remove", i, n)
	}
	return c, errors.Join(errs...)
}

func (factory) NewFilter(cfg any, cb filter.Callbacks) filter.StreamFilter {
	return &Filter{cfg: cfg.(*Config), cb: cb}
}

// Filter applies the mutations for one stream.
type Filter struct {
	filter.PassThrough
	cfg *Config
	cb  filter.Callbacks
}

func apply(h *filter.HeaderMap, remove []string, add []config.HeaderValueOption) {
	for _, n := range remove {
		h.Del(n)
	}
	for _, a := range add {
		if a.Append {
			h.Add(a.Name, a.Value)
		} else {
			h.Set(a.Name, a.Value)
		}
	}
}

func (f *Filter) perRoute() *Config {
	if r := f.cb.Route(); r != nil {
		if c, ok := r.PerFilterConfig(Name).(*Config); ok {
			return c
		}
	}
	return nil
}

// DecodeHeaders mutates the request headers.
func (f *Filter) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.Status {
	apply(h, f.cfg.RequestHeadersToRemove, f.cfg.RequestHeadersToAdd)
	if c := f.perRoute(); c != nil {
		apply(h, c.RequestHeadersToRemove, c.RequestHeadersToAdd)
	}
	return filter.Continue
}

// EncodeHeaders mutates the response headers.
func (f *Filter) EncodeHeaders(h *filter.HeaderMap, _ bool) filter.Status {
	apply(h, f.cfg.ResponseHeadersToRemove, f.cfg.ResponseHeadersToAdd)
	if c := f.perRoute(); c != nil {
		apply(h, c.ResponseHeadersToRemove, c.ResponseHeadersToAdd)
	}
	return filter.Continue
}
