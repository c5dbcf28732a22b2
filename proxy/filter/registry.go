package filter

import (
	"fmt"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"
)

// Factory builds one kind of HTTP filter. Built-in filters register their
// factory from init(); the proxy's config names them in http_filters.
type Factory interface {
	// Name is the name used in configuration ("mixer", "ext_authz" ...).
	Name() string
	// ParseConfig decodes and validates the filter's configuration from
	// the listener's http_filters entry (node may be nil: no config). It
	// runs once per listener at config load; the result is passed to
	// NewFilter for every stream and must be safe for concurrent use.
	ParseConfig(node *yaml.Node, env Env) (any, error)
	// ParsePerRouteConfig decodes the filter's per-route config from a
	// route's or virtual host's typed_per_filter_config entry. Factories
	// without per-route config return an error.
	ParsePerRouteConfig(node *yaml.Node) (any, error)
	// NewFilter returns the filter for one stream.
	NewFilter(config any, cb Callbacks) StreamFilter
}

// Env is what a factory may use while parsing: shared infrastructure owned
// by the proxy.
type Env struct {
	Logger *zap.Logger
	// Registry is where a component registers its metrics.
	Registry prometheus.Registerer
	// AddCloser registers cleanup to run when the configuration that
	// created the filter is torn down (a background flusher, a client).
	AddCloser func(func() error)
	// AddReopener registers a function that reopens log files, run on
	// SIGUSR1 and on the admin's POST /reopen_logs (for logrotate). Nil
	// when the proxy has no way to trigger it.
	AddReopener func(func() error)
	// NodeID and Cluster identify the proxy (node.id, node.cluster).
	NodeID  string
	Cluster string
}

// LogHandlerFactory is optionally implemented by a Factory whose filter
// also wants to be an access-log handler: the handler it returns is called
// once per stream, after the configured access logs.
type LogHandlerFactory interface {
	NewLogHandler(config any) AccessLogHandler
}

var (
	registryMu sync.RWMutex
	registry   = map[string]Factory{}
)

// Register adds a factory. It panics on a duplicate name: that is a
// programming error found at start-up.
func Register(f Factory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[f.Name()]; dup {
		panic(fmt.Sprintf("filter: factory %q registered twice", f.Name()))
	}
	registry[f.Name()] = f
}

// Lookup returns the factory registered as name.
func Lookup(name string) (Factory, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	f, ok := registry[name]
	return f, ok
}

// Names lists the registered factories, sorted.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
