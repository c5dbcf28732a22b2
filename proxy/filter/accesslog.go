package filter

import (
	"fmt"
	"sort"
	"sync"

	"gopkg.in/yaml.v3"
)

// AccessLogFactory builds one type of access-log sink ("file", "grpc" ...),
// named by the type field of an http_connection_manager access_log entry.
// Sinks register their factory from init() with RegisterAccessLog.
type AccessLogFactory interface {
	// Type is the name used in configuration.
	Type() string
	// NewHandler decodes and validates the entry (its config node may be
	// nil) and returns the handler. It runs once per connection manager at
	// config load; the handler is then shared by every stream of that
	// manager and must be safe for concurrent use. Background work (a
	// flusher, an open file) is released through env.AddCloser.
	NewHandler(entry AccessLogEntry, env Env) (AccessLogHandler, error)
}

// AccessLogEntry is one access_log entry of a connection manager, as its
// factory receives it.
type AccessLogEntry struct {
	Name   string
	Filter *yaml.Node // nil: log every stream
	Config *yaml.Node // nil: no config
}

var (
	accessLogMu       sync.RWMutex
	accessLogRegistry = map[string]AccessLogFactory{}
)

// RegisterAccessLog adds an access-log factory. It panics on a duplicate
// type: that is a programming error found at start-up.
func RegisterAccessLog(f AccessLogFactory) {
	accessLogMu.Lock()
	defer accessLogMu.Unlock()
	if _, dup := accessLogRegistry[f.Type()]; dup {
		panic(fmt.Sprintf("filter: access log type %q registered twice", f.Type()))
	}
	accessLogRegistry[f.Type()] = f
}

// LookupAccessLog returns the access-log factory registered for typ.
func LookupAccessLog(typ string) (AccessLogFactory, bool) {
	accessLogMu.RLock()
	defer accessLogMu.RUnlock()
	f, ok := accessLogRegistry[typ]
	return f, ok
}

// AccessLogNames lists the registered access-log types, sorted.
func AccessLogNames() []string {
	accessLogMu.RLock()
	defer accessLogMu.RUnlock()
	names := make([]string, 0, len(accessLogRegistry))
	for n := range accessLogRegistry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
